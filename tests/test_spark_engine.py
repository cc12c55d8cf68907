"""The Spark engine's foundation: file row numbers, reproducible samples, checks run on samples naming rows
of the files, the CLI and audit.yaml switches, and clear exit-2 errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from auditor import spark as spark_mod
from auditor.cli import main
from auditor.engine import AuditContext, run_check
from auditor.inputs import load_dataset
from auditor.policy import load as load_policy
from conftest import digits_frames, flagged, write_policy


def _table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(n),
        "x": rng.normal(size=n).round(6),
        "word": [f"w{i % 97} \u00e9t\u00e9" for i in range(n)],  # non-ASCII too
    })


def _write(frame: pd.DataFrame, folder: Path, kind: str) -> Path:
    if kind == "csv":
        frame.to_csv(folder / "t.csv", index=False)
        return folder / "t.csv"
    if kind == "jsonl":
        frame.to_json(folder / "t.jsonl", orient="records", lines=True, force_ascii=False)
        return folder / "t.jsonl"
    if kind == "parquet":
        frame.to_parquet(folder / "t.parquet", row_group_size=250)
        return folder / "t.parquet"
    parts = folder / "parts"
    parts.mkdir()
    # names sort in file order; sizes differ, so Spark's size-ordered split packing would reorder them
    bounds = [0, 200, 1700, len(frame)]
    for i in range(3):
        frame.iloc[bounds[i]:bounds[i + 1]].to_parquet(parts / f"part-{i:05d}.parquet", row_group_size=100)
    return parts


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet", "folder"])
def test_row_numbers_are_rows_of_the_files(tmp_path, small_splits, kind):
    path = _write(_table(), tmp_path, kind)
    # CSV split across tasks (csv_multiline: false); by default each CSV file is one task
    ds = spark_mod.load_dataset(path, "train", settings=spark_mod.SparkSettings(csv_multiline=False))
    assert ds.df.rdd.getNumPartitions() > 3  # the numbering crosses many split boundaries
    got = ds.df.select("id", spark_mod.ROW).toArrow().to_pandas()
    assert len(got) == ds.n_rows == 3000
    assert (got["id"].to_numpy() == got[spark_mod.ROW].to_numpy()).all()
    assert ds.columns == ("id", "x", "word") and ds.label is None


def test_csv_newlines_inside_quoted_fields_keep_rows(tmp_path, small_splits):
    frame = _table(400)
    frame.loc[[5, 150, 399], "word"] = ["two\nlines", "a \"quoted\"\nvalue, with comma", "end\r\nline"]
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = spark_mod.load_dataset(tmp_path / "t.csv", "train")
    got = ds.df.orderBy(spark_mod.ROW).toArrow().to_pandas()
    expected = load_dataset(tmp_path / "t.csv", "train").frame
    assert ds.n_rows == 400 and (got[spark_mod.ROW].to_numpy() == np.arange(400)).all()
    assert got["word"].tolist() == expected["word"].tolist() and (got["id"].to_numpy() == expected["id"].to_numpy()).all()


def test_folder_and_glob_read_the_same_rows_and_digest(tmp_path, small_splits):
    folder = _write(_table(), tmp_path, "folder")
    (folder / "_SUCCESS").write_text("")  # Spark's marker files are not data
    by_folder = spark_mod.load_dataset(folder, "train")
    by_glob = spark_mod.load_dataset(str(folder / "part-*.parquet"), "train")
    assert by_folder.sha256 == by_glob.sha256 and by_folder.n_rows == by_glob.n_rows == 3000
    got = by_glob.df.select("id", spark_mod.ROW).toArrow().to_pandas()
    assert (got["id"].to_numpy() == got[spark_mod.ROW].to_numpy()).all()
    (folder / "part-00001.parquet").write_bytes((folder / "part-00002.parquet").read_bytes())
    assert spark_mod.load_dataset(folder, "train").sha256 != by_folder.sha256  # a changed part changes the digest


def test_sample_is_reproducible_and_keeps_file_rows(tmp_path, small_splits):
    path = _write(_table(), tmp_path, "parquet")
    ds = spark_mod.load_dataset(path, "train")
    a, b, other = ds.sample(200, 7), ds.sample(200, 7), ds.sample(200, 8)
    assert len(a.frame) == 200 and (a.row_ids == b.row_ids).all()
    assert not (a.row_ids == other.row_ids).all()
    assert (np.diff(a.row_ids) > 0).all()  # in file order
    assert (a.frame["id"].to_numpy() == a.row_ids).all()  # each sampled row is the file's row of that number
    assert a.sample_of == {"rows": 200, "of": 3000, "seed": 7, "method": "smallest xxhash64(row, seed), drawn by Spark"}
    whole = ds.sample(10_000, 7)
    assert (whole.row_ids == np.arange(3000)).all()


def _flipped_digits(folder: Path, n: int = 700) -> tuple[Path, list[int]]:
    train, _ = digits_frames()
    train = train.iloc[:n].reset_index(drop=True)
    rng = np.random.default_rng(3)
    planted = sorted(rng.choice(n, size=25, replace=False).tolist())
    train.loc[planted, "label"] = (train.loc[planted, "label"] + 1 + rng.integers(0, 8, size=25)) % 10
    train.to_csv(folder / "train.csv", index=False)
    return folder / "train.csv", planted


def _label_issue_policy(folder: Path, rows: int) -> Path:
    return write_policy(folder / f"p{rows}.yaml", f"""
