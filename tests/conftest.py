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


@pytest.fixture(scope="session")
def spark():
    """The process's SparkSession on local[2] (PySpark and Java are installed by `make test`)."""
    from auditor import spark as spark_mod

    return spark_mod.session(spark_mod.SparkSettings(master="local[2]", driver_memory="1g"))


@pytest.fixture
def small_splits(spark):
    """Spark cuts files into many small splits (as on big data), so row numbering crosses split boundaries."""
    keys = {"spark.sql.files.maxPartitionBytes": "4096", "spark.sql.files.openCostInBytes": "0"}
    before = {k: spark.conf.get(k, None) for k in keys}
    for k, v in keys.items():
        spark.conf.set(k, v)
    yield spark
    for k, v in before.items():
        spark.conf.set(k, v) if v is not None else spark.conf.unset(k)


def both_engines(check_id: str, policy, train=None, test=None, label=None, exclude=(), seed=0, **ctx_kwargs):
    """Run one check on the pandas engine and on Spark over the same files: (pandas result, spark result).
    ``policy`` is a loaded Policy (e.g. ``auditor.policy.load(path)``); ``ctx_kwargs`` go to AuditContext."""
    from auditor import spark as spark_mod
    from auditor.engine import AuditContext, run_check
    from auditor.inputs import load_dataset

    results = []
    for engine in ("pandas", "spark"):
        loaded = {}
        for name, path in (("train", train), ("test", test)):
            if path is None:
                continue
            if engine == "pandas":
                loaded[name] = load_dataset(path, name, label=label, exclude=exclude)
            else:
                loaded[name] = spark_mod.load_dataset(path, name, label=label, exclude=exclude)
            label = label or loaded[name].label
        ctx = AuditContext(policy=policy, seed=seed, engine=engine, **loaded, **ctx_kwargs)
        results.append(run_check(check_id, ctx))
    return results[0], results[1]


def flagged(result) -> dict:
    """{dataset: sorted rows} over a result's findings (several findings on one dataset are merged)."""
    out: dict = {}
    for f in result.findings:
        if f.rows is not None:
            out.setdefault(f.dataset, set()).update(f.rows)
    return {k: sorted(v) for k, v in out.items()}
