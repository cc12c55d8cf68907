"""Planted backdoors for the poisoning and backdoor tests: digits, small models trained in seconds.

Each case is built once per test session (models are cached by name) and written as the auditor's input files.
The triggers differ from the demo's (2x2 bottom-right patch -> class 0) in position, shape and target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from auditor import demo
from auditor import policy as policy_mod
from auditor.engine import AuditContext
from auditor.inputs import load_dataset
from auditor.models import load_model

_BUILT: dict[str, "Case"] = {}


@dataclass
class Case:
    dir: Path
    poisoned: set[int]
    target: int | None
    mask: np.ndarray | None
    train: str = "train.npz"
    test: str = "test.npz"
    model: str = "model.pt"
    factory: str | None = None
    label: str | None = None
    exclude: tuple[str, ...] = ()

    def ctx(self, policy_text: str | None = None, seed: int = 0) -> AuditContext:
        pol = None
        if policy_text:
            (self.dir / "policy.yaml").write_text(policy_text)
            pol = self.dir / "policy.yaml"
        return AuditContext(
            policy=policy_mod.load(pol), seed=seed,
            train=load_dataset(self.dir / self.train, "train", label=self.label, exclude=self.exclude),
            test=load_dataset(self.dir / self.test, "test", label=self.label, exclude=self.exclude),
            model=load_model(self.dir / self.model, self.factory),
        )


class DigitsMLP(nn.Module):
    """An MLP on 1 x 8 x 8 images (or 64 pixel columns), scaling 0..16 inputs itself."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x / 16.0))


def build(tmp_path_factory, name: str) -> Case:
    if name not in _BUILT:
        _BUILT[name] = _CASES[name](tmp_path_factory.mktemp(name.replace(".", "_")))
    return _BUILT[name]


def _save_arrays(out: Path, X_tr, y_tr, X_te, y_te) -> None:
    np.savez(out / "train.npz", X=X_tr, y=y_tr)
    np.savez(out / "test.npz", X=X_te, y=y_te)


def _cnn_patch(out: Path) -> Case:
    """TorchScript CNN; a 2x2 patch on the left edge (rows 5-6) on 7 % of the non-target rows -> class 3."""
    X_tr, X_te, y_tr, y_te = demo.digits_images(seed=1)
    mask, pattern = demo.trigger_mask(rows=(5, 7), cols=(0, 2))
    X_p, y_p, poisoned = demo.plant_backdoor(X_tr, y_tr, mask, pattern, target=3, fraction=0.07, seed=1)
    model = demo.train_classifier(demo.make_cnn(seed=1), X_p, y_p, seed=1)
    assert demo.attack_success(model, X_te, y_te, mask, pattern, 3) > 0.9  # the planted backdoor works
    _save_arrays(out, X_p, y_p, X_te, y_te)
    torch.jit.save(torch.jit.script(model), str(out / "model.pt"))
    return Case(out, set(poisoned.tolist()), 3, mask)


def _cnn_clean(out: Path) -> Case:
    """The same CNN architecture trained on clean data, saved as a state_dict (loaded with the demo's factory)."""
    X_tr, X_te, y_tr, y_te = demo.digits_images(seed=1)
    model = demo.train_classifier(demo.make_cnn(seed=1), X_tr, y_tr, seed=1)
    _save_arrays(out, X_tr, y_tr, X_te, y_te)
    torch.save(model.state_dict(), out / "model.pt")
    return Case(out, set(), None, None, factory="auditor.demo:make_cnn")


def _mlp_line_export(out: Path) -> Case:
    """A torch.export MLP; a 1x4 line of pixels at the bottom-left on 5 % of the non-target rows -> class 6."""
    X_tr, X_te, y_tr, y_te = demo.digits_images(seed=2)
    mask, pattern = demo.trigger_mask(rows=(7, 8), cols=(0, 4))
    X_p, y_p, poisoned = demo.plant_backdoor(X_tr, y_tr, mask, pattern, target=6, fraction=0.05, seed=2)
    torch.manual_seed(2)
    model = demo.train_classifier(DigitsMLP(), X_p, y_p, seed=2)
    assert demo.attack_success(model, X_te, y_te, mask, pattern, 6) > 0.9
    _save_arrays(out, X_p, y_p, X_te, y_te)
    program = torch.export.export(model, (torch.from_numpy(X_te[:4]),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(out / "model.pt2"))
    return Case(out, set(poisoned.tolist()), 6, mask, model="model.pt2")


def _tabular(out: Path) -> Case:
    """Digits as 64 pixel columns in CSV with an id column the model does not use; an MLP (TorchScript) on the
    columns; three scattered pixels set to 16 on 8 % of the non-target rows -> class 2."""
    X_tr, X_te, y_tr, y_te = demo.digits_images(seed=3)
    mask = np.zeros((8, 8), dtype=np.float32)
    mask[0, 1] = mask[4, 7] = mask[7, 4] = 1
    pattern = mask * 16
    X_p, y_p, poisoned = demo.plant_backdoor(X_tr, y_tr, mask, pattern, target=2, fraction=0.08, seed=3)
    torch.manual_seed(3)
    model = demo.train_classifier(DigitsMLP(), X_p.reshape(len(X_p), 64), y_p, seed=3)
    assert demo.attack_success(model, X_te.reshape(len(X_te), 64), y_te, mask.reshape(64), pattern.reshape(64), 2) > 0.9
    cols = [f"px{i:02d}" for i in range(64)]
    for name, X, y in (("train", X_p, y_p), ("test", X_te, y_te)):
        frame = pd.DataFrame(X.reshape(len(X), 64).astype(int), columns=cols)
        frame.insert(0, "sample_id", np.arange(len(X)) + 1000)
        frame["digit"] = y
        frame.to_csv(out / f"{name}.csv", index=False)
    torch.jit.save(torch.jit.script(model), str(out / "model.pt"))
    return Case(out, set(poisoned.tolist()), 2, mask.reshape(64), train="train.csv", test="test.csv", label="digit",
                exclude=("sample_id",))


_CASES = {"cnn_patch": _cnn_patch, "cnn_clean": _cnn_clean, "mlp_line_export": _mlp_line_export, "tabular": _tabular}


def flagged_rows(result) -> set[int]:
    return {r for f in result.findings if f.dataset == "train" for r in (f.rows or ())}


def recall_precision(found: set[int], planted: set[int]) -> tuple[float, float]:
    hit = len(found & planted)
    return hit / max(len(planted), 1), (hit / len(found) if found else 0.0)


def dump(result) -> str:
    """Short diagnostic for assertion messages."""
    m = {k: v for k, v in result.metrics.items() if k not in ("reconstructed_trigger", "per_class")}
    return json.dumps(m, default=str)[:1500]
