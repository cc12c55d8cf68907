"""``auditor verify``: the envelope signature, every subject digest, and the PDF signature.

Valid only when every signature verifies and every report file the envelope names matches its digest.
Input files (datasets, model, policy) are checked where they can be found (by their recorded path, as
given or relative to the report's folder); one that is found but differs makes the result invalid, one
that is absent is noted. Unusable arguments (missing file, unreadable certificate or key) raise
AuditorError (exit 2); anything wrong with the report files themselves is a failure (exit 1).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from auditor.errors import AuditorError
from auditor.signing import _dsse, _keys, _pdf

ENVELOPE_FILE = "report.dsse.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Verification:
    """The outcome: ``valid`` and the lines that say why (status is ok, FAIL, note or warn)."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return bool(self.lines) and not any(status == "FAIL" for status, _ in self.lines) and any(
            status == "ok" for status, _ in self.lines)

    def ok(self, text: str) -> None:
        self.lines.append(("ok", text))

    def fail(self, text: str) -> None:
        self.lines.append(("FAIL", text))

    def note(self, text: str) -> None:
        self.lines.append(("note", text))

    def warn(self, text: str) -> None:
        self.lines.append(("warn", text))

    @property
    def failures(self) -> list[str]:
        return [t for s, t in self.lines if s == "FAIL"]


def _sha256(path: Path) -> str:
    from auditor.hashing import sha256_file

    return sha256_file(path)


def _self_asserted_key(folder: Path, v: Verification):
    """The signer key the report itself names: run.signer.certificate in report.json, else the PDF's signer."""
    from cryptography import x509

    try:
        doc = json.loads((folder / "report.json").read_bytes())
        pem = doc["run"]["signer"]["certificate"]
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        return cert.public_key(), f"the certificate in report.json ({_keys.common_name(cert)})"
    except Exception:
        pass
    try:
        from pyhanko.pdf_utils.reader import PdfFileReader

        with open(folder / "report.pdf", "rb") as f:
            sig = PdfFileReader(f).embedded_signatures[0]
            cert = x509.load_der_x509_certificate(sig.signer_cert.dump())
        return cert.public_key(), f"the certificate in report.pdf ({_keys.common_name(cert)})"
    except Exception:
        return None, None


def _candidates(recorded: str, folder: Path, from_report) -> list[Path]:
    """Where an input may be: its path relative to the report folder (as signed), as recorded, or under the folder."""
    out = []
    if isinstance(from_report, str) and from_report:
        out.append(folder / from_report)
    p = Path(recorded)
    out.append(p)
    if not p.is_absolute():
        out.append(folder / p)
    return out


def _check_subjects(statement: dict, folder: Path, v: Verification) -> set[str]:
    """Digest of every subject; returns the names of the report files found matching."""
    matched: set[str] = set()
    for s in statement["subject"]:
        name, digest = s["name"], s["digest"]["sha256"]
        annotations = s.get("annotations") if isinstance(s.get("annotations"), dict) else {}
        kind = annotations.get("kind", "")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            v.fail(f"{name}: malformed sha256 in the statement")
            continue
        if kind == "report":
            if not name or name in (".", "..") or "/" in name or "\\" in name:
                v.fail(f"{name!r}: a report subject must be a file name beside the envelope")
                continue
            path = folder / name
            if not path.is_file():
                v.fail(f"{name}: missing (the envelope names it)")
            elif _sha256(path) != digest:
                v.fail(f"{name}: sha256 does not match the signed digest (altered)")
            else:
                v.ok(f"{name}: sha256 matches")
                matched.add(name)
            continue
        found = next((c for c in _candidates(name, folder, annotations.get("path_from_report")) if c.is_file()), None)
        label = f"{name} ({kind or 'input'})"
        if found is None:
            v.note(f"{label}: not found here, digest not checked")
        elif _sha256(found) != digest:
            v.fail(f"{label}: changed since the audit (sha256 differs from the signed digest)")
        else:
            v.ok(f"{label}: sha256 matches")
    return matched


