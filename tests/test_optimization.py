"""optimization.comparison and the optimized variants, on a small digits CNN (1x8x8 images in [0, 1])."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import auditor.registry
from auditor.checks._variants import (
    Optimization, audited_models, build_variant, holds_int8, prune_magnitude, structured_mask, unstructured_mask,
)
from auditor.cli import main
from auditor.engine import run_check
from auditor.models import Model
from auditor.registry import Check, Params
from auditor.report import Outcome
from tests.robust_helpers import context, digits_images, trained_cnn, write_inputs

POLICY = """
name: t
extends: nist-ai-rmf
checks:
  robustness.adversarial:
    params:
      sample_size: 200
      attacks:
        - {{name: pgd, norm: inf, eps: [0.05], steps: 5}}
        - {{name: square, norm: inf, eps: [0.05], steps: 20}}
  optimization.comparison:
    params:
      backend: {backend}
      optimizations: {optimizations}
"""


@pytest.mark.parametrize("backend", ["auto", "torch.ao"])
def test_int8_dynamic_quantization_of_the_cnn_passes(tmp_path, backend):
    ctx = context(tmp_path, POLICY.format(backend=backend, optimizations="[{kind: int8_dynamic}]"))
    r = run_check("optimization.comparison", ctx)
    assert r.status == "pass", [f.message for f in r.findings]
    (row,) = r.metrics["variants"]
    assert row["name"] == "int8_dynamic" and row["int8"] is True and row["failed"] == []
    assert ("quantize_dynamic" in row["method"]) if backend == "torch.ao" else ("torchao" in row["method"] or "quantize_dynamic" in row["method"])
    assert row["layers_changed"] == 2  # the CNN's two Linear layers; convolutions stay float32
    assert row["clean_accuracy_drop"] <= 0.02 and row["agreement"] >= 0.95
    assert row["max_robust_accuracy_drop"] is not None and row["max_robust_accuracy_drop"] <= 0.05
    assert "transfer" in row["robust_protocol"]
    assert row["size_bytes"] < r.metrics["original"]["size_bytes"]
    assert row["latency_ms_per_1k_rows"] > 0
    # backdoor.scan is registered: the clean CNN and its int8 copy are both scanned, and no backdoor appears
    assert row["backdoor"]["new_backdoor"] is False
    assert row["backdoor"]["original"]["status"] != "fail" and row["backdoor"]["variant"]["status"] != "fail"
    assert r.metrics["failed"] == []
    assert r.metrics["thresholds"]["max_clean_accuracy_drop"] == 0.02


def test_cnn_pruned_to_90_percent_fails_and_names_the_delta(tmp_path):
    ctx = context(tmp_path, POLICY.format(backend="auto", optimizations="[{kind: prune_unstructured, sparsity: 0.9}]"))
    r = run_check("optimization.comparison", ctx)
    assert r.status == "fail"
    (row,) = r.metrics["variants"]
    assert row["weight_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert row["int8"] is False and row["robust_protocol"].startswith("white-box")
    assert "clean_accuracy_drop" in row["failed"]
    assert row["clean_accuracy_drop"] > 0.02
    assert r.metrics["worst"]["clean_accuracy_drop"] == row["clean_accuracy_drop"]
    assert r.metrics["worst"]["agreement"] == row["agreement"]
    for delta in row["failed"]:
        assert f"prune_unstructured@0.9: {delta}" in r.metrics["failed"]
    messages = [f.message for f in r.findings]
    assert any(m.startswith("prune_unstructured@0.9: clean accuracy drop") for m in messages), messages
    # the original is untouched by pruning its copy
    original = audited_models(ctx)[0].model.module
    assert all(float((p == 0).float().mean()) < 0.05 for n, p in original.named_parameters() if n.endswith("weight"))


def test_pruning_masks_match_torch_prune():
    from torch.nn.utils import prune

    torch.manual_seed(0)
    for layer in (nn.Linear(30, 20), nn.Conv2d(3, 12, 3)):
        for amount in (0.3, 0.9):
            a = type(layer)(*_args(layer))
            a.load_state_dict(layer.state_dict())
            prune.l1_unstructured(a, "weight", amount=amount)
            assert torch.equal(a.weight_mask.bool(), unstructured_mask(layer.weight.detach(), amount))
            b = type(layer)(*_args(layer))
            b.load_state_dict(layer.state_dict())
            prune.ln_structured(b, "weight", amount=amount, n=2, dim=0)
            assert torch.equal(b.weight_mask.bool(), structured_mask(layer.weight.detach(), amount))


def _args(layer):
    return (layer.in_features, layer.out_features) if isinstance(layer, nn.Linear) else (3, 12, 3)


def test_torchscript_and_export_models_get_the_variants_that_fit_them():
    model = trained_cnn()
    x = torch.from_numpy(digits_images()[1][:64])
    scripted = torch.jit.script(model)
    exported = torch.export.export(model, (x,)).module()
    for module, kind in ((scripted, "TorchScript"), (exported, "torch.export")):
        m = Model(path=None, sha256="0" * 64, format=kind, module=module)
        before = [p.detach().clone() for p in module.parameters()]
        dyn = build_variant(m, Optimization(kind="int8_dynamic"))
        assert dyn.model is None and "state_dict" in dyn.skipped and kind in dyn.skipped
        pruned = build_variant(m, Optimization(kind="prune_structured", sparsity=0.5))
        assert pruned.usable and not pruned.int8
        assert pruned.details["layers_changed"] == 3  # two convolutions and the hidden Linear; the output layer kept
        wo = build_variant(m, Optimization(kind="int8_weight_only"))
        assert wo.usable and not wo.int8 and wo.method.startswith("simulated")
        for p, b in zip(module.parameters(), before):  # the loaded model is never modified
            assert torch.equal(p, b)
        with torch.no_grad():
            ref = module(x)
            out = wo.model.module(x)
            assert not torch.equal(out, ref)  # int8 rounding changes the logits a little
            assert float((out - ref).abs().max()) < 0.02 * float(ref.abs().max())
            assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.95
            w = dict(wo.model.module.named_parameters())["head.1.weight"]
            scale = w.abs().amax(dim=1, keepdim=True) / 127
            assert torch.allclose(w / scale, torch.round(w / scale), atol=1e-3)  # on the int8 grid
    eager = Model(path=None, sha256="0" * 64, format="state_dict", module=model)
    dyn = build_variant(eager, Optimization(kind="int8_dynamic"))
    assert dyn.usable and dyn.int8 and holds_int8(dyn.model.module) and not holds_int8(model)


def test_optimized_flag_audits_a_supplied_int8_model(tmp_path, capsys):
    paths = write_inputs(tmp_path)
    model = trained_cnn()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    with warnings.catch_warnings():  # torch.ao's quantize_dynamic is deprecated (still works in torch 2.13)
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(trained_cnn(), {nn.Linear}, dtype=torch.qint8)
    torch.jit.save(torch.jit.script(q), str(tmp_path / "model-int8.pt"))
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.format(backend="auto", optimizations="[{kind: prune_unstructured, sparsity: 0.9}]")
                      + "".join(f"  {c}: {{enabled: false}}\n" for c in
                                ("data.validation", "data.duplicates", "data.class_balance", "robustness.noise")))
    out = tmp_path / "out"
    code = main(["run", "--test", str(paths["test"]), "--model", str(tmp_path / "model.pt"), "--optimized",
                 str(tmp_path / "model-int8.pt"), "--policy", str(policy), "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    checks = {c["id"]: c for c in report["checks"]}
    comparison = checks["optimization.comparison"]
    rows = {v["name"]: v for v in comparison["metrics"]["variants"]}
    assert rows["optimized"]["int8"] is True and rows["optimized"]["origin"] == "supplied"
    assert rows["optimized"]["failed"] == []
    assert "prune_unstructured@0.9: clean_accuracy_drop" in comparison["metrics"]["failed"]
    assert comparison["status"] == "fail" and code == 1  # severity high fails the gate
    modes = {(x["model"], x["attack"]): x["mode"] for x in checks["robustness.adversarial"]["metrics"]["results"]}
    assert modes[("optimized", "pgd")] == "transfer from original" and modes[("optimized", "square")] == "black-box"
    assert {"model", "optimized"} <= {s["name"] for s in report["subjects"] if s["kind"] == "model"}
    assert "optimized" in checks["provenance.integrity"]["metrics"]["sha256"]
    capsys.readouterr()
    assert main(["run", "--test", str(paths["test"]), "--optimized", str(tmp_path / "model-int8.pt"),
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--optimized needs --model" in err[0]


class TriggerScan(Check):
    """Stand-in for the backdoor.scan check built on another branch: stamps a fixed trigger (bright 2x2 corner)
    on the test images and reports a backdoor towards the class most non-target images then flip to."""

    id = "backdoor.scan"
    title = "trigger scan (test stand-in)"
    family = "backdoor"
    description = "fixed-trigger attack success rate"
    requires = ("test", "model")
    controls = ("nist-ai-rmf:MEASURE 2.7", "iso-42001:A.6.2.4")
    Params = Params

    def run(self, ctx, params):
        X, y = ctx.test.model_input(), ctx.test.labels()
        X[:, :, -2:, -2:] = 1.0
        pred = ctx.model.predict_proba(X).argmax(axis=1)
        rates = [float(np.mean(pred[y != t] == t)) for t in range(10)]
        target = int(np.argmax(rates))
        status = "fail" if rates[target] > 0.5 else "pass"
        return Outcome(status, {"target_class": target if status == "fail" else None, "attack_success_rate": rates[target]})


class Backdoored(nn.Module):
    """The CNN plus a trigger: a bright bottom-right 2x2 corner sends any image to class 0."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        trigger = (x[:, :, -2:, -2:].amin(dim=(1, 2, 3)) > 0.99).to(logits.dtype)
        bump = torch.zeros_like(logits)
        bump[:, 0] = 100.0
        return logits + trigger[:, None] * bump


