"""robustness.adversarial and robustness.noise on a small digits CNN (1x8x8 images in [0, 1])."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
import torch

from auditor import policy as policy_mod
from auditor.checks._variants import audited_models, holds_int8
from auditor.checks.robustness import (
    compute_limits, evaluation_set, run_white_box, seeded, stratified_sample, white_box_classifier, AttackSpec,
)
from auditor.engine import AuditContext, run_check
from auditor.inputs import load_dataset
from auditor.models import Model, load_model
from tests.conftest import digits_frames, write_policy
from tests.robust_helpers import context, digits_images, trained_cnn

PGD_POLICY = """
name: t
extends: nist-ai-rmf
checks:
  robustness.adversarial:
    params:
      sample_size: 10000
      clip: [0.0, 1.0]
      eps_units: absolute
      attacks:
        - {name: pgd, norm: inf, eps: [0.1], steps: 10, min_robust_accuracy: 0.3}
        - {name: pgd, norm: 2, eps: [0.5], steps: 10}
"""


def _direct_art_robust_accuracy(norm, eps: float, steps: int) -> float:
    """ART's PGD called directly on the same CNN and the whole test set, RobustBench's definition."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    _, X, _, y = digits_images()
    model = trained_cnn()
    clf = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
                            clip_values=(0.0, 1.0))
    with compute_limits():  # the same thread settings as the auditor (oversubscribed threads are many times slower)
        adv = ProjectedGradientDescent(clf, norm=norm, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
                                       batch_size=256, verbose=False).generate(X, y=y)
    with torch.no_grad():
        clean = model(torch.from_numpy(X)).argmax(1).numpy() == y
        under_attack = model(torch.from_numpy(adv)).argmax(1).numpy() == y
    return float(np.mean(clean & under_attack))


def test_pgd_robust_accuracy_agrees_with_direct_art(tmp_path):
    ctx = context(tmp_path, PGD_POLICY)
    r = run_check("robustness.adversarial", ctx)
    assert r.status in ("pass", "fail"), r.reason
    results = {(x["attack"], x["norm"], x["eps"]): x for x in r.metrics["results"] if x["model"] == "original"}
    linf, l2 = results[("pgd", "inf", 0.1)], results[("pgd", "2", 0.5)]
    assert linf["mode"] == "white-box" and linf["steps"] == 10 and linf["eps_abs"] == pytest.approx(0.1)
    clean = r.metrics["models"]["original"]["clean_accuracy"]
    assert r.metrics["sample_size"] == len(digits_images()[3])  # the whole test set
    # the attack bites (not a no-op) and the robust accuracy is reported against the whole sample
    assert linf["robust_accuracy"] < clean - 0.2
    direct_linf = _direct_art_robust_accuracy(np.inf, 0.1, 10)
    direct_l2 = _direct_art_robust_accuracy(2, 0.5, 10)
    assert abs(linf["robust_accuracy"] - direct_linf) <= 0.03, (linf, direct_linf)
    assert abs(l2["robust_accuracy"] - direct_l2) <= 0.03, (l2, direct_l2)
    # the threshold is applied to what was measured
    expected = "fail" if linf["robust_accuracy"] < 0.3 else "pass"
    assert r.status == expected
    assert {w["norm"] for w in r.metrics["models"]["original"]["worst_case"]} == {"inf", "2"}


def test_robust_accuracy_counts_every_evaluated_point(tmp_path):
    """RobustBench: a point the model already gets wrong is not robust, so at a negligible budget robust
    accuracy equals clean accuracy (not 1.0, which 'fraction of correct points that survive' would give)."""
    ctx = context(tmp_path, PGD_POLICY.replace("[0.1], steps: 10, min_robust_accuracy: 0.3", "[0.000001], steps: 2")
                  .replace("eps: [0.5]", "eps: [0.000001]"))
    r = run_check("robustness.adversarial", ctx)
    clean = r.metrics["models"]["original"]["clean_accuracy"]
    assert clean < 1.0
    for x in r.metrics["results"]:
        assert x["robust_accuracy"] == pytest.approx(clean, abs=1e-9)


