"""Spark data.duplicates, data.class_balance and leakage.exact_duplicates: the same planted rows, metrics and
verdicts as the pandas engine on the same CSV and Parquet files (read by pyarrow there, by Spark here)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor import policy as policy_mod
from tests.conftest import both_engines, flagged, write_policy

pytest.importorskip("pyspark")

N_TRAIN, N_TEST = 400, 150


def _frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A clean table (every row distinct) as it is written: floats, integers, short text, booleans, a label."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    df = pd.DataFrame({
        "num": np.round(rng.normal(size=n), 6).astype(object),
        "count": rng.integers(0, 60, n).astype(str).astype(object),
        "city": [f"city {i}" for i in rng.integers(0, 12, n)],
        "flag": rng.random(n) < 0.5,
        "label": rng.integers(0, 3, n),
    })
    return df.iloc[:N_TRAIN].reset_index(drop=True), df.iloc[N_TRAIN:].reset_index(drop=True)


def _copy(dst: pd.DataFrame, i: int, src: pd.DataFrame, j: int, **changes) -> None:
    dst.loc[i] = src.loc[j]
    for col, value in changes.items():
        dst.at[i, col] = value


def _write(frame: pd.DataFrame, path, fmt: str) -> str:
    """CSV: the values' text as given. Parquet: num float64 (NaN for "NaN"/"nan", None for "NA"), count as
    text (numbers written differently stay text: a string column of numbers), the rest typed."""
    path = f"{path}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
        return path

    def num(v):
        return None if v == "NA" else float(v)

    label = [None if v == "" else int(v) for v in frame["label"]]
    pq.write_table(pa.table({
        "num": pa.array([num(v) for v in frame["num"]], pa.float64()),
        "count": pa.array([str(v) for v in frame["count"]], pa.string()),
        "city": pa.array(list(frame["city"]), pa.string()),
        "flag": pa.array([bool(v) for v in frame["flag"]], pa.bool_()),
        "label": pa.array(label, pa.int64()),
    }), path, row_group_size=64)  # many row groups: Spark splits cross them
    return path


def _policy(tmp_path, check: str, **params):
    body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in params.items())
    text = f"name: t\nextends: nist-ai-rmf\nchecks:\n  {check}:\n    params: {{{body}}}\n"
    return policy_mod.load(write_policy(tmp_path / "p.yaml", text))


def _on_both(paths: dict, runs: "list[tuple[str, object]]") -> "list[tuple]":
    """Several (check id, policy) runs on datasets loaded once per engine: [(pandas result, spark result)]."""
    from auditor import spark as spark_mod
    from auditor.engine import AuditContext, run_check
    from auditor.inputs import load_dataset

    out: dict = {"pandas": [], "spark": []}
    for engine, load in (("pandas", load_dataset), ("spark", spark_mod.load_dataset)):
        loaded = {name: load(path, name, label="label") for name, path in paths.items()}
        for check_id, policy in runs:
            out[engine].append(run_check(check_id, AuditContext(policy=policy, seed=0, engine=engine, **loaded)))
    return list(zip(out["pandas"], out["spark"]))


def _same(pandas_result, spark_result) -> None:
    """Identical verdict, metrics, flagged rows, messages and details on both engines."""
    assert spark_result.traceback is None, spark_result.traceback
    assert spark_result.status == pandas_result.status
    assert spark_result.metrics == pandas_result.metrics
    assert flagged(spark_result) == flagged(pandas_result)
    assert [f.message for f in spark_result.findings] == [f.message for f in pandas_result.findings]
    assert [f.details for f in spark_result.findings] == [f.details for f in pandas_result.findings]


# ------------------------------------------------------------------ data.duplicates


def _planted_duplicates() -> tuple[pd.DataFrame, list[int], list[int]]:
    """Training rows that repeat an earlier row written differently, a conflicting-label group and near misses:
    (frame, duplicate rows, conflicting rows)."""
    train, _ = _frames(1)
    train.at[40, "num"] = "0.0"
    train.at[41, "num"] = "NaN"
    train.at[60, "num"] = "NA"  # a pyarrow null token: Spark alone would keep the column as text
    _copy(train, 5, train, 300)  # the copy comes first: row 300 repeats row 5
    _copy(train, 120, train, 12, count=f"{train.at[12, 'count']}.0")  # 7 == 7.0
    _copy(train, 121, train, 13, count=f" {train.at[13, 'count']} ")  # 7 == " 7 "
    _copy(train, 200, train, 30, city=f"  {train.at[30, 'city'].replace(' ', '   ')} ")  # whitespace folded
    _copy(train, 201, train, 40, num="-0.0")  # -0.0 == 0.0
    _copy(train, 202, train, 41, num="nan")  # NaN == NaN
    _copy(train, 203, train, 60, num="NA")  # missing == missing
    _copy(train, 250, train, 20, label=(train.at[20, "label"] + 1) % 3)  # same features, another label
    _copy(train, 251, train, 21, city=train.at[21, "city"] + "x")  # near misses: not duplicates
    _copy(train, 252, train, 22, num=str(float(train.at[22, "num"]) + 1e-6))
    return train, [121, 120, 200, 201, 202, 203, 300], [20, 250]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_duplicates_parity_on_planted_rows(tmp_path, small_splits, fmt):
    train, dup_rows, conflict_rows = _planted_duplicates()
    paths = {"train": _write(train, tmp_path / "train", fmt)}
    (pandas_r, spark_r), (pandas_nolabel, spark_nolabel) = _on_both(paths, [
        ("data.duplicates", _policy(tmp_path, "data.duplicates")),
        ("data.duplicates", _policy(tmp_path, "data.duplicates", include_label=False, max_fraction=0.5)),
    ])
    _same(pandas_r, spark_r)
    assert spark_r.status == "fail"  # 7 of 400 > 1 %, and a conflicting group
    assert [list(f.rows) for f in spark_r.findings] == [sorted(dup_rows), conflict_rows]
    m = spark_r.metrics["train"]
    assert (m["rows"], m["duplicate_rows"], m["conflicting_groups"], m["conflicting_rows"]) == (400, 7, 1, 2)
    # without the label, row 250 repeats row 20 as well (and still conflicts with it)
    _same(pandas_nolabel, spark_nolabel)
    assert [list(f.rows) for f in spark_nolabel.findings] == [sorted(dup_rows + [250]), conflict_rows]


# ------------------------------------------------------------------ leakage.exact_duplicates


def _planted_leaks() -> tuple[pd.DataFrame, pd.DataFrame, dict[int, int]]:
    """Test rows copying training rows written differently: (train, test, {test row: train row})."""
    train, test = _frames(2)
    train.at[7, "num"] = "0.0"
    train.at[8, "num"] = "NA"  # a pyarrow null token (Spark alone reads the column as text) ...
    _copy(train, 399, train, 9)  # a training row present twice: the leak names the first, copies == 2
    leaks = {3: 1, 10: 7, 11: 8, 50: 9, 90: 100, 91: 101, 149: 398}
    _copy(test, 3, train, 1)
    _copy(test, 10, train, 7, num="-0.0")
    _copy(test, 11, train, 8, num="nan")  # ... equal to NaN: both missing
    _copy(test, 50, train, 9, count=f"{train.at[9, 'count']}.0")
    _copy(test, 90, train, 100, city=f" {train.at[100, 'city']}  ")
    _copy(test, 91, train, 101, label=(train.at[101, "label"] + 1) % 3)  # a leak whose label differs
    _copy(test, 149, train, 398)
    _copy(test, 120, train, 200, city="elsewhere")  # near miss: one column differs
    return train, test, leaks


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_exact_leakage_parity_on_planted_rows(tmp_path, small_splits, fmt):
    train, test, leaks = _planted_leaks()
    paths = {"train": _write(train, tmp_path / "train", fmt), "test": _write(test, tmp_path / "test", fmt)}
    pandas_r, spark_r = both_engines("leakage.exact_duplicates", _policy(tmp_path, "leakage.exact_duplicates"),
                                     label="label", **paths)
    _same(pandas_r, spark_r)
    assert spark_r.status == "fail"
    assert flagged(spark_r) == {"test": sorted(leaks)}
    (finding,) = spark_r.findings
    assert {a: b for a, b in finding.details["matches"]} == leaks
    assert finding.details["train_copies"] == [2 if leaks[t] == 9 else 1 for t in sorted(leaks)]
    m = spark_r.metrics
    assert (m["leaked_rows"], m["leaked_rows_same_label"], m["columns_compared"]) == (7, 6, 4)


def test_exact_leakage_params_parity(tmp_path, small_splits):
    train, test, _ = _planted_leaks()
    paths = {"train": _write(train, tmp_path / "train", "csv"), "test": _write(test, tmp_path / "test", "csv")}
    cases = [
        ({"include_label": True}, {3, 10, 11, 50, 90, 149}),  # the row with another label is no longer a copy
        ({"ignore": ["city"], "max_fraction": 0.5}, {3, 10, 11, 50, 90, 91, 120, 149}),  # the near miss is one now
        ({"columns": ["count", "flag"], "max_fraction": 1.0}, None),  # many rows share two columns' values
    ]
    results = _on_both(paths, [("leakage.exact_duplicates", _policy(tmp_path, "leakage.exact_duplicates", **params))
                               for params, _ in cases])
    for (params, expected), (pandas_r, spark_r) in zip(cases, results):
        _same(pandas_r, spark_r)
        if expected is not None:
            assert set(flagged(spark_r)["test"]) == expected, params
        else:
            assert len(flagged(spark_r)["test"]) > 20 and spark_r.status == "warn"


# ------------------------------------------------------------------ data.class_balance


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_class_balance_fails_alike(tmp_path, small_splits, fmt):
    train, test = _frames(3)
    train["label"] = np.where(np.arange(N_TRAIN) < 394, 0, 1)  # 391 : 6 : 2 once the rows below are set
    train.loc[[100, 200], "label"] = 2
    test["label"] = test["label"].where(test.index != 5, 7)  # a class training never saw
    train["label"] = train["label"].astype(object)
    train.at[300, "label"] = ""  # no label (Parquet: null; CSV: pyarrow and Spark both read a missing number)
    paths = {"train": _write(train, tmp_path / "train", fmt), "test": _write(test, tmp_path / "test", fmt)}
    pandas_r, spark_r = both_engines("data.class_balance", _policy(tmp_path, "data.class_balance"), label="label", **paths)
    _same(pandas_r, spark_r)
    assert spark_r.status == "fail"
    assert spark_r.metrics["train"]["counts"] == {"0": 391, "1": 6, "2": 2}
    assert flagged(spark_r) == {"train": [300]}
    text = " ".join(f.message for f in spark_r.findings)
    assert "195.5:1" in text and "fewer than 5" in text and "never seen" in text and "'7'" in text


def test_class_balance_reads_text_labels_alike(tmp_path, small_splits):
    """String labels are stripped (not folded); an empty CSV field is pyarrow's "" label, not a missing one."""
    train, test = _frames(4)
    names = np.array(["cat", "dog", "bird"])
    train["label"], test["label"] = names[train["label"]], names[test["label"]]
    train.loc[:9, "label"] = " dog "
    train.at[10, "label"] = ""
    paths = {"train": _write(train, tmp_path / "train", "csv"), "test": _write(test, tmp_path / "test", "csv")}
    pandas_r, spark_r = both_engines("data.class_balance", _policy(tmp_path, "data.class_balance", min_class_count=1),
                                     label="label", **paths)
    _same(pandas_r, spark_r)
    assert set(spark_r.metrics["train"]["counts"]) == {"", "bird", "cat", "dog"}


