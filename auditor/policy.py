"""Policies: YAML files that choose the checks, their parameters, severities and control mappings.

A policy may ``extends:`` a built-in policy (by name) or another file (path relative to it) and
override parts of it: mappings merge key by key, everything else is replaced. Validation errors name
the file, the line and the field: ``policy.yaml:12: checks.data.drift.params.alpha: ...``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from auditor.errors import PolicyError
from auditor.registry import Params, all_checks

DEFAULT_POLICY = "nist-ai-rmf"
Severity = Literal["info", "low", "medium", "high", "critical"]
CONTROL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*:\S.*$")


class CheckConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    severity: Severity | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    controls: list[str] | None = None

    @field_validator("controls")
    @classmethod
    def _control_ids(cls, v: list[str] | None) -> list[str] | None:
        for c in v or ():
            if not CONTROL_RE.match(c):
                raise ValueError(f"control {c!r} is not of the form 'framework:id', e.g. 'nist-ai-rmf:MEASURE 2.7'")
        return v


class WaiverModel(BaseModel):
    """A recorded, owned, time-limited exception for a failing check."""

    model_config = ConfigDict(extra="forbid")

    check: str
    dataset: Literal["train", "test"] | None = None
    rows: list[int] | None = None
    justification: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    expires: date


class WaiverFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    waivers: list[WaiverModel]


class BaselineConfig(BaseModel):
    """How a run is compared with an earlier approved report (``--baseline``)."""

    model_config = ConfigDict(extra="forbid")

    gate: bool = True  # regressions fail the gate
    tolerance: float = Field(0.0, ge=0)  # absolute worsening allowed for every tracked metric
    tolerances: dict[str, float] = Field(default_factory=dict)  # per "check.metric" path


class SampleConfig(BaseModel):
    """With ``--engine spark``: the sample the in-memory checks (model, drift, label issues, ...) audit."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(50_000, ge=100)  # per dataset, drawn reproducibly by Spark from the run's seed


