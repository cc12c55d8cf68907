"""Data checks on small real data: planted problems are found, clean data is not flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor import policy as policy_mod
from auditor.checks.data import adjust_pvalues
from auditor.engine import AuditContext, run_check
from auditor.inputs import load_dataset
from tests.conftest import digits_frames, write_policy


def _ctx(tmp_path, train: pd.DataFrame, test: pd.DataFrame | None = None, policy_text: str | None = None, label="label"):
    paths = {}
    for name, frame in (("train", train), ("test", test)):
        if frame is not None:
            paths[name] = tmp_path / f"{name}.csv"
            frame.to_csv(paths[name], index=False)
    pol = policy_mod.load(write_policy(tmp_path / "p.yaml", policy_text) if policy_text else None)
    return AuditContext(
        policy=pol,
        seed=0,
        train=load_dataset(paths["train"], "train", label=label),
        test=load_dataset(paths["test"], "test", label=label) if "test" in paths else None,
    )


def _rows(result, dataset="train"):
    return sorted({r for f in result.findings if f.dataset == dataset for r in (f.rows or ())})


# ------------------------------------------------------------------ duplicates


def test_planted_duplicates_found_exactly(tmp_path):
    train, _ = digits_frames()
    planted_sources = [3, 50, 700, 900]
    dup = train.iloc[planted_sources].copy()
    frame = pd.concat([train, dup], ignore_index=True)
    r = run_check("data.duplicates", _ctx(tmp_path, frame))
    n = len(train)
    assert _rows(r) == list(range(n, n + 4))
    assert r.metrics["train"]["duplicate_rows"] == 4
    assert r.status == "warn"  # 4 / 1351 < 1 %


def test_clean_digits_have_no_duplicates(tmp_path):
    train, test = digits_frames()
    r = run_check("data.duplicates", _ctx(tmp_path, train, test))
    assert r.status == "pass" and r.findings == ()


def test_duplicates_normalise_types_and_whitespace(tmp_path):
    frame = pd.DataFrame({"a": ["1", "1.0", " 2", "3"], "s": ["x y", "x  y ", "z", "z"], "label": [0, 0, 1, 1]})
    r = run_check("data.duplicates", _ctx(tmp_path, frame))
    assert _rows(r) == [1]
    assert r.status == "fail"  # 25 % > 1 %


def test_conflicting_labels_fail(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3, 1], "b": [5, 6, 7, 5], "label": [0, 1, 1, 1]})
    r = run_check("data.duplicates", _ctx(tmp_path, frame))
    assert r.status == "fail"
    conflict = [f for f in r.findings if "different labels" in f.message]
    assert conflict and list(conflict[0].rows) == [0, 3]


# ------------------------------------------------------------------ class balance


def test_class_balance_flags_rare_class_and_label_shift(tmp_path, rng):
    n = 400
    train = pd.DataFrame({"a": rng.normal(size=n), "label": np.where(np.arange(n) < 396, 0, 1)})
    test = pd.DataFrame({"a": rng.normal(size=100), "label": np.r_[np.zeros(50, int), np.ones(48, int), [2, 2]]})
    r = run_check("data.class_balance", _ctx(tmp_path, train, test))
    assert r.status == "fail"
    text = " ".join(f.message for f in r.findings)
    assert "99.0:1" in text and "fewer than 5" in text and "never seen" in text and "total variation" in text
    assert r.metrics["train"]["counts"] == {"0": 396, "1": 4}


def test_class_balance_passes_on_digits(tmp_path):
    train, test = digits_frames()
    r = run_check("data.class_balance", _ctx(tmp_path, train, test))
    assert r.status == "pass", r.findings
    assert r.metrics["label_shift_tvd"] < 0.02


# ------------------------------------------------------------------ drift


def test_adjusted_pvalues():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    assert np.allclose(adjust_pvalues(p, "bonferroni"), [0.04, 0.16, 0.12, 0.8])
    assert np.allclose(adjust_pvalues(p, "holm"), [0.04, 0.09, 0.09, 0.2])
    assert np.allclose(adjust_pvalues(p, "bh"), [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    from scipy.stats import false_discovery_control

    q = np.random.default_rng(0).uniform(size=50) ** 3
    assert np.allclose(adjust_pvalues(q, "bh"), false_discovery_control(q, method="bh"))


def test_drift_flags_shifted_features_only(tmp_path, rng):
    n = 2000
    def frame(shift: float, colour_p):
        return pd.DataFrame({
            **{f"f{i}": rng.normal(size=n) for i in range(20)},
            "moved": rng.normal(loc=shift, size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n, p=colour_p),
            "label": rng.integers(0, 2, n),
        })
    train, test = frame(0.0, [0.6, 0.3, 0.1]), frame(0.5, [0.2, 0.3, 0.5])
    r = run_check("data.drift", _ctx(tmp_path, train, test))
    assert r.status == "fail"
    assert sorted(r.metrics["drifted"]) == ["colour", "moved"]
    assert r.metrics["features_tested"] == 22


def test_drift_passes_on_a_random_split(tmp_path):
    train, test = digits_frames()
    r = run_check("data.drift", _ctx(tmp_path, train, test))
    assert r.status == "pass", r.metrics["drifted"]
    assert r.metrics["not_tested"]["p00"] == "constant"


# ------------------------------------------------------------------ validation (Great Expectations)


def test_validation_defaults_find_nonfinite_allnull_and_column_mismatch(tmp_path):
    train = pd.DataFrame({"a": [1.0, 2.0, np.inf, 4.0], "empty": [None] * 4, "label": [0, 1, None, 1]})
    test = pd.DataFrame({"a": [1.0, 2.0], "extra": [1, 2], "label": [0, 1]})
    r = run_check("data.validation", _ctx(tmp_path, train, test))
    assert r.status == "fail"
    by_msg = {f.message: f for f in r.findings}
    finite = next(f for m, f in by_msg.items() if "finite values in 'a'" in m)
    assert finite.rows == (2,) and finite.dataset == "train"
    label = next(f for m, f in by_msg.items() if "expect_column_values_to_not_be_null(column='label')" in m)
    assert label.rows == (2,)
    assert any("'empty' not entirely null" in m for m in by_msg)
    assert any(f.dataset == "test" and "expect_table_columns_to_match_set" in m for m, f in by_msg.items())


def test_validation_runs_policy_expectations_by_gx_name(tmp_path):
    train, test = digits_frames()
    train.loc[[5, 17], "p10"] = 99
    policy = """
