"""poisoning.scan on planted backdoors: recall and precision of the flagged training rows, quiet on clean data,
and the penultimate features read the same way from TorchScript, torch.export and eager models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.checks._features import probe
from auditor.engine import run_check
from auditor.models import load_model
from tests.backdoor_cases import build, dump, flagged_rows, recall_precision


@pytest.fixture(scope="module")
def patch(tmp_path_factory):
    return build(tmp_path_factory, "cnn_patch")


def test_trigger_patch_rows_found(patch):
    r = run_check("poisoning.scan", patch.ctx())
    found = flagged_rows(r)
    recall, precision = recall_precision(found, patch.poisoned)
    assert recall >= 0.8 and precision >= 0.8, (recall, precision, dump(r))
    assert r.status == "fail"
    assert r.metrics["signals_in_flagged_rows"]["trigger"] > 0
    assert r.metrics["trigger"]["backdoor_flagged_classes"] == [patch.target]
    (finding,) = r.findings
    scored = finding.details["rows"]
    assert [d["row"] for d in scored] == list(finding.rows)  # every flagged row, with its score and signals
    assert all(d["score"] >= r.metrics["min_score"] and d["signals"] for d in scored)
    assert [d["score"] for d in scored] == sorted((d["score"] for d in scored), reverse=True)


def test_clean_model_flags_at_most_one_percent(tmp_path_factory):
    case = build(tmp_path_factory, "cnn_clean")
    r = run_check("poisoning.scan", case.ctx())
    assert r.status in ("pass", "warn"), dump(r)
    assert r.metrics["flagged_fraction"] <= 0.01
    assert r.metrics["signals_fired"]["trigger"] == 0


@pytest.mark.parametrize("name", ["mlp_line_export", "tabular"])
def test_other_triggers_and_models(tmp_path_factory, name):
    case = build(tmp_path_factory, name)
    r = run_check("poisoning.scan", case.ctx())
    recall, precision = recall_precision(flagged_rows(r), case.poisoned)
    assert recall >= 0.8 and precision >= 0.8, (recall, precision, dump(r))


def test_only_the_feature_space_signals_cannot_flag_a_row(patch):
    policy = """
name: p
extends: nist-ai-rmf
checks:
  poisoning.scan:
    params: {signals: [activation_clustering, spectral_signature]}
"""
    r = run_check("poisoning.scan", patch.ctx(policy))
    assert r.metrics["flagged"] == 0 and r.status == "pass", dump(r)
    assert set(r.metrics["signals_fired"]) == {"activation_clustering", "spectral_signature"}


def test_feature_layer_override_and_bad_layer(patch):
    ok = run_check("poisoning.scan", patch.ctx("""
name: p
extends: nist-ai-rmf
checks:
  poisoning.scan:
    params: {feature_layer: "features.4:output", signals: [spectral_signature]}
"""))
    assert ok.status != "error", ok.reason
    assert ok.metrics["features"]["layer"] == "features.4:output" and ok.metrics["features"]["dim"] == 64
    bad = run_check("poisoning.scan", patch.ctx("""
name: p
extends: nist-ai-rmf
checks:
  poisoning.scan:
    params: {feature_layer: "no_such_layer"}
"""))
    assert bad.status == "error" and "no_such_layer" in bad.reason


def test_penultimate_features_agree_across_formats(tmp_path):
    from auditor.demo import make_cnn

    model = make_cnn(seed=5).eval()
    X = np.random.default_rng(0).uniform(0, 16, size=(9, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = model.features(torch.from_numpy(X) / 16.0).numpy()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.pt"))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    dyn = torch.export.export(model, (torch.from_numpy(X[:4]),), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(dyn, str(tmp_path / "dyn.pt2"))
    torch.export.save(torch.export.export(model, (torch.from_numpy(X[:4]),)), str(tmp_path / "fixed.pt2"))
    for path, factory in (("m.pt", None), ("sd.pt", "auditor.demo:make_cnn"), ("dyn.pt2", None), ("fixed.pt2", None)):
        loaded = load_model(tmp_path / path, factory)
        p = probe(loaded, X)
        F = p.features(X)
        assert p.n_outputs == 10
        assert p.feature_info["layer"] == "classifier:input", (path, p.feature_info)
        np.testing.assert_allclose(F, expected, rtol=1e-4, atol=1e-5, err_msg=path)
        if path != "sd.pt":  # the state_dict model has other weights (the factory seeds its own)
            continue
        assert p.feature_info["how"].startswith("forward pre-hook")
