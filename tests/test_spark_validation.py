"""Spark engine parity for data.validation, leakage.group and leakage.temporal: problems planted at known rows
of CSV and Parquet files are found at exactly those rows, with the same verdicts, metrics and findings, by the
pandas engine and by Spark (whose files are cut into many small splits); clean data passes on both."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor import policy as policy_mod
from tests.conftest import both_engines, flagged, write_policy

pytestmark = pytest.mark.usefixtures("small_splits")

N_TRAIN, N_TEST = 400, 150


def _write(tmp_path, fmt: str, na_rep: str = "", **frames) -> dict:
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp_path / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(paths[name], index=False, na_rep=na_rep)
        else:
            frame.to_parquet(paths[name], index=False)
    return paths


def _policy(tmp_path, body: str):
    return policy_mod.load(write_policy(tmp_path / "policy.yaml", f"name: t\nextends: nist-ai-rmf\nchecks:\n{body}"))


def _same(pandas_result, spark_result) -> None:
    """Both engines agree on the verdict, every metric, the flagged rows and each finding."""
    assert spark_result.status == pandas_result.status, (spark_result.reason, spark_result.traceback)
    assert spark_result.metrics == pandas_result.metrics
    assert flagged(spark_result) == flagged(pandas_result)
    assert [(f.dataset, f.message, f.rows, f.details) for f in spark_result.findings] == \
        [(f.dataset, f.message, f.rows, f.details) for f in pandas_result.findings]


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 90, n).astype(float),
        "code": rng.choice(["A1", "B2", "C3"], n),
        "score": rng.normal(size=n),
        "label": rng.integers(0, 2, n),
    })


# ------------------------------------------------------------------ data.validation

EXPECTATIONS = """  data.validation:
    params:
      expectations:
        train:
          - expect_column_values_to_be_between: {column: age, min_value: 0, max_value: 120}
        all:
          - expect_column_values_to_not_be_null: {column: score}
          - expect_column_values_to_match_regex: {column: code, regex: '^[A-C][0-9]$'}
          - expect_column_values_to_be_in_set: {column: code, value_set: [A1, B2, C3]}
