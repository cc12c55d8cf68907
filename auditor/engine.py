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
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
    "pydantic", "adversarial-robustness-toolbox",
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
    progress: Progress = field(default_factory=SilentProgress)
    check_id: str = ""
    #: results that several checks share within one audit (e.g. backdoor.scan's reconstructed triggers, which
    #: poisoning.scan also uses); keys name what was computed and from which inputs and parameters
    cache: dict = field(default_factory=dict)

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
        return have

    def datasets(self) -> list["Dataset"]:
        return [d for d in (self.train, self.test) if d is not None]

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
    tb = None
    if missing:
        outcome = Outcome.skipped("needs " + " and ".join(INPUTS.get(m, m) for m in missing))
    else:
        ctx.check_id = check_id
        try:
            outcome = check_cls().run(ctx, configured.params)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"check returned {type(outcome).__name__}, not an Outcome")
        except Exception as e:  # fail closed: recorded as an error, which fails the gate
            outcome = Outcome(status="error", reason=f"{type(e).__name__}: {' '.join(str(e).split())}"[:500])
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
    )


def subjects(ctx: AuditContext) -> tuple[Subject, ...]:
    out = [Subject(d.name, "dataset", str(d.path), d.sha256) for d in ctx.datasets()]
    if ctx.model is not None:
        out.append(Subject("model", "model", str(ctx.model.path), ctx.model.sha256))
    for i, (path, digest) in enumerate(ctx.policy.sources):
        is_top = i == len(ctx.policy.sources) - 1
        out.append(Subject("policy" if is_top else f"policy-base-{i}", "policy", path, digest))
    return tuple(out)


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
    summary = decide_gate(results, fail_on or policy.fail_on)
    return Report(
        auditor={"name": "auditor", "version": auditor.__version__},
        run={
            "id": str(uuid.uuid4()),
            "started_at": started_at,
            "finished_at": finished_at,
            "seed": ctx.seed,
            "argv": sys.argv[1:],
        },
        policy={
            "name": policy.name,
            "version": policy.version,
            "sha256": policy.sha256,
            "path": policy.path,
            "fail_on": summary.fail_on,
        },
        subjects=subjects(ctx),
        summary=summary,
        checks=tuple(results),
        inputs={
            **{d.name: d.describe() for d in ctx.datasets()},
            **({"model": ctx.model.describe()} if ctx.model is not None else {}),
        },
        environment=_environment(),
    )


__all__ = ["AuditContext", "Finding", "Outcome", "Progress", "SilentProgress", "audit", "run_check"]
