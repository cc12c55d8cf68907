"""The in-toto Statement v1 the envelope signs: report files and audited inputs by sha256, and the verdict.

The predicate is the in-toto test-result predicate (v0.1): ``result`` is the gate (PASSED / FAILED),
``configuration`` lists the policy files by digest, and the check ids are sorted into passed / warned /
failed (errors count as failed; skipped checks are in none).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from auditor.signing._dsse import STATEMENT_TYPE

PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"


def _from_report(path: str, out_dir: Path | None) -> str | None:
    """The input's path relative to the report folder, so verify finds it from any working directory."""
    if out_dir is None:
        return None
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())).as_posix()
    except (OSError, ValueError):  # e.g. another drive on Windows
        return None


def build(report, report_files: Mapping[str, str], out_dir: Path | None = None) -> dict[str, Any]:
    """``report_files``: file name in the output folder -> sha256 of the bytes written there."""
    subjects: list[dict[str, Any]] = [
        {"name": name, "digest": {"sha256": digest}, "annotations": {"kind": "report"}}
        for name, digest in report_files.items()
    ]
    for s in report.subjects:
        annotations = {"kind": s.kind, "role": s.name}
        relative = _from_report(s.path, out_dir)
        if relative is not None:
            annotations["path_from_report"] = relative
        subjects.append({"name": s.path, "digest": {"sha256": s.sha256}, "annotations": annotations})
    by_status: dict[str, list[str]] = {"pass": [], "warn": [], "fail": []}
    for c in report.checks:
        if c.status in ("fail", "error"):
            by_status["fail"].append(c.id)
        elif c.status in by_status:
            by_status[c.status].append(c.id)
    policy = report.policy
    configuration = [
        {"name": s.path, "digest": {"sha256": s.sha256},
         "annotations": {"policy": policy.get("name"), "version": policy.get("version"), "role": s.name}}
        for s in report.subjects if s.kind == "policy"
    ]
    if not configuration:
        configuration = [{"name": str(policy.get("path") or policy.get("name")), "digest": {"sha256": policy["sha256"]}}]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": "PASSED" if report.summary.gate == "pass" else "FAILED",
            "configuration": configuration,
            "passedTests": by_status["pass"],
            "warnedTests": by_status["warn"],
            "failedTests": by_status["fail"],
        },
    }


def encode(statement: Mapping[str, Any]) -> bytes:
    return json.dumps(statement, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