class PolicyDocument(BaseModel):
    """The schema of a policy file (after ``extends`` is merged)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = "1"
    description: str = ""
    extends: str | None = None
    fail_on: Severity = "high"
    seed: int = 0
    label: str | None = None
    exclude: list[str] = Field(default_factory=list)
    sensitive: list[str] = Field(default_factory=list)
    catalogs: list[str] = Field(default_factory=list)  # built-in framework catalogs (policies/frameworks)
    primary_framework: str | None = None
    frameworks: dict[str, dict[str, str]] = Field(default_factory=dict)  # inline catalog entries
    checks: dict[str, CheckConfig] = Field(default_factory=dict)
    waivers: list[WaiverModel] = Field(default_factory=list)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


@dataclass(frozen=True)
class ConfiguredCheck:
    id: str
    enabled: bool
    severity: str
    params: Params
    controls: tuple[str, ...]


@dataclass(frozen=True)
class Waiver:
    check: str
    justification: str
    owner: str
    expires: date
    dataset: str | None = None
    rows: tuple[int, ...] | None = None
    source: str = ""

    def state(self, today: date) -> str:
        return "expired" if today > self.expires else "active"

    def covers(self, result) -> bool:
        """True when this waiver covers every finding of ``result`` (same check, dataset and rows)."""
        if result.id != self.check:
            return False
        for f in result.findings:
            if self.dataset is not None and f.dataset != self.dataset:
                return False
            if self.rows is not None and f.rows and not set(f.rows) <= set(self.rows):
                return False
        return True

    def to_dict(self, today: date) -> dict:
        out = {"check": self.check, "owner": self.owner, "justification": self.justification,
               "expires": self.expires.isoformat(), "state": self.state(today), "source": self.source}
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.rows is not None:
            out["rows"] = list(self.rows)
        return out


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    description: str
    fail_on: str
    seed: int
    label: str | None
    exclude: tuple[str, ...]
    frameworks: Mapping[str, Mapping[str, str]]  # catalogs merged with inline entries
    checks: Mapping[str, ConfiguredCheck]
    path: str  # the file given (or the built-in's path)
    sha256: str
    sources: tuple[tuple[str, str], ...] = field(default=())  # (path, sha256) of every file, base first
    document: Mapping[str, Any] = field(default_factory=dict)  # merged YAML document
    primary_framework: str | None = None
    waivers: tuple[Waiver, ...] = ()
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    framework_names: Mapping[str, str] = field(default_factory=dict)
    sensitive: tuple[str, ...] = ()
    sample: SampleConfig = field(default_factory=SampleConfig)

    def enabled_checks(self) -> list[ConfiguredCheck]:
        return [c for c in self.checks.values() if c.enabled]


# ---------------------------------------------------------------- built-ins


def builtin_dir() -> Path:
    return Path(str(resources.files("auditor.policies")))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def builtin_path(name: str) -> Path:
    path = builtin_dir() / f"{name}.yaml"
    if not path.is_file():
        raise PolicyError(f"no built-in policy named {name!r} (built-in: {', '.join(builtin_names())})")
    return path


def catalog_names() -> list[str]:
    return sorted(p.stem for p in (builtin_dir() / "frameworks").glob("*.yaml"))


def load_catalog(name: str) -> tuple[str, dict[str, str]]:
    """(display name, {control id: paraphrased title}) of a built-in framework catalog."""
    path = builtin_dir() / "frameworks" / f"{name}.yaml"
    if not path.is_file():
        raise PolicyError(f"no framework catalog named {name!r} (built-in: {', '.join(catalog_names())})")
    data = yaml.safe_load(path.read_text("utf-8"))
    return str(data.get("name", name)), {str(k): str(v) for k, v in data["controls"].items()}


def resolve_reference(ref: str, relative_to: Path | None = None) -> Path:
    """A policy reference is a built-in name or a path (relative to the referring file)."""
    looks_like_path = ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref
    if not looks_like_path:
        return builtin_path(ref)
    path = Path(ref)
    if relative_to is not None and not path.is_absolute():
        path = relative_to.parent / path
    if not path.is_file():
        raise PolicyError("policy file not found", path)
    return path


# ---------------------------------------------------------------- YAML with line numbers


@dataclass
class _Source:
    path: Path
    data: dict[str, Any]
    node: yaml.Node | None
    sha256: str


def _read_yaml(path: Path) -> _Source:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PolicyError(f"cannot read policy: {e.strerror or e}", path) from None
    try:
        text = raw.decode("utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise PolicyError("policy is not UTF-8 text", path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise PolicyError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    if data is None:
        raise PolicyError("policy is empty", path)
    if not isinstance(data, dict):
        raise PolicyError("policy must be a YAML mapping at the top level", path, 1)
    _reject_duplicate_keys(node, path)
    return _Source(path, data, node, hashlib.sha256(raw).hexdigest())


def _reject_duplicate_keys(node: yaml.Node | None, path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.value in seen:
                raise PolicyError(f"duplicate key {key.value!r}", path, key.start_mark.line + 1)
            seen.add(key.value)
            _reject_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, path)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest node of ``loc`` present in the YAML tree."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _locate(chain: list[_Source], loc: tuple[Any, ...]) -> tuple[Path, int | None]:
    """The file (most derived first) that mentions ``loc``, and its line."""
    best: tuple[Path, int | None, int] | None = None
    for src in reversed(chain):
        line = _line_of(src.node, loc)
        if line is None:
            continue
        depth = _depth_found(src.node, loc)
        if best is None or depth > best[2]:
            best = (src.path, line, depth)
    if best is None:
        return chain[-1].path, None
    return best[0], best[1]


def _depth_found(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    depth = 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        depth += 1
    return depth


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    return override


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")


def _raise_validation(chain: list[_Source], e: ValidationError, prefix: tuple[Any, ...] = ()) -> None:
    err = e.errors()[0]
    loc = prefix + tuple(err["loc"])
    path, line = _locate(chain, loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "literal_error" and "ctx" in err:
        msg = f"{msg}, got {err.get('input')!r}"
    raise PolicyError(f"{_format_loc(loc)}: {msg}", path, line) from None


# ---------------------------------------------------------------- loading


def load(ref: str | Path | None = None) -> Policy:
    """Load, merge and validate a policy: a built-in name, a path, or None for the default."""
    if ref is None:
        path = builtin_path(DEFAULT_POLICY)
    elif isinstance(ref, Path):
        path = ref
        if not path.is_file():
            raise PolicyError("policy file not found", path)
    else:
        path = resolve_reference(ref)

    chain: list[_Source] = []
    seen: set[Path] = set()
    current: Path | None = path
    while current is not None:
        resolved = current.resolve()
        if resolved in seen:
            raise PolicyError("'extends' forms a cycle", current)
        seen.add(resolved)
        src = _read_yaml(current)
        chain.insert(0, src)
        parent = src.data.get("extends")
        if parent is None:
            current = None
        elif not isinstance(parent, str):
            raise PolicyError("extends: must be a policy name or path", current, _line_of(src.node, ("extends",)))
        else:
            try:
                current = resolve_reference(parent, relative_to=current)
            except PolicyError as e:
                raise PolicyError(f"extends: {e.problem}", current, _line_of(src.node, ("extends",))) from None

    merged: dict[str, Any] = {}
    for src in chain:
        merged = _merge(merged, src.data)
    merged["extends"] = chain[-1].data.get("extends")

    try:
        doc = PolicyDocument.model_validate(merged)
    except ValidationError as e:
        _raise_validation(chain, e)

    registry = all_checks()
    configured: dict[str, ConfiguredCheck] = {}
    for check_id, cfg in doc.checks.items():
        check = registry.get(check_id)
        if check is None:
            p, line = _locate(chain, ("checks", check_id))
            raise PolicyError(
                f"checks.{check_id}: unknown check id (run 'auditor checks' for the list)", p, line
            )
        try:
            params = check.Params.model_validate(cfg.params)
        except ValidationError as e:
            _raise_validation(chain, e, ("checks", check_id, "params"))
        except (ValueError, TypeError) as e:  # raised by a params validator outside pydantic's wrapping
            p, line = _locate(chain, ("checks", check_id, "params"))
            raise PolicyError(f"checks.{check_id}.params: {e}", p, line) from None
        configured[check_id] = ConfiguredCheck(
            id=check_id,
            enabled=cfg.enabled,
            severity=cfg.severity or check.default_severity,
            params=params,
            controls=tuple(cfg.controls) if cfg.controls is not None else check.controls,
        )

    frameworks: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for i, name in enumerate(doc.catalogs):
        try:
            names[name], frameworks[name] = load_catalog(name)
        except PolicyError as e:
            p, line = _locate(chain, ("catalogs", i))
            raise PolicyError(f"catalogs[{i}]: {e.problem}", p, line) from None
    for fw, entries in doc.frameworks.items():
        frameworks.setdefault(fw, {}).update(entries)
    if doc.primary_framework is not None and doc.primary_framework not in frameworks:
        p, line = _locate(chain, ("primary_framework",))
        raise PolicyError(f"primary_framework: {doc.primary_framework!r} is not among the policy's frameworks", p, line)
    waivers = tuple(_waiver(w, chain, ("waivers", i), registry) for i, w in enumerate(doc.waivers))

    top = chain[-1]
    return Policy(
        name=doc.name,
        version=doc.version,
        description=doc.description,
        fail_on=doc.fail_on,
        seed=doc.seed,
        label=doc.label,
        exclude=tuple(doc.exclude),
        frameworks=frameworks,
        checks=configured,
        path=str(top.path),
        sha256=top.sha256,
        sources=tuple((str(s.path), s.sha256) for s in chain),
        document=merged,
        primary_framework=doc.primary_framework or next(iter(frameworks), None),
        waivers=waivers,
        baseline=doc.baseline,
        framework_names=names,
        sensitive=tuple(doc.sensitive),
        sample=doc.sample,
    )


def _waiver(w: WaiverModel, chain: list[_Source], loc: tuple[Any, ...], registry: Mapping[str, Any]) -> Waiver:
    if w.check not in registry:
        p, line = _locate(chain, loc + ("check",))
        raise PolicyError(f"{_format_loc(loc)}.check: unknown check id {w.check!r}", p, line)
    src = _locate(chain, loc)[0]
    return Waiver(check=w.check, justification=w.justification, owner=w.owner, expires=w.expires,
                  dataset=w.dataset, rows=tuple(w.rows) if w.rows is not None else None, source=str(src))


def load_waivers(path: str | Path) -> tuple[tuple[Waiver, ...], str]:
    """Waivers from a separate YAML file (``waivers: [...]``) and the file's sha256."""
    path = Path(path)
    if not path.is_file():
        raise PolicyError("waiver file not found", path)
    src = _read_yaml(path)
    try:
        doc = WaiverFile.model_validate(src.data)
    except ValidationError as e:
        _raise_validation([src], e)
    registry = all_checks()
    return tuple(_waiver(w, [src], ("waivers", i), registry) for i, w in enumerate(doc.waivers)), src.sha256


def describe_builtins() -> list[tuple[str, str, str]]:
    """(name, version, description) of each built-in policy, without validating them."""
    out = []
    for name in builtin_names():
        data = yaml.safe_load(builtin_path(name).read_text("utf-8")) or {}
        out.append((name, str(data.get("version", "")), str(data.get("description", "")).strip()))
    return out


