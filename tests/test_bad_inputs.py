"""Bad inputs stop the audit with exit 2: one line on stderr naming the file and the problem, no
traceback, and nothing written into the --out folder. Every file here is built in tmp_path."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from auditor.cli import main

ROOT = Path(__file__).resolve().parent.parent


class Payload:
    """Unpickling this creates ``marker``: proof that a file's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=(X[:, 0] > 0).astype(int))


@pytest.fixture
def good_csv(tmp_path) -> Path:
    path = tmp_path / "good.csv"
    _frame().to_csv(path, index=False)
    return path


def run_cli(capsys, out: Path, *args: str) -> tuple[int, str]:
    rc = main(["run", "--quiet", "--out", str(out), *args])
    captured = capsys.readouterr()
    return rc, captured.err


def assert_refused(rc: int, err: str, out: Path, bad: Path, *words: str) -> str:
    """Exit 2, exactly one stderr line naming the file and the problem, no traceback, no report."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("auditor: error: ")
    assert str(bad) in line, line
    for word in words:
        assert word.lower() in line.lower(), (word, line)
    assert not (out / "report.json").exists()
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    return line


# --- bad datasets ---------------------------------------------------------------------------------


def _empty(d: Path) -> Path:
    p = d / "empty.csv"
    p.write_bytes(b"")
    return p


def _header_only(d: Path) -> Path:
    p = d / "header.csv"
    p.write_text("a,b,c,label\n")
    return p


def _too_many_fields(d: Path) -> Path:
    p = d / "many.csv"
    p.write_text("a,b,c,label\n1,2,3,0\n4,5,6,1\n7,8,9,0,99\n1,1,1,1\n")
    return p


def _too_few_fields(d: Path) -> Path:
    p = d / "few.csv"
    p.write_text("a,b,c,label\n1,2,3,0\n4,5,1\n7,8,9,0\n")
    return p


def _unknown_extension(d: Path) -> Path:
    p = d / "train.xlsx"
    _frame().to_csv(p, index=False)  # perfectly good CSV content: the extension alone is refused
    return p


def _truncated_parquet(d: Path) -> Path:
    full = d / "full.parquet"
    _frame(200).to_parquet(full)
    data = full.read_bytes()
    p = d / "truncated.parquet"
    p.write_bytes(data[: len(data) // 2])
    return p


def _random_npz(d: Path) -> Path:
    p = d / "random.npz"
    p.write_bytes(np.random.default_rng(7).bytes(4096))
    return p


def _npz_without_y(d: Path) -> Path:
    p = d / "no_y.npz"
    np.savez(p, X=np.zeros((10, 3), dtype=np.float32), labels=np.zeros(10, dtype=np.int64))
    assert zipfile.is_zipfile(p)
    return p


def _npy_named_npz(d: Path) -> Path:
    p = d / "single.npz"
    with open(p, "wb") as f:
        np.save(f, np.zeros((10, 3)))
    return p


def _corrupt_compressed_npz(d: Path) -> Path:
    p = d / "corrupt.npz"
    rng = np.random.default_rng(3)
    np.savez_compressed(p, X=rng.normal(size=(300, 8)), y=rng.integers(0, 2, 300))
    data = bytearray(p.read_bytes())
    data[300:700] = rng.bytes(400)  # inside the compressed stream of X
    p.write_bytes(bytes(data))
    return p


def _jsonl_not_objects(d: Path) -> Path:
    p = d / "bad.jsonl"
    p.write_text('{"a": 1, "label": 0}\n[1, 2]\n')
    return p


BAD_DATASETS = {
    "empty": (_empty, ["empty"]),
    "header_only": (_header_only, ["no data rows"]),
    "too_many_fields": (_too_many_fields, ["too many fields", "row 2"]),
    "too_few_fields": (_too_few_fields, ["too few fields", "row 1"]),
    "unknown_extension": (_unknown_extension, ["extension", ".xlsx"]),
    "truncated_parquet": (_truncated_parquet, ["parquet"]),
    "random_npz": (_random_npz, ["npz", "not a zip"]),
    "npz_without_y": (_npz_without_y, ["'y'"]),
    "npy_named_npz": (_npy_named_npz, ["npz"]),
    "corrupt_compressed_npz": (_corrupt_compressed_npz, ["broken npz"]),
    "jsonl_not_objects": (_jsonl_not_objects, ["jsonl"]),
}


@pytest.mark.parametrize("kind", sorted(BAD_DATASETS))
def test_bad_train_set_exits_2(kind, tmp_path, capsys):
    build, words = BAD_DATASETS[kind]
    bad = build(tmp_path)
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(bad))
    assert_refused(rc, err, out, bad, *words)


@pytest.mark.parametrize("kind", ["empty", "too_few_fields", "truncated_parquet", "npz_without_y"])
def test_bad_test_set_exits_2_even_with_a_good_train_set(kind, tmp_path, capsys, good_csv):
    build, words = BAD_DATASETS[kind]
    bad = build(tmp_path)
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(good_csv), "--test", str(bad))
    assert_refused(rc, err, out, bad, *words)


def test_npz_object_array_is_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "npz-payload-ran"
    bad = tmp_path / "objects.npz"
    np.savez(bad, X=np.zeros((3, 2), dtype=np.float32), y=np.array([Payload(marker), 1, 2], dtype=object))
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(bad))
    assert_refused(rc, err, out, bad, "object arrays", "refusing to unpickle")
    assert not marker.exists()
    with np.load(bad, allow_pickle=True) as archive:  # control: an unsafe load runs the payload
        archive["y"]
    assert marker.exists()


def test_missing_label_column_exits_2(tmp_path, capsys, good_csv):
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(good_csv), "--label", "nope")
    assert_refused(rc, err, out, good_csv, "'nope'", "not found")


def test_missing_label_column_in_test_set_exits_2(tmp_path, capsys, good_csv):
    test = tmp_path / "test.csv"
    _frame(20, seed=1).rename(columns={"label": "target"}).to_csv(test, index=False)
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(good_csv), "--test", str(test))
    assert_refused(rc, err, out, test, "label column 'label' not found")


def test_excluding_a_missing_column_exits_2(tmp_path, capsys, good_csv):
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(good_csv), "--exclude", "customer_id")
    assert_refused(rc, err, out, good_csv, "'customer_id'", "not found")


def test_missing_file_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "nowhere.csv"
    rc, err = run_cli(capsys, out, "--train", str(missing))
    assert_refused(rc, err, out, missing, "not found")


# --- bad models -----------------------------------------------------------------------------------


def test_random_bytes_model_exits_2(tmp_path, capsys, good_csv):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00" + np.random.default_rng(1).bytes(2048))
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(good_csv), "--model", str(bad))
    assert_refused(rc, err, out, bad, "not a recognised model format")


def test_random_bytes_starting_like_a_pickle_exits_2(tmp_path, capsys, good_csv):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80" + np.random.default_rng(2).bytes(2048))
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(good_csv), "--model", str(bad))
    assert_refused(rc, err, out, bad)


def test_pickle_with_payload_model_exits_2_and_never_runs(tmp_path, capsys, good_csv):
    marker = tmp_path / "pickle-payload-ran"
    bad = tmp_path / "model.pkl"
    with open(bad, "wb") as f:
        pickle.dump(Payload(marker), f)
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(good_csv), "--model", str(bad))
    assert_refused(rc, err, out, bad, "refusing to unpickle")
    assert not marker.exists()
    with open(bad, "rb") as f:  # control: the payload is live
        pickle.load(f)
    assert marker.exists()


def test_empty_model_file_exits_2(tmp_path, capsys, good_csv):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"")
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(good_csv), "--model", str(bad))
    assert_refused(rc, err, out, bad, "empty")


def test_non_numeric_feature_with_a_model_exits_2_before_auditing(tmp_path, capsys):
    import torch

    train = tmp_path / "train.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "city": ["x", "y", "z"], "label": [0, 1, 0]}).to_csv(train, index=False)
    model = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(model))
    out = tmp_path / "out"
    rc, err = run_cli(capsys, out, "--train", str(train), "--model", str(model))
    assert_refused(rc, err, out, train, "'city'", "--exclude")
    rc, err = run_cli(capsys, out, "--train", str(train), "--model", str(model), "--exclude", "city")
    assert rc in (0, 1), err


# --- through a real process -----------------------------------------------------------------------


def _auditor(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false"}
    return subprocess.run([sys.executable, "-m", "auditor", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_subprocess_ragged_csv_quiet_is_exactly_one_line(tmp_path):
    bad = _too_many_fields(tmp_path)
    out = tmp_path / "out"
    proc = _auditor("run", "--quiet", "--train", str(bad), "--out", str(out), cwd=tmp_path)
    assert_refused(proc.returncode, proc.stderr, out, bad, "too many fields")


def test_subprocess_payload_model_one_error_line_no_warnings(tmp_path, good_csv):
    """A real process: no torch warning or log record leaks onto stderr, the payload never runs."""
    marker = tmp_path / "subprocess-payload-ran"
    bad = tmp_path / "evil.pt"
    torch.save(Payload(marker), bad)
    out = tmp_path / "out"
    proc = _auditor("run", "--quiet", "--train", str(good_csv), "--model", str(bad), "--out", str(out), cwd=tmp_path)
    assert_refused(proc.returncode, proc.stderr, out, bad, "refusing to unpickle")
    assert not marker.exists()

    legacy = tmp_path / "evil.pkl"  # protocol-4 pickle: torch warns about it unless the loader is quiet
    with open(legacy, "wb") as f:
        pickle.dump(Payload(marker), f, protocol=4)
    proc = _auditor("run", "--quiet", "--train", str(good_csv), "--model", str(legacy), "--out", str(out), cwd=tmp_path)
    assert_refused(proc.returncode, proc.stderr, out, legacy, "refusing to unpickle")
    assert not marker.exists()


def test_subprocess_without_quiet_has_one_error_line_and_no_traceback(tmp_path):
    bad = _truncated_parquet(tmp_path)
    out = tmp_path / "out"
    proc = _auditor("run", "--train", str(bad), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("auditor: error:")]
    assert len(errors) == 1 and str(bad) in errors[0] and "PARQUET" in errors[0], proc.stderr
    assert not (out / "report.json").exists()
    assert proc.stdout.strip() == ""


def test_console_script_refuses_header_only_csv(tmp_path):
    script = Path(sys.executable).parent / "auditor"
    if not script.exists():
        pytest.skip("no auditor console script next to the interpreter")
    bad = _header_only(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([str(script), "run", "--quiet", "--train", str(bad), "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
    assert_refused(proc.returncode, proc.stderr, out, bad, "no data rows")
