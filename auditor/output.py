"""Writing the report files: rendered in memory, then moved into place atomically.

An interrupted run leaves either the previous files or the new ones, never a half-written report.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

from auditor.errors import AuditorError
from auditor.formats import FORMATS
from auditor.report import Report


def parse_formats(spec: str) -> list[str]:
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if not names:
        raise AuditorError("--format: give at least one format")
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise AuditorError(f"--format: unknown or unavailable format {unknown[0]!r} (available: {', '.join(FORMATS)})")
    return list(dict.fromkeys(names))


def prepare_out_dir(out: Path) -> None:
    """Fail early (exit 2) when the output folder cannot be written, before any check runs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AuditorError(f"cannot create output folder: {e.strerror or e}", out) from None
    if not os.access(out, os.W_OK):
        raise AuditorError("output folder is not writable", out)


def write_report(report: Report, out: Path, formats: Sequence[str]) -> list[Path]:
    rendered = [(FORMATS[name][0], FORMATS[name][1](report)) for name in formats]
    written = []
    for file_name, data in rendered:
        target = out / file_name
        fd, tmp = tempfile.mkstemp(prefix=f".{file_name}.", dir=out)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written