name: p
checks:
  data.validation:
    params:
      expectations:
        train:
          - expect_column_values_to_be_between: {column: p10, min_value: 0, max_value: 16}
        all:
          - expect_column_values_to_be_in_set: {column: label, value_set: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
"""
    r = run_check("data.validation", _ctx(tmp_path, train, test, policy))
    assert r.status == "fail"
    (finding,) = r.findings
    assert finding.rows == (5, 17) and "p10" in finding.message
    assert r.metrics["test"]["failed"] == 0


def test_validation_passes_on_clean_digits(tmp_path):
    train, test = digits_frames()
    r = run_check("data.validation", _ctx(tmp_path, train, test))
    assert r.status == "pass", [f.message for f in r.findings]
    assert r.metrics["train"]["expectations"] > 64


# ------------------------------------------------------------------ label issues


def _noisy_digits(seed: int, fraction: float = 0.06):
    train, test = digits_frames(seed)
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(train), int(round(fraction * len(train))), replace=False))
    labels = train["label"].to_numpy().copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    return train.assign(label=labels), test, set(flipped.tolist())


@pytest.mark.parametrize("seed", [0, 1])
def test_label_issues_find_planted_mislabels(tmp_path, seed):
    train, test, planted = _noisy_digits(seed)
    r = run_check("data.label_issues", _ctx(tmp_path, train, test))
    found = set(_rows(r))
    recall = len(found & planted) / len(planted)
    precision = len(found & planted) / len(found)
    assert recall >= 0.85 and precision >= 0.75, (recall, precision)
    assert r.status == "fail"


def test_label_issues_quiet_on_clean_data(tmp_path):
    train, test = digits_frames()
    r = run_check("data.label_issues", _ctx(tmp_path, train, test))
    assert r.metrics["flagged_fraction"] <= 0.02
    assert r.status in ("pass", "warn")


def test_label_issues_skip_continuous_labels(tmp_path, rng):
    frame = pd.DataFrame({"a": rng.normal(size=200), "label": rng.normal(size=200)})
    r = run_check("data.label_issues", _ctx(tmp_path, frame))
    assert r.status == "skipped" and "continuous" in r.reason


def test_validation_out_of_memory_is_an_error_not_a_data_failure():
    """GX reports an expectation it could not evaluate as failed; lack of memory (50M rows on the pandas
    engine) must make the check an error, while a data cause (a missing column) stays a finding."""
    from types import SimpleNamespace

    from auditor.checks import validation as v

    def result(message: str, trace: str) -> SimpleNamespace:
        info = {"raised_exception": True, "exception_message": message, "exception_traceback": trace}
        return SimpleNamespace(result={}, exception_info={"metric-id": info})

    oom = result("Unable to allocate 47.7 MiB for an array with shape (50000000,) and data type bool",
                 "Traceback ...\nnumpy._core._exceptions._ArrayMemoryError: Unable to allocate 47.7 MiB")
    with pytest.raises(MemoryError, match="train: .* could not be evaluated: Unable to allocate"):
        v.failure_finding("train", "expect_column_values_to_not_be_null", {"column": "x"}, oom, None, 10)
    missing = result('The column "x" in BatchData does not exist.', "Traceback ...\nMetricResolutionError: ...")
    f = v.failure_finding("train", "expect_column_values_to_not_be_null", {"column": "x"}, missing, None, 10)
    assert "could not be evaluated" in f.message and "does not exist" in f.message