name: sampled
sample: {{rows: {rows}}}
checks:
  data.label_issues: {{enabled: true}}
""")


def test_check_on_a_sample_names_rows_of_the_file(tmp_path, spark):
    """A check without a Spark implementation audits the Spark-drawn sample; its rows are mapped to the file."""
    path, planted = _flipped_digits(tmp_path)
    policy = load_policy(_label_issue_policy(tmp_path, 5000))  # the sample is the whole set: same rows as pandas
    pandas_ctx = AuditContext(policy=policy, seed=0, train=load_dataset(path, "train", label="label"))
    spark_ctx = AuditContext(policy=policy, seed=0, engine="spark",
                             train=spark_mod.load_dataset(path, "train", label="label"))
    on_pandas, on_spark = run_check("data.label_issues", pandas_ctx), run_check("data.label_issues", spark_ctx)
    assert on_spark.status == on_pandas.status and flagged(on_spark) == flagged(on_pandas)
    assert on_spark.sample == {"train": {"rows": 700, "of": 700, "seed": spark_ctx.seed_for("sample"),
                                         "method": "smallest xxhash64(row, seed), drawn by Spark"}}
    assert on_pandas.sample is None

    policy = load_policy(_label_issue_policy(tmp_path, 400))
    ctx = AuditContext(policy=policy, seed=0, engine="spark", train=spark_mod.load_dataset(path, "train", label="label"))
    result = run_check("data.label_issues", ctx)
    drawn = ctx.in_memory().train.row_ids
    rows = flagged(result)["train"]
    assert result.sample["train"]["rows"] == 400
    assert set(rows) <= set(drawn.tolist())
    in_sample = set(planted) & set(drawn.tolist())
    assert len(set(rows) & in_sample) >= 0.7 * len(in_sample)  # the planted flips, named by their file rows
    # the same rows as the pandas engine auditing exactly the drawn rows, positions mapped to the file's rows
    pd.read_csv(path).iloc[drawn].to_csv(tmp_path / "drawn.csv", index=False)
    alone = AuditContext(policy=policy, seed=0, train=load_dataset(tmp_path / "drawn.csv", "train", label="label"))
    alone.check_id = "data.label_issues"
    alone = run_check("data.label_issues", alone)
    assert rows == sorted(int(drawn[r]) for r in flagged(alone)["train"])


def test_cli_spark_engine_from_audit_yaml(tmp_path, spark):
    train, test = digits_frames()
    train.iloc[:500].to_parquet(tmp_path / "train.parquet")
    test.iloc[:200].to_csv(tmp_path / "test.csv", index=False)
    write_policy(tmp_path / "policy.yaml", """
name: spark-run
sample: {rows: 300}
checks:
  provenance.integrity: {enabled: true}
  data.drift: {enabled: true}
