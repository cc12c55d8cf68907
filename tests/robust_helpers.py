"""Shared by the robustness and optimization tests: scikit-learn's digits as 1x8x8 images in [0, 1] and a
small CNN trained on them for a few epochs (trained once per test session, seeded)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from auditor import policy as policy_mod
from auditor.engine import AuditContext
from auditor.inputs import load_dataset
from auditor.models import load_model

FACTORY = "tests.robust_helpers:build_cnn"


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_cnn() -> DigitsCNN:
    return DigitsCNN()


@functools.cache
def digits_images(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return tuple(train_test_split(X, d.target.astype(np.int64), test_size=0.25, stratify=d.target, random_state=seed))


@functools.cache
def _trained_state(epochs: int = 8) -> dict:
    X_tr, _, y_tr, _ = digits_images()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        x, y = torch.from_numpy(X_tr), torch.from_numpy(y_tr)
        gen = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), 64):
                idx = order[start : start + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trained_cnn() -> DigitsCNN:
    """A fresh copy of the trained CNN (tests may modify it)."""
    model = DigitsCNN()
    model.load_state_dict(_trained_state())
    return model.eval()


def write_inputs(folder: Path) -> dict[str, Path]:
    X_tr, X_te, y_tr, y_te = digits_images()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"train": folder / "train.npz", "test": folder / "test.npz", "model": folder / "cnn.pt"}
    np.savez(paths["train"], X=X_tr, y=y_tr)
    np.savez(paths["test"], X=X_te, y=y_te)
    torch.save(trained_cnn().state_dict(), paths["model"])
    return paths


def context(folder: Path, policy_text: str, optimized: Path | None = None, train: bool = False) -> AuditContext:
    """An audit context over the digits images and the trained CNN (state_dict + factory), as the CLI builds it."""
    paths = write_inputs(folder)
    policy_path = folder / "policy.yaml"
    policy_path.write_text(policy_text)
    return AuditContext(
        policy=policy_mod.load(policy_path),
        seed=0,
        train=load_dataset(paths["train"], "train") if train else None,
        test=load_dataset(paths["test"], "test"),
        model=load_model(paths["model"], factory=FACTORY),
        optimized=load_model(optimized, factory=FACTORY) if optimized is not None else None,
    )
