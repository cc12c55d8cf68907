"""Model and dataset loading: the safe formats load and predict; anything that would run code from the
file is refused with exit 2 and its payload never runs. Tiny models and data, built in tmp_path."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from auditor.cli import main
from auditor.errors import InputError
from auditor.inputs import load_dataset
from auditor.models import load_model

N_FEATURES, N_CLASSES = 4, 3


class Payload:
    """Unpickling this creates ``marker`` (builtins.open): proof that a file's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class SystemPayload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(N_FEATURES, N_CLASSES)

    def forward(self, x):
        return self.fc(x)


def _tiny() -> Tiny:
    torch.manual_seed(0)
    return Tiny().eval()


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(label=np.argmax(X[:, :N_CLASSES], axis=1))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Genuine model files written once per module."""
    d = tmp_path_factory.mktemp("models")
    model = _tiny()
    out = {}
    out["torchscript"] = d / "ts.pt"
    torch.jit.save(torch.jit.script(model), out["torchscript"])
    out["export_dynamic"] = d / "dynamic.pt2"
    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(model, (torch.randn(8, N_FEATURES),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, out["export_dynamic"])
    out["export_static"] = d / "static.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, N_FEATURES),)), out["export_static"])
    out["state_dict"] = d / "weights.pt"
    torch.save(model.state_dict(), out["state_dict"])
    return out


def _expected(X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(_tiny()(torch.from_numpy(X.astype(np.float32))), dim=1).numpy()


def _X(n: int = 37) -> np.ndarray:
    return np.random.default_rng(5).normal(size=(n, N_FEATURES)).astype(np.float32)


# --- positive loading -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, fmt", [("torchscript", "torchscript"), ("export_dynamic", "torch.export"),
                                       ("export_static", "torch.export")])
def test_safe_formats_load_and_predict(files, kind, fmt):
    model = load_model(files[kind])
    assert model.format == fmt
    assert len(model.sha256) == 64
    X = _X()
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), N_CLASSES)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(proba, _expected(X), atol=1e-5)


def test_static_batch_export_predicts_any_number_of_rows(files):
    """A program traced with batch 1 only accepts batches of 1; the loader must still score every row."""
    model = load_model(files["export_static"])
    assert model.fixed_batch == 1
    for n in (1, 5, 600):
        assert model.predict_proba(_X(n)).shape == (n, N_CLASSES)


def test_single_output_binary_model_gives_two_columns(tmp_path):
    class Score(torch.nn.Module):
        def forward(self, x):
            return x[:, :1] * 3.0

    path = tmp_path / "score.pt"
    torch.jit.save(torch.jit.script(Score()), path)
    X = _X(10)
    proba = load_model(path).predict_proba(X)
    assert proba.shape == (10, 2)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-3.0 * X[:, 0])), atol=1e-5)


def _factory_module(tmp_path: Path, monkeypatch, name: str, body: str) -> str:
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, name, raising=False)
    return name


FACTORY = f"""
import torch

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear({N_FEATURES}, {N_CLASSES})

    def forward(self, x):
        return self.fc(x)

def build():
    return Tiny()

def wrong():
    return torch.nn.Linear(7, 2)
