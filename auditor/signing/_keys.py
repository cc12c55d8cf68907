"""Signing keys and certificates: generation, loading (PEM, PKCS#12, environment) and key ids.

Private key material never leaves this module except as the in-memory objects the signers use: it is
never printed, logged, or put in an error message (errors say what is wrong, not what the key holds).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from auditor.errors import AuditorError

ENV_KEY = "AUDITOR_SIGN_KEY"  # PEM private key (text), e.g. from a CI secret
ENV_CERT = "AUDITOR_SIGN_CERT"  # PEM certificate (text)
ENV_PASSPHRASE = "AUDITOR_KEY_PASSPHRASE"

KEY_FILE = "signing-key.pem"
CERT_FILE = "signing-cert.pem"
PUBLIC_FILE = "signing-pub.pem"

ALGORITHMS = ("ecdsa-p256", "ed25519")


@dataclass(frozen=True)
class Identity:
    """A usable signer: private key, its certificate, algorithm name and key id (public facts only in repr)."""

    private_key: object
    certificate: object  # cryptography.x509.Certificate
    algorithm: str  # ecdsa-p256 | ed25519
    keyid: str

    def __repr__(self) -> str:  # never show the key object
        return f"Identity(algorithm={self.algorithm!r}, keyid={self.keyid!r}, subject={self.subject!r})"

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def common_name(self) -> str:
        return common_name(self.certificate)

    def public_info(self) -> dict:
        """What the report may carry about its signer: public facts only."""
        from cryptography.hazmat.primitives import hashes

        cert = self.certificate
        return {
            "subject": self.subject,
            "common_name": self.common_name,
            "algorithm": self.algorithm,
            "keyid": self.keyid,
            "certificate_sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "certificate_not_after": cert.not_valid_after_utc.isoformat(timespec="seconds"),
            "self_signed": cert.issuer == cert.subject,
        }


def common_name(cert) -> str:
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def spki_der(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def keyid(public_key) -> str:
    """sha256 (hex) of the DER SubjectPublicKeyInfo, as cosign derives its key ids."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def algorithm_of(key) -> str:
    """``ecdsa-p256`` or ``ed25519`` for a private or public key; AuditorError for anything else."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256"
        raise AuditorError(f"unsupported elliptic curve {key.curve.name}: use P-256 (secp256r1) or Ed25519")
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    raise AuditorError(f"unsupported key type {type(key).__name__.lstrip('_')}: use ECDSA P-256 or Ed25519")


# ----------------------------------------------------------------------------- passphrases


def read_passphrase(passphrase_file: str | Path | None, env: Mapping[str, str] | None = None) -> bytes | None:
    """The passphrase from ``passphrase_file`` (first line) or $AUDITOR_KEY_PASSPHRASE; None when neither."""
    env = os.environ if env is None else env
    if passphrase_file is not None:
        path = Path(passphrase_file)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise AuditorError(f"cannot read passphrase file: {e.strerror or e}", path) from None
        lines = raw.splitlines()
        value = lines[0] if lines else b""
        if not value:
            raise AuditorError("passphrase file is empty", path)
        return value
    value = env.get(ENV_PASSPHRASE)
    if value:
        return value.encode("utf-8")
    return None


# ----------------------------------------------------------------------------- generation


def _build_certificate(private_key, name: str, organization: str | None, days: int):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attrs)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    public = private_key.public_key()
    document_signing = getattr(ExtendedKeyUsageOID, "DOCUMENT_SIGNING", None) or ObjectIdentifier("1.3.6.1.5.5.7.3.36")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=True,  # content_commitment = non-repudiation
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([document_signing, ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    algorithm = None if algorithm_of(private_key) == "ed25519" else hashes.SHA256()
    return builder.sign(private_key, algorithm)


def generate(
    out_dir: str | Path,
    passphrase: bytes,
    *,
    name: str = "auditor report signer",
    organization: str | None = None,
    days: int = 730,
    algorithm: str = "ecdsa-p256",
    force: bool = False,
) -> "KeyPair":
    """Write an encrypted private key, a self-signed document-signing certificate and the public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if algorithm not in ALGORITHMS:
        raise AuditorError(f"unknown key algorithm {algorithm!r} (use {' or '.join(ALGORITHMS)})")
    if not passphrase:
        raise AuditorError(f"no passphrase: set ${ENV_PASSPHRASE} or give --passphrase-file (the key is always encrypted)")
    if days < 1:
        raise AuditorError("--days must be at least 1")
    out = Path(out_dir)
    paths = {"key": out / KEY_FILE, "cert": out / CERT_FILE, "public": out / PUBLIC_FILE}
    if not force:
        for p in paths.values():
            if p.exists():
                raise AuditorError("already exists (use --force to replace the key pair)", p)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AuditorError(f"cannot create folder: {e.strerror or e}", out) from None

    key = ec.generate_private_key(ec.SECP256R1()) if algorithm == "ecdsa-p256" else ed25519.Ed25519PrivateKey.generate()
    cert = _build_certificate(key, name, organization, days)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(passphrase)
    )
    _write_private(paths["key"], key_pem)
    _write_public(paths["cert"], cert.public_bytes(serialization.Encoding.PEM))
    _write_public(
        paths["public"],
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    return KeyPair(key=paths["key"], cert=paths["cert"], public=paths["public"], keyid=keyid(key.public_key()),
                   algorithm=algorithm, not_after=cert.not_valid_after_utc)


@dataclass(frozen=True)
class KeyPair:
    """Where keygen wrote the key pair, and its public facts."""

    key: Path
    cert: Path
    public: Path
    keyid: str
    algorithm: str
    not_after: _dt.datetime


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- loading


def _read_source(path: str | Path | None, env_name: str, env: Mapping[str, str], what: str) -> tuple[bytes, str] | None:
    """(bytes, label for messages) from a file, else from an environment variable holding PEM text."""
    if path is not None:
        data, p = _read_file(path, what)
        return data, str(p)
    value = env.get(env_name)
    if value:
        return value.encode("utf-8"), f"${env_name}"
    return None


def _looks_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data[:4096]


def _load_private_pem(data: bytes, label: str, passphrase: bytes | None):
    from cryptography.hazmat.primitives import serialization

    encrypted = b"ENCRYPTED" in data
    if encrypted and passphrase is None:
        raise AuditorError(f"the signing key is encrypted: set ${ENV_PASSPHRASE} or give --passphrase-file", label)
    try:
        return serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except TypeError:
        # an unencrypted key given with a passphrase, or the other way round
        try:
            return serialization.load_pem_private_key(data, password=None)
        except Exception:
            raise AuditorError("cannot load the signing key", label) from None
    except ValueError:
        if encrypted:
            raise AuditorError("cannot decrypt the signing key (wrong passphrase?)", label) from None
        raise AuditorError("not a usable PEM private key", label) from None
    except Exception:  # unsupported algorithm and the like; never echo the key
        raise AuditorError("not a usable PEM private key", label) from None


def _load_pkcs12(data: bytes, label: str, passphrase: bytes | None):
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        key, cert, _chain = pkcs12.load_key_and_certificates(data, passphrase)
    except ValueError:
        if passphrase is None:
            raise AuditorError(
                f"cannot open the PKCS#12 file: set ${ENV_PASSPHRASE} or give --passphrase-file", label
            ) from None
        raise AuditorError("cannot open the PKCS#12 file (wrong passphrase, or not PKCS#12)", label) from None
    except Exception:
        raise AuditorError("not a usable PKCS#12 file", label) from None
    if key is None:
        raise AuditorError("the PKCS#12 file holds no private key", label)
    return key, cert


def load_certificate(data: bytes, label: str):
    from cryptography import x509

    try:
        if _looks_pem(data):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except Exception:
        raise AuditorError("not a PEM or DER X.509 certificate", label) from None


def load_identity(
    key_path: str | Path | None = None,
    cert_path: str | Path | None = None,
    passphrase_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    now: _dt.datetime | None = None,
) -> Identity | None:
    """The signer from ``--sign-key``/``--sign-cert`` (PEM or PKCS#12) or $AUDITOR_SIGN_KEY/$AUDITOR_SIGN_CERT.

    Returns None when no key is configured. Raises AuditorError (exit 2) for an unusable key or certificate.
    """
    env = os.environ if env is None else env
    key_src = _read_source(key_path, ENV_KEY, env, "signing key")
    if key_src is None:
        if cert_path is not None:
            raise AuditorError(f"--sign-cert given without --sign-key (or ${ENV_KEY})")
        return None
    data, label = key_src
    passphrase = read_passphrase(passphrase_file, env)
    cert = None
    if _looks_pem(data):
        key = _load_private_pem(data, label, passphrase)
        if b"-----BEGIN CERTIFICATE-----" in data:  # a PEM bundle with key and certificate
            cert = load_certificate(data[data.index(b"-----BEGIN CERTIFICATE-----"):], label)
    else:
        key, cert = _load_pkcs12(data, label, passphrase)
    algorithm = algorithm_of(key)
    cert_src = _read_source(cert_path, ENV_CERT, env, "signing certificate")
    if cert_src is not None:
        cert = load_certificate(*cert_src)
        cert_label = cert_src[1]
    elif cert is None:
        raise AuditorError(f"no certificate for the signing key: give --sign-cert (or ${ENV_CERT})", label)
    else:
        cert_label = label
    if spki_der(cert.public_key()) != spki_der(key.public_key()):
        raise AuditorError("the certificate does not match the signing key", cert_label)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if now < cert.not_valid_before_utc:
        raise AuditorError(f"the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", cert_label)
    if now > cert.not_valid_after_utc:
        raise AuditorError(f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}", cert_label)
    return Identity(private_key=key, certificate=cert, algorithm=algorithm, keyid=keyid(key.public_key()))


def _read_file(path: str | Path, what: str) -> tuple[bytes, Path]:
    p = Path(path)
    try:
        return p.read_bytes(), p
    except OSError as e:
        raise AuditorError(f"cannot read {what}: {e.strerror or e}", p) from None


def load_public_key(path: str | Path):
    """A public key for verification: from a PEM/DER public key or a certificate (never a private key)."""
    from cryptography.hazmat.primitives import serialization

    data, p = _read_file(path, "key")
    if b"-----BEGIN CERTIFICATE-----" in data:
        return load_certificate(data, str(p)).public_key()
    if b"PRIVATE KEY-----" in data:
        raise AuditorError("this is a private key: give the public key (signing-pub.pem) or the certificate", p)
    load = serialization.load_pem_public_key if _looks_pem(data) else serialization.load_der_public_key
    try:
        key = load(data)
    except Exception:
        raise AuditorError("not a PEM or DER public key", p) from None
    try:
        algorithm_of(key)
    except AuditorError as e:
        raise AuditorError(e.problem, p) from None
    return key


def load_certificate_file(path: str | Path):
    data, p = _read_file(path, "certificate")
    return load_certificate(data, str(p))
