"""PAdES signatures in the PDF itself (pyHanko): B-B by default, B-T with a timestamp authority.

Validation takes pyHanko's bottom line and adds what the auditor's own reports allow: exactly one
signature, covering the entire file (no incremental update after signing), and a ``/Contents`` string
written exactly as the signer wrote it (uppercase hex of the DER signature followed by zero padding), so
that no byte of the file can change without verification failing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

FIELD_NAME = "AuditorSignature"


class InvalidPdfSignature(Exception):
    """The PDF is unsigned, altered, or signed by another key (verify exits 1)."""


def _asn1_cert(cert):
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization

    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def sign(pdf: bytes, identity, *, reason: str, tsa_url: str | None = None, timestamper=None) -> bytes:
    """``pdf`` signed by ``identity`` (PAdES B-B; B-T when ``tsa_url`` or ``timestamper`` is given)."""
    from asn1crypto import keys as asn1_keys
    from cryptography.hazmat.primitives import serialization
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    cert = _asn1_cert(identity.certificate)
    key_der = identity.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = signers.SimpleSigner(
        signing_cert=cert,
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore.from_certs([cert]),
    )
    del key_der
    if timestamper is None and tsa_url:
        from pyhanko.sign.timestamps import HTTPTimeStamper

        timestamper = HTTPTimeStamper(tsa_url, timeout=30)
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        md_algorithm="sha512" if identity.algorithm == "ed25519" else "sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        name=identity.common_name,
    )
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    out = signers.sign_pdf(writer, meta, signer=signer, timestamper=timestamper)
    return out.getvalue()


@dataclass(frozen=True)
class PdfSignature:
    signer: str  # certificate subject
    certificate: object  # cryptography.x509.Certificate
    level: str  # "B-B" or "B-T"
    signing_time: str | None
    timestamp: str | None
    timestamp_trusted: bool | None  # None without a timestamp
    summary: str


def _quiet_pyhanko_logs() -> None:
    """pyHanko logs validation problems with tracebacks; the verdict says what matters, once."""
    import logging

    for name in ("pyhanko", "pyhanko_certvalidator"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.propagate = False


def _der_length(data: bytes) -> int:
    """Length of the DER element at the start of ``data`` (header included); ValueError if malformed."""
    if len(data) < 2 or data[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    first = data[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 4 or len(data) < 2 + n:
        raise ValueError("bad DER length")
    return 2 + n + int.from_bytes(data[2:2 + n], "big")


def _check_contents_bytes(raw: bytes, sig) -> None:
    """The bytes between the two signed ranges are exactly ``<HEX>`` of DER + zero padding."""
    byte_range = [int(x) for x in sig.sig_object["/ByteRange"]]
    if len(byte_range) != 4 or byte_range[0] != 0:
        raise InvalidPdfSignature("unexpected /ByteRange")
    start, end = byte_range[1], byte_range[2]
    if byte_range[2] + byte_range[3] != len(raw):
        raise InvalidPdfSignature("the signature does not cover the whole file (bytes added after signing)")
    contents = bytes(sig.sig_object["/Contents"])
    expected = b"<" + contents.hex().upper().encode("ascii") + b">"
    if raw[start:end] != expected:
        raise InvalidPdfSignature("the signature value in the file was altered")
    try:
        n = _der_length(contents)
    except ValueError as e:
        raise InvalidPdfSignature(f"the signature value is malformed ({e})") from None
    if n > len(contents) or contents[n:].strip(b"\x00"):
        raise InvalidPdfSignature("the signature value was altered (data after the signature)")


def verify(data: bytes, *, trust_cert=None, public_key=None, tsa_certs=()) -> PdfSignature:
    """Validate the single PAdES signature of ``data``.

    ``trust_cert``: the certificate to trust (signer or its issuer); ``public_key``: the signer's key must be
    this one; neither: the signer certificate embedded in the PDF is taken as its own trust root (integrity
    only). ``tsa_certs``: timestamp authority certificates to trust. A timestamp whose authority is not
    trusted is accepted when the token itself is intact and valid (``timestamp_trusted`` is then False).
    Raises InvalidPdfSignature for anything short of a valid, unaltered signature.
    """
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    from auditor.signing._keys import spki_der

    _quiet_pyhanko_logs()
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=True)
        sigs = reader.embedded_signatures
    except Exception as e:
        raise InvalidPdfSignature(f"cannot read the PDF structure ({type(e).__name__})") from None
    if not sigs:
        raise InvalidPdfSignature("the PDF carries no signature")
    if len(sigs) != 1:
        raise InvalidPdfSignature(f"the PDF carries {len(sigs)} signatures, expected 1")
    sig = sigs[0]
    try:
        _check_contents_bytes(data, sig)
        embedded = sig.signer_cert
        signer_cert = x509.load_der_x509_certificate(embedded.dump())
    except InvalidPdfSignature:
        raise
    except Exception as e:
        raise InvalidPdfSignature(f"cannot read the signature ({type(e).__name__})") from None
    if public_key is not None and spki_der(signer_cert.public_key()) != spki_der(public_key):
        raise InvalidPdfSignature("signed by another key than the one given")
    root = trust_cert if trust_cert is not None else signer_cert
    roots = [asn1_x509.Certificate.load(_cert_der(c)) for c in (root, *tsa_certs)]
    context = ValidationContext(trust_roots=roots, allow_fetching=False)
    try:
        status = validate_pdf_signature(sig, context)
    except Exception as e:
        raise InvalidPdfSignature(f"the signature cannot be validated ({type(e).__name__}: {e})") from None
    ts = status.timestamp_validity
    if not status.bottom_line:
        own_ok = (status.intact and status.valid and status.trusted and status.seed_value_ok
                  and (status.docmdp_ok or status.modification_level is None)
                  and status.content_timestamp_validity is None)
        ts_only_untrusted = ts is not None and ts.intact and ts.valid and not ts.trusted
        if not (own_ok and ts_only_untrusted):
            raise InvalidPdfSignature(f"the PDF signature is not valid ({status.summary()})")
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        raise InvalidPdfSignature(f"the signature does not cover the entire file ({status.coverage.name})")
    return PdfSignature(
        signer=signer_cert.subject.rfc4514_string(),
        certificate=signer_cert,
        level="B-T" if ts is not None else "B-B",
        signing_time=status.signer_reported_dt.isoformat() if status.signer_reported_dt else None,
        timestamp=ts.timestamp.isoformat() if ts is not None else None,
        timestamp_trusted=bool(ts.trusted) if ts is not None else None,
        summary=status.summary(),
    )


def _cert_der(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.DER)
