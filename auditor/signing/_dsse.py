"""DSSE envelopes (https://github.com/secure-systems-lab/dsse) over in-toto Statement v1 payloads.

The signature covers PAE(payloadType, payload), so verifying needs no JSON canonicalisation. The envelope
file itself is written in one fixed serialisation, and verification insists on it byte for byte: an edit
that leaves the JSON meaning unchanged (whitespace, escapes, base64 padding bits) is still a change.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Iterable

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


class InvalidEnvelope(Exception):
    """The envelope is malformed, altered, or not signed by an accepted key (verify exits 1)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _sign_bytes(private_key, algorithm: str, message: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if algorithm == "ecdsa-p256":
        return private_key.sign(message, ec.ECDSA(hashes.SHA256()))  # DER-encoded (r, s), as sigstore and sslib
    return private_key.sign(message)  # ed25519


def _verify_bytes(public_key, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, message)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def serialize(envelope: dict[str, Any]) -> bytes:
    """The one serialisation the auditor writes (and insists on when verifying)."""
    ordered = {
        "payloadType": envelope["payloadType"],
        "payload": envelope["payload"],
        "signatures": [{"keyid": s["keyid"], "sig": s["sig"]} for s in envelope["signatures"]],
    }
    return (json.dumps(ordered, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def sign(payload: bytes, identity, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """A serialised DSSE envelope of ``payload`` signed by ``identity``."""
    sig = _sign_bytes(identity.private_key, identity.algorithm, pae(payload_type, payload))
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": identity.keyid, "sig": base64.b64encode(sig).decode("ascii")}],
    }
    return serialize(envelope)


def _strict_b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidEnvelope(f"{what} is not a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEnvelope(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:  # non-canonical padding bits or the like
        raise InvalidEnvelope(f"{what} is not canonical base64 (altered)")
    return raw


def parse(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """(envelope, payload bytes) from an envelope file's bytes, checking its form but not its signature."""
    try:
        envelope = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidEnvelope("not a JSON document") from None
    if not isinstance(envelope, dict) or set(envelope) != {"payloadType", "payload", "signatures"}:
        raise InvalidEnvelope("not a DSSE envelope (expected exactly payloadType, payload, signatures)")
    if envelope["payloadType"] != PAYLOAD_TYPE:
        raise InvalidEnvelope(f"payloadType is {envelope['payloadType']!r}, expected {PAYLOAD_TYPE!r}")
    sigs = envelope["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise InvalidEnvelope("the envelope carries no signature")
    for s in sigs:
        if not isinstance(s, dict) or set(s) != {"keyid", "sig"} or not isinstance(s["keyid"], str):
            raise InvalidEnvelope("malformed signature entry (expected keyid and sig)")
    payload = _strict_b64(envelope["payload"], "payload")
    for s in sigs:
        _strict_b64(s["sig"], "signature")
    try:
        canonical = serialize(envelope)
    except (KeyError, TypeError):
        raise InvalidEnvelope("malformed envelope") from None
    if canonical != raw:
        raise InvalidEnvelope("the envelope file differs from its signed form (altered)")
    return envelope, payload


def verify(raw: bytes, public_keys: Iterable[tuple[str, Any]]) -> tuple[dict[str, Any], str]:
    """(statement, keyid that verified) when a signature by one of ``public_keys`` ((keyid, key) pairs) holds."""
    envelope, payload = parse(raw)
    keys = dict(public_keys)
    message = pae(envelope["payloadType"], payload)
    matched = False
    for s in envelope["signatures"]:
        key = keys.get(s["keyid"])
        if key is None:
            continue
        matched = True
        if _verify_bytes(key, base64.b64decode(s["sig"]), message):
            return statement_from(payload), s["keyid"]
    if not matched:
        raise InvalidEnvelope(
            "signed by keyid " + ", ".join(s["keyid"][:16] + "..." for s in envelope["signatures"])
            + ", not by the expected key"
        )
    raise InvalidEnvelope("the envelope signature does not verify (altered or wrong key)")


def statement_from(payload: bytes) -> dict[str, Any]:
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidEnvelope("the payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise InvalidEnvelope(f"the payload is not an in-toto Statement ({STATEMENT_TYPE})")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise InvalidEnvelope("the statement has no subjects")
    for s in subjects:
        if not (isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("digest"), dict)
                and isinstance(s["digest"].get("sha256"), str)):
            raise InvalidEnvelope("a statement subject lacks a name or a sha256 digest")
    return statement


def unverified_statement(raw: bytes) -> dict[str, Any]:
    """The statement of a well-formed envelope, before any signature check (to find the signer it names)."""
    _envelope, payload = parse(raw)
    return statement_from(payload)