def test_stratified_sample_is_seeded_and_keeps_class_shares():
    y = np.r_[np.zeros(700, int), np.ones(200, int), np.full(100, 2)]
    a = stratified_sample(y, 100, np.random.default_rng(3))
    b = stratified_sample(y, 100, np.random.default_rng(3))
    c = stratified_sample(y, 100, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(a) == 100 and len(set(a.tolist())) == 100
    assert np.bincount(y[a]).tolist() == [70, 20, 10]
    assert np.array_equal(stratified_sample(y, 5000, np.random.default_rng(0)), np.arange(len(y)))


def test_clip_inferred_from_data_and_eps_in_range_units(tmp_path):
    """Digits pixels as table columns run 0..16: eps 0.1 of the range is 1.6 in input units."""
    train, test = digits_frames()
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 10)).eval()
    pol = policy_mod.load(write_policy(tmp_path / "p.yaml", """
name: t
extends: nist-ai-rmf
checks:
  robustness.adversarial:
    params:
      sample_size: 100
      attacks: [{name: fgsm, norm: inf, eps: [0.1]}]
"""))
    ctx = AuditContext(policy=pol, seed=0, train=load_dataset(tmp_path / "train.csv", "train"),
                       test=load_dataset(tmp_path / "test.csv", "test"),
                       model=Model(tmp_path / "m", "0" * 64, "state_dict", net))
    r = run_check("robustness.adversarial", ctx)
    assert r.metrics["clip"] == [0.0, 16.0]
    assert r.metrics["results"][0]["eps_abs"] == pytest.approx(1.6)
    assert r.metrics["sample_size"] == 100
    ev = evaluation_set(ctx, 100, "data")
    assert ev.X.min() >= 0 and ev.X.max() <= 16
    assert np.bincount(ev.y).min() >= 9  # stratified: every digit present


def test_white_box_attacks_never_run_through_int8_modules(tmp_path, monkeypatch):
    from art.estimators.classification import PyTorchClassifier

    ctx = context(tmp_path, """
name: t
extends: nist-ai-rmf
checks:
  robustness.adversarial:
    params:
      sample_size: 150
      attacks:
        - {name: fgsm, norm: inf, eps: [0.1]}
        - {name: pgd, norm: inf, eps: [0.1], steps: 5}
        - {name: square, norm: inf, eps: [0.1], steps: 10}
  optimization.comparison:
    params:
      optimizations: [{kind: int8_dynamic}, {kind: prune_unstructured, sparsity: 0.3}]
""")
    models = {m.name: m for m in audited_models(ctx)}
    assert models["int8_dynamic"].int8 and not models["prune_unstructured@0.3"].int8
    int8_layers = [m for m in models["int8_dynamic"].model.module.modules()
                   if not list(m.children()) and holds_int8(m)]
    assert int8_layers, "the int8 variant holds int8 layers"

    calls = []  # one entry per forward through an int8 layer: was autograd recording it?
    for layer in int8_layers:
        layer.register_forward_pre_hook(
            lambda mod, args: calls.append(torch.is_grad_enabled() and any(
                isinstance(a, torch.Tensor) and a.requires_grad for a in args)))
    wrapped = []  # every model ART is given gradients of
    original_init = PyTorchClassifier.__init__

    def spy(self, model, *args, **kwargs):
        wrapped.append(model)
        original_init(self, model, *args, **kwargs)

    monkeypatch.setattr(PyTorchClassifier, "__init__", spy)

    r = run_check("robustness.adversarial", ctx)
    assert r.status in ("pass", "fail"), r.reason
    modes = {(x["model"], x["attack"]): x["mode"] for x in r.metrics["results"]}
    assert modes[("int8_dynamic", "fgsm")] == "transfer from original"
    assert modes[("int8_dynamic", "pgd")] == "transfer from original"
    assert modes[("int8_dynamic", "square")] == "black-box"
    assert modes[("prune_unstructured@0.3", "pgd")] == "white-box"
    assert calls, "the int8 layers were evaluated (transfer and black-box attacks query them)"
    assert not any(calls), "a gradient was taken through an int8 layer"
    assert wrapped and not any(holds_int8(m) for m in wrapped)

    # the instruments do catch a white-box attack on the int8 model (so the assertions above can fail)
    ev = evaluation_set(ctx, 150, "data")
    with seeded(0), contextlib.suppress(ValueError):  # ART then finds no gradient: int8 layers have none
        run_white_box(white_box_classifier(models["int8_dynamic"].model, ev),
                      AttackSpec(name="fgsm", eps=[0.1]), 0.1, ev.X[:8], ev.y[:8], 8)
    assert any(calls) and holds_int8(wrapped[-1])