"""


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_validation_fails_at_the_planted_rows_on_both_engines(tmp_path, fmt, capfd):
    train, test = _table(N_TRAIN, 1), _table(N_TEST, 2)
    train.loc[[3, 250, 399], "age"] = [150.0, -1.0, 130.0]  # out of range
    train.loc[[17], "age"] = np.inf  # not finite (a default expectation); pandas writes "inf" to CSV
    train.loc[[7, 301], "code"] = ["zz", "B22"]  # fails the regex and the set
    train.loc[[11, 44], "score"] = np.nan  # nulls, written as NA: pyarrow's null, a string for Spark's CSV reader
    test.loc[[5], "code"] = "D4"
    test.loc[[149], "score"] = np.nan
    paths = _write(tmp_path, fmt, na_rep="NA", train=train, test=test)
    a, b = both_engines("data.validation", _policy(tmp_path, EXPECTATIONS), label="label", **paths)
    _same(a, b)
    assert b.status == "fail"
    assert flagged(b) == {"train": [3, 7, 11, 17, 44, 250, 301, 399], "test": [5, 149]}
    rows = {f.message.split(" failed")[0]: f.rows for f in b.findings}
    assert rows["train: finite values in 'age'"] == (17,)
    assert rows["train: expect_column_values_to_be_between(column='age', min_value=0, max_value=120)"] == (3, 17, 250, 399)
    assert rows["train: expect_column_values_to_not_be_null(column='score')"] == (11, 44)
    assert rows["train: expect_column_values_to_match_regex(column='code', regex='^[A-C][0-9]$')"] == (7, 301)
    assert rows["test: expect_column_values_to_be_in_set(column='code', value_set=['A1', 'B2', 'C3'])"] == (5,)
    assert b.metrics["train"]["failed"] == 5 and b.metrics["test"]["failed"] == 3
    assert "Calculating Metrics" not in capfd.readouterr().err  # GX's progress bars stay off


def test_validation_passes_a_clean_suite_on_both_engines(tmp_path):
    train, test = _table(N_TRAIN, 3), _table(N_TEST, 4)
    paths = _write(tmp_path, "csv", train=train, test=test)
    a, b = both_engines("data.validation", _policy(tmp_path, EXPECTATIONS), label="label", **paths)
    _same(a, b)
    assert b.status == "pass" and b.findings == ()
    assert b.metrics["train"]["expectations"] == 1 + 4 + 3 + 4  # label, 4 columns, 3 numeric, policy's


# ------------------------------------------------------------------ leakage.group

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_group_leakage_finds_the_shared_ids_on_both_engines(tmp_path, fmt):
    train, test = _table(N_TRAIN, 7), _table(N_TEST, 8)
    train["patient"] = [f"P{i // 4:04d}" for i in range(N_TRAIN)]  # four rows per patient
    test["patient"] = [f"Q{i:04d}" for i in range(N_TEST)]
    shared = {3: 17, 40: 201, 41: 202, 149: 399}  # 201 and 202: the same patient
    for t, s in shared.items():
        test.loc[t, "patient"] = " " + train.loc[s, "patient"] + " "  # padding does not hide an id
    test.loc[5, "patient"] = None
    train["site"] = (np.arange(N_TRAIN) // 4) % 5  # one site per patient, integers in train ...
    test["site"] = (np.arange(N_TEST) % 5).astype(str)  # ... and strings in test
    paths = _write(tmp_path, fmt, train=train, test=test)

    a, b = both_engines("leakage.group", _policy(tmp_path, "  leakage.group: {params: {column: patient}}\n"),
                        label="label", **paths)
    _same(a, b)
    assert b.status == "fail" and flagged(b) == {"test": sorted(shared)}
    (finding,) = b.findings
    firsts = {t: 4 * (s // 4) for t, s in shared.items()}  # each id's first training row
    assert {m[0]: m[1] for m in finding.details["matches"]} == firsts
    assert b.metrics["shared_groups"] == 3 and b.metrics["test_rows_without_id"] == 1

    if fmt == "csv":  # both columns as the id: the same patient at another site is another entity
        composite = "  leakage.group: {params: {column: [patient, site]}}\n"
        a, b = both_engines("leakage.group", _policy(tmp_path, composite), label="label", **paths)
        _same(a, b)
        assert flagged(b) == {"test": [t for t, s in sorted(shared.items()) if t % 5 == (s // 4) % 5]} == {"test": [40, 149]}


def test_group_leakage_passes_disjoint_ids_on_both_engines(tmp_path):
    train, test = _table(N_TRAIN, 9), _table(N_TEST, 10)
    train["user"] = np.arange(N_TRAIN)
    test["user"] = np.arange(N_TEST) + 10_000
    paths = _write(tmp_path, "csv", train=train, test=test)
    a, b = both_engines("leakage.group", _policy(tmp_path, "  leakage.group: {params: {column: user}}\n"),
                        label="label", **paths)
    _same(a, b)
    assert b.status == "pass" and b.findings == ()
    assert b.metrics["train_groups"] == N_TRAIN and b.metrics["test_groups"] == N_TEST


# ------------------------------------------------------------------ leakage.temporal

def _timed(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """Train in 2023, test in 2024 but for rows planted inside (or before) the training period."""
    rng = np.random.default_rng(seed)
    train, test = _table(N_TRAIN, seed), _table(N_TEST, seed + 1)
    start = pd.Timestamp("2023-01-01", tz="UTC")
    train["seen"] = start + pd.to_timedelta(rng.integers(0, 365 * 24, N_TRAIN), unit="h")
    test["seen"] = start + pd.to_timedelta(rng.integers(400 * 24, 500 * 24, N_TEST), unit="h")
    end = train["seen"].max()
    early = [2, 30, 31, 77]
    test.loc[early, "seen"] = [end - pd.Timedelta("100D"), end, pd.Timestamp("2022-06-30", tz="UTC"),
                               end + pd.Timedelta("1h") - pd.Timedelta("2h")]
    return train, test, early


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_temporal_leakage_flags_the_planted_rows_on_both_engines(tmp_path, fmt, monkeypatch):
    from auditor.checks import leakage_temporal_spark

    monkeypatch.setattr(leakage_temporal_spark, "BUCKET_ROWS", 64)  # several time buckets even on small data
    train, test, early = _timed(11)
    if fmt == "csv":  # ISO 8601 strings with offsets, one of them not UTC, and one row without a time
        for frame in (train, test):
            frame["seen"] = frame["seen"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        test.loc[early[0], "seen"] = (pd.Timestamp(test.loc[early[0], "seen"]).tz_convert("Asia/Kolkata")
                                      .strftime("%Y-%m-%dT%H:%M:%S%z"))
        test.loc[60, "seen"] = ""
    else:  # timestamps (microseconds: Spark cannot read Parquet's nanosecond timestamps)
        for frame in (train, test):
            frame["seen"] = frame["seen"].astype("datetime64[us, UTC]")
        test.loc[60, "seen"] = pd.NaT
    paths = _write(tmp_path, fmt, train=train, test=test)

    a, b = both_engines("leakage.temporal", _policy(tmp_path, "  leakage.temporal: {params: {column: seen}}\n"),
                        label="label", **paths)
    _same(a, b)
    assert b.status == "fail" and flagged(b) == {"test": sorted(early + [60])}
    assert b.metrics["kind"] == "datetime" and b.metrics["test_rows_not_later"] == len(early)
    assert b.metrics["test_rows_without_time"] == 1
    times = pd.to_datetime(train["seen"], utc=True)
    for t, s in {m[0]: m[1] for m in b.findings[0].details["matches"]}.items():
        assert times[s] >= pd.to_datetime(test.loc[t, "seen"], utc=True)  # a training row at or after it

    if fmt == "parquet":  # a gap: test rows up to 45 days after the training period are flagged too
        gapped = "  leakage.temporal: {params: {column: seen, min_gap: 45D}}\n"
        a, b = both_engines("leakage.temporal", _policy(tmp_path, gapped), label="label", **paths)
        _same(a, b)
        assert len(flagged(b)["test"]) > len(early) + 1


def test_temporal_leakage_passes_a_later_test_set_on_both_engines(tmp_path):
    train, test, _ = _timed(13)
    test["seen"] = test["seen"].where(test["seen"] > train["seen"].max(), train["seen"].max() + pd.Timedelta("1D"))
    for frame in (train, test):
        frame["seen"] = frame["seen"].dt.strftime("%Y-%m-%d %H:%M:%S")
    test.loc[9, "seen"] = "9999-12-31 00:00:00"  # a far-future sentinel is later, not wrapped around to 1816
    paths = _write(tmp_path, "csv", train=train, test=test)
    a, b = both_engines("leakage.temporal", _policy(tmp_path, "  leakage.temporal: {params: {column: seen}}\n"),
                        label="label", **paths)
    _same(a, b)
    assert b.status == "pass" and b.findings == () and b.metrics["kind"] == "datetime"
    assert b.metrics["test_period"][1] == "9999-12-31T00:00:00"
