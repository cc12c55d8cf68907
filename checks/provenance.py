"""provenance.integrity: the sha256 of every input and of the policy, and the model's load path."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import field_validator

from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    from auditor.engine import AuditContext

SAFE_LOADERS = {
    "torchscript": "torch.jit.load (TorchScript's restricted loader)",
    "torch.export": "torch.export.load after a scan refusing pickled members",
    "state_dict": "torch.load(weights_only=True) + trusted factory",
}


class IntegrityParams(Params):
    #: pin digests: subject name (train, test, model, policy) -> expected sha256
    expected_sha256: dict[str, str] = {}

    @field_validator("expected_sha256")
    @classmethod
    def _hex(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in v.items():
            if not re.fullmatch(r"[0-9a-f]{64}", digest.lower()):
                raise ValueError(f"expected_sha256.{name}: not a sha256 hex digest")
        return {k: d.lower() for k, d in v.items()}


class Integrity(Check):
    id = "provenance.integrity"
    title = "Input digests and safe model format"
    family = "provenance"
    description = (
        "Records the sha256 of every dataset, the model and the policy, and how the model was loaded "
        "(never by unrestricted unpickling). Fails when a digest differs from one pinned in the policy."
    )
    requires = ()
    default_severity = "high"
    controls = (
        "nist-ai-rmf:MAP 4.1", "nist-ai-rmf:GOVERN 6.1", "nist-ai-rmf:MANAGE 3.2",
        "iso-42001:A.7.5", "iso-42001:A.6.2.7",
        "eu-ai-act:Art.10(2)(b)", "eu-ai-act:Art.12",
        "mitre-atlas:AML.T0010.002", "mitre-atlas:AML.T0010.003", "mitre-atlas:AML.T0011.000",
    )
    Params = IntegrityParams
    spark_native = True  # reads digests and the model's format, never the rows

    def run_spark(self, ctx: "AuditContext", params: IntegrityParams) -> Outcome:
        outcome = self.run(ctx, params)
        remote = [d.name for d in ctx.datasets() if getattr(d, "digest_of", "content") == "listing"]
        if not remote:
            return outcome
        findings = [*outcome.findings, *(Finding(
            f"{name}: remote input, its bytes were not hashed; the sha256 covers its file listing (names, sizes, "
            "modification times)", dataset=name) for name in remote)]
        status = outcome.status if outcome.status == "fail" else "warn"
        return Outcome(status=status, metrics={**outcome.metrics, "listing_digests": remote}, findings=findings)

    def run(self, ctx: "AuditContext", params: IntegrityParams) -> Outcome:
        from auditor.engine import subjects

        subs = subjects(ctx)
        digests = {s.name: s.sha256 for s in subs}
        metrics: dict = {"sha256": digests}
        if ctx.model is not None:
            metrics["model_format"] = ctx.model.format
            metrics["model_loader"] = SAFE_LOADERS[ctx.model.format]
        findings = []
        unknown = sorted(set(params.expected_sha256) - set(digests))
        for name in unknown:
            findings.append(Finding(f"pinned digest for {name!r}, but no such input was given"))
        mismatched = []
        for name, expected in sorted(params.expected_sha256.items()):
            if name in digests and digests[name] != expected:
                mismatched.append(name)
                findings.append(
                    Finding(
                        f"{name}: sha256 {digests[name]} differs from the pinned {expected}",
                        dataset=name if name in ("train", "test") else None,
                        details={"expected": expected, "actual": digests[name]},
                    )
                )
        metrics["pinned"] = sorted(params.expected_sha256)
        metrics["mismatched"] = mismatched
        status = "fail" if mismatched or unknown else "pass"
        return Outcome(status=status, metrics=metrics, findings=findings)
