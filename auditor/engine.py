"""The engine: runs the checks a policy enables against the inputs and builds the Report.

A check whose inputs are missing is ``skipped`` with the reason; a check that raises is ``error``
with the reason (and its traceback kept in the report), which fails the gate. Every check gets its
own seed derived from the run seed and its id, so results do not depend on which other checks run.
"""

from __future__ import annotations

import platform
import sys
import time
import traceback
import uuid
import zlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Protocol

import auditor
from auditor.registry import INPUTS, all_checks
from auditor.report import CheckResult, Finding, Outcome, Report, Subject, decide_gate

if TYPE_CHECKING:
    import numpy as np

    from auditor.inputs import Dataset
    from auditor.models import Model
    from auditor.policy import Policy

ENV_PACKAGES = (
    "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "torch", "great-expectations", "cleanlab",
    "pydantic", "adversarial-robustness-toolbox", "torchao", "fairlearn", "reportlab", "pyHanko", "cryptography",
    "pyspark",
)


class Progress(Protocol):
    def start(self, check_id: str, index: int, total: int) -> None: ...
    def step(self, message: str) -> None: ...
    def done(self, result: CheckResult) -> None: ...


class SilentProgress:
    def start(self, check_id: str, index: int, total: int) -> None:
        pass

    def step(self, message: str) -> None:
        pass

    def done(self, result: CheckResult) -> None:
        pass


@dataclass
class AuditContext:
    policy: "Policy"
    seed: int
    train: "Dataset | None" = None
    test: "Dataset | None" = None
    model: "Model | None" = None
    #: an optimized (quantized, pruned, ...) version of ``model`` to compare with it (--optimized)
    optimized: "Model | None" = None
    progress: Progress = field(default_factory=SilentProgress)
    check_id: str = ""
    sensitive: tuple[str, ...] = ()  # sensitive attributes (columns, or NPZ arrays such as ``groups``)
    extra_waivers: tuple = ()  # waivers from a separate file (--waivers), beside the policy's
    waiver_sources: tuple[tuple[str, str], ...] = ()  # (path, sha256) of waiver files
    baseline: "tuple[dict, str, str] | None" = None  # (report dict, path, sha256) of --baseline
    today: "date | None" = None  # the date waivers expire against (default: the run's UTC date)
    #: values several checks share within one run (e.g. the optimized variants built from the model)
    cache: dict = field(default_factory=dict, repr=False)
    #: "pandas" (datasets in memory) or "spark" (train/test are SparkDatasets; see ``in_memory``)
    engine: str = "pandas"

    def available(self) -> set[str]:
        have = set()
        if self.train is not None:
            have.add("train")
            if self.train.has_label:
                have.add("label")
        if self.test is not None:
            have.add("test")
        if self.model is not None:
            have.add("model")
        if self.sensitive:
            have.add("sensitive")
        if self.optimized is not None:
            have.add("optimized")
        return have

    def datasets(self) -> list["Dataset"]:
        return [d for d in (self.train, self.test) if d is not None]

    def in_memory(self) -> "AuditContext":
        """This context with in-memory datasets: itself on the pandas engine; on Spark, a copy holding the
        policy-sized samples Spark draws (once per run, the same for every check) from the run's seed."""
        if self.engine != "spark":
            return self
        if "in_memory" not in self.cache:
            rows, seed = self.policy.sample.rows, self.seed_for("sample")
            drawn = {}
            for ds in self.datasets():
                self.progress.step(f"drawing a sample of {min(rows, ds.n_rows):,} {ds.name} rows with Spark")
                drawn[ds.name] = ds.sample(rows, seed)
            self.cache["in_memory"] = replace(self, train=drawn.get("train"), test=drawn.get("test"), engine="pandas")
        sampled = self.cache["in_memory"]
        sampled.check_id, sampled.progress = self.check_id, self.progress
        return sampled

    def check_seed(self) -> int:
        """A seed for the running check: stable for the run seed and the check id."""
        return self.seed_for(self.check_id)

    def seed_for(self, check_id: str) -> int:
        """The seed ``check_id`` gets (for work one check shares with another, so both compute the same)."""
        return (self.seed * 1_000_003 + zlib.crc32(check_id.encode())) % (2**32)

    def rng(self) -> "np.random.Generator":
        import numpy as np

        return np.random.default_rng(self.check_seed())


def _environment() -> dict:
    from importlib import metadata

    versions = {}
    for name in ENV_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_check(check_id: str, ctx: AuditContext) -> CheckResult:
    policy = ctx.policy
    configured = policy.checks[check_id]
    check_cls = all_checks()[check_id]
    missing = check_cls.missing_inputs(ctx.available())
    started = time.perf_counter()
    tb = sample = None
    if missing:
        outcome = Outcome.skipped("needs " + " and ".join(INPUTS.get(m, m) for m in missing))
    else:
        ctx.check_id = check_id
        try:
            check = check_cls()
            if ctx.engine == "spark" and check_cls.spark_native:
                outcome = check.run_spark(ctx, configured.params)
            elif ctx.engine == "spark":
                local = ctx.in_memory()
                outcome = _rows_in_files(check.run(local, configured.params), local)
                sample = {d.name: dict(d.sample_of) for d in local.datasets() if d.sample_of}
            else:
                outcome = check.run(ctx, configured.params)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"check returned {type(outcome).__name__}, not an Outcome")
        except Exception as e:  # fail closed: recorded as an error, which fails the gate
            outcome = Outcome(status="error", reason=_failure(e, ctx.engine))
            tb = traceback.format_exc(limit=8)
    return CheckResult(
        id=check_id,
        title=check_cls.title,
        family=check_cls.family,
        severity=configured.severity,
        status=outcome.status,
        reason=outcome.reason,
        metrics=dict(outcome.metrics),
        findings=tuple(outcome.findings),
        controls=configured.controls,
        duration_s=time.perf_counter() - started,
        traceback=tb,
        sample=sample or None,
    )


