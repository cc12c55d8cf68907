"""Signing a rendered set of report files: PAdES in the PDF, then the DSSE envelope over all of them."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Mapping

from auditor.errors import AuditorError
from auditor.signing import _dsse, _pdf, _statement

ENVELOPE_FILE = "report.dsse.json"


def attach_signer(report, identity):
    """The report with its signer's public facts in ``run.signer`` (shown on the PDF cover, kept in report.json)."""
    from cryptography.hazmat.primitives import serialization

    signer = identity.public_info()
    signer["certificate"] = identity.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return dataclasses.replace(report, run={**report.run, "signer": signer})


def sign_files(report, files: Mapping[str, bytes], identity, *, tsa_url: str | None = None,
               timestamper=None, out_dir=None) -> dict[str, bytes]:
    """``files`` (name -> bytes, as rendered) with report.pdf signed and report.dsse.json added.

    ``out_dir``: where the files will be written (lets the statement locate the inputs from there)."""
    out = dict(files)
    if "report.pdf" in out:
        reason = (f"Audit report, policy {report.policy.get('name')} v{report.policy.get('version')}: "
                  f"gate {report.summary.gate.upper()}")
        try:
            out["report.pdf"] = _pdf.sign(out["report.pdf"], identity, reason=reason, tsa_url=tsa_url,
                                          timestamper=timestamper)
        except AuditorError:
            raise
        except Exception as e:
            if tsa_url or timestamper is not None:
                raise AuditorError(f"cannot sign the PDF with a timestamp: {type(e).__name__}: {e}", tsa_url) from None
            raise AuditorError(f"cannot sign the PDF: {type(e).__name__}: {e}") from None
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in out.items()}
    statement = _statement.build(report, digests, out_dir)
    out[ENVELOPE_FILE] = _dsse.sign(_statement.encode(statement), identity)
    return out