NOISE_POLICY = """
name: t
extends: nist-ai-rmf
checks:
  robustness.noise:
    params:
      sample_size: 300
      max_accuracy_drop: 0.1
      corruptions:
        - {name: gaussian, levels: [0.02, 0.6]}
        - {name: uniform, levels: [0.05]}
        - {name: salt_pepper, levels: [0.01]}
        - {name: blur, levels: [0.5]}
        - {name: contrast, levels: [0.9]}
        - {name: brightness, levels: [0.05]}
"""


def test_noise_fails_on_heavy_noise_and_names_it(tmp_path):
    ctx = context(tmp_path, NOISE_POLICY)
    r = run_check("robustness.noise", ctx)
    assert r.metrics["image_input"] is True and r.metrics["not_applicable"] == []
    by = {(x["corruption"], x["level"]): x for x in r.metrics["results"] if x["model"] == "original"}
    assert set(by) == {("gaussian", 0.02), ("gaussian", 0.6), ("uniform", 0.05), ("salt_pepper", 0.01),
                       ("blur", 0.5), ("contrast", 0.9), ("brightness", 0.05)}
    assert by[("gaussian", 0.6)]["accuracy_drop"] > 0.1 and not by[("gaussian", 0.6)]["passed"]
    assert by[("gaussian", 0.02)]["accuracy_drop"] < by[("gaussian", 0.6)]["accuracy_drop"]
    assert r.status == "fail"
    assert any("gaussian 0.6" in f.message for f in r.findings)
    assert all(x["passed"] == (x["accuracy_drop"] <= 0.1) for x in r.metrics["results"])


def test_noise_on_tables_skips_image_corruptions(tmp_path):
    train, test = digits_frames()
    test.to_csv(tmp_path / "test.csv", index=False)
    X, y = train.drop(columns="label").to_numpy(np.float32, copy=True), train["label"].to_numpy(np.int64, copy=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(X / 16)), torch.from_numpy(y)).backward()
        opt.step()
    with torch.no_grad():  # fold the /16 scaling into the weights: the model takes raw 0..16 pixels
        net[0].weight /= 16
    ctx = AuditContext(policy=policy_mod.load(write_policy(tmp_path / "p.yaml", NOISE_POLICY)), seed=0,
                       test=load_dataset(tmp_path / "test.csv", "test"),
                       model=Model(tmp_path / "m", "0" * 64, "state_dict", net.eval()))
    r = run_check("robustness.noise", ctx)
    assert r.metrics["image_input"] is False
    assert sorted(r.metrics["not_applicable"]) == ["blur", "brightness", "contrast", "salt_pepper"]
    assert {x["corruption"] for x in r.metrics["results"]} == {"gaussian", "uniform"}
    assert r.metrics["clean_accuracy"]["original"] > 0.85


