"""Governance: policy packs, coverage matrix, waivers, baselines and audit.yaml."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest

from auditor import policy as policy_mod
from auditor.cli import main
from tests.conftest import digits_frames, write_policy

PACKS = ("nist-ai-rmf", "iso-42001", "eu-ai-act-high-risk", "minimal")


def _dup_table(tmp_path, n_dups: int, name="train.csv"):
    train, _ = digits_frames()
    frame = pd.concat([train, train.iloc[:n_dups]], ignore_index=True)
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path, list(range(len(train), len(train) + n_dups))


def _run(tmp_path, *args, out="out"):
    code = main(["run", "--quiet", "--out", str(tmp_path / out), *args])
    report_path = tmp_path / out / "report.json"
    return code, (json.loads(report_path.read_text()) if report_path.exists() else None)


# ------------------------------------------------------------------ packs and coverage


@pytest.mark.parametrize("name", PACKS)
def test_every_pack_is_valid_and_every_control_has_a_catalog_title(name):
    pol = policy_mod.load(name)
    assert pol.primary_framework in pol.frameworks
    for check in pol.checks.values():
        for control in check.controls:
            fw, cid = control.split(":", 1)
            assert pol.frameworks.get(fw, {}).get(cid), f"{name}: {control} has no catalog title"


def test_catalog_sizes():
    _, nist = policy_mod.load_catalog("nist-ai-rmf")
    _, iso = policy_mod.load_catalog("iso-42001")
    assert len(nist) == 72 and len(iso) == 38
    assert {"MAP 2.3", "MEASURE 2.1", "MEASURE 2.13", "MANAGE 4.1"} <= set(nist)
    _, atlas = policy_mod.load_catalog("mitre-atlas")
    assert {"AML.T0020", "AML.T0018", "AML.T0043", "AML.T0015", "AML.T0059", "AML.T0031"} <= set(atlas)


def test_report_carries_four_frameworks_and_a_coverage_matrix(tmp_path, digits_csv):
    train, test = digits_csv
    code, report = _run(tmp_path, "--train", str(train), "--test", str(test), "--format", "json")
    assert code == 0
    frameworks = {c.split(":", 1)[0] for check in report["checks"] for c in check["controls"]}
    assert {"nist-ai-rmf", "iso-42001", "eu-ai-act", "mitre-atlas"} <= frameworks
    nist = report["coverage"]["nist-ai-rmf"]
    assert nist["primary"] and len(nist["controls"]) == 72
    by_id = {c["id"]: c for c in nist["controls"]}
    assert by_id["GOVERN 1.1"]["status"] == "attestation_required" and by_id["GOVERN 1.1"]["checks"] == []
    assert {c["id"] for c in by_id["MEASURE 2.5"]["checks"]} >= {"data.duplicates", "data.drift"}
    assert nist["covered"] + nist["attestation_required"] == 72


def test_minimal_pack_runs_only_data_checks(tmp_path, digits_csv):
    train, test = digits_csv
    code, report = _run(tmp_path, "--policy", "minimal", "--train", str(train), "--test", str(test), "--format", "json")
    assert code == 0
    assert {c["id"] for c in report["checks"]} == {
        "provenance.integrity", "data.validation", "data.duplicates", "data.class_balance", "data.drift"}


# ------------------------------------------------------------------ waivers


def _waiver_policy(tmp_path, expires: date, rows=None):
    rows_line = f"\n    rows: {rows}" if rows is not None else ""
    return write_policy(tmp_path / "p.yaml", f"""
name: waived
fail_on: medium
checks:
  data.duplicates: {{}}
waivers:
  - check: data.duplicates
    dataset: train{rows_line}
    justification: augmentation copies, removed in the next data release
    owner: data-team@example.org
    expires: {expires.isoformat()}