def test_a_backdoor_that_appears_only_in_the_variant_fails_the_comparison(tmp_path, monkeypatch):
    torch.jit.save(torch.jit.script(Backdoored(trained_cnn()).eval()), str(tmp_path / "optimized.pt"))
    registry = auditor.registry.all_checks()
    monkeypatch.setattr(auditor.registry, "all_checks", lambda: {**registry, TriggerScan.id: TriggerScan})
    ctx = context(tmp_path / "in", POLICY.format(backend="auto", optimizations="[]"), optimized=tmp_path / "optimized.pt")
    r = run_check("optimization.comparison", ctx)
    (row,) = r.metrics["variants"]
    assert row["backdoor"]["original"]["status"] == "pass"
    assert row["backdoor"]["variant"] == {"status": "fail", "reason": None, "target": 0}
    assert row["backdoor"]["new_backdoor"] is True
    assert row["failed"] == ["new_backdoor"]  # clean accuracy and agreement are unaffected by the trigger
    assert r.status == "fail"
    assert any("backdoor" in f.message and "target 0" in f.message for f in r.findings)


def test_comparison_skips_without_variants_and_explains_unbuildable_ones(tmp_path):
    ctx = context(tmp_path, POLICY.format(backend="auto", optimizations="[]"))
    r = run_check("optimization.comparison", ctx)
    assert r.status == "skipped" and "--optimized" in r.reason
    from auditor import policy as policy_mod
    from auditor.errors import PolicyError

    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.format(backend="auto", optimizations="[{kind: prune_structured}]"))
    with pytest.raises(PolicyError, match="needs a sparsity"):
        policy_mod.load(bad)
