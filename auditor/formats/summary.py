"""The short human summary printed on stdout after a run."""

from __future__ import annotations

from auditor.report import Report

STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "error": "bold magenta", "skipped": "dim"}


def _headline(check) -> str:
    if check.reason:
        return check.reason
    if check.findings:
        first = check.findings[0].message
        more = len(check.findings) - 1
        return first + (f" (+{more} more)" if more else "")
    return ""


def print_summary(report: Report, console) -> None:
    from rich.table import Table

    table = Table(title=f"Audit: policy {report.policy['name']} v{report.policy['version']}", title_justify="left")
    table.add_column("check")
    table.add_column("severity")
    table.add_column("status")
    table.add_column("what it found", overflow="fold")
    for c in report.checks:
        style = STYLE[c.status]
        status = f"[{style}]{c.status}[/]" + (" [dim](sample)[/]" if c.sample else "")
        table.add_row(c.id, c.severity, status, _headline(c))
    console.print(table)
    s = report.summary
    counts = ", ".join(f"{v} {k}" for k, v in s.counts.items() if v)
    verdict = "[bold green]PASS[/]" if s.gate == "pass" else "[bold red]FAIL[/]"
    console.print(f"gate: {verdict} (fail on {s.fail_on} and above; {counts})")
    for reason in s.blocking:
        console.print(f"  blocking: {reason}")
    for waived in s.waived:
        console.print(f"  waived: {waived}")
    if report.baseline is not None:
        regs = report.baseline.get("regressions") or []
        console.print(f"baseline: {len(regs)} regression(s) against {report.baseline.get('path')}"
                      + ("" if report.baseline.get("gate") else " (reported, not gated)"))