""")


def test_active_waiver_passes_and_is_shown_in_json_and_pdf(tmp_path):
    train, dup_rows = _dup_table(tmp_path, 40)
    pol = _waiver_policy(tmp_path, date.today() + timedelta(days=30), rows=dup_rows)
    code, report = _run(tmp_path, "--policy", str(pol), "--train", str(train), "--format", "json,pdf")
    assert code == 0, report["summary"]
    (check,) = report["checks"]
    assert check["status"] == "fail"  # still visible as a failure
    assert check["waiver"]["state"] == "active" and check["waiver"]["owner"] == "data-team@example.org"
    assert report["summary"]["waived"] and report["summary"]["blocking"] == []
    assert report["waivers"][0]["justification"].startswith("augmentation copies")
    from tests._reports import pdf_text

    flat = " ".join(pdf_text(tmp_path / "out" / "report.pdf", layout=False).split())
    assert "Waivers" in flat and "data-team@example.org" in flat and "augmentation copies" in flat


def test_waiver_for_other_rows_does_not_cover_the_failure(tmp_path):
    train, dup_rows = _dup_table(tmp_path, 40)
    pol = _waiver_policy(tmp_path, date.today() + timedelta(days=30), rows=dup_rows[:10])
    code, report = _run(tmp_path, "--policy", str(pol), "--train", str(train), "--format", "json")
    assert code == 1
    assert report["summary"]["blocking"] == ["data.duplicates: fail (medium)"]


def test_expired_waiver_fails_the_gate_and_says_so(tmp_path, capsys):
    train, _ = _dup_table(tmp_path, 40)
    pol = _waiver_policy(tmp_path, date.today() - timedelta(days=1))
    code, report = _run(tmp_path, "--policy", str(pol), "--train", str(train), "--format", "json")
    assert code == 1
    assert any(b.startswith("expired waiver: data.duplicates") for b in report["summary"]["blocking"])
    assert report["checks"][0]["waiver"]["state"] == "expired"
    assert "expired waiver" in capsys.readouterr().out


def test_waiver_file_and_its_errors(tmp_path, capsys):
    train, _ = _dup_table(tmp_path, 40)
    pol = write_policy(tmp_path / "p.yaml", "name: p\nfail_on: medium\nchecks:\n  data.duplicates: {}\n")
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(f"waivers:\n  - check: data.duplicates\n    justification: known\n    owner: me\n"
                       f"    expires: {(date.today() + timedelta(days=3)).isoformat()}\n")
    code, report = _run(tmp_path, "--policy", str(pol), "--train", str(train), "--waivers", str(waivers), "--format", "json")
    assert code == 0 and report["checks"][0]["waiver"]["source"] == str(waivers)
    assert any(s["name"] == "waivers" for s in report["subjects"])
    capsys.readouterr()
    waivers.write_text("waivers:\n  - check: data.nope\n    justification: x\n    owner: me\n    expires: 2030-01-01\n")
    code, _ = _run(tmp_path, "--policy", str(pol), "--train", str(train), "--waivers", str(waivers), out="o2")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"auditor: error: {waivers}:2: waivers[0].check: unknown check id 'data.nope'"]
    waivers.write_text("waivers:\n  - check: data.duplicates\n    owner: me\n    expires: 2030-01-01\n")
    code, _ = _run(tmp_path, "--policy", str(pol), "--train", str(train), "--waivers", str(waivers), out="o3")
    assert code == 2 and "waivers[0].justification" in capsys.readouterr().err


# ------------------------------------------------------------------ baselines


def test_baseline_regression_on_a_metric_fails_and_names_it(tmp_path, capsys):
    pol = write_policy(tmp_path / "p.yaml", "name: p\nchecks:\n  data.duplicates: {severity: low}\n")
    clean, _ = _dup_table(tmp_path, 2, "clean.csv")
    worse, _ = _dup_table(tmp_path, 30, "worse.csv")
    code, _ = _run(tmp_path, "--policy", str(pol), "--train", str(clean), "--format", "json", out="approved")
    assert code == 0
    baseline = tmp_path / "approved" / "report.json"
    code, report = _run(tmp_path, "--policy", str(pol), "--train", str(worse), "--baseline", str(baseline),
                        "--format", "json,pdf")
    assert code == 1
    regs = report["baseline"]["regressions"]
    metrics = {r.get("metric") for r in regs}
    assert "data.duplicates.train.duplicate_fraction" in metrics
    assert any("baseline regression: data.duplicates.train.duplicate_fraction" in b for b in report["summary"]["blocking"])
    assert "data.duplicates.train.duplicate_fraction" in capsys.readouterr().out
    # same data as the baseline: no regression
    code, report = _run(tmp_path, "--policy", str(pol), "--train", str(clean), "--baseline", str(baseline.parent),
                        "--format", "json", out="again")
    assert code == 0 and report["baseline"]["regressions"] == []


def test_baseline_tolerance_and_report_only_mode(tmp_path):
    clean, _ = _dup_table(tmp_path, 2, "clean.csv")
    worse, _ = _dup_table(tmp_path, 30, "worse.csv")
    lenient = write_policy(tmp_path / "p.yaml", "name: p\nchecks:\n  data.duplicates: {severity: low, params: {max_fraction: 0.5}}\n"
                                                "baseline: {tolerances: {data.duplicates.train.duplicate_fraction: 0.05}}\n")
    assert _run(tmp_path, "--policy", str(lenient), "--train", str(clean), "--format", "json", out="a")[0] == 0
    code, report = _run(tmp_path, "--policy", str(lenient), "--train", str(worse), "--format", "json",
                        "--baseline", str(tmp_path / "a"), out="b")
    assert code == 0 and report["baseline"]["regressions"] == []
    report_only = write_policy(tmp_path / "q.yaml", "name: q\nchecks:\n  data.duplicates: {severity: low}\n"
                                                    "baseline: {gate: false}\n")
    code, report = _run(tmp_path, "--policy", str(report_only), "--train", str(worse), "--format", "json",
                        "--baseline", str(tmp_path / "a"), out="c")
    assert code == 0 and report["baseline"]["regressions"]
    assert report["summary"]["regressions"] == len(report["baseline"]["regressions"]) == 2  # status + metric
    assert report["summary"]["blocking"] == []


def test_status_regression_and_bad_baseline(tmp_path, capsys):
    pol = write_policy(tmp_path / "p.yaml", "name: p\nfail_on: critical\nchecks:\n  data.duplicates: {severity: low}\n")
    clean, _ = _dup_table(tmp_path, 0, "clean.csv")
    worse, _ = _dup_table(tmp_path, 30, "worse.csv")
    _run(tmp_path, "--policy", str(pol), "--train", str(clean), "--format", "json", out="a")
    code, report = _run(tmp_path, "--policy", str(pol), "--train", str(worse), "--format", "json",
                        "--baseline", str(tmp_path / "a"), out="b")
    assert code == 1
    assert any(r["kind"] == "status" and r["before"] == "pass" and r["after"] == "fail"
               for r in report["baseline"]["regressions"])
    bogus = tmp_path / "bogus.json"
    bogus.write_text("{not json")
    code, _ = _run(tmp_path, "--policy", str(pol), "--train", str(worse), "--baseline", str(bogus), out="c")
    assert code == 2 and str(bogus) in capsys.readouterr().err
    # an unsigned baseline with --baseline-cert is refused
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    code, _ = _run(tmp_path, "--policy", str(pol), "--train", str(worse), "--baseline", str(tmp_path / "a"),
                   "--baseline-cert", str(cert), out="d")
    assert code == 2 and not (tmp_path / "d" / "report.json").exists()


# ------------------------------------------------------------------ audit.yaml


def test_audit_yaml_configures_the_run_and_flags_override(tmp_path, monkeypatch, digits_csv):
    train, test = digits_csv
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_bytes(train.read_bytes())
    (tmp_path / "data" / "test.csv").write_bytes(test.read_bytes())
    (tmp_path / "audit.yaml").write_text(
        "policy: minimal\ntrain: data/train.csv\ntest: data/test.csv\nlabel: label\nout: from-config\n"
        "format: [json, junit]\nseed: 3\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--quiet"]) == 0
    report = json.loads((tmp_path / "from-config" / "report.json").read_text())
    assert report["policy"]["name"] == "minimal" and report["run"]["seed"] == 3
    assert (tmp_path / "from-config" / "report.junit.xml").exists()
    assert not (tmp_path / "from-config" / "report.pdf").exists()
    assert main(["run", "--quiet", "--out", "flag-out", "--seed", "5"]) == 0
    assert json.loads((tmp_path / "flag-out" / "report.json").read_text())["run"]["seed"] == 5


def test_audit_yaml_errors_name_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "audit.yaml"
    cfg.write_text("train: t.csv\nfail_on: sometimes\n")
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"auditor: error: {cfg}:2: fail_on")
    cfg.write_text("train: t.csv\nsign:\n  passphrase: hunter2\n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert f"{cfg}:3: sign.passphrase: unknown field" in capsys.readouterr().err
