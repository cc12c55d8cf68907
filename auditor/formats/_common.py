"""What several formatters share: check descriptions from the registry, severity scores, input locations.

Nothing here recomputes the verdict: the statuses, counts and gate come from the Report as built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from auditor.report import CheckResult, Report

#: SARIF security-severity (GitHub: >= 9 critical, 7-8.9 high, 4-6.9 medium, 0.1-3.9 low)
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}


@dataclass(frozen=True)
class CheckInfo:
    description: str
    params: tuple[str, ...]  # names of the check's policy parameters (the thresholds it is judged by)


def check_info(check_id: str, fallback_title: str = "") -> CheckInfo:
    """Static facts about a registered check (its help text and parameter names); a fallback if unknown."""
    try:
        from auditor.registry import all_checks

        cls = all_checks().get(check_id)
    except Exception:  # a formatter never fails because the registry cannot be read
        cls = None
    if cls is None:
        return CheckInfo(description=fallback_title, params=())
    return CheckInfo(description=" ".join(cls.description.split()), params=tuple(cls.Params.model_fields))


def subject_path(report: Report, dataset: str | None) -> str | None:
    if dataset is None:
        return None
    for s in report.subjects:
        if s.kind == "dataset" and s.name == dataset:
            return s.path
    return None


def data_line(path: str, row: int) -> int:
    """1-based line of 0-based data row ``row`` in a text table (CSV has a header line); 1 for binary files."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return row + 2
    if suffix == ".jsonl":
        return row + 1
    return 1


def policy_files(report: Report) -> list[str]:
    """The policy files, the one given first, then the ones it extends."""
    files = [s.path for s in report.subjects if s.kind == "policy"]
    files.reverse()
    if not files and report.policy.get("path"):
        files = [str(report.policy["path"])]
    return files


def policy_line(path: str, check_id: str) -> int | None:
    """Line where ``check_id`` is configured in a policy file, if it can be read and is there."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    pattern = re.compile(rf"^\s*['\"]?{re.escape(check_id)}['\"]?\s*:")
    for i, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return i
    return None


def anchor(report: Report, check: CheckResult, dataset: str | None, rows) -> tuple[str, int]:
    """(file, 1-based line) that a check's result points at: the dataset's first flagged row, else the policy."""
    path = subject_path(report, dataset)
    if path is not None:
        first = min(rows) if rows else None
        return path, data_line(path, first) if first is not None else 1
    files = policy_files(report)
    for f in files:
        line = policy_line(f, check.id)
        if line is not None:
            return f, line
    return (files[0] if files else "policy.yaml"), 1


def headline(check: CheckResult) -> str:
    if check.reason:
        return check.reason
    if check.findings:
        more = len(check.findings) - 1
        return check.findings[0].message + (f" (+{more} more)" if more else "")
    return ""


def sample_note(check: CheckResult) -> str | None:
    """For a check that audited Spark-drawn samples: what it saw, e.g. 'train 50,000 of 9,000,000 rows'."""
    if not check.sample:
        return None
    parts = [f"{name} {int(s['rows']):,} of {int(s['of']):,} rows" for name, s in check.sample.items()]
    seeds = {s.get("seed") for s in check.sample.values()}
    seed = f" (seed {seeds.pop()})" if len(seeds) == 1 else ""
    return "audited a sample drawn by Spark: " + ", ".join(parts) + seed
