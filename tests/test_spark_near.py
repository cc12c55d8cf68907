"""leakage.near_duplicates on Spark against the pandas engine: the same planted near-copies flagged (with the
same training rows and distances), exact copies left to the exact check, clean data passing, text too."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from auditor import policy as policy_mod
from tests.conftest import both_engines, flagged, write_policy
from tests.test_leakage import edited_text_copies, planted_tables

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
    """8 numeric columns and two categoricals (pandas searches exactly with KD-trees, Spark with E2LSH plus an
    exact search of the rows whose second neighbour lies beyond the radius) in many small file splits: the
    same rows, training rows, distances, ratios, p-values and metrics as the exact search."""
    train, test, exact, near = planted_tables(20, n_train=600, n_test=200, n_exact=10, n_near=20)
    pd_r, sp_r = both_engines(CHECK, _policy(tmp_path), *_files(tmp_path, train, test), label="label")
    assert sp_r.status == pd_r.status == "fail", sp_r.reason
    assert flagged(sp_r) == flagged(pd_r) == {"test": sorted(near)}
    ms, mp = _matches(sp_r), _matches(pd_r)
    assert {t: m[1] for t, m in ms.items()} == near, "each near-copy is paired with its training row"
    for t in near:  # distance, second-over-first ratio and p-value as the exact search has them
        assert ms[t][2:] == pytest.approx(mp[t][2:], rel=1e-2), (ms[t], mp[t])
    assert sp_r.metrics["search"] == "e2lsh" and pd_r.metrics["search"] == "exact"
    assert sp_r.metrics["exact_copies_excluded"] == pd_r.metrics["exact_copies_excluded"] == len(exact)
    assert sp_r.metrics["rows_searched_exactly"] >= len(near), "the near-copies' second neighbours lie beyond the radius"
    search = {"search", "pairs_compared"} | {k for k in sp_r.metrics if k.startswith(("lsh_", "rows_"))}
    assert set(sp_r.metrics) - search == set(pd_r.metrics) - search
    for key in set(pd_r.metrics) - search:
        assert _same(sp_r.metrics[key], pd_r.metrics[key]), (key, sp_r.metrics[key], pd_r.metrics[key])
    assert sp_r.metrics["lsh_recall_at_radius"] >= 0.99


@pytest.mark.parametrize("budget", [0, 50_000])
def test_the_pandas_e2lsh_path_is_reproduced(tmp_path, budget):
    """Wider than 12 dims with a small exact-search budget, the pandas engine uses its E2LSH grid; Spark draws
    the same grid. Without budget both keep the fixed-radius rule; with one, both search the same rows beyond
    the radius exactly. Every metric and match agrees (missing numbers, a categorical, repeated rows)."""
    rng = np.random.default_rng(3)
    n_tr, n_te, dims = 1000, 300, 14
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
    pd_r, sp_r = both_engines(CHECK, _policy(tmp_path, exact_pairs=budget), *_files(tmp_path, train, test),
                              label="label")
    assert pd_r.metrics["search"] == sp_r.metrics["search"] == "e2lsh"
    assert sp_r.status == pd_r.status == "fail"
    assert flagged(sp_r) == flagged(pd_r) == {"test": sorted(rows.tolist())}
    assert sp_r.metrics["distinct_train_rows"] == n_tr
    beyond = pd_r.metrics["rows_second_neighbour_beyond_radius"]
    assert beyond >= len(rows), "the near-copies' second neighbours lie beyond the radius"
    assert pd_r.metrics["rows_searched_exactly"] == (beyond if budget else 0)
    assert set(sp_r.metrics) == set(pd_r.metrics)
    for key, value in pd_r.metrics.items():
        assert _same(sp_r.metrics[key], value), (key, sp_r.metrics[key], value)
    assert _same(sp_r.findings[0].details["matches"], pd_r.findings[0].details["matches"])


def test_a_clean_test_set_is_not_flagged(tmp_path):
    train, test, _, _ = planted_tables(21, n_train=1000, n_test=300, n_exact=0, n_near=0, leak=False)
    pd_r, sp_r = both_engines(CHECK, _policy(tmp_path), *_files(tmp_path, train, test), label="label")
    assert sp_r.status == pd_r.status == "pass", sp_r.reason
    assert flagged(sp_r) == flagged(pd_r) == {}
    assert sp_r.metrics["near_duplicate_rows"] == 0 and sp_r.metrics["exact_copies_excluded"] == 0
    assert sp_r.metrics["unflagged_min_p_value"] > sp_r.metrics["p_value_cutoff"]


def test_text_near_copies_match_the_pandas_engine(tmp_path):
    """Edited copies (a word changed, case and spacing changed) flagged by Jaccard on both engines; an exact
    copy is left to the exact check."""
    rng = np.random.default_rng(22)
    docs, test, rows, src = edited_text_copies(rng, 800, 200, 15, pool=199)
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


def test_canonical_values_agree_with_the_pandas_engine(spark):
    """The value-level canonical forms that decide exact copies and categorical blocks, on awkward strings."""
    from auditor.checks import leakage_hashing as lh
    from auditor.checks.leakage_neighbours_spark import canonical

    texts = [" 1 ", "1.", ".5", "-0", "nan", "-NaN", "", "   ", "a  b", " a\tb ", "1d", "0x10", "inf", "-Infinity",
             "1e5", "abc", None, "x\u00a0", "\u2003y "]
    got = [r[0] for r in spark.createDataFrame([(t,) for t in texts], "s string")
           .selectExpr(f"{canonical('s', 'string')} AS c").collect()]
    ref = lh.canonical(pd.Series(texts, dtype=object))
    assert [c["k"] for c in got] == ref.kind.tolist()
    assert all(c["n"] == n for c, k, n in zip(got, ref.kind, ref.num) if k == 1)
    assert [c["t"] for c, k in zip(got, ref.kind) if k == 2] == [t for t, k in zip(ref.text, ref.kind) if k == 2]
    nums = [1.0, -0.0, float("nan"), None, 2.5]
    got = [r[0] for r in spark.createDataFrame([(v,) for v in nums], "v double")
           .selectExpr(f"{canonical('v', 'double')} AS c").collect()]
    assert [(c["k"], c["n"]) for c in got] == [(1, 1.0), (1, 0.0), (0, 0.0), (0, 0.0), (1, 2.5)]


def test_exact_quartiles_equal_numpys(spark):
    """The scale statistics (np.percentile 25 / 75, np.median) exactly, by brackets and by the sort fallback:
    continuous, heavily tied, tiny and heavy-tailed columns with missing values."""
    from auditor.checks import leakage_neighbours_spark as L

    rng = np.random.default_rng(23)
    n = 2000
    cols = {0: rng.normal(size=n), 1: rng.integers(0, 4, n).astype(float), 2: np.r_[rng.normal(size=6), [np.nan] * (n - 6)],
            3: np.r_[[5.0], [np.nan] * (n - 1)], 4: np.r_[rng.normal(size=7), [np.inf] * (n - 7)],
            5: np.where(rng.random(n) < 0.25, np.nan, rng.lognormal(sigma=3, size=n))}
    frame = spark.createDataFrame(pd.DataFrame({f"v{i}": v for i, v in cols.items()}))
    finite = {i: v[np.isfinite(v)] for i, v in cols.items()}
    want = {i: (float(np.percentile(f, 25)), float(np.median(f)), float(np.percentile(f, 75))) for i, f in finite.items()}
    counts = {i: len(f) for i, f in finite.items()}
    pct = ", ".join(L.dlit(x) for x in L.bracket_percentages(n))
    approx = frame.selectExpr(*[f"percentile_approx(CASE WHEN {L.finite(f'v{i}')} THEN v{i} END, array({pct}), "
                                f"{L.QUANTILE_ACCURACY}) AS a{i}" for i in cols]).first()
    got = L.bracketed_quartiles(frame, counts, {i: list(approx[f"a{i}"]) for i in cols})
    assert {0, 1, 5} <= set(got), "the brackets hold the needed ranks of the larger columns"
    assert all(got[i] == want[i] for i in got)
    values = frame.selectExpr("inline(array({}))".format(
        ", ".join(f"named_struct('ci', {i}, 'v', v{i})" for i in cols))).where(L.finite("v"))
    cache = L._Cached()
    try:
        assert L.sorted_quartiles(values, counts, cache) == want
    finally:
        cache.release()
