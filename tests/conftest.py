"""Shared fixtures: small real data (scikit-learn's digits) written as the auditor's input files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parent.parent


def digits_frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X_tr, X_te, y_tr, y_te = train_test_split(d.data, d.target, test_size=0.25, stratify=d.target, random_state=seed)
    cols = [f"p{i:02d}" for i in range(64)]
    train = pd.DataFrame(X_tr.astype(int), columns=cols).assign(label=y_tr)
    test = pd.DataFrame(X_te.astype(int), columns=cols).assign(label=y_te)
    return train, test


@pytest.fixture(scope="session")
def digits_csv(tmp_path_factory) -> tuple[Path, Path]:
    """A clean digits train/test split as CSV files."""
    out = tmp_path_factory.mktemp("digits")
    train, test = digits_frames()
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    return out / "train.csv", out / "test.csv"


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
