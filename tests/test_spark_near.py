"""leakage.near_duplicates on Spark against the pandas engine: the same planted near-copies flagged (with the
same training rows and distances), exact copies left to the exact check, clean data passing, text too."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from auditor import policy as policy_mod
from tests.conftest import both_engines, flagged, write_policy
from tests.test_leakage import _words, planted_tables

pytest.importorskip("pyspark")

CHECK = "leakage.near_duplicates"


def _files(tmp_path, train: pd.DataFrame, test: pd.DataFrame):
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "test.csv"


def _policy(tmp_path, **params):
    if not params:
        return policy_mod.load(None)
    body = ", ".join(f"{k}: {v}" for k, v in params.items())
    return policy_mod.load(write_policy(tmp_path / "p.yaml", f"name: t\nextends: nist-ai-rmf\nchecks:\n  {CHECK}:\n"
                                                          f"    params: {{{body}}}\n"))


def _matches(result) -> dict[int, list]:
    return {m[0]: m for f in result.findings for m in (f.details or {}).get("matches", [])}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_planted_near_copies_match_the_pandas_engine(tmp_path, small_splits):
    """8 numeric columns and two categoricals (pandas searches exactly with KD-trees, Spark with E2LSH)
    in many small file splits: the same rows, training rows, distances and null model."""
    train, test, exact, near = planted_tables(20, n_train=800, n_test=250, n_exact=10, n_near=20)
    pd_r, sp_r = both_engines(CHECK, _policy(tmp_path), *_files(tmp_path, train, test), label="label")
    assert sp_r.status == pd_r.status == "fail", sp_r.reason
    assert flagged(sp_r) == flagged(pd_r) == {"test": sorted(near)}
    ms, mp = _matches(sp_r), _matches(pd_r)
    assert {t: m[1] for t, m in ms.items()} == near, "each near-copy is paired with its training row"
    for t in near:
        assert ms[t][2] == pytest.approx(mp[t][2], rel=1e-6), "the same exact distance"
    assert sp_r.metrics["search"] == "e2lsh" and pd_r.metrics["search"] == "exact"
    assert sp_r.metrics["exact_copies_excluded"] == pd_r.metrics["exact_copies_excluded"] == len(exact)
    for key in ("numeric_columns", "block_columns", "space_dims", "distinct_train_rows", "reference_sample_rows",
                "reference_nn_distance_q25", "reference_nn_distance_q75", "weibull_shape", "twonn_dimension",
                "distance_guard", "near_duplicate_rows", "near_duplicate_fraction"):
        assert _same(sp_r.metrics[key], pd_r.metrics[key]), (key, sp_r.metrics[key], pd_r.metrics[key])
    assert sp_r.metrics["lsh_recall_at_radius"] >= 0.99


def test_the_pandas_e2lsh_path_is_reproduced(tmp_path):
    """Wider than 12 dims with the exact budget at 0, the pandas engine uses its E2LSH grid; Spark draws the
    same grid, so every metric and match agrees (missing numbers, a categorical, repeated training rows)."""
    rng = np.random.default_rng(3)
    n_tr, n_te, dims = 1500, 400, 14
    full = pd.DataFrame({f"f{i}": rng.normal(i, 1 + i, n_tr + n_te) for i in range(dims)})
    full["grp"] = rng.choice(["a", "b"], n_tr + n_te)
    full.loc[rng.choice(n_tr + n_te, 60, replace=False), "f3"] = np.nan
    full["label"] = rng.integers(0, 2, n_tr + n_te)
    train, test = full.iloc[:n_tr].reset_index(drop=True), full.iloc[n_tr:].reset_index(drop=True)
    train = pd.concat([train, train.iloc[:300]], ignore_index=True)  # repeated rows are kept once
    rows, src = rng.choice(n_te, 20, replace=False), rng.choice(n_tr, 20, replace=False)
    for t, s in zip(rows, src):
        copy = train.iloc[s].copy()
        for c in [f"f{i}" for i in range(dims)]:
            copy[c] = copy[c] + rng.normal(scale=1e-3 * train[c].std())
        test.iloc[t] = copy
    pd_r, sp_r = both_engines(CHECK, _policy(tmp_path, exact_pairs=0), *_files(tmp_path, train, test), label="label")
    assert pd_r.metrics["search"] == sp_r.metrics["search"] == "e2lsh"
    assert sp_r.status == pd_r.status == "fail"
    assert flagged(sp_r) == flagged(pd_r) == {"test": sorted(rows.tolist())}
    assert sp_r.metrics["distinct_train_rows"] == n_tr
    assert set(sp_r.metrics) == set(pd_r.metrics)
    for key, value in pd_r.metrics.items():
        assert _same(sp_r.metrics[key], value), (key, sp_r.metrics[key], value)
    assert _same(sp_r.findings[0].details["matches"], pd_r.findings[0].details["matches"])


def test_a_clean_test_set_is_not_flagged(tmp_path):
    train, test, _, _ = planted_tables(21, n_train=1500, n_test=400, n_exact=0, n_near=0, leak=False)
    pd_r, sp_r = both_engines(CHECK, _policy(tmp_path), *_files(tmp_path, train, test), label="label")
    assert sp_r.status == pd_r.status == "pass", sp_r.reason
    assert flagged(sp_r) == flagged(pd_r) == {}
    assert sp_r.metrics["near_duplicate_rows"] == 0 and sp_r.metrics["exact_copies_excluded"] == 0
    assert sp_r.metrics["unflagged_min_p_value"] > sp_r.metrics["p_value_cutoff"]


def test_text_near_copies_match_the_pandas_engine(tmp_path):
    """Edited copies (a word changed, case and spacing changed) flagged by Jaccard on both engines; an exact
    copy is left to the exact check."""
    rng = np.random.default_rng(22)
    words, p = _words(rng)
    docs = [" ".join(rng.choice(words, rng.integers(40, 90), p=p)) for _ in range(800)]
    test = [" ".join(rng.choice(words, rng.integers(40, 90), p=p)) for _ in range(200)]
    rows, src = rng.choice(199, 15, replace=False), rng.choice(800, 15, replace=False)
    for t, s in zip(rows, src):
        toks = docs[s].split()
        toks[rng.integers(len(toks))] = "edited"
        test[t] = "  ".join(toks).upper()
    test[199] = docs[3]
    train_f = pd.DataFrame({"body": docs, "label": rng.integers(0, 2, 800)})
    test_f = pd.DataFrame({"body": test, "label": rng.integers(0, 2, 200)})
    pd_r, sp_r = both_engines(CHECK, _policy(tmp_path), *_files(tmp_path, train_f, test_f), label="label")
    assert sp_r.metrics["mode"] == pd_r.metrics["mode"] == "text"
    assert sp_r.status == pd_r.status == "fail"
    assert flagged(sp_r) == flagged(pd_r) == {"test": sorted(rows.tolist())}
    assert {t: m[1] for t, m in _matches(sp_r).items()} == dict(zip(rows.tolist(), src.tolist()))
    assert sp_r.metrics == pd_r.metrics and sp_r.metrics["exact_copies_excluded"] == 1
    assert _same(sp_r.findings[0].details["matches"], pd_r.findings[0].details["matches"])