""")
    (tmp_path / "audit.yaml").write_text(
        "policy: policy.yaml\ntrain: train.parquet\ntest: test.csv\nlabel: label\nout: out\n"
        "engine: spark\nspark: {master: 'local[2]', driver_memory: 1g}\n")
    code = main(["run", "--config", str(tmp_path / "audit.yaml"), "--quiet"])
    assert code in (0, 1)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["run"]["engine"] == "spark"
    assert report["inputs"]["train"]["engine"] == "spark" and report["inputs"]["train"]["rows"] == 500
    checks = {c["id"]: c for c in report["checks"]}
    assert "sample" not in checks["provenance.integrity"]  # reads digests, not rows
    assert checks["data.drift"]["sample"]["train"]["rows"] == 300
    assert checks["data.drift"]["sample"]["test"] == {**checks["data.drift"]["sample"]["test"], "rows": 200, "of": 200}
    digests = checks["provenance.integrity"]["metrics"]["sha256"]
    assert digests["train"] == load_dataset(tmp_path / "train.parquet", "train").sha256
    junit = (tmp_path / "out" / "report.junit.xml").read_text()
    assert "audited a sample drawn by Spark: train 300 of 500 rows" in junit
    sarif = json.loads((tmp_path / "out" / "report.sarif").read_text())
    assert sarif["version"] == "2.1.0"


def test_cli_flag_overrides_audit_yaml_engine(tmp_path, digits_csv, spark, capsys):
    train, _ = digits_csv
    (tmp_path / "audit.yaml").write_text(f"train: {train}\nengine: spark\npolicy: minimal\n")
    code = main(["run", "--config", str(tmp_path / "audit.yaml"), "--engine", "pandas", "--quiet",
                 "--format", "json", "--out", str(tmp_path / "out")])
    assert code in (0, 1)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["run"]["engine"] == "pandas"


@pytest.mark.parametrize("case", ["npz", "missing", "unknown-ext", "empty", "label"])
def test_bad_input_on_spark_is_one_line_exit_2(tmp_path, spark, capsys, case):
    out = tmp_path / "out"
    args = ["run", "--engine", "spark", "--out", str(out), "--quiet"]
    if case == "npz":
        np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.zeros(4, dtype=int))
        args += ["--train", str(tmp_path / "d.npz")]
        expected = "audit NPZ arrays with --engine pandas"
    elif case == "missing":
        args += ["--train", str(tmp_path / "nope.parquet")]
        expected = "file not found"
    elif case == "unknown-ext":
        (tmp_path / "d.xlsx").write_text("a")
        args += ["--train", str(tmp_path / "d.xlsx")]
        expected = "unknown file extension"
    elif case == "empty":
        (tmp_path / "d.csv").write_text("a,b\n")
        args += ["--train", str(tmp_path / "d.csv")]
        expected = "has no data rows"
    else:
        pd.DataFrame({"a": [1, 2]}).to_parquet(tmp_path / "d.parquet")
        args += ["--train", str(tmp_path / "d.parquet"), "--label", "outcome"]
        expected = "label column 'outcome' not found"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "auditor: error:" in err[0], err
    assert not out.exists()


def test_policy_sample_size_is_validated(tmp_path):
    from auditor.errors import PolicyError

    bad = write_policy(tmp_path / "p.yaml", "name: x\nsample: {rows: 5}\n")
    with pytest.raises(PolicyError, match="sample.rows"):
        load_policy(bad)


def test_unknown_spark_setting_is_exit_2(tmp_path, capsys):
    (tmp_path / "audit.yaml").write_text("engine: spark\nspark: {masterr: 'local[2]'}\n")
    assert main(["run", "--config", str(tmp_path / "audit.yaml")]) == 2
    assert "masterr" in capsys.readouterr().err


def test_parquet_nanosecond_timestamps_are_read_as_timestamps(tmp_path, spark):
    import pyarrow as pa
    import pyarrow.parquet as pq

    times = pd.date_range("2024-01-01", periods=4, freq="h").as_unit("ns")
    pq.write_table(pa.table({"t": pa.array(times, type=pa.timestamp("ns")), "x": [1, 2, 3, 4]}), tmp_path / "t.parquet")
    ds = spark_mod.load_dataset(tmp_path / "t.parquet", "train")
    assert ds.dtype("t") == "timestamp_ntz" and ds.columns == ("t", "x")  # naive, as written
    got = ds.df.orderBy(spark_mod.ROW).toArrow().to_pandas()["t"]
    assert [str(v) for v in got] == [str(v) for v in times]


def test_session_bounds_task_memory_and_keeps_users_jvm_options(spark):
    """Smaller scan tasks than Spark's 128 MiB and JDK 17's GCLocker retries (the 50M-row benchmark's false
    "Java heap space" without them); audit.yaml's own extraJavaOptions come after ours instead of replacing
    the quiet log4j configuration."""
    assert spark.conf.get("spark.sql.files.maxPartitionBytes") == spark_mod.MAX_PARTITION_BYTES
    opts = spark.sparkContext.getConf().get("spark.driver.extraJavaOptions")
    assert "GCLockerRetryAllocationCount=100" in opts and "log4j2.configurationFile" in opts


def test_spark_failures_get_a_diagnosis_others_keep_theirs(spark):
    from auditor.engine import _failure

    oom = _failure(RuntimeError("Job aborted: java.lang.OutOfMemoryError: Java heap space"), "spark")
    assert oom.startswith("the Spark JVM ran out of heap memory") and "spark.driver_memory" in oom
    assert "OutOfMemoryError" in oom  # the original error stays, shortened
    assert _failure(ValueError("bad column 'x'"), "spark") == "ValueError: bad column 'x'"  # the JVM is alive
    assert _failure(RuntimeError("java.lang.OutOfMemoryError"), "pandas") == "RuntimeError: java.lang.OutOfMemoryError"


def test_library_logging_is_one_line_and_py4j_is_quiet():
    """When Spark's JVM dies, py4j logs a traceback through the root logger: the CLI prints none of it."""
    import subprocess
    import sys

    code = ("import logging\n"
            "from auditor.cli import _one_line_logging\n"
            "_one_line_logging()\n"
            "logging.getLogger('py4j.clientserver').error('socket closed')\n"
            "try:\n    1 / 0\nexcept ZeroDivisionError:\n    logging.getLogger('somelib').exception('it broke')\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.strip() == "somelib: ERROR: it broke"
