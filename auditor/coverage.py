"""The control coverage matrix: for each control of the policy's frameworks, the checks that give
evidence for it and their combined status; controls no enabled check maps to need a human attestation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from auditor.report import CheckResult

#: a control's status is the worst of its checks' statuses, in this order
WORST_FIRST = ("error", "fail", "warn", "pass", "skipped")
ATTESTATION = "attestation_required"


def control_status(results: Sequence["CheckResult"]) -> str:
    statuses = []
    for r in results:
        waived = r.status == "fail" and r.waiver is not None and r.waiver.get("state") == "active"
        statuses.append("waived" if waived else r.status)
    for status in ("error", "fail", "waived", "warn", "pass", "skipped"):
        if status in statuses:
            return status
    return ATTESTATION


def build(
    frameworks_in: Mapping[str, Mapping[str, str]],
    results: Sequence["CheckResult"],
    primary: str | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Coverage of each framework's controls (catalog order) by ``results``."""
    by_control: dict[str, list[CheckResult]] = {}
    for r in results:
        for control in r.controls:
            by_control.setdefault(control, []).append(r)
    frameworks: dict[str, dict[str, str]] = {fw: dict(c) for fw, c in frameworks_in.items()}
    for control in by_control:  # mappings to controls outside the catalogs are still shown
        fw, _, cid = control.partition(":")
        frameworks.setdefault(fw, {}).setdefault(cid, "")
    out: dict[str, Any] = {}
    for fw, controls in frameworks.items():
        rows = []
        for cid, title in controls.items():
            checks = by_control.get(f"{fw}:{cid}", [])
            rows.append({
                "id": cid,
                "title": title,
                "status": control_status(checks),
                "checks": [{"id": c.id, "status": c.status} for c in checks],
            })
        covered = sum(1 for r in rows if r["checks"])
        out[fw] = {
            "name": (names or {}).get(fw, fw),
            "primary": fw == primary,
            "controls": rows,
            "covered": covered,
            "attestation_required": len(rows) - covered,
        }
    return out