def _check_pdf(path: Path, v: Verification, *, trust_cert=None, public_key=None, tsa_certs=()) -> None:
    try:
        result = _pdf.verify(path.read_bytes(), trust_cert=trust_cert, public_key=public_key, tsa_certs=tsa_certs)
    except _pdf.InvalidPdfSignature as e:
        v.fail(f"{path.name}: {e}")
        return
    except OSError as e:
        v.fail(f"{path.name}: cannot read ({e.strerror or e})")
        return
    when = f", timestamped {result.timestamp}" if result.timestamp else ""
    v.ok(f"{path.name}: PAdES {result.level} signature valid, no change after signing (signer {result.signer}{when})")
    if result.timestamp_trusted is False:
        v.warn(f"{path.name}: the timestamp token is intact but its authority is not trusted here (give --tsa-cert)")


def verify(path: str | Path, cert: str | Path | None = None, key: str | Path | None = None,
           tsa_cert: str | Path | None = None) -> Verification:
    """Verify a report (report.json, report.dsse.json or report.pdf) and the signed files beside it."""
    path = Path(path)
    if cert is not None and key is not None:
        raise AuditorError("give --cert or --key, not both")
    if not path.exists():
        raise AuditorError("no such file", path)
    if not path.is_file():
        raise AuditorError("not a file", path)
    try:
        head = path.read_bytes()[:8]
    except OSError as e:
        raise AuditorError(f"cannot read: {e.strerror or e}", path) from None
    trust_cert = _keys.load_certificate_file(cert) if cert is not None else None
    trust_key = _keys.load_public_key(key) if key is not None else (trust_cert.public_key() if trust_cert else None)
    tsa_certs = (_keys.load_certificate_file(tsa_cert),) if tsa_cert is not None else ()

    v = Verification()
    folder = path.parent
    is_pdf = path.suffix.lower() == ".pdf" or head.startswith(b"%PDF")
    is_envelope = path.name.endswith(".dsse.json")
    envelope_path = path if is_envelope else folder / ENVELOPE_FILE
    target = None if is_envelope else path.name

    if not envelope_path.is_file():
        if is_pdf:
            v.warn(f"no {ENVELOPE_FILE} beside {path.name}: only the PDF's own signature is checked")
            if trust_key is None:
                v.warn("no --cert or --key: the PDF is checked against the certificate it carries "
                       "(integrity only; who signed it is not authenticated)")
            _check_pdf(path, v, trust_cert=trust_cert, public_key=trust_key, tsa_certs=tsa_certs)
        else:
            v.fail(f"{path.name}: not signed (no {ENVELOPE_FILE} beside it)")
        return v

    key_obj = trust_key
    if key_obj is None:
        key_obj, source = _self_asserted_key(folder, v)
        if key_obj is None:
            v.fail("cannot find the signer's certificate in the report: give --cert or --key")
            return v
        v.warn(f"no --cert or --key: checked against {source}; this shows the files are intact and signed "
               "together, not who signed them (pin the signer with --cert or --key)")
    try:
        raw = envelope_path.read_bytes()
        statement, kid = _dsse.verify(raw, [(_keys.keyid(key_obj), key_obj)])
    except _dsse.InvalidEnvelope as e:
        v.fail(f"{envelope_path.name}: {e}")
        return v
    except OSError as e:
        v.fail(f"{envelope_path.name}: cannot read ({e.strerror or e})")
        return v
    v.ok(f"{envelope_path.name}: DSSE signature valid (keyid {kid[:16]}...)")

    try:
        matched = _check_subjects(statement, folder, v)
    except Exception as e:  # a well-signed but odd statement: not ours to trust
        v.fail(f"{envelope_path.name}: unreadable subject list ({type(e).__name__})")
        return v
    if target is not None and target not in {s["name"] for s in statement["subject"]}:
        v.fail(f"{target}: not covered by {envelope_path.name}")
    pdfs = {"report.pdf", *([target] if is_pdf else [])} & matched
    for name in sorted(pdfs):  # the PDF must be signed by the same key as the envelope
        _check_pdf(folder / name, v, trust_cert=trust_cert, public_key=key_obj, tsa_certs=tsa_certs)
    predicate = statement.get("predicate") if isinstance(statement.get("predicate"), dict) else {}
    result = predicate.get("result")
    if result:
        config = predicate.get("configuration") or []
        digest = next((c.get("digest", {}).get("sha256") for c in config if isinstance(c, dict)), None)
        v.note(f"attested gate result: {result}" + (f" (policy sha256 {digest[:16]}...)" if digest else ""))
    return v