def _failure(exc: Exception, engine: str) -> str:
    """A check's error reason: the exception in one line, after Spark's diagnosis when Spark failed it."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if engine == "spark":
        from auditor.spark import failure_reason

        why = failure_reason(exc)
        if why:
            text = f"{why} ({text[:200]})"
    return text[:500]


def _rows_in_files(outcome: Outcome, local: AuditContext) -> Outcome:
    """A check run on samples names sample positions: turn them into the rows' numbers in the files."""
    if not isinstance(outcome, Outcome):
        return outcome
    by_name = {d.name: d.row_ids for d in local.datasets() if d.row_ids is not None}
    findings = []
    for f in outcome.findings:
        ids = by_name.get(f.dataset) if f.rows is not None else None
        findings.append(replace(f, rows=tuple(int(ids[r]) for r in f.rows)) if ids is not None else f)
    return replace(outcome, findings=tuple(findings))


def subjects(ctx: AuditContext) -> tuple[Subject, ...]:
    out = [Subject(d.name, "dataset", str(d.path), d.sha256) for d in ctx.datasets()]
    if ctx.model is not None:
        out.append(Subject("model", "model", str(ctx.model.path), ctx.model.sha256))
    if ctx.optimized is not None:
        out.append(Subject("optimized", "model", str(ctx.optimized.path), ctx.optimized.sha256))
    for i, (path, digest) in enumerate(ctx.policy.sources):
        is_top = i == len(ctx.policy.sources) - 1
        out.append(Subject("policy" if is_top else f"policy-base-{i}", "policy", path, digest))
    for i, (path, digest) in enumerate(ctx.waiver_sources):
        out.append(Subject("waivers" if i == 0 else f"waivers-{i}", "policy", path, digest))
    return tuple(out)


def apply_waivers(results: list[CheckResult], waivers, today: date) -> tuple[list[CheckResult], list[str]]:
    """Attach to each failed check the waiver that covers it (an active one first); list expired waivers."""
    out = []
    for r in results:
        if r.status == "fail":
            matching = [w for w in waivers if w.covers(r)]
            matching.sort(key=lambda w: (w.state(today) != "active", w.expires))
            if matching:
                r = replace(r, waiver=matching[0].to_dict(today))
        out.append(r)
    expired = [
        f"{w.check} (owner {w.owner}, expired {w.expires.isoformat()}, {w.source})"
        for w in waivers if w.state(today) == "expired"
    ]
    return out, expired


def audit(ctx: AuditContext, fail_on: str | None = None) -> Report:
    """Run every enabled check of ``ctx.policy`` and return the finished report."""
    started_at = _now()
    enabled = [c.id for c in ctx.policy.enabled_checks()]
    results = []
    for i, check_id in enumerate(enabled):
        ctx.progress.start(check_id, i, len(enabled))
        result = run_check(check_id, ctx)
        ctx.progress.done(result)
        results.append(result)
    finished_at = _now()
    policy = ctx.policy
    today = ctx.today or datetime.fromisoformat(started_at).date()
    waivers = (*policy.waivers, *ctx.extra_waivers)
    results, expired = apply_waivers(results, waivers, today)

    baseline_section = None
    gated_regressions: list[str] = []
    regressions: list[dict] = []
    if ctx.baseline is not None:
        from auditor import baseline as baseline_mod

        previous, path, digest = ctx.baseline
        tracked = {cid: cls.tracked_metrics for cid, cls in all_checks().items()}
        regressions = baseline_mod.compare(previous, results, policy.baseline, tracked)
        baseline_section = {
            "path": path, "sha256": digest, "run_id": (previous.get("run") or {}).get("id"),
            "gate": policy.baseline.gate, "tolerance": policy.baseline.tolerance,
            "regressions": regressions,
        }
        if policy.baseline.gate:
            gated_regressions = [r["message"] for r in regressions]

    from auditor import coverage

    summary = decide_gate(results, fail_on or policy.fail_on, expired, gated_regressions, len(regressions))
    return Report(
        auditor={"name": "auditor", "version": auditor.__version__},
        run={
            "id": str(uuid.uuid4()),
            "started_at": started_at,
            "finished_at": finished_at,
            "seed": ctx.seed,
            "engine": ctx.engine,
            "argv": sys.argv[1:],
        },
        policy={
            "name": policy.name,
            "version": policy.version,
            "sha256": policy.sha256,
            "path": policy.path,
            "fail_on": summary.fail_on,
            "primary_framework": policy.primary_framework,
        },
        subjects=subjects(ctx),
        summary=summary,
        checks=tuple(results),
        inputs={
            **{d.name: d.describe() for d in ctx.datasets()},
            **({"model": ctx.model.describe()} if ctx.model is not None else {}),
            **({"optimized": ctx.optimized.describe()} if ctx.optimized is not None else {}),
        },
        environment=_environment(),
        coverage=coverage.build(policy.frameworks, results, policy.primary_framework, policy.framework_names),
        waivers=tuple(w.to_dict(today) for w in waivers),
        baseline=baseline_section,
    )


__all__ = ["AuditContext", "Finding", "Outcome", "Progress", "SilentProgress", "audit", "run_check"]
