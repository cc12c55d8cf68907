"""report.json: the machine-readable report (schema: auditor/schemas/report.schema.json)."""

from __future__ import annotations

import json
from importlib import resources

from auditor.report import Report


def render(report: Report) -> bytes:
    return (json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def schema() -> dict:
    return json.loads(resources.files("auditor.schemas").joinpath("report.schema.json").read_text("utf-8"))
