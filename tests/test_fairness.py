"""Fairness checks on a planted tabular problem: a model that rejects one group fails, an even-handed one passes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from auditor.cli import main


def _population(rng, n, label_rate_by_group=None):
    """x1..x4 decide the label; 'sex' is sensitive (excluded from the model), sex_code its numeric copy."""
    sex = rng.choice(["F", "M"], size=n)
    X = rng.normal(size=(n, 4))
    score = X @ np.array([1.5, -1.0, 0.8, 0.5])
    label = (score + rng.normal(scale=0.5, size=n) > 0).astype(int)
    if label_rate_by_group:
        for g, rate in label_rate_by_group.items():
            idx = np.flatnonzero(sex == g)
            label[idx] = (rng.uniform(size=len(idx)) < rate).astype(int)
    frame = pd.DataFrame(X, columns=["x1", "x2", "x3", "x4"])
    frame["sex_code"] = (sex == "F").astype(float)
    frame["sex"] = sex
    frame["label"] = label
    return frame


class Scorer(torch.nn.Module):
    """Logistic scorer on x1..x4; with ``reject_f`` it also pushes every sex_code == 1 row to class 0."""

    def __init__(self, w: torch.Tensor, b: float, reject_f: bool):
        super().__init__()
        self.w = torch.nn.Parameter(w.reshape(4, 1), requires_grad=False)
        self.b = b
        self.penalty = 25.0 if reject_f else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x[:, :4] @ self.w + self.b - self.penalty * x[:, 4:5]
        return torch.cat([torch.zeros_like(z), z], dim=1)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    d = tmp_path_factory.mktemp("fair")
    rng = np.random.default_rng(0)
    train, test = _population(rng, 2000), _population(rng, 1000)
    tiny = _population(rng, 6).assign(sex="X")  # a group too small to judge
    test = pd.concat([test, tiny], ignore_index=True)
    train.to_csv(d / "train.csv", index=False)
    test.to_csv(d / "test.csv", index=False)
    lr = LogisticRegression().fit(train[["x1", "x2", "x3", "x4"]], train["label"])
    w, b = torch.tensor(lr.coef_[0], dtype=torch.float32), float(lr.intercept_[0])
    for name, reject in (("fair", False), ("biased", True)):
        torch.jit.save(torch.jit.script(Scorer(w, b, reject)), str(d / f"{name}.pt"))
    return d


def _audit(d, model, out, *extra):
    policy = d / "p.yaml"
    policy.write_text("name: fairness-only\ncatalogs: [nist-ai-rmf]\nchecks:\n  fairness.data: {}\n  fairness.model: {}\n")
    code = main(["run", "--quiet", "--policy", str(policy), "--train", str(d / "train.csv"), "--test", str(d / "test.csv"),
                 "--model", str(d / model), "--sensitive", "sex", "--exclude", "sex", "--out", str(d / out),
                 "--format", "json", *extra])
    return code, json.loads((d / out / "report.json").read_text())


def test_model_that_rejects_a_group_fails_and_names_group_and_metric(planted):
    code, report = _audit(planted, "biased.pt", "biased")
    check = next(c for c in report["checks"] if c["id"] == "fairness.model")
    assert code == 1 and check["status"] == "fail"
    messages = " ".join(f["message"] for f in check["findings"])
    assert "sex=F: demographic_parity_ratio" in messages and "sex=F: equalized_odds_difference" in messages
    groups = check["metrics"]["attributes"]["sex"]["groups"]
    assert groups["F"]["selection_rate"] == 0.0 and groups["M"]["selection_rate"] > 0.3
    lo, hi = groups["M"]["selection_rate_ci"]
    assert lo <= groups["M"]["selection_rate"] <= hi and hi - lo < 0.2
    assert "nist-ai-rmf:MEASURE 2.11" in check["controls"] and "eu-ai-act:Art.10(2)(f)" in check["controls"]


def test_even_handed_model_passes_and_small_group_is_not_judged(planted):
    code, report = _audit(planted, "fair.pt", "fair")
    check = next(c for c in report["checks"] if c["id"] == "fairness.model")
    assert check["status"] == "pass", [f["message"] for f in check["findings"]]
    sex = check["metrics"]["attributes"]["sex"]
    assert sex["too_small"] == {"X": 6}
    assert "X" not in sex["groups"]  # never produces a verdict on its own
    assert any("below 30 test rows" in f["message"] and "X (6)" in f["message"] for f in check["findings"])
    assert sex["gaps"]["demographic_parity_ratio"]["value"] > 0.8
    assert code == 0


def test_fairness_data_flags_label_rate_gap(tmp_path):
    rng = np.random.default_rng(1)
    skewed = _population(rng, 1500, {"F": 0.15, "M": 0.6})
    skewed.to_csv(tmp_path / "train.csv", index=False)
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nchecks:\n  fairness.data: {}\n")
    code = main(["run", "--quiet", "--policy", str(policy), "--train", str(tmp_path / "train.csv"),
                 "--sensitive", "sex", "--out", str(tmp_path / "o"), "--format", "json", "--fail-on", "medium"])
    check = json.loads((tmp_path / "o" / "report.json").read_text())["checks"][0]
    assert code == 1 and check["status"] == "fail"
    assert any(f["message"].startswith("sex=F: positive-label rate") for f in check["findings"])
    balanced = _population(rng, 1500)
    balanced.to_csv(tmp_path / "train.csv", index=False)
    code = main(["run", "--quiet", "--policy", str(policy), "--train", str(tmp_path / "train.csv"),
                 "--sensitive", "sex", "--out", str(tmp_path / "o2"), "--format", "json", "--fail-on", "medium"])
    assert code == 0


def test_npz_groups_array_and_missing_attribute(tmp_path, capsys):
    from sklearn.datasets import load_digits

    d = load_digits()
    groups = np.where(np.arange(len(d.target)) % 3 == 0, "a", "b")
    np.savez(tmp_path / "train.npz", X=d.data.astype(np.float32), y=d.target, groups=groups)
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nchecks:\n  fairness.data: {params: {positive_label: '1'}}\n")
    code = main(["run", "--quiet", "--policy", str(policy), "--train", str(tmp_path / "train.npz"),
                 "--sensitive", "groups", "--out", str(tmp_path / "o"), "--format", "json"])
    check = json.loads((tmp_path / "o" / "report.json").read_text())["checks"][0]
    assert code == 0 and check["status"] == "pass" and set(check["metrics"]["attributes"]["groups"]["groups"]) == {"a", "b"}
    capsys.readouterr()
    code = main(["run", "--quiet", "--policy", str(policy), "--train", str(tmp_path / "train.npz"),
                 "--sensitive", "region", "--out", str(tmp_path / "o3")])
    assert code == 2 and "sensitive array 'region' not found" in capsys.readouterr().err


def test_without_sensitive_attributes_fairness_is_skipped(tmp_path, digits_csv):
    train, test = digits_csv
    code = main(["run", "--quiet", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "o"),
                 "--format", "json"])
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    fair = next(c for c in report["checks"] if c["id"] == "fairness.data")
    assert fair["status"] == "skipped" and "--sensitive" in fair["reason"]
    assert code == 0


def test_variant_that_widens_a_fairness_gap_fails_the_comparison(planted):
    policy = planted / "cmp.yaml"
    policy.write_text(
        "name: cmp\ncatalogs: [nist-ai-rmf]\nchecks:\n"
        "  robustness.adversarial:\n    enabled: false\n"
        "    params: {sample_size: 200, attacks: [{name: fgsm, norm: inf, eps: [0.05]}]}\n"
        "  optimization.comparison:\n    params: {backdoor_scan: false, sample_size: 1000}\n")
    code = main(["run", "--quiet", "--policy", str(policy), "--train", str(planted / "train.csv"),
                 "--test", str(planted / "test.csv"), "--model", str(planted / "fair.pt"),
                 "--optimized", str(planted / "biased.pt"), "--sensitive", "sex", "--exclude", "sex",
                 "--out", str(planted / "cmp"), "--format", "json"])
    report = json.loads((planted / "cmp" / "report.json").read_text())
    check = next(c for c in report["checks"] if c["id"] == "optimization.comparison")
    assert code == 1 and check["status"] == "fail", check.get("reason")
    (variant,) = [v for v in check["metrics"]["variants"] if "fairness" in v]
    gaps = variant["fairness"]["sex"]["gaps"]
    assert gaps["demographic_parity_ratio"]["widened_by"] > 0.5
    assert any("sex: demographic_parity_ratio widens" in f["message"] for f in check["findings"])
