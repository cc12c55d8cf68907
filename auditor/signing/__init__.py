"""Signed reports: keys, PAdES signatures in the PDF, DSSE/in-toto envelopes, and verification.

Public API (everything else lives in the private ``_`` modules):

- :func:`load_identity` -- the signer from a key file (PEM or PKCS#12) or the environment, or None
- :func:`keygen` -- an encrypted key, a self-signed document-signing certificate and the public key
- :func:`attach_signer` -- the report with its signer's public facts (shown on the PDF cover)
- :func:`sign_files` -- sign the rendered PDF and add ``report.dsse.json`` over all report files
- :func:`verify` -- check a report's signatures and digests (a :class:`Verification`)
"""

from __future__ import annotations

from auditor.signing._keys import (
    ENV_CERT,
    ENV_KEY,
    ENV_PASSPHRASE,
    Identity,
    keyid,
    load_identity,
    read_passphrase,
)
from auditor.signing._keys import generate as keygen
from auditor.signing._sign import ENVELOPE_FILE, attach_signer, sign_files
from auditor.signing._verify import Verification, verify

__all__ = [
    "ENVELOPE_FILE", "ENV_CERT", "ENV_KEY", "ENV_PASSPHRASE", "Identity", "Verification", "attach_signer",
    "keygen", "keyid", "load_identity", "read_passphrase", "sign_files", "verify",
]