def test_bad_attack_params_are_policy_errors(tmp_path):
    from auditor.errors import PolicyError

    for body, fragment in [
        ("{name: pgd, norm: inf, eps: [0.1, 0.2], min_robust_accuracy: [0.5]}", "min_robust_accuracy lists 1"),
        ("{name: fgsm, eps: [0.1], steps: 5}", "single step"),
        ("{name: pgd, eps: [-0.1]}", "positive"),
        ("{name: cw, eps: [0.1]}", "name"),
    ]:
        p = write_policy(tmp_path / "bad.yaml", f"name: x\nextends: nist-ai-rmf\nchecks:\n  robustness.adversarial:\n"
                                                f"    params:\n      attacks:\n        - {body}\n")
        with pytest.raises(PolicyError, match=fragment.split()[0]):
            policy_mod.load(p)


def test_labels_that_do_not_index_the_outputs_are_skipped(tmp_path):
    frame = pd.DataFrame({"a": np.linspace(0, 1, 40), "b": np.linspace(1, 0, 40), "label": np.repeat([5, 7], 20)})
    frame.to_csv(tmp_path / "test.csv", index=False)
    ctx = AuditContext(policy=policy_mod.load(None), seed=0, test=load_dataset(tmp_path / "test.csv", "test"),
                       model=Model(tmp_path / "m", "0" * 64, "state_dict", torch.nn.Linear(2, 2).eval()))
    r = run_check("robustness.adversarial", ctx)
    assert r.status == "skipped" and "labels" in r.reason


class Softmaxed(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), dim=1)


SMALL_PGD = """
name: t
extends: nist-ai-rmf
checks:
  robustness.adversarial:
    params:
      sample_size: 150
      attacks: [{name: pgd, norm: inf, eps: [0.1], steps: 5}]
"""


def _robust(ctx) -> float:
    r = run_check("robustness.adversarial", ctx)
    assert r.status in ("pass", "fail"), r.reason
    return r.metrics["results"][0]["robust_accuracy"]


def test_probability_outputs_and_fixed_batch_exports_are_attacked_like_logits(tmp_path):
    """A model ending in softmax is attacked through log-probabilities (the same cross-entropy gradient), and a
    torch.export program traced with a fixed batch size through padded batches: same robust accuracy."""
    ctx = context(tmp_path / "a", SMALL_PGD)
    reference = _robust(ctx)
    probs = context(tmp_path / "b", SMALL_PGD)
    probs.model = Model(probs.model.path, probs.model.sha256, "state_dict", Softmaxed(trained_cnn()).eval())
    assert evaluation_set(probs, 150, "data").output_kind == "probs"
    assert abs(_robust(probs) - reference) <= 0.01
    x = torch.from_numpy(digits_images()[1][:64])
    torch.export.save(torch.export.export(trained_cnn(), (x,)), str(tmp_path / "cnn.pt2"))
    exported = context(tmp_path / "c", SMALL_PGD)
    exported.model = load_model(tmp_path / "cnn.pt2")
    assert exported.model.fixed_batch == 64  # 150 rows: batches of 64 with the last one padded
    assert abs(_robust(exported) - reference) <= 0.01


def test_an_int8_model_given_as_the_model_is_only_queried(tmp_path):
    import warnings

    ctx = context(tmp_path, SMALL_PGD.replace("steps: 5}]", "steps: 5}, {name: square, norm: inf, eps: [0.1], steps: 10}]"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(trained_cnn(), {torch.nn.Linear}, dtype=torch.qint8)
    ctx.model = Model(ctx.model.path, ctx.model.sha256, "state_dict", q)
    r = run_check("robustness.adversarial", ctx)
    by = {x["attack"]: x for x in r.metrics["results"]}
    assert by["pgd"]["robust_accuracy"] is None and "no gradients through int8" in by["pgd"]["skipped"]
    assert by["square"]["mode"] == "black-box" and by["square"]["robust_accuracy"] is not None
    assert r.metrics["models"]["original"]["int8"] is True
    # with white-box attacks only, nothing can be measured on it: skipped, saying why
    only_pgd = context(tmp_path / "pgd", SMALL_PGD)
    only_pgd.model = ctx.model
    r = run_check("robustness.adversarial", only_pgd)
    assert r.status == "skipped" and "no gradients through int8" in r.reason
