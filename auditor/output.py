"""Writing the report files: rendered and signed in memory, staged, then moved into place.

Every file is first written (and fsynced) into a private staging folder inside the output folder. Only
then are they moved into place: the previous ``report.dsse.json`` is removed first and the new one moved
in last, so at no moment does an envelope sit beside files it does not vouch for. An interrupted run
leaves the previous report, or files without an envelope (which ``auditor verify`` rejects), never a
signed report that does not match its data. A failure while rendering or signing writes nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from auditor.errors import AuditorError
from auditor.formats import FORMATS
from auditor.report import Report

ENVELOPE_FILE = "report.dsse.json"
STAGING_PREFIX = ".auditor-staging-"


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


def render(report: Report, formats: Sequence[str], identity=None, *, tsa_url: str | None = None,
           timestamper=None, out_dir: Path | None = None) -> dict[str, bytes]:
    """File name -> bytes for every format, signed (PDF signature and envelope) when ``identity`` is given."""
    if identity is not None:
        from auditor.signing import attach_signer

        report = attach_signer(report, identity)
    files = {FORMATS[name][0]: FORMATS[name][1](report) for name in formats}
    if identity is not None:
        from auditor.signing import sign_files

        files = sign_files(report, files, identity, tsa_url=tsa_url, timestamper=timestamper, out_dir=out_dir)
    return files


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(out: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Stage ``files`` in ``out`` and move them into place, the envelope last (see the module doc)."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    except OSError as e:
        raise AuditorError(f"cannot write to the output folder: {e.strerror or e}", out) from None
    try:
        for name, data in files.items():
            fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(staging)
        (out / ENVELOPE_FILE).unlink(missing_ok=True)  # never let an old envelope sit beside new files
        _fsync_dir(out)
        order = [n for n in files if n != ENVELOPE_FILE] + ([ENVELOPE_FILE] if ENVELOPE_FILE in files else [])
        written = []
        for name in order:
            os.replace(staging / name, out / name)
            written.append(out / name)
        _fsync_dir(out)
        return written
    except OSError as e:
        raise AuditorError(f"cannot write the report: {e.strerror or e}", out) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_report(report: Report, out: Path, formats: Sequence[str], identity=None, *, tsa_url: str | None = None,
                 timestamper=None) -> list[Path]:
    """Render (and sign, with ``identity``) every format, then commit the files atomically."""
    files = render(report, formats, identity, tsa_url=tsa_url, timestamper=timestamper, out_dir=out)
    return commit(out, files)
