"""Signed reports: keys, PAdES in the PDF, the DSSE/in-toto envelope, verification and tamper detection."""

from __future__ import annotations

import base64
import copy
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from auditor.cli import main
from tests._reports import PASSPHRASE, make_keys, need_tool, run_cli

REPORT_FILES = ("report.json", "report.pdf", "report.sarif", "report.junit.xml", "report.dsse.json")


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> dict[str, Path]:
    """One signed report (built once): keys, inputs and the output folder."""
    base = tmp_path_factory.mktemp("signed")
    keys = make_keys(base / "keys")
    code = run_cli(base / "in", base / "out", keys)
    assert code in (0, 1)
    return {**keys, "in": base / "in", "out": base / "out", "base": base}


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory) -> dict[str, Path]:
    return make_keys(tmp_path_factory.mktemp("other"), name="Someone Else")


def _verify(path: Path, *extra: str) -> int:
    return main(["verify", str(path), "--quiet", *extra])


def _copy(signed: dict, dest: Path) -> Path:
    out = dest / "out"
    shutil.copytree(signed["out"], out)
    return out


# ----------------------------------------------------------------------------- keys


def test_keygen_writes_encrypted_key_and_document_signing_cert(tmp_path, capsys, monkeypatch):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    monkeypatch.setenv("AUDITOR_KEY_PASSPHRASE", "s3cret-from-env")
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    out = capsys.readouterr()
    key_pem = (tmp_path / "k" / "signing-key.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key_pem
    assert (tmp_path / "k" / "signing-key.pem").stat().st_mode & 0o077 == 0
    with pytest.raises(TypeError):  # encrypted: no password, no key
        serialization.load_pem_private_key(key_pem, password=None)
    key = serialization.load_pem_private_key(key_pem, password=b"s3cret-from-env")
    cert = x509.load_pem_x509_certificate((tmp_path / "k" / "signing-cert.pem").read_bytes())
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment  # non-repudiation
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert "s3cret-from-env" not in out.out + out.err
    assert "PRIVATE" not in out.out + out.err
    # never overwritten by accident; no passphrase -> exit 2
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 2
    monkeypatch.delenv("AUDITOR_KEY_PASSPHRASE")
    assert main(["keygen", "--out", str(tmp_path / "k2")]) == 2
    assert "AUDITOR_KEY_PASSPHRASE" in capsys.readouterr().err
    assert not (tmp_path / "k2" / "signing-key.pem").exists()


def test_keygen_has_no_passphrase_option_on_the_command_line():
    from auditor.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["keygen"].format_help()
    assert "--passphrase-file" in text and "--passphrase " not in text


@pytest.mark.parametrize("problem, expected", [
    ("wrong passphrase", "wrong passphrase"),
    ("no passphrase", "AUDITOR_KEY_PASSPHRASE"),
    ("other cert", "does not match"),
    ("garbage key", "not a usable"),
    ("missing key", "cannot read"),
])
def test_unusable_key_exits_2_before_writing(signed, other_keys, tmp_path, capsys, monkeypatch, problem, expected):
    for var in ("AUDITOR_KEY_PASSPHRASE", "AUDITOR_SIGN_KEY", "AUDITOR_SIGN_CERT"):
        monkeypatch.delenv(var, raising=False)
    keys = dict(signed)
    if problem == "wrong passphrase":
        (tmp_path / "wrong.txt").write_text("not the passphrase\n")
        keys["pass"] = tmp_path / "wrong.txt"
    elif problem == "no passphrase":
        keys["pass"] = None
    elif problem == "other cert":
        keys["cert"] = other_keys["cert"]
    elif problem == "garbage key":
        (tmp_path / "bad.pem").write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
        keys["key"] = tmp_path / "bad.pem"
    else:
        keys["key"] = tmp_path / "absent.pem"
    argv = ["run", "--train", str(signed["in"] / "train.csv"), "--out", str(tmp_path / "out"), "--quiet",
            "--sign-key", str(keys["key"]), "--sign-cert", str(keys["cert"])]
    if keys["pass"] is not None:
        argv += ["--passphrase-file", str(keys["pass"])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert PASSPHRASE not in err and "PRIVATE KEY" not in err
    assert not (tmp_path / "out").exists()


def test_require_signature_without_key_exits_2_before_anything(signed, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AUDITOR_SIGN_KEY", raising=False)
    code = main(["run", "--train", str(signed["in"] / "train.csv"), "--out", str(tmp_path / "out"), "--quiet",
                 "--require-signature"])
    assert code == 2
    assert "--require-signature" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unsigned_run_warns_and_removes_a_stale_envelope(signed, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AUDITOR_SIGN_KEY", raising=False)
    out = _copy(signed, tmp_path)
    code = run_cli(signed["in"], out, None)
    assert code in (0, 1)
    err = capsys.readouterr().err
    assert "UNSIGNED" in err
    assert not (out / "report.dsse.json").exists()  # the old envelope would vouch for files it never saw
    assert "UNSIGNED" in " ".join(subprocess.run([need_tool("pdftotext"), str(out / "report.pdf"), "-"],
                                                 capture_output=True, text=True).stdout.split())
    assert _verify(out / "report.json") == 1
    assert _verify(out / "report.pdf") == 1


# ----------------------------------------------------------------------------- a valid report


def test_signed_report_verifies(signed, capsys):
    out = signed["out"]
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    assert _verify(out / "report.json", "--cert", str(signed["cert"])) == 0
    assert _verify(out / "report.json", "--key", str(signed["public"])) == 0
    assert _verify(out / "report.pdf", "--cert", str(signed["cert"])) == 0
    assert _verify(out / "report.dsse.json", "--key", str(signed["public"])) == 0
    capsys.readouterr()
    assert main(["verify", str(out / "report.json")]) == 0  # against the certificate the report carries
    printed = capsys.readouterr().out
    assert "no --cert or --key" in printed and "VALID" in printed
    assert "PAdES B-B signature valid" in printed


def test_wrong_signer_is_rejected(signed, other_keys):
    out = signed["out"]
    assert _verify(out / "report.json", "--cert", str(other_keys["cert"])) == 1
    assert _verify(out / "report.pdf", "--key", str(other_keys["public"])) == 1


def test_unusable_verify_input_exits_2(signed, tmp_path):
    assert _verify(tmp_path / "absent.json") == 2
    (tmp_path / "notacert.pem").write_text("hello")
    assert _verify(signed["out"] / "report.json", "--cert", str(tmp_path / "notacert.pem")) == 2
    assert _verify(signed["out"] / "report.json", "--key", str(signed["key"])) == 2  # a private key is refused


def test_report_json_names_the_signer_with_public_facts_only(signed):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    doc = json.loads((signed["out"] / "report.json").read_text())
    signer = doc["run"]["signer"]
    cert = x509.load_pem_x509_certificate((signed["cert"]).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert signer["keyid"] == hashlib.sha256(spki).hexdigest()
    assert signer["algorithm"] == "ecdsa-p256" and signer["common_name"] == "Test Signer"
    for path in signed["out"].iterdir():
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data and PASSPHRASE.encode() not in data


def test_statement_subjects_and_predicate(signed):
    out = signed["out"]
    env = json.loads((out / "report.dsse.json").read_text())
    assert env["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(env["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    digests = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    for name in ("report.json", "report.pdf", "report.sarif", "report.junit.xml"):
        assert digests[name] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    report = json.loads((out / "report.json").read_text())
    for s in report["subjects"]:  # datasets and policy files, by the digest the audit computed
        assert digests[s["path"]] == s["sha256"]
    assert {s["kind"] for s in report["subjects"]} >= {"dataset", "policy"}
    pred = statement["predicate"]
    assert pred["result"] == ("PASSED" if report["summary"]["gate"] == "pass" else "FAILED")
    assert report["policy"]["sha256"] in {c["digest"]["sha256"] for c in pred["configuration"]}
    assert set(pred["failedTests"]) == {c["id"] for c in report["checks"] if c["status"] in ("fail", "error")}
    assert env["signatures"][0]["keyid"] == report["run"]["signer"]["keyid"]


def test_envelope_verifies_with_securesystemslib(signed, other_keys):
    from cryptography import x509
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    raw = json.loads((signed["out"] / "report.dsse.json").read_text())
    keyid = raw["signatures"][0]["keyid"]
    cert = x509.load_pem_x509_certificate(signed["cert"].read_bytes())
    key = SSlibKey.from_crypto(cert.public_key(), keyid=keyid)
    env = Envelope.from_dict(copy.deepcopy(raw))
    assert set(env.verify([key], 1)) == {keyid}
    other = x509.load_pem_x509_certificate(other_keys["cert"].read_bytes())
    with pytest.raises(VerificationError):
        Envelope.from_dict(copy.deepcopy(raw)).verify([SSlibKey.from_crypto(other.public_key(), keyid=keyid)], 1)
    tampered = copy.deepcopy(raw)
    payload = bytearray(base64.b64decode(tampered["payload"]))
    payload[10] ^= 1
    tampered["payload"] = base64.b64encode(bytes(payload)).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(tampered).verify([key], 1)


def test_pdfsig_reports_the_signature_valid(signed, tmp_path):
    pdfsig = need_tool("pdfsig")
    result = subprocess.run([pdfsig, str(signed["out"] / "report.pdf")], capture_output=True, text=True)
    assert "Signature Validation: Signature is Valid." in result.stdout, result.stdout + result.stderr
    assert "Total document signed" in result.stdout
    assert "ETSI.CAdES.detached" in result.stdout  # PAdES
    # and pdfsig does notice a changed byte inside the signed range (the check can fail)
    data = bytearray((signed["out"] / "report.pdf").read_bytes())
    data[len(data) // 4] ^= 0x01
    (tmp_path / "t.pdf").write_bytes(bytes(data))
    result = subprocess.run([pdfsig, str(tmp_path / "t.pdf")], capture_output=True, text=True)
    assert "Signature is Valid." not in result.stdout


def test_qpdf_finds_the_signed_pdf_structurally_sound(signed):
    qpdf = need_tool("qpdf")
    result = subprocess.run([qpdf, "--check", str(signed["out"] / "report.pdf")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("name", ["report.json", "report.dsse.json", "report.pdf"])
def test_any_flipped_byte_makes_verify_exit_1(signed, tmp_path, name):
    out = _copy(signed, tmp_path)
    target = out / name
    original = target.read_bytes()
    rng = np.random.default_rng(sum(name.encode()))
    positions = sorted({0, len(original) - 1, *rng.choice(len(original), 20, replace=False).tolist()})
    entry = name if name != "report.dsse.json" else "report.json"
    trust = ["--cert", str(signed["cert"])]
    assert _verify(out / entry, *trust) == 0
    failures = []
    for i, pos in enumerate(positions):
        data = bytearray(original)
        data[pos] ^= int(rng.integers(1, 256))
        target.write_bytes(bytes(data))
        # pinned signer for most flips; a few against the certificate the report carries
        args = trust if i % 4 else []
        code = _verify(out / entry, *args)
        if code != 1:
            failures.append((pos, code))
    target.write_bytes(original)
    assert _verify(out / entry, *trust) == 0
    assert not failures, f"{name}: flips at these (position, exit code) were not detected: {failures}"


def test_pdf_alone_flipped_bytes_in_the_signature_value(signed, tmp_path):
    """Without the envelope, the PDF's own signature check catches a change anywhere, /Contents included."""
    folder = tmp_path / "pdfonly"
    folder.mkdir()
    original = (signed["out"] / "report.pdf").read_bytes()
    start = original.rindex(b"/Contents <") + len(b"/Contents ")
    end = original.index(b">", start) + 1
    rng = np.random.default_rng(5)
    # both in the DER signature and in the zero padding after it, plus the delimiters
    positions = [start, end - 1, start + 1, start + 200, end - 2, end - 40, *rng.integers(start, end, 6).tolist()]
    assert _verify(signed["out"] / "report.pdf", "--cert", str(signed["cert"])) == 0
    shutil.copy(signed["out"] / "report.pdf", folder / "report.pdf")
    assert _verify(folder / "report.pdf", "--cert", str(signed["cert"])) == 0
    missed = []
    for pos in positions:
        for xor in (0x01, 0x20):  # 0x20 flips the case of a hex digit: same bytes once decoded
            data = bytearray(original)
            data[pos] ^= xor
            (folder / "report.pdf").write_bytes(bytes(data))
            if _verify(folder / "report.pdf", "--cert", str(signed["cert"])) != 1:
                missed.append((pos, xor))
    assert not missed


def test_appended_bytes_and_changed_inputs_are_detected(signed, tmp_path):
    out = _copy(signed, tmp_path)
    pdf = out / "report.pdf"
    original = pdf.read_bytes()
    pdf.write_bytes(original + b"\n% appended\n")
    assert _verify(out / "report.pdf", "--cert", str(signed["cert"])) == 1
    pdf.write_bytes(original)
    (out / "report.sarif").unlink()
    assert _verify(out / "report.json", "--cert", str(signed["cert"])) == 1  # a signed file went missing
    shutil.copy(signed["out"] / "report.sarif", out / "report.sarif")
    assert _verify(out / "report.json", "--cert", str(signed["cert"])) == 0
    # a dataset changed after the audit no longer matches its signed report
    inputs = tmp_path / "inputs"
    shutil.copytree(signed["in"], inputs)
    report = json.loads((out / "report.json").read_text())
    train = Path(next(s["path"] for s in report["subjects"] if s["name"] == "train"))
    saved = train.read_bytes()
    try:
        train.write_bytes(saved.replace(b"\n", b"\r\n", 1))
        assert _verify(out / "report.json", "--cert", str(signed["cert"])) == 1
    finally:
        train.write_bytes(saved)
    assert _verify(out / "report.json", "--cert", str(signed["cert"])) == 0


def test_an_envelope_rewritten_with_the_same_meaning_is_rejected(signed, tmp_path):
    out = _copy(signed, tmp_path)
    env = json.loads((out / "report.dsse.json").read_text())
    (out / "report.dsse.json").write_text(json.dumps(env))  # same JSON, other bytes
    assert _verify(out / "report.json", "--cert", str(signed["cert"])) == 1


# ----------------------------------------------------------------------------- key sources and algorithms


def test_key_and_cert_from_environment(signed, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_SIGN_KEY", signed["key"].read_text())
    monkeypatch.setenv("AUDITOR_SIGN_CERT", signed["cert"].read_text())
    monkeypatch.setenv("AUDITOR_KEY_PASSPHRASE", PASSPHRASE)
    assert run_cli(signed["in"], tmp_path / "out", None, "--format", "json,pdf") in (0, 1)
    assert (tmp_path / "out" / "report.dsse.json").exists()
    assert _verify(tmp_path / "out" / "report.json", "--cert", str(signed["cert"])) == 0


def test_pkcs12_key_file(signed, tmp_path, monkeypatch):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = serialization.load_pem_private_key(signed["key"].read_bytes(), password=PASSPHRASE.encode())
    cert = x509.load_pem_x509_certificate(signed["cert"].read_bytes())
    p12 = pkcs12.serialize_key_and_certificates(b"signer", key, cert, None,
                                                serialization.BestAvailableEncryption(b"p12-pass"))
    (tmp_path / "signer.p12").write_bytes(p12)
    monkeypatch.setenv("AUDITOR_KEY_PASSPHRASE", "p12-pass")
    code = run_cli(signed["in"], tmp_path / "out", None, "--format", "json,pdf",
                   "--sign-key", str(tmp_path / "signer.p12"))
    assert code in (0, 1)
    assert _verify(tmp_path / "out" / "report.json", "--cert", str(signed["cert"])) == 0


def test_ed25519_keys_sign_and_verify(tmp_path):
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey
    from cryptography import x509

    keys = make_keys(tmp_path / "keys", algorithm="ed25519")
    assert run_cli(tmp_path / "in", tmp_path / "out", keys, "--format", "json,pdf") in (0, 1)
    assert _verify(tmp_path / "out" / "report.json", "--cert", str(keys["cert"])) == 0
    raw = json.loads((tmp_path / "out" / "report.dsse.json").read_text())
    cert = x509.load_pem_x509_certificate(keys["cert"].read_bytes())
    key = SSlibKey.from_crypto(cert.public_key(), keyid=raw["signatures"][0]["keyid"])
    assert key.keytype == "ed25519"
    Envelope.from_dict(raw).verify([key], 1)


# ----------------------------------------------------------------------------- timestamps (PAdES B-T)


@pytest.fixture
def local_tsa(tmp_path):
    """An RFC 3161 timestamp authority on 127.0.0.1 (pyHanko's test TSA behind a tiny HTTP server)."""
    import datetime

    from asn1crypto import keys as asn1_keys, tsp, x509 as asn1_x509
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .sign(key, hashes.SHA256()))
    stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        tsa_key=asn1_keys.PrivateKeyInfo.load(key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())))
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            requests.append(len(body))
            resp = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(resp)))
            self.end_headers()
            self.wfile.write(resp)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    (tmp_path / "tsa.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    try:
        yield {"url": f"http://127.0.0.1:{server.server_address[1]}/", "cert": tmp_path / "tsa.pem",
               "requests": requests}
    finally:
        server.shutdown()
        server.server_close()


def test_tsa_url_gives_a_timestamped_signature(signed, tmp_path, local_tsa, capsys):
    code = run_cli(signed["in"], tmp_path / "out", {k: signed[k] for k in ("key", "cert", "pass")},
                   "--format", "json,pdf", "--tsa-url", local_tsa["url"])
    assert code in (0, 1)
    assert local_tsa["requests"], "the timestamp authority was never asked"
    capsys.readouterr()
    pdf = tmp_path / "out" / "report.pdf"
    assert main(["verify", str(pdf), "--cert", str(signed["cert"]), "--tsa-cert", str(local_tsa["cert"])]) == 0
    printed = capsys.readouterr().out
    assert "PAdES B-T signature valid" in printed and "timestamped" in printed and "not trusted" not in printed
    assert main(["verify", str(pdf), "--cert", str(signed["cert"])]) == 0  # TSA not pinned: said, not fatal
    assert "authority is not trusted" in capsys.readouterr().out


def test_unreachable_tsa_exits_2_and_writes_nothing(signed, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    code = run_cli(signed["in"], out, {k: signed[k] for k in ("key", "cert", "pass")}, "--format", "json,pdf",
                   "--tsa-url", f"http://127.0.0.1:{port}/")
    assert code == 2
    assert "timestamp" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == []


# ----------------------------------------------------------------------------- atomic writes


def test_interrupted_write_never_leaves_a_valid_signature_over_other_data(signed, tmp_path, monkeypatch):
    """Interrupt the final moves at every step: the folder verifies only when it is whole and consistent."""
    import auditor.output as output
    from auditor.signing import load_identity

    identity = load_identity(signed["key"], signed["cert"], signed["pass"])
    base_report = _report_object(signed)
    new_report = _with_run_id(base_report, "second-run")
    files = output.render(new_report, ["json", "pdf", "sarif", "junit"], identity)
    real_replace = os.replace
    outcomes = []
    for stop_at in range(len(files) + 1):
        out = _copy(signed, tmp_path / f"k{stop_at}")
        calls = {"n": 0}

        def flaky_replace(src, dst, _stop=stop_at, _calls=calls):
            if _calls["n"] == _stop:
                raise KeyboardInterrupt
            _calls["n"] += 1
            return real_replace(src, dst)

        monkeypatch.setattr(output.os, "replace", flaky_replace)
        try:
            output.commit(out, files)
            finished = True
        except KeyboardInterrupt:
            finished = False
        monkeypatch.setattr(output.os, "replace", real_replace)
        assert not list(out.glob(".auditor-staging-*")), "staging folder left behind"
        code = _verify(out / "report.json", "--cert", str(signed["cert"]))
        run_id = json.loads((out / "report.json").read_text())["run"]["id"]
        outcomes.append((stop_at, finished, code, run_id))
        if finished:
            assert code == 0 and run_id == "second-run"
        else:
            assert code == 1 and not (out / "report.dsse.json").exists()
    assert outcomes[-1][1] and not any(o[1] for o in outcomes[:-1])


def test_failure_while_signing_keeps_the_previous_report(signed, tmp_path, monkeypatch):
    from auditor.signing import _pdf

    out = _copy(signed, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_sign(*args, **kwargs):
        raise RuntimeError("simulated signing failure")

    monkeypatch.setattr(_pdf, "sign", broken_sign)
    code = run_cli(signed["in"], out, {k: signed[k] for k in ("key", "cert", "pass")})
    assert code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _verify(out / "report.json", "--cert", str(signed["cert"])) == 0


def _report_object(signed):
    """The Report behind the signed fixture, rebuilt from its inputs (cheap checks only)."""
    from auditor import policy as policy_mod
    from auditor.engine import AuditContext, audit
    from auditor.inputs import load_dataset

    policy = policy_mod.load(signed["in"] / "policy.yaml")
    train = load_dataset(signed["in"] / "train.csv", "train")
    test = load_dataset(signed["in"] / "test.csv", "test", label=train.label)
    return audit(AuditContext(policy=policy, seed=0, train=train, test=test))


def _with_run_id(report, run_id: str):
    import dataclasses

    return dataclasses.replace(report, run={**report.run, "id": run_id})


# ----------------------------------------------------------------------------- the demo


def test_demo_key_is_generated_once_and_marked_for_demonstration(tmp_path):
    from auditor.demo import demo_key

    key, cert, passfile = demo_key(tmp_path / "keys")
    assert b"ENCRYPTED" in key.read_bytes()
    assert passfile.stat().st_mode & 0o077 == 0
    assert "DEMONSTRATION ONLY" in (tmp_path / "keys" / "README.txt").read_text()
    first = key.read_bytes()
    assert demo_key(tmp_path / "keys")[0].read_bytes() == first  # reused, not regenerated


def test_inputs_are_found_beside_the_report_when_moved_together(signed, tmp_path, monkeypatch, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(signed["in"], moved / "in")
    shutil.copytree(signed["out"], moved / "out")
    monkeypatch.chdir(tmp_path)
    assert _verify(moved / "out" / "report.json", "--cert", str(signed["cert"])) == 0
    # the copy beside the report is the one checked (not the original at the recorded absolute path)
    with open(moved / "in" / "train.csv", "ab") as f:
        f.write(b"1,2,3,4\n")
    capsys.readouterr()
    assert main(["verify", str(moved / "out" / "report.json"), "--cert", str(signed["cert"])]) == 1
    assert "changed since the audit" in capsys.readouterr().out