# ------------------------------------------------------------------ clean data


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clean_data_passes_on_both_engines(tmp_path, small_splits, fmt):
    train, test = _frames(5)
    paths = {"train": _write(train, tmp_path / "train", fmt), "test": _write(test, tmp_path / "test", fmt)}
    checks = ("data.duplicates", "leakage.exact_duplicates", "data.class_balance")
    for check, (pandas_r, spark_r) in zip(checks, _on_both(paths, [(c, _policy(tmp_path, c)) for c in checks])):
        _same(pandas_r, spark_r)
        assert spark_r.status == "pass" and not flagged(spark_r), (check, spark_r.findings)


# ------------------------------------------------------------------ the command line


def test_cli_runs_the_checks_on_whole_spark_datasets(tmp_path, spark):
    from auditor.cli import main

    train, test, leaks = _planted_leaks()
    _copy(train, 5, train, 300)
    paths = {"train": _write(train, tmp_path / "train", "csv"), "test": _write(test, tmp_path / "test", "csv")}
    policy = write_policy(tmp_path / "policy.yaml", "\n".join([
        "name: spark-hash", "extends: minimal", "checks:",
        "  provenance.integrity: {enabled: false}", "  data.validation: {enabled: false}",
        "  data.drift: {enabled: false}", "  leakage.exact_duplicates: {severity: high}", ""]))
    out = tmp_path / "out"
    code = main(["run", "--engine", "spark", "--train", paths["train"], "--test", paths["test"], "--label", "label",
                 "--policy", str(policy), "--format", "json", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert code == 1 and report["run"]["engine"] == "spark"
    checks = {c["id"]: c for c in report["checks"]}
    assert set(checks) == {"data.duplicates", "data.class_balance", "leakage.exact_duplicates"}
    for c in checks.values():
        assert "sample" not in c, c["id"]
    rows = {c["id"]: {f.get("dataset"): f.get("rows") for f in c["findings"] if f.get("rows")} for c in checks.values()}
    assert rows["leakage.exact_duplicates"] == {"test": sorted(leaks)}
    assert rows["data.duplicates"] == {"train": [300, 399]}
    assert checks["leakage.exact_duplicates"]["status"] == "fail"


def test_pandas_hashes_dates_and_timestamps_as_the_same_instant():
    """A date column (objects, parsed at second resolution) and a timestamp column name one instant alike, as
    Spark compares them (found by comparing the engines on random Parquet columns)."""
    import datetime as dt

    from auditor.checks import leakage_hashing as lh

    dates = pd.Series([dt.date(2020, 1, 1), None], dtype=object)
    stamps = pd.Series(np.array(["2020-01-01", "NaT"], dtype="datetime64[s]"))
    assert lh.column_hashes(dates).tolist() == lh.column_hashes(stamps).tolist()
