"""Result types: what a check returns (:class:`Outcome`), what the engine records per check
(:class:`CheckResult`) and the finished :class:`Report` that every formatter receives.

The summary and the gate verdict are computed once, here, when the report is built; formatters
only read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from auditor.severity import STATUSES, rank

SCHEMA_VERSION = "1.0"


def jsonable(value: Any) -> Any:
    """Plain JSON types from numpy/pandas scalars, tuples and sets; NaN and inf become None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    # numpy scalars and arrays, without importing numpy here
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        return jsonable(value.item())
    return str(value)


@dataclass(frozen=True)
class Finding:
    """One thing a check found. ``rows`` are 0-based data rows of ``dataset``, every flagged one."""

    message: str
    dataset: str | None = None
    rows: tuple[int, ...] | None = None
    details: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.rows is not None:
            out["rows"] = [int(r) for r in self.rows]
        if self.details:
            out["details"] = jsonable(self.details)
        return out


@dataclass(frozen=True)
class Outcome:
    """What a check's ``run`` returns: its verdict, the numbers it rests on, and what it found."""

    status: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    findings: Sequence[Finding] = ()
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    @classmethod
    def skipped(cls, reason: str) -> "Outcome":
        return cls(status="skipped", reason=reason)


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    family: str
    severity: str
    status: str
    reason: str | None
    metrics: Mapping[str, Any]
    findings: tuple[Finding, ...]
    controls: tuple[str, ...]
    duration_s: float
    traceback: str | None = None
    waiver: Mapping[str, Any] | None = None  # the waiver that matched a failure, with its state
    #: set when the check audited samples (Spark engine): per dataset, rows drawn, of how many, seed, method
    sample: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "family": self.family,
            "severity": self.severity,
            "status": self.status,
            "reason": self.reason,
            "metrics": jsonable(self.metrics),
            "findings": [f.to_dict() for f in self.findings],
            "controls": list(self.controls),
            "duration_s": round(self.duration_s, 4),
        }
        if self.traceback:
            out["traceback"] = self.traceback
        if self.waiver:
            out["waiver"] = jsonable(self.waiver)
        if self.sample:
            out["sample"] = jsonable(self.sample)
        return out


@dataclass(frozen=True)
class Subject:
    name: str
    kind: str  # dataset | model | policy
    path: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "path": self.path, "sha256": self.sha256}


@dataclass(frozen=True)
class Summary:
    gate: str  # pass | fail
    fail_on: str
    counts: Mapping[str, int]
    blocking: tuple[str, ...]  # why the gate failed, one line each
    waived: tuple[str, ...] = ()  # failures that an active waiver keeps from failing the gate
    regressions: int = 0  # baseline regressions found (gated or only reported)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "fail_on": self.fail_on,
            "counts": dict(self.counts),
            "blocking": list(self.blocking),
            "waived": list(self.waived),
            "regressions": self.regressions,
        }


def decide_gate(
    results: Sequence[CheckResult],
    fail_on: str,
    expired_waivers: Sequence[str] = (),
    regressions: Sequence[str] = (),
    regressions_found: int | None = None,
) -> Summary:
    """Fail closed: a check that failed at or above ``fail_on`` fails the gate unless an active waiver
    covers it; so does any error, any expired waiver and any gated baseline regression."""
    threshold = rank(fail_on)
    counts = {status: 0 for status in STATUSES}
    blocking = []
    waived = []
    for r in results:
        counts[r.status] += 1
        if r.status == "error":
            blocking.append(f"{r.id}: error")
        elif r.status == "fail" and rank(r.severity) >= threshold:
            if r.waiver and r.waiver.get("state") == "active":
                waived.append(f"{r.id}: waived until {r.waiver['expires']} ({r.waiver['owner']})")
            else:
                blocking.append(f"{r.id}: fail ({r.severity})")
    blocking += [f"expired waiver: {w}" for w in expired_waivers]
    blocking += [f"baseline regression: {g}" for g in regressions]
    return Summary(
        gate="fail" if blocking else "pass", fail_on=fail_on, counts=counts, blocking=tuple(blocking),
        waived=tuple(waived), regressions=len(regressions) if regressions_found is None else regressions_found,
    )


@dataclass(frozen=True)
class Report:
    auditor: Mapping[str, str]
    run: Mapping[str, Any]
    policy: Mapping[str, Any]
    subjects: tuple[Subject, ...]
    summary: Summary
    checks: tuple[CheckResult, ...]
    inputs: Mapping[str, Any]
    environment: Mapping[str, Any]
    schema_version: str = SCHEMA_VERSION
    coverage: Mapping[str, Any] = field(default_factory=dict)  # framework -> controls -> checks and status
    waivers: tuple[Mapping[str, Any], ...] = ()  # every waiver of the policy, with its state
    baseline: Mapping[str, Any] | None = None  # comparison with an earlier approved report

    @property
    def passed(self) -> bool:
        return self.summary.gate == "pass"

    def check(self, check_id: str) -> CheckResult:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "auditor": dict(self.auditor),
            "run": jsonable(self.run),
            "policy": jsonable(self.policy),
            "subjects": [s.to_dict() for s in self.subjects],
            "summary": self.summary.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "inputs": jsonable(self.inputs),
            "environment": jsonable(self.environment),
            "coverage": jsonable(self.coverage),
            "waivers": [jsonable(w) for w in self.waivers],
            "baseline": jsonable(self.baseline),
        }
