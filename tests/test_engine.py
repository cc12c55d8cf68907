from __future__ import annotations

import json

import jsonschema
import numpy as np
import pandas as pd
import pytest

from auditor import policy as policy_mod
from auditor.checks.data import Drift
from auditor.cli import main
from auditor.engine import AuditContext, audit
from auditor.formats.json_report import schema
from auditor.inputs import load_dataset
from auditor.report import CheckResult, decide_gate
from tests.conftest import write_policy


def _result(status: str, severity: str) -> CheckResult:
    return CheckResult("x.y", "t", "x", severity, status, None, {}, (), (), 0.0)


@pytest.mark.parametrize(
    "status, severity, fail_on, gate",
    [
        ("fail", "high", "high", "fail"),
        ("fail", "medium", "high", "pass"),
        ("fail", "medium", "medium", "fail"),
        ("fail", "critical", "high", "fail"),
        ("warn", "critical", "info", "pass"),
        ("error", "info", "critical", "fail"),  # fail closed
        ("skipped", "critical", "info", "pass"),
        ("pass", "critical", "info", "pass"),
    ],
)
def test_gate_decision(status, severity, fail_on, gate):
    summary = decide_gate([_result(status, severity)], fail_on)
    assert summary.gate == gate
    assert summary.counts[status] == 1 and sum(summary.counts.values()) == 1


def _table(tmp_path, name, frame):
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def _small(rng, n=300):
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n), "label": rng.integers(0, 2, n)})


def test_missing_inputs_are_skipped_with_reason(tmp_path, rng):
    train = load_dataset(_table(tmp_path, "train", _small(rng)), "train")
    ctx = AuditContext(policy=policy_mod.load(None), seed=0, train=train)
    report = audit(ctx)
    drift = report.check("data.drift")
    assert drift.status == "skipped" and "test set" in drift.reason
    assert report.check("data.duplicates").status in {"pass", "warn", "fail"}
    assert all(c.duration_s >= 0 for c in report.checks)


def test_exception_becomes_error_and_fails_gate(tmp_path, rng, monkeypatch, capsys):
    def boom(self, ctx, params):
        raise RuntimeError("simulated failure inside the check")

    monkeypatch.setattr(Drift, "run", boom)
    train, test = _table(tmp_path, "train", _small(rng)), _table(tmp_path, "test", _small(rng))
    policy = write_policy(tmp_path / "p.yaml", "name: p\nfail_on: critical\nchecks:\n  data.drift: {severity: low}\n")
    code = main(["run", "--policy", str(policy), "--train", str(train), "--test", str(test),
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (drift,) = report["checks"]
    assert drift["status"] == "error"
    assert "simulated failure inside the check" in drift["reason"]
    assert "RuntimeError" in drift["traceback"]
    assert report["summary"]["gate"] == "fail" and report["summary"]["counts"]["error"] == 1
    assert "error" in capsys.readouterr().out


def test_same_inputs_and_seed_give_the_same_report(tmp_path, digits_csv):
    train, test = digits_csv
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        code = main(["run", "--train", str(train), "--test", str(test), "--out", str(out), "--seed", "7", "--quiet"])
        assert code in (0, 1)
        outs.append(json.loads((out / "report.json").read_text()))
    for rep in outs:
        jsonschema.validate(rep, schema())
        rep.pop("run")
        for c in rep["checks"]:
            c.pop("duration_s")
    assert outs[0] == outs[1]


def test_clean_data_passes_the_gate_and_report_matches_schema(tmp_path, digits_csv, capsys):
    train, test = digits_csv
    out = tmp_path / "out"
    code = main(["run", "--train", str(train), "--test", str(test), "--out", str(out)])
    captured = capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert code == 0, report["summary"]
    jsonschema.validate(report, schema())
    assert report["summary"]["gate"] == "pass"
    assert {s["kind"] for s in report["subjects"]} == {"dataset", "policy"}
    assert "gate: PASS" in captured.out
    assert "data.validation" in captured.err  # progress goes to stderr
    for c in report["checks"]:
        assert c["controls"], c["id"]
    assert report["run"]["seed"] == 0


def test_fail_on_flag_overrides_policy(tmp_path, rng):
    frame = _small(rng)
    frame = pd.concat([frame, frame.iloc[:60]], ignore_index=True)  # 60 duplicate rows (medium severity)
    train = _table(tmp_path, "train", frame)
    base = ["run", "--train", str(train), "--quiet", "--policy", str(write_policy(
        tmp_path / "p.yaml", "name: p\nchecks:\n  data.duplicates: {}\n"))]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0  # medium < high
    assert main(base + ["--out", str(tmp_path / "b"), "--fail-on", "medium"]) == 1
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["summary"]["blocking"] == ["data.duplicates: fail (medium)"]
    assert report["checks"][0]["findings"][0]["rows"] == list(range(300, 360))


def test_help_does_not_import_heavy_libraries():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from auditor.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'pandas', 'great_expectations', 'cleanlab', 'sklearn', 'art', 'pydantic') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_nothing_to_audit_is_exit_2(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "o")]) == 2
    assert "nothing to audit" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_format_is_exit_2(tmp_path, digits_csv, capsys):
    train, _ = digits_csv
    assert main(["run", "--train", str(train), "--format", "json,docx", "--out", str(tmp_path / "o")]) == 2
    assert "docx" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_npz_dataset_is_audited(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]  # N x 1 x 8 x 8
    np.savez(tmp_path / "train.npz", X=X[:1200], y=d.target[:1200])
    np.savez(tmp_path / "test.npz", X=X[1200:], y=d.target[1200:])
    out = tmp_path / "out"
    code = main(["run", "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"),
                 "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert "error" not in statuses.values(), report["checks"]
    assert statuses["data.validation"] == "pass"
    assert code in (0, 1)
