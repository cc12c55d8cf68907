"""Formatters: each takes one finished Report and returns the file's bytes. None recomputes anything.

Formatter modules are imported when a format is rendered, so ``auditor --help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from auditor.report import Report

Formatter = Callable[[Report], bytes]


def _lazy(module: str) -> Formatter:
    def render(report: Report) -> bytes:
        return import_module(f"auditor.formats.{module}").render(report)

    render.__name__ = f"render_{module}"
    return render


#: format name -> (file name in the output folder, formatter)
FORMATS: dict[str, tuple[str, Formatter]] = {
    "json": ("report.json", _lazy("json_report")),
    "pdf": ("report.pdf", _lazy("pdf_report")),
    "sarif": ("report.sarif", _lazy("sarif")),
    "junit": ("report.junit.xml", _lazy("junit")),
}

#: what `auditor run` writes without --format
DEFAULT_FORMATS = ("json", "pdf", "sarif", "junit")
