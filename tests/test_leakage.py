"""Leakage checks on planted tables, arrays and text: what was planted is found, clean data passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor import policy as policy_mod
from auditor.checks import leakage_hashing as lh
from auditor.checks import leakage_neighbours as nb
from auditor.engine import AuditContext, run_check
from auditor.inputs import load_dataset
from tests.conftest import digits_frames, write_policy

NUMERIC = [f"num{i}" for i in range(6)]


def _table(n: int, rng: np.random.Generator, leak: bool) -> pd.DataFrame:
    """Numeric columns of different scales, an integer column, two categoricals, a binary label."""
    df = pd.DataFrame({c: rng.normal(loc=3 * i, scale=0.5 + 2 * i, size=n) for i, c in enumerate(NUMERIC)})
    df["count"] = rng.integers(0, 200, n)
    df["colour"] = rng.choice(["red", "green", "blue", "teal"], n)
    df["city"] = rng.choice([f"city {i}" for i in range(10)], n)
    score = df["num0"] - 0.2 * df["num1"] + (df["colour"] == "red") + rng.normal(size=n)
    df["label"] = (score > 0.5).astype(int)
    if leak:  # the label plus noise: target leakage
        df["audit_flag"] = df["label"] + rng.normal(scale=0.15, size=n)
    return df


def planted_tables(seed: int, n_train=4000, n_test=1200, n_exact=50, n_near=50, leak=True):
    """(train, test, {test row: train row} exact copies, {test row: train row} near copies)."""
    rng = np.random.default_rng(seed)
    full = _table(n_train + n_test, rng, leak)
    train = full.iloc[:n_train].reset_index(drop=True)
    test = full.iloc[n_train:].reset_index(drop=True)
    if not n_exact + n_near:
        return train, test, {}, {}
    rows = rng.choice(n_test, n_exact + n_near, replace=False)
    src = rng.choice(n_train, n_exact + n_near, replace=False)
    exact = dict(zip(rows[:n_exact].tolist(), src[:n_exact].tolist()))
    near = dict(zip(rows[n_exact:].tolist(), src[n_exact:].tolist()))
    test = test.astype({"count": float})
    for t, s in exact.items():
        test.iloc[t] = train.iloc[s]
    numeric = NUMERIC + ["count"] + (["audit_flag"] if leak else [])
    for t, s in near.items():  # noise of about 1e-3 of each feature's scale; categoricals kept
        copy = train.iloc[s].copy()
        for c in numeric:
            copy[c] = float(copy[c]) + rng.normal(scale=1e-3 * train[c].std())
        test.iloc[t] = copy
    return train, test, exact, near


def _ctx(tmp_path, train, test, policy_text: str | None = None, label="label", fmt="csv"):
    paths = {}
    for name, frame in (("train", train), ("test", test)):
        paths[name] = tmp_path / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(paths[name], index=False)
        else:
            frame.to_parquet(paths[name], index=False)
    pol = policy_mod.load(write_policy(tmp_path / "p.yaml", policy_text) if policy_text else None)
    return AuditContext(policy=pol, seed=0, train=load_dataset(paths["train"], "train", label=label),
                        test=load_dataset(paths["test"], "test", label=label))


def _npz_ctx(tmp_path, X_tr, y_tr, X_te, y_te, policy_text=None):
    np.savez(tmp_path / "train.npz", X=X_tr, y=y_tr)
    np.savez(tmp_path / "test.npz", X=X_te, y=y_te)
    pol = policy_mod.load(write_policy(tmp_path / "p.yaml", policy_text) if policy_text else None)
    return AuditContext(policy=pol, seed=0, train=load_dataset(tmp_path / "train.npz", "train"),
                        test=load_dataset(tmp_path / "test.npz", "test"))


def _policy(check: str, **params) -> str:
    body = ", ".join(f"{k}: {v!r}" if not isinstance(v, str) else f"{k}: '{v}'" for k, v in params.items())
    return f"name: t\nextends: nist-ai-rmf\nchecks:\n  {check}:\n    params: {{{body}}}\n"


def _rows(result, dataset="test"):
    return {r for f in result.findings if f.dataset == dataset for r in (f.rows or ())}


def _pairs(result) -> dict[int, int]:
    return {int(m[0]): int(m[1]) for f in result.findings if f.details and "matches" in f.details
            for m in f.details["matches"]}


def _scores(found: set[int], planted: set[int]) -> tuple[float, float]:
    hit = len(found & planted)
    return hit / len(planted), hit / max(len(found), 1)


# ------------------------------------------------------------------ the planted table


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_table_exact_near_and_target(tmp_path, seed):
    train, test, exact, near = planted_tables(seed)
    ctx = _ctx(tmp_path, train, test)

    r = run_check("leakage.exact_duplicates", ctx)
    assert r.status == "fail"
    assert _rows(r) == set(exact), "every exact copy, and nothing else"
    assert _pairs(r) == exact, "each copy is paired with the training row it copies"
    assert r.metrics["leaked_rows"] == len(exact) and r.metrics["max_fraction"] == 0.0

    r = run_check("leakage.near_duplicates", ctx)
    assert r.status == "fail"
    found = _rows(r)
    recall, precision = _scores(found, set(near))
    assert recall >= 0.95 and precision >= 0.9, (recall, precision)
    assert not found & set(exact), "exact copies belong to the exact check"
    pairs = _pairs(r)
    assert all(pairs[t] == near[t] for t in found & set(near))
    assert r.metrics["search"] == "exact" and r.metrics["exact_copies_excluded"] == len(exact)
    for key in ("ratio_threshold", "distance_threshold", "distance_guard", "twonn_dimension", "false_alarm"):
        assert key in r.metrics
    assert sorted(r.metrics["block_columns"]) == ["city", "colour"]

    r = run_check("leakage.target", ctx)
    assert r.status == "fail"
    assert r.metrics["leaky_features"] == ["audit_flag"]
    assert "audit_flag" in r.findings[0].message
    assert r.metrics["per_feature"]["audit_flag"]["train"] >= 0.8 > r.metrics["per_feature"]["num0"]["train"]


@pytest.mark.parametrize("seed", [2, 3])
def test_clean_table_passes_all_three(tmp_path, seed):
    train, test, _, _ = planted_tables(seed, n_exact=0, n_near=0, leak=False)
    ctx = _ctx(tmp_path, train, test)
    for check_id in ("leakage.exact_duplicates", "leakage.near_duplicates", "leakage.target"):
        r = run_check(check_id, ctx)
        assert r.status == "pass", (check_id, [f.message for f in r.findings])
        assert r.findings == ()


def test_planted_table_from_parquet_with_label_included(tmp_path):
    train, test, exact, _ = planted_tables(4, n_near=0, leak=False)
    flip = list(exact)[:10]
    test.loc[flip, "label"] = 1 - test.loc[flip, "label"]
    ctx = _ctx(tmp_path, train, test, fmt="parquet")
    r = run_check("leakage.exact_duplicates", ctx)
    assert _rows(r) == set(exact)
    assert r.metrics["leaked_rows_same_label"] == len(exact) - len(flip)
    ctx = _ctx(tmp_path, train, test, _policy("leakage.exact_duplicates", include_label=True), fmt="parquet")
    r = run_check("leakage.exact_duplicates", ctx)
    assert _rows(r) == set(exact) - set(flip)


# ------------------------------------------------------------------ exact: canonical values


def test_exact_matching_is_type_stable(tmp_path):
    train = pd.DataFrame({"a": [1, 2, 3, 4, 5], "s": ["x  y", "p", "q", None, "r"], "f": [0.5, 1.0, np.nan, 2.0, -0.0],
                          "label": [0, 1, 0, 1, 0]})
    # the same values written differently: 1 -> "1.0", whitespace, NaN, -0.0 vs 0
    test = pd.DataFrame({"a": ["1.0", " 2", "3", "4", "6"], "s": [" x y ", "p", "q", "", "r"],
                         "f": ["0.5", "1", "", "2", "0"], "label": [1, 1, 0, 1, 0]})
    r = run_check("leakage.exact_duplicates", _ctx(tmp_path, train, test))
    assert _pairs(r) == {0: 0, 1: 1, 2: 2, 3: 3}
    assert r.metrics["leaked_rows_same_label"] == 3


def test_canonical_values_and_hashes_agree_across_types():
    forms = [pd.Series([1, 2, None], dtype="Int64"), pd.Series(["1", " 2.0 ", ""]), pd.Series([1.0, 2.0, np.nan]),
             pd.Series([True, 2, None], dtype=object), pd.Series(pd.Categorical(["1", "2", None]))]
    hashes = [lh.column_hashes(s) for s in forms]
    for h in hashes[1:]:
        assert np.array_equal(h, hashes[0])
    a, b = lh.canonical(pd.Series(["a  b", "c"])), lh.canonical(pd.Series([" a b", "d"]))
    assert a.equals(b).tolist() == [True, False]
    assert lh.column_hashes(pd.Series([2**60 + 1]))[0] != lh.column_hashes(pd.Series([2**60]))[0]
    f32 = pd.Series(np.array([0.1], dtype=np.float32))
    assert lh.column_hashes(f32, float32=True)[0] == lh.column_hashes(pd.Series(["0.1"]), float32=True)[0]


def test_chunked_file_path_matches_in_memory_check(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    train, test, exact, _ = planted_tables(5, n_near=0, leak=False)
    pq.write_table(pa.Table.from_pandas(train, preserve_index=False), tmp_path / "train.parquet", row_group_size=500)
    test_csv = test.copy()
    test_csv["count"] = test_csv["count"].map(lambda v: f" {v:.1f}")  # numbers as padded text in the CSV
    test_csv.to_csv(tmp_path / "test.csv", index=False)
    m = lh.exact_leakage_files(tmp_path / "train.parquet", tmp_path / "test.csv", exclude=["label"], batch_rows=300)
    assert dict(zip(m.test_rows.tolist(), m.train_rows.tolist())) == exact
    batches = list(lh.iter_file_batches(tmp_path / "train.parquet", ["num0"], batch_rows=300))
    assert len(batches) > 1 and sum(len(b) for b in batches) == len(train)


# ------------------------------------------------------------------ near duplicates: thresholds


def test_threshold_holds_when_most_training_rows_are_duplicated(tmp_path):
    train, test, exact, near = planted_tables(6, n_exact=0, leak=False)
    base = run_check("leakage.near_duplicates", _ctx(tmp_path, train, test))
    rng = np.random.default_rng(6)
    dup = pd.concat([train, train.iloc[rng.choice(len(train), 3 * len(train))]], ignore_index=True)  # 75 % repeats
    r = run_check("leakage.near_duplicates", _ctx(tmp_path, dup, test))
    assert r.metrics["distinct_train_rows"] == len(train)
    for key in ("reference_nn_distance_q25", "ratio_threshold"):
        assert r.metrics[key] == pytest.approx(base.metrics[key], rel=0.2), key
    recall, precision = _scores(_rows(r), set(near))
    assert recall >= 0.95 and precision >= 0.9


def test_dense_low_dimensional_data_is_not_flagged(tmp_path):
    rng = np.random.default_rng(7)
    n = 40_000
    frame = pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n), "label": rng.integers(0, 2, n)})
    ctx = _ctx(tmp_path, frame.iloc[:30_000], frame.iloc[30_000:].reset_index(drop=True))
    r = run_check("leakage.near_duplicates", ctx)
    # by design a clean test set has about a 1 % chance (false_alarm) of any flag
    assert r.metrics["near_duplicate_rows"] <= 2
    assert r.metrics["twonn_dimension"] == pytest.approx(2.0, abs=0.3)
    # a threshold relative to the median nearest-neighbour distance (cleanlab's 0.13 x median) flags ~1 %
    from sklearn.neighbors import KDTree

    X = frame[["x", "y"]].to_numpy()
    d_train = KDTree(X[:30_000]).query(X[:30_000], k=2)[0][:, 1]
    d_test = KDTree(X[:30_000]).query(X[30_000:], k=1)[0][:, 0]
    assert (d_test < 0.13 * np.median(d_train)).sum() > 50


def test_e2lsh_search_agrees_with_exact_search(tmp_path):
    train, test = digits_frames()
    rng = np.random.default_rng(8)
    rows, src = rng.choice(len(test), 40, replace=False), rng.choice(len(train), 40, replace=False)
    pix = [c for c in train.columns if c != "label"]
    busy = np.flatnonzero(train[pix].std().to_numpy() >= 4)  # per-feature scaling: rarely-inked pixels are far
    for t, s in zip(rows, src):
        copy = train.loc[s, pix].to_numpy().copy()
        flip = rng.choice(busy, 2, replace=False)
        copy[flip] = copy[flip] + np.where(copy[flip] > 8, -1, 1)  # two busy pixels off by one
        test.loc[t, pix] = copy
    exact = run_check("leakage.near_duplicates", _ctx(tmp_path, train, test))
    lsh = run_check("leakage.near_duplicates", _ctx(tmp_path, train, test, _policy("leakage.near_duplicates", exact_pairs=0)))
    assert exact.metrics["search"] == "exact" and lsh.metrics["search"] == "e2lsh"
    assert lsh.metrics["lsh_recall_at_radius"] >= 0.99
    planted = set(rows.tolist())
    for r in (exact, lsh):
        recall, precision = _scores(_rows(r), planted)
        assert recall >= 0.95 and precision >= 0.9, (r.metrics["search"], recall, precision)
    assert _rows(lsh) <= _rows(exact)  # the fixed-radius search can only under-flag
    assert lsh.metrics["pairs_compared"] < exact.metrics["pairs_compared"] / 10
    # with a budget below the full search, the rows whose second neighbour lies beyond the radius (the
    # near-copies among them) are searched exactly: their verdicts and p-values become the exact search's
    refined = run_check("leakage.near_duplicates",
                        _ctx(tmp_path, train, test, _policy("leakage.near_duplicates", exact_pairs=2e5)))
    assert refined.metrics["search"] == "e2lsh" and refined.metrics["rows_searched_exactly"] >= len(planted)
    assert refined.metrics["rows_searched_exactly"] == refined.metrics["rows_second_neighbour_beyond_radius"]
    assert _rows(refined) == _rows(exact)
    by_row = {m[0]: m for f in exact.findings for m in f.details["matches"]}
    for m in (m for f in refined.findings for m in f.details["matches"]):
        assert m == by_row[m[0]]


def test_nearest_and_grid_search_agree_with_brute_force():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(3000, 16))
    Q = np.vstack([X[:50] + rng.normal(scale=1e-3, size=(50, 16)), rng.normal(size=(200, 16))])
    block = rng.integers(0, 3, len(X)).astype(np.uint64)
    qblock = np.r_[block[:50], rng.integers(0, 3, 200).astype(np.uint64)]
    D = np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    D[qblock[:, None] != block[None, :]] = np.inf
    srt = np.sort(D, axis=1)
    found = nb.nearest(Q, qblock, X, block)
    assert np.allclose(found.d1, srt[:, 0]) and np.allclose(found.d2, srt[:, 1])
    assert np.array_equal(found.i1[:50], np.arange(50))
    radius = float(np.percentile(srt[:, 0], 20))
    grid, plan = nb.grid_search(X, block, Q, qblock, radius, np.random.default_rng(0), target_recall=0.999)
    inside = srt[:, 0] <= radius
    assert np.mean(grid.i1[inside] == found.i1[inside]) >= 0.97
    assert np.all(grid.d1 >= found.d1 - 1e-12)  # never closer than the truth


# ------------------------------------------------------------------ near duplicates: arrays and text


def test_near_duplicate_images_in_npz(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.images.astype(np.float32)[:, None]  # N x 1 x 8 x 8
    rng = np.random.default_rng(10)
    order = rng.permutation(len(X))
    tr, te = order[:1300], order[1300:]
    X_te = X[te].copy()
    rows, src = rng.choice(len(te), 30, replace=False), rng.choice(len(tr), 30, replace=False)
    X_te[rows] = X[tr][src] + rng.normal(scale=0.02, size=(30, 1, 8, 8)).astype(np.float32)
    r = run_check("leakage.near_duplicates", _npz_ctx(tmp_path, X[tr], d.target[tr], X_te, d.target[te]))
    recall, precision = _scores(_rows(r), set(rows.tolist()))
    assert r.metrics["mode"] == "array" and recall >= 0.95 and precision >= 0.9
    clean = run_check("leakage.near_duplicates", _npz_ctx(tmp_path, X[tr], d.target[tr], X[te], d.target[te]))
    assert clean.status == "pass"
    ex = run_check("leakage.exact_duplicates", _npz_ctx(tmp_path, X[tr], d.target[tr], X[tr][src[:5]], d.target[tr][src[:5]]))
    assert _pairs(ex) == dict(enumerate(src[:5].tolist()))


def _words(rng, n_words=3000):
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "gu", "zo", "fa", "re", "ti"]
    words = sorted({"".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(n_words)})
    p = 1.0 / np.arange(1, len(words) + 1)
    return np.array(words), p / p.sum()


def edited_text_copies(rng, n_train: int, n_test: int, n_copies: int, pool: int | None = None):
    """(training docs, test docs, test rows, their training sources): Zipf-worded documents of 40-90 words,
    ``n_copies`` test rows (among the first ``pool``) replaced by a training document with one word changed
    and its case and spacing changed."""
    words, p = _words(rng)
    docs = [" ".join(rng.choice(words, rng.integers(40, 90), p=p)) for _ in range(n_train)]
    test = [" ".join(rng.choice(words, rng.integers(40, 90), p=p)) for _ in range(n_test)]
    rows, src = rng.choice(pool or n_test, n_copies, replace=False), rng.choice(n_train, n_copies, replace=False)
    for t, s in zip(rows, src):
        toks = docs[s].split()
        toks[rng.integers(len(toks))] = "edited"
        test[t] = "  ".join(toks).upper()
    return docs, test, rows, src


def test_near_duplicate_text_rows(tmp_path):
    rng = np.random.default_rng(11)
    docs, test, rows, src = edited_text_copies(rng, 3000, 600, 40)
    train_f = pd.DataFrame({"body": docs, "label": rng.integers(0, 2, 3000)})
    test_f = pd.DataFrame({"body": test, "label": rng.integers(0, 2, 600)})
    r = run_check("leakage.near_duplicates", _ctx(tmp_path, train_f, test_f))
    assert r.metrics["mode"] == "text"
    recall, precision = _scores(_rows(r), set(rows.tolist()))
    assert recall >= 0.95 and precision >= 0.9
    assert all(_pairs(r)[t] == s for t, s in zip(rows, src) if t in _pairs(r))


# ------------------------------------------------------------------ target: power change


def test_target_flags_a_feature_whose_power_differs_between_train_and_test(tmp_path):
    train, test, _, _ = planted_tables(12, n_exact=0, n_near=0, leak=False)
    rng = np.random.default_rng(12)
    train["status_code"] = train["label"] * 2 + rng.normal(scale=0.2, size=len(train))
    test["status_code"] = rng.normal(scale=1.0, size=len(test))  # the leak is absent at test time
    r = run_check("leakage.target", _ctx(tmp_path, train, test))
    assert r.metrics["leaky_features"] == ["status_code"]
    assert r.metrics["power_changed_features"] == ["status_code"]
    assert r.status == "fail"


def test_target_regression_and_categorical_lookup(tmp_path):
    rng = np.random.default_rng(13)
    n = 3000
    grade = rng.choice(list("ABCDEFGH"), n)
    y = pd.Series(grade).map({g: i * 10.0 for i, g in enumerate("ABCDEFGH")}).to_numpy() + rng.normal(size=n)
    frame = pd.DataFrame({"noise": rng.normal(size=n), "grade": grade, "label": y})
    r = run_check("leakage.target", _ctx(tmp_path, frame.iloc[:2000], frame.iloc[2000:].reset_index(drop=True)))
    assert r.metrics["task"] == "regression" and r.metrics["leaky_features"] == ["grade"]


# ------------------------------------------------------------------ group and temporal


def test_group_and_temporal_are_skipped_without_their_column(tmp_path):
    train, test, _, _ = planted_tables(14, n_exact=0, n_near=0, leak=False)
    ctx = _ctx(tmp_path, train, test)
    for check_id, word in (("leakage.group", "id column"), ("leakage.temporal", "time column")):
        r = run_check(check_id, ctx)
        assert r.status == "skipped" and word in r.reason


def test_group_leakage_lists_shared_entities(tmp_path):
    train, test, _, _ = planted_tables(15, n_exact=0, n_near=0, leak=False)
    train["patient"] = [f"P{i // 4:05d}" for i in range(len(train))]
    test["patient"] = [f"Q{i:05d}" for i in range(len(test))]
    shared = {3: 17, 40: 401, 41: 402, 900: 3999}  # 401 and 402: one patient
    for t, s in shared.items():
        test.loc[t, "patient"] = " " + train.loc[s, "patient"]  # whitespace does not hide an id
    test.loc[5, "patient"] = None
    ctx = _ctx(tmp_path, train, test, _policy("leakage.group", column="patient"))
    r = run_check("leakage.group", ctx)
    assert r.status == "fail" and _rows(r) == set(shared)
    assert all(train.loc[p, "patient"] == train.loc[s, "patient"] for t, s in shared.items() for p in [_pairs(r)[t]])
    assert r.metrics["shared_groups"] == 3 and r.metrics["test_rows_without_id"] == 1
    bad = _ctx(tmp_path, train, test, _policy("leakage.group", column="nope"))
    assert run_check("leakage.group", bad).status == "error"


@pytest.mark.parametrize("kind", ["datetime", "numeric"])
def test_temporal_leakage_flags_test_rows_inside_the_training_period(tmp_path, kind):
    train, test, _, _ = planted_tables(16, n_exact=0, n_near=0, leak=False)
    rng = np.random.default_rng(16)
    if kind == "datetime":
        start = pd.Timestamp("2023-01-01")
        train["seen"] = (start + pd.to_timedelta(rng.integers(0, 365, len(train)), unit="D")).strftime("%Y-%m-%d")
        test["seen"] = (start + pd.to_timedelta(rng.integers(400, 500, len(test)), unit="D")).strftime("%Y-%m-%d")
        end = pd.Timestamp(train["seen"].max())
        early = [2, 30, 31]
        test.loc[early, "seen"] = [(end - pd.Timedelta("300D")).strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d"),
                                   "2022-06-30"]
        gap_params = {"column": "seen", "min_gap": "60D"}
        limit = (end + pd.Timedelta("60D")).strftime("%Y-%m-%d")
    else:
        train["seen"] = rng.integers(1990, 2015, len(train))
        test["seen"] = rng.integers(2015, 2020, len(test))
        early = [2, 30]
        test.loc[early, "seen"] = [2014, 2000]
        gap_params = {"column": "seen", "min_gap": 2}
        limit = train["seen"].max() + 2
    r = run_check("leakage.temporal", _ctx(tmp_path, train, test, _policy("leakage.temporal", column="seen")))
    assert r.status == "fail" and _rows(r) == set(early)
    times = train["seen"].to_numpy()
    for t, s in _pairs(r).items():  # the training row named is at or after the test row's time
        assert times[s] >= test.loc[t, "seen"]
    gapped = run_check("leakage.temporal", _ctx(tmp_path, train, test, _policy("leakage.temporal", **gap_params)))
    later = test["seen"] <= limit
    assert _rows(gapped) == set(np.flatnonzero(later.to_numpy()).tolist())
    assert len(_rows(gapped)) > len(early)


# ------------------------------------------------------------------ the demo's planted leakage


def test_demo_example_carries_leakage_the_checks_find(tmp_path):
    from auditor.demo import build_example

    planted = build_example(tmp_path, seed=0, with_model=False)
    pol = policy_mod.load(tmp_path / "policy.yaml")
    ctx = AuditContext(policy=pol, seed=0,
                       train=load_dataset(tmp_path / "train.csv", "train", label="label", exclude=pol.exclude),
                       test=load_dataset(tmp_path / "test.csv", "test", label="label", exclude=pol.exclude))
    exact = run_check("leakage.exact_duplicates", ctx)
    assert _pairs(exact) == dict(zip(planted["test_exact_copy_rows"], planted["test_exact_copy_of"]))
    near = run_check("leakage.near_duplicates", ctx)
    recall, precision = _scores(_rows(near), set(planted["test_near_copy_rows"]))
    assert recall >= 0.75 and precision >= 0.9, (recall, precision)
    assert _rows(run_check("leakage.group", ctx)) == set(planted["test_shared_writer_rows"])
    assert _rows(run_check("leakage.temporal", ctx)) == set(planted["test_early_scan_rows"])
    assert run_check("leakage.target", ctx).status == "pass"  # pixels and writer/scan columns do not leak the label
