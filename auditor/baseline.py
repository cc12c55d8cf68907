"""Comparison with an earlier approved report (``--baseline``): a check that passed and now fails, or a
tracked metric that got worse beyond the policy's tolerance, is a regression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from auditor.errors import AuditorError
from auditor.hashing import sha256_file

if TYPE_CHECKING:
    from auditor.policy import BaselineConfig
    from auditor.report import CheckResult

GOOD = ("pass", "warn", "skipped")
BAD = ("fail", "error")


def load(path: str | Path) -> tuple[dict, str]:
    """The baseline report (a report.json, or a folder holding one) and its sha256."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise AuditorError("baseline report not found", path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AuditorError(f"baseline is not a readable report.json: {' '.join(str(e).split())[:200]}", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("checks"), list) or "schema_version" not in data:
        raise AuditorError("baseline is not an auditor report.json (no schema_version/checks)", path)
    return data, sha256_file(path)


def _lookup(metrics: Mapping[str, Any], dotted: str) -> float | None:
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def compare(
    baseline: Mapping[str, Any], results: Sequence["CheckResult"], config: "BaselineConfig", tracked: Mapping[str, Mapping[str, str]]
) -> list[dict[str, Any]]:
    """Regressions of ``results`` against ``baseline``; ``tracked`` maps check id -> metric path -> lower|higher."""
    before = {c.get("id"): c for c in baseline.get("checks", []) if isinstance(c, Mapping)}
    out = []
    for r in results:
        old = before.get(r.id)
        if old is None:
            continue
        if old.get("status") in GOOD and r.status in BAD:
            out.append({"check": r.id, "kind": "status", "before": old.get("status"), "after": r.status,
                        "message": f"{r.id}: {old.get('status')} -> {r.status}"})
        for metric, better in tracked.get(r.id, {}).items():
            a, b = _lookup(old.get("metrics") or {}, metric), _lookup(r.metrics, metric)
            if a is None or b is None:
                continue
            key = f"{r.id}.{metric}"
            tolerance = config.tolerances.get(key, config.tolerance)
            worse = (b - a) if better == "lower" else (a - b)
            if worse > tolerance + 1e-12:
                out.append({"check": r.id, "kind": "metric", "metric": key, "before": a, "after": b,
                            "better": better, "tolerance": tolerance,
                            "message": f"{key}: {a:g} -> {b:g} ({better} is better, tolerance {tolerance:g})"})
    return out
