"""report.junit.xml: one test case per check, for CI test dashboards.

fail -> <failure>, error -> <error> (with the traceback), skipped -> <skipped> (with the reason),
warn -> a passing case whose <system-out> carries the warning; pass -> a passing case.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from auditor.formats._common import headline, sample_note
from auditor.report import CheckResult, Report

# characters XML 1.0 cannot carry at all
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
MAX_ROWS = 50


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def _details(check: CheckResult) -> str:
    lines = [f"{check.title} [{check.id}] severity {check.severity}, status {check.status}"]
    if check.reason:
        lines.append(f"reason: {check.reason}")
    if sample_note(check):
        lines.append(sample_note(check))
    for f in check.findings:
        line = f"- {f.message}"
        if f.rows:
            shown = ", ".join(str(r) for r in f.rows[:MAX_ROWS])
            more = len(f.rows) - MAX_ROWS
            line += f"\n  {f.dataset or 'dataset'} rows ({len(f.rows)}): {shown}{f' ... (+{more} more)' if more > 0 else ''}"
        lines.append(line)
    if check.controls:
        lines.append("controls: " + ", ".join(check.controls))
    metrics = json.dumps(check.to_dict()["metrics"], ensure_ascii=False, sort_keys=True)
    lines.append("metrics: " + (metrics if len(metrics) <= 4000 else metrics[:4000] + " ..."))
    return _clean("\n".join(lines))


def to_element(report: Report) -> ET.Element:
    counts = report.summary.counts
    total_time = sum(c.duration_s for c in report.checks)
    failures, errors, skipped = counts.get("fail", 0), counts.get("error", 0), counts.get("skipped", 0)
    suite_name = f"auditor: policy {report.policy.get('name')} v{report.policy.get('version')}"
    root = ET.Element("testsuites", {
        "name": "auditor", "tests": str(len(report.checks)), "failures": str(failures), "errors": str(errors),
        "skipped": str(skipped), "time": f"{total_time:.3f}",
    })
    suite = ET.SubElement(root, "testsuite", {
        "name": _clean(suite_name), "tests": str(len(report.checks)), "failures": str(failures),
        "errors": str(errors), "skipped": str(skipped), "time": f"{total_time:.3f}",
        "timestamp": str(report.run.get("started_at", "")), "id": "0",
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("gate", report.summary.gate),
        ("fail_on", report.summary.fail_on),
        ("blocking", "; ".join(report.summary.blocking)),
        ("policy.sha256", report.policy.get("sha256", "")),
        ("run.id", report.run.get("id", "")),
    ):
        ET.SubElement(props, "property", {"name": name, "value": _clean(str(value))})
    for check in report.checks:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"auditor.{check.family}", "name": check.id, "time": f"{check.duration_s:.3f}",
        })
        message = _clean(headline(check) or check.title)
        if check.status == "fail":
            el = ET.SubElement(case, "failure", {"message": message, "type": f"fail ({check.severity})"})
            el.text = _details(check)
        elif check.status == "error":
            el = ET.SubElement(case, "error", {"message": message, "type": "error"})
            el.text = _clean(_details(check) + ("\n\n" + check.traceback if check.traceback else ""))
        elif check.status == "skipped":
            ET.SubElement(case, "skipped", {"message": message})
        elif check.status == "warn":
            out = ET.SubElement(case, "system-out")
            out.text = "WARNING: " + _details(check)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _details(check)
    return root


def render(report: Report) -> bytes:
    root = to_element(report)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
