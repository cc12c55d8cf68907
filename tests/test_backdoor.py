"""backdoor.scan on planted backdoors: a trigger-patch CNN (TorchScript), a line-trigger MLP (torch.export) and a
tabular MLP fail and name their target class; the same CNN trained clean passes."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.checks.backdoor import anomaly_indices, strip_entropies, strip_threshold
from auditor.engine import run_check
from tests.backdoor_cases import build, dump


@pytest.fixture(scope="module")
def patch(tmp_path_factory):
    return build(tmp_path_factory, "cnn_patch")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return build(tmp_path_factory, "cnn_clean")


def _overlap(mask: np.ndarray, planted: np.ndarray) -> float:
    """Share of the reconstructed mask's mass on the planted trigger or next to it (one pixel)."""
    from scipy.ndimage import maximum_filter

    near = maximum_filter(planted, size=3) if planted.ndim == 2 else planted
    m = mask.reshape(near.shape)
    return float((m * near).sum() / m.sum())


def test_backdoored_cnn_fails_and_names_the_target(patch):
    r = run_check("backdoor.scan", patch.ctx())
    assert r.status == "fail", dump(r)
    m = r.metrics
    assert m["suspected_target_class"] == patch.target
    assert m["flagged_classes"][0] == patch.target
    assert m["anomaly_index"] > 2
    assert m["trigger_size"] < 0.5 * np.median([c["trigger_size"] for c in m["per_class"].values()])
    trig = m["reconstructed_trigger"]
    assert trig["class"] == patch.target and trig["mask_shape"] == [1, 8, 8] and trig["pattern_shape"] == [1, 8, 8]
    assert _overlap(np.array(trig["mask"]), patch.mask) > 0.6  # the reconstruction sits on the planted patch
    finding = r.findings[0]
    assert f"class {patch.target} " in finding.message and np.array(finding.details["mask"]).shape == (1, 8, 8)


def test_same_cnn_trained_clean_passes(clean):
    r = run_check("backdoor.scan", clean.ctx())
    assert r.status == "pass", dump(r)
    assert r.metrics["flagged_classes"] == [] and r.metrics["suspected_target_class"] is None
    assert r.metrics["strip"]["flagged_fraction"] <= 0.1


def test_exported_mlp_with_a_line_trigger(tmp_path_factory):
    case = build(tmp_path_factory, "mlp_line_export")
    r = run_check("backdoor.scan", case.ctx())
    assert r.status == "fail", dump(r)
    assert r.metrics["suspected_target_class"] == case.target
    assert _overlap(np.array(r.metrics["reconstructed_trigger"]["mask"]), case.mask) > 0.6


def test_tabular_model_backdoor(tmp_path_factory):
    case = build(tmp_path_factory, "tabular")
    r = run_check("backdoor.scan", case.ctx())
    assert r.status == "fail", dump(r)
    assert r.metrics["suspected_target_class"] == case.target
    mask = np.array(r.metrics["reconstructed_trigger"]["mask"])
    assert mask.shape == (64,)  # one mask entry per feature column (the id column is excluded)
    assert len(set(np.argsort(mask)[-4:]) & set(np.flatnonzero(case.mask))) >= 2  # on the planted columns


def test_strip_separates_triggered_inputs(patch):
    from auditor.checks.backdoor import shared_probe

    ctx = patch.ctx()
    X = ctx.test.model_input()
    y = ctx.test.labels()
    pr = shared_probe(ctx, X)
    rng = np.random.default_rng(0)
    pool, clean_x = X[:150], X[150:300][y[150:300] != patch.target]
    triggered = ((1 - patch.mask) * clean_x + patch.mask * 16).astype(np.float32)
    thr = strip_threshold(strip_entropies(pr, pool, pool, 20, rng), 0.01)
    caught = (strip_entropies(pr, triggered, pool, 20, rng) <= thr).mean()
    false_alarms = (strip_entropies(pr, clean_x, pool, 20, rng) <= thr).mean()
    assert caught > 3 * false_alarms + 0.05, (caught, false_alarms)


def test_anomaly_index_uses_the_mad_consistency_constant():
    sizes = np.array([10.0, 11, 9, 10, 12, 8, 10, 11, 9, 2])
    a = anomaly_indices(sizes, "linear")
    med = np.median(sizes)
    assert a[-1] == pytest.approx((med - 2) / (1.4826 * np.median(np.abs(sizes - med))))
    assert a.argmax() == 9 and a[-1] > 2 and (a[:-1] < 2).all()
    assert np.isnan(anomaly_indices(np.array([3.0, 4.0]))).all()  # undefined below three classes


def test_backdoor_scan_without_any_dataset_is_skipped(patch):
    ctx = patch.ctx()
    ctx.train = ctx.test = None
    r = run_check("backdoor.scan", ctx)
    assert r.status == "skipped" and "test set" in r.reason
