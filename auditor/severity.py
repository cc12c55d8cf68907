"""Severity and status vocabularies shared by policy, checks, report and gate."""

from __future__ import annotations

SEVERITIES = ("info", "low", "medium", "high", "critical")
STATUSES = ("pass", "fail", "warn", "error", "skipped")


def rank(severity: str) -> int:
    """Position of a severity in ascending order; raises ValueError for an unknown one."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r} (expected one of {', '.join(SEVERITIES)})") from None
