"""Formatters: each takes one finished Report and returns the file's bytes. None recomputes anything."""

from __future__ import annotations

from typing import Callable

from auditor.formats import json_report
from auditor.report import Report

Formatter = Callable[[Report], bytes]

#: format name -> (file name in the output folder, formatter)
FORMATS: dict[str, tuple[str, Formatter]] = {
    "json": ("report.json", json_report.render),
}