"""


def test_state_dict_with_factory_loads_and_predicts(files, tmp_path, monkeypatch):
    mod = _factory_module(tmp_path, monkeypatch, "tiny_factory_load", FACTORY)
    model = load_model(files["state_dict"], factory=f"{mod}:build")
    assert model.format == "state_dict" and model.factory == f"{mod}:build"
    X = _X()
    np.testing.assert_allclose(model.predict_proba(X), _expected(X), atol=1e-5)


def test_state_dict_with_factory_audits_through_the_cli(files, tmp_path, monkeypatch, capsys):
    mod = _factory_module(tmp_path, monkeypatch, "tiny_factory_cli", FACTORY)
    _frame(60, 0).to_csv(tmp_path / "train.csv", index=False)
    _frame(30, 1).to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "out"
    rc = main(["run", "--quiet", "--train", "train.csv", "--test", "test.csv", "--model", str(files["state_dict"]),
               "--model-factory", f"{mod}:build", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc in (0, 1), err
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"]["model"]["format"] == "state_dict"
    assert report["inputs"]["model"]["factory"] == f"{mod}:build"
    assert {s["kind"] for s in report["subjects"]} >= {"dataset", "model"}


def test_state_dict_without_factory_names_the_flag(files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["run", "--quiet", "--model", str(files["state_dict"]), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "--model-factory" in err and str(files["state_dict"]) in err
    assert not out.exists()


@pytest.mark.parametrize("spec, words", [
    ("tiny_factory_bad:wrong", ["does not fit"]),
    ("tiny_factory_bad:missing", ["not a function"]),
    ("no_such_module_xyz:build", ["cannot import"]),
    ("no-colon", ["module:function"]),
])
def test_bad_factory_exits_2(files, tmp_path, monkeypatch, capsys, spec, words):
    _factory_module(tmp_path, monkeypatch, "tiny_factory_bad", FACTORY)
    out = tmp_path / "out"
    rc = main(["run", "--quiet", "--model", str(files["state_dict"]), "--model-factory", spec, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err
    assert not out.exists()


# --- payloads are refused and never run -----------------------------------------------------------


def _refused(path: Path, tmp_path: Path, capsys, *words: str) -> str:
    out = tmp_path / "out"
    rc = main(["run", "--quiet", "--model", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], err
    for word in words:
        assert word in lines[0], lines[0]
    assert not (out / "report.json").exists()
    return lines[0]


@pytest.mark.parametrize("payload_cls", [Payload, SystemPayload])
def test_plain_pickle_payload_is_refused(payload_cls, tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "model.pkl"
    with open(path, "wb") as f:
        pickle.dump(payload_cls(marker), f)
    _refused(path, tmp_path, capsys, "refusing to unpickle")
    assert not marker.exists()
    with pytest.raises(InputError):
        load_model(path)
    assert not marker.exists()


def test_torch_save_payload_is_refused(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    torch.save(Payload(marker), path)
    assert zipfile.is_zipfile(path)
    _refused(path, tmp_path, capsys, "refusing to unpickle")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: the payload is live
    assert marker.exists()


def test_torch_save_payload_disguised_as_torchscript_is_refused(tmp_path, capsys):
    """A torch.save zip given code/ and constants.pkl members goes to TorchScript's loader, which has no
    way to call arbitrary Python."""
    marker = tmp_path / "ran"
    plain = tmp_path / "plain.pt"
    torch.save(Payload(marker), plain)
    path = tmp_path / "disguised.pt"
    with zipfile.ZipFile(plain) as zi, zipfile.ZipFile(path, "w") as zo:
        root = zi.namelist()[0].split("/")[0]
        for info in zi.infolist():
            zo.writestr(info.filename, zi.read(info))
        zo.writestr(f"{root}/code/__torch__.py", "")
        zo.writestr(f"{root}/constants.pkl", zi.read(f"{root}/data.pkl"))
    _refused(path, tmp_path, capsys)
    assert not marker.exists()


def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rewrite(src: Path, dst: Path, replace: dict | None = None, drop: tuple = (), add: tuple = ()) -> Path:
    replace = replace or {}
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zo:
        for info in zi.infolist():
            rel = info.filename.split("/", 1)[1]
            if rel in drop:
                continue
            zo.writestr(info.filename, replace.get(rel, zi.read(info)))
        root = zi.namelist()[0].split("/")[0]
        for rel, data in add:
            zo.writestr(f"{root}/{rel}", data)
    return dst


def _member(src: Path, rel: str) -> bytes:
    with zipfile.ZipFile(src) as zf:
        root = zf.namelist()[0].split("/")[0]
        return zf.read(f"{root}/{rel}")


def _tamper(kind: str, src: Path, dst: Path, marker: Path) -> Path:
    """A .pt2 that torch.export.load would unpickle a payload from (or run native code from)."""
    evil = _pickled(Payload(marker))
    if kind == "weights_use_pickle":
        config = json.loads(_member(src, "data/weights/model_weights_config.json"))
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        return _rewrite(src, dst, {"data/weights/model_weights_config.json": json.dumps(config).encode(),
                                   f"data/weights/{first['path_name']}": evil})
    if kind == "sample_inputs":
        return _rewrite(src, dst, {"data/sample_inputs/model.pt": evil})
    if kind == "sample_inputs_upper_case":  # torch's zip reader finds members case-insensitively
        return _rewrite(src, dst, drop=("data/sample_inputs/model.pt",), add=(("data/sample_inputs/MODEL.PT", evil),))
    if kind == "opaque_constant":
        config = {"config": {"c0": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                    "tensor_meta": None}}}
        return _rewrite(src, dst, {"data/constants/model_constants_config.json": json.dumps(config).encode()},
                        add=(("data/constants/opaque_obj_0", pickle.dumps(Payload(marker))),))
    if kind == "legacy_weights":
        return _rewrite(src, dst, add=(("data/weights/model.pt", evil),))
    if kind == "duplicate_member":
        with warnings.catch_warnings(), zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
            warnings.simplefilter("ignore")  # "Duplicate name": exactly what we want
            for info in zi.infolist():
                if info.filename.endswith("data/sample_inputs/model.pt"):
                    zo.writestr(info.filename, evil)
                zo.writestr(info.filename, zi.read(info))
        return dst
    if kind == "aotinductor":
        return _rewrite(src, dst, add=(("data/aotinductor/model/model.so", b"\x7fELF" + b"\0" * 64),))
    raise AssertionError(kind)


LIVE_TAMPERS = ["weights_use_pickle", "sample_inputs", "sample_inputs_upper_case", "opaque_constant", "legacy_weights"]


@pytest.mark.parametrize("kind", LIVE_TAMPERS + ["duplicate_member", "aotinductor"])
def test_tampered_export_archive_is_refused(kind, files, tmp_path, capsys):
    marker = tmp_path / "ran"
    path = _tamper(kind, files["export_dynamic"], tmp_path / f"{kind}.pt2", marker)
    line = _refused(path, tmp_path, capsys)
    assert "refus" in line
    assert not marker.exists()


@pytest.mark.parametrize("kind", LIVE_TAMPERS)
def test_tampered_export_payload_is_live(kind, files, tmp_path):
    """Control: torch.export.load itself runs each payload, so the refusal above is what protects us."""
    marker = tmp_path / "ran"
    path = _tamper(kind, files["export_dynamic"], tmp_path / f"{kind}.pt2", marker)
    try:
        torch.export.load(str(path))
    except Exception:
        pass
    assert marker.exists()


def test_untampered_rewrite_still_loads(files, tmp_path):
    """The rewriting helper itself does not break a genuine archive."""
    path = _rewrite(files["export_dynamic"], tmp_path / "copy.pt2")
    assert load_model(path).predict_proba(_X(3)).shape == (3, N_CLASSES)


def test_export_archive_with_bad_config_json_is_refused(files, tmp_path, capsys):
    for i, text in enumerate([b"not json", b"[1, 2]", b'{"config": [1]}', b'{"config": {"w": 3}}']):
        path = _rewrite(files["export_dynamic"], tmp_path / f"cfg{i}.pt2",
                        {"data/weights/model_weights_config.json": text})
        _refused(path, tmp_path, capsys, "broken torch.export archive")


# --- datasets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_tables_load_with_row_counts_and_auto_label(fmt, tmp_path):
    frame = _frame(23, 2)
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    ds = load_dataset(path, "train")
    assert ds.format == fmt and ds.n_rows == 23 and ds.label == "label"
    assert ds.feature_columns == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(ds.labels(), frame["label"].to_numpy())
    X = ds.model_input()
    assert X.dtype == np.float32 and X.shape == (23, 4)
    assert X.flags.writeable and ds.labels().flags.writeable  # callers may edit them in place
    np.testing.assert_allclose(X, frame[["a", "b", "c", "d"]].to_numpy(), rtol=1e-6)


def test_label_detection_target_and_explicit(tmp_path):
    path = tmp_path / "t.csv"
    _frame(10, 3).rename(columns={"label": "target"}).assign(group=1).to_csv(path, index=False)
    assert load_dataset(path, "train").label == "target"
    ds = load_dataset(path, "train", label="group", exclude=["target"])
    assert ds.label == "group" and ds.feature_columns == ["a", "b", "c", "d"]
    assert ds.model_input().shape == (10, 4)
    none = tmp_path / "none.csv"
    _frame(10, 3).drop(columns="label").to_csv(none, index=False)
    assert load_dataset(none, "train").label is None
    with pytest.raises(InputError, match="no label column"):
        load_dataset(none, "train", label_required=True)


def test_npz_loads_images_as_stored(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.random((12, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    path = tmp_path / "images.npz"
    np.savez_compressed(path, X=X, y=y)
    ds = load_dataset(path, "test")
    assert ds.is_array and ds.n_rows == 12 and ds.format == "npz"
    np.testing.assert_array_equal(ds.model_input(), X)
    np.testing.assert_array_equal(ds.labels(), y)
    assert ds.features().shape == (12, 16)


def test_excluded_column_missing_exits_2(tmp_path, capsys):
    path = tmp_path / "train.csv"
    _frame(10, 0).to_csv(path, index=False)
    out = tmp_path / "out"
    rc = main(["run", "--quiet", "--train", str(path), "--exclude", "ssn", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "'ssn'" in err and str(path) in err and "Traceback" not in err
    assert not out.exists()


def test_broken_export_archive_subprocess_one_line_no_torch_log(files, tmp_path):
    """torch.export.load logs a traceback before failing; none of it may reach stderr."""
    path = _rewrite(files["export_dynamic"], tmp_path / "broken.pt2", drop=("data/sample_inputs/model.pt",))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "GX_ANALYTICS_ENABLED": "false"}
    proc = subprocess.run([sys.executable, "-m", "auditor", "run", "--quiet", "--model", str(path), "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "sample_inputs" in lines[0], proc.stderr
    assert not out.exists()


def test_loading_leaves_torch_logging_as_it_was(files, tmp_path):
    loggers = [logging.getLogger(n) for n in ("torch", "torch.export")]
    before = [log.level for log in loggers]
    load_model(files["export_dynamic"])
    with pytest.raises(InputError):
        load_model(_rewrite(files["export_dynamic"], tmp_path / "broken.pt2", drop=("data/sample_inputs/model.pt",)))
    assert [log.level for log in loggers] == before
