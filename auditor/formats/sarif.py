"""report.sarif: SARIF 2.1.0 for code-scanning dashboards.

One rule per check (with its help text, controls and security-severity); one result per finding of a
check that failed, warned or errored (one for the check itself when it has no finding), anchored to the
dataset file at the first flagged row, or else to the policy file at the line configuring the check.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from auditor.formats._common import SECURITY_SEVERITY, anchor, check_info, sample_note
from auditor.report import CheckResult, Report
from auditor.severity import rank

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
MAX_ROWS_IN_MESSAGE = 10


def _level(check: CheckResult) -> str:
    if check.status == "error":
        return "error"
    r = rank(check.severity)
    if check.status == "fail":
        return "error" if r >= rank("high") else "warning" if r >= rank("medium") else "note"
    if check.status == "warn":
        return "warning" if r >= rank("medium") else "note"
    return "none"


def _uri(path: str) -> dict:
    p = Path(path)
    if p.is_absolute():
        return {"uri": p.as_uri()}
    return {"uri": p.as_posix(), "uriBaseId": "%SRCROOT%"}


def _rule(check: CheckResult) -> dict:
    info = check_info(check.id, check.title)
    controls = list(check.controls)
    help_text = (
        f"{info.description}\n\nPolicy severity: {check.severity}. "
        + (f"Controls: {', '.join(controls)}. " if controls else "")
        + "The signed report (report.pdf, report.json) holds the metrics, thresholds and every flagged row."
    )
    help_md = (
        f"**{check.title}** (`{check.id}`)\n\n{info.description}\n\n"
        f"- policy severity: `{check.severity}`\n"
        + "".join(f"- control: `{c}`\n" for c in controls)
        + "\nSee `report.pdf` / `report.json` for metrics, thresholds and every flagged row."
    )
    return {
        "id": check.id,
        "name": "".join(part.capitalize() for part in re.split(r"[._]", check.id)),
        "shortDescription": {"text": check.title},
        "fullDescription": {"text": info.description or check.title},
        "help": {"text": help_text, "markdown": help_md},
        "defaultConfiguration": {"level": _level(check) if check.status in ("fail", "warn", "error") else "warning"},
        "properties": {
            "tags": [check.family, *controls],
            "security-severity": SECURITY_SEVERITY.get(check.severity, "5.5"),
            "precision": "high",
        },
    }


def _fingerprint(*parts: str) -> str:
    text = "\x1f".join(re.sub(r"\d+(\.\d+)?", "#", p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _result(report: Report, check: CheckResult, index: int, message: str, dataset, rows) -> dict:
    path, line = anchor(report, check, dataset, rows)
    text = f"{check.id} ({check.status}, {check.severity}): {message}"
    if rows:
        shown = ", ".join(str(r) for r in list(rows)[:MAX_ROWS_IN_MESSAGE])
        more = len(rows) - MAX_ROWS_IN_MESSAGE
        text += f" [{dataset} rows {shown}{f' and {more} more' if more > 0 else ''}]"
    props = {
        "status": check.status,
        "severity": check.severity,
        "security-severity": SECURITY_SEVERITY.get(check.severity, "5.5"),
        "controls": list(check.controls),
    }
    if dataset is not None:
        props["dataset"] = dataset
    if rows:
        props["rowCount"] = len(rows)
    if check.sample:
        props["sample"] = sample_note(check)
    return {
        "ruleId": check.id,
        "ruleIndex": index,
        "level": _level(check),
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": _uri(path), "region": {"startLine": line}}}],
        "partialFingerprints": {"auditorFinding/v1": _fingerprint(check.id, dataset or "", message)},
        "properties": props,
    }


def to_sarif(report: Report) -> dict:
    rules, results = [], []
    for index, check in enumerate(report.checks):
        rules.append(_rule(check))
        if check.status not in ("fail", "warn", "error"):
            continue
        if check.findings:
            for f in check.findings:
                results.append(_result(report, check, index, f.message, f.dataset, list(f.rows or ())))
        else:
            results.append(_result(report, check, index, check.reason or check.title, None, []))
    artifacts = [
        {"location": _uri(s.path), "hashes": {"sha-256": s.sha256}, "roles": ["analysisTarget"] if s.kind != "policy" else ["policy"]}
        for s in report.subjects
    ]
    run = report.run
    invocation = {"executionSuccessful": True}
    if run.get("started_at"):
        invocation["startTimeUtc"] = run["started_at"]
    if run.get("finished_at"):
        invocation["endTimeUtc"] = run["finished_at"]
    s = report.summary
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": report.auditor.get("name", "auditor"),
                "version": str(report.auditor.get("version", "")),
                "rules": rules,
            }},
            "automationDetails": {"id": f"auditor/{report.policy.get('name', 'policy')}/{run.get('id', '')}"},
            "invocations": [invocation],
            "artifacts": artifacts,
            "results": results,
            "properties": {
                "gate": s.gate,
                "failOn": s.fail_on,
                "counts": dict(s.counts),
                "blocking": list(s.blocking),
                "policy": {k: report.policy.get(k) for k in ("name", "version", "sha256")},
            },
        }],
    }


def render(report: Report) -> bytes:
    return (json.dumps(to_sarif(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
