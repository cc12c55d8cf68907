"""leakage.temporal on Spark: test rows not later than the training period (plus the policy's gap).

Times are read as the pandas check reads them (``_times`` in :mod:`auditor.checks.leakage`), whatever type
each reader gave the column: Spark timestamps and dates (pyarrow may keep a date as text) are UTC
nanoseconds; numbers are numbers; strings are numbers when every one of them parses as one, else
datetimes (in a CSV file, pyarrow's null spellings such as ``NA`` are missing, as pyarrow makes them in a
column of numbers and pandas' parser in one of text). ISO 8601 strings are parsed by Spark itself; any other
string (``01/02/2023``, ``Jan 5 2023``, nanosecond fractions) goes, on its own, through the pandas check's
parser in a pandas UDF, so both engines give every string the same time. Times are float64 nanoseconds on
both engines, compared in float64. Naive times are UTC: this relies on the session time zone the Spark
engine sets (``spark.sql.session.timeZone=UTC``).

Work: one aggregate over the training times (period, last row), the flagged and timeless test rows
collected (only those), one aggregate for the test period, and for the flagged rows the training row at or
after each: a sort of the training times from the earliest flagged time on, in time buckets (a running
``last`` over each bucket, then the first training row of the next non-empty bucket).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from auditor.checks import leakage as lk
from auditor.checks.leakage_group_spark import FLOATING, INTEGRAL, NUMBER, UNICODE_EDGES, csv_nulls
from auditor.report import Outcome

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from auditor.engine import AuditContext
    from auditor.spark import SparkDataset

#: ISO 8601 strings Spark's cast parses to the instant pandas gives (microseconds at most; other strings: pandas)
ISO = r"^\d{4}-\d{1,2}-\d{1,2}([T ]\d{1,2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?\s*(Z|UTC|[+-]\d{2}(:?\d{2})?)?$"
#: events (training rows and flagged test rows) per time bucket when pairing flagged rows with training rows
BUCKET_ROWS = 1_000_000
MAX_BUCKETS = 4096
T, OK = "__time__", "__ok__"


def _ns(ts: "Column") -> "Column":
    """A Spark timestamp as float64 ns since the epoch: microseconds (exact) times 1000, as pandas does it."""
    from pyspark.sql import functions as F

    return F.unix_micros(ts).cast("double") * F.lit(1000.0)


def _parse_udf():
    """The pandas check's string parser as a pandas UDF, for the strings Spark's ISO parsing leaves."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def parse(text):
        from auditor.checks.leakage import parse_times

        return pd.Series(parse_times(text), index=text.index)

    parse.__annotations__ = {"text": pd.Series, "return": pd.Series}  # types, not postponed strings
    return pandas_udf(parse, "double")


def _string_times(df: "DataFrame", text: "Column", csv: bool) -> "tuple[DataFrame, str]":
    """Times of a string column: numeric when every (stripped) value is a number, else datetimes."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    s = F.regexp_replace(text, UNICODE_EDGES, "")
    if csv:  # pyarrow's null spellings: nulls in a column of numbers, and never a time in a column of text
        s = csv_nulls(s)
    counts = df.agg(F.count(s).alias("present"), F.count(F.when(s.rlike(NUMBER), 1)).alias("numbers")).first()
    if counts["present"] and counts["numbers"] == counts["present"]:
        return df.select(F.col(ROW), s.cast("double").alias(T)), "numeric"
    base = df.select(F.col(ROW), s.alias("s"), F.when(s.rlike(ISO), _ns(s.cast("timestamp"))).alias(T))
    need = F.col("s").isNotNull() & (F.col("s") != "") & F.col(T).isNull()
    parsed = base.where(~need).select(ROW, T)
    rest = base.where(need).select(F.col(ROW), _parse_udf()(F.col("s")).alias(T))
    return parsed.unionByName(rest), "datetime"


def times(ds: "SparkDataset", col: str) -> "tuple[DataFrame, str]":
    """(row numbers with the time ``T`` and whether it is usable ``OK``, kind 'datetime' or 'numeric')."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    dtype = ds.dtype(col)
    c = F.col(f"`{col}`")
    if dtype in ("timestamp", "timestamp_ntz", "date"):
        out, kind = ds.df.select(F.col(ROW), _ns(c.cast("timestamp")).alias(T)), "datetime"
    elif dtype in INTEGRAL or dtype in FLOATING or dtype.startswith("decimal"):
        out, kind = ds.df.select(F.col(ROW), c.cast("double").alias(T)), "numeric"
    elif dtype == "boolean":  # pandas reads True/False as text that is neither a number nor a date
        out, kind = ds.df.select(F.col(ROW), F.lit(None).cast("double").alias(T)), "datetime"
    else:
        out, kind = _string_times(ds.df, c.cast("string"), ds.format == "csv")
    t = F.col(T)
    t = F.when(t == 0, F.lit(0.0)).otherwise(t)  # -0.0 sorts like 0.0, as in numpy
    return out.select(ROW, t.alias(T), (t.isNotNull() & (F.abs(t) < F.lit(float("inf")))).alias(OK)), kind


def _buckets(lo: float, hi: float, count: int) -> "tuple[int, Column]":
    """(number of buckets, each time's bucket): equal widths over [lo, hi], monotone in the time."""
    from pyspark.sql import functions as F

    n = int(max(1, min(MAX_BUCKETS, count // BUCKET_ROWS + 1)))
    if not hi > lo or n == 1:
        return 1, F.lit(0)
    raw = F.floor((F.col(T) - F.lit(lo)) / F.lit((hi - lo) / n))
    return n, F.least(F.greatest(raw, F.lit(0)), F.lit(n - 1)).cast("int")


def _at_or_after(train: "DataFrame", flagged: "DataFrame", lo: float, hi: float, count: int,
                 last: int) -> dict[int, int]:
    """For each flagged test row (time <= hi, the last training time): the earliest training row at or after
    its time, ties by row number (the pandas check's stable sort and left search); ``last`` if none."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    _, bucket = _buckets(lo, hi, count)
    events = (
        train.where(F.col(OK) & (F.col(T) >= lo)).select(T, ROW, F.lit(1).alias("train"))
        .unionByName(flagged.select(T, ROW, F.lit(0).alias("train")))
        .withColumn("bucket", bucket)
    )
    # time descending, training rows first at a tie: the last training row seen is the earliest one at or after
    order = Window.partitionBy("bucket").orderBy(F.col(T).desc(), F.col("train").desc(), F.col(ROW).desc())
    seen = F.last(F.when(F.col("train") == 1, F.col(ROW)), ignorenulls=True).over(
        order.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    paired = events.select(ROW, "train", "bucket", seen.alias("match")).where(F.col("train") == 0)
    firsts = {r["bucket"]: r["first"][ROW] for r in events.where(F.col("train") == 1).groupBy("bucket")
              .agg(F.min(F.struct(T, ROW)).alias("first")).collect()}
    order_b = sorted(firsts)
    out = {}
    for r in paired.toLocalIterator():
        match = r["match"]
        if match is None:  # nothing later in its bucket: the first training row of the next non-empty one
            i = bisect.bisect_right(order_b, r["bucket"])
            match = firsts[order_b[i]] if i < len(order_b) else last
        out[int(r[ROW])] = int(match)
    return out


def temporal_leakage(ctx: "AuditContext", params: lk.TemporalParams) -> Outcome:
    """The Spark engine's leakage.temporal: the pandas check's verdict, metrics and findings."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW, persist

    if not params.column:
        return Outcome.skipped(lk.NO_TIME_COLUMN)
    col = params.column
    for ds in (ctx.train, ctx.test):
        lk._require_columns(ds, [col], "time")
    ctx.progress.step(f"reading times from {col!r} in Spark")
    train, kind_tr = times(ctx.train, col)
    test, kind_te = times(ctx.test, col)
    if kind_tr != kind_te:
        raise ValueError(f"time column {col!r} is {kind_tr} in training but {kind_te} in test")
    train, test = persist(train), persist(test)
    try:
        ok = F.col(OK)
        tr = train.agg(F.count(F.when(ok, 1)).alias("n"), F.min(F.when(ok, F.col(T))).alias("start"),
                       F.max(F.when(ok, F.struct(T, ROW))).alias("last")).first()
        if not tr["n"]:
            raise ValueError(f"time column {col!r} has no usable values in the training set")
        gap = lk.time_gap(params.min_gap, kind_tr)
        train_end, last_row = float(tr["last"][T]), int(tr["last"][ROW])
        limit = train_end + gap
        flagged_times, missing = {}, []
        for r in test.where(~ok | (F.col(T) <= limit)).select(ROW, T, OK).toLocalIterator():
            if r[OK]:
                flagged_times[int(r[ROW])] = float(r[T])
            else:
                missing.append(int(r[ROW]))
        te = test.agg(F.min(F.when(ok, F.col(T))).alias("start"), F.max(F.when(ok, F.col(T))).alias("end")).first()
        flagged = sorted(flagged_times)
        match = {}
        inside = [t for t in flagged_times.values() if t <= train_end]
        if inside:
            ctx.progress.step(f"pairing {len(flagged):,} test rows with training rows at or after their time")
            match = _at_or_after(train, test.where(ok & (F.col(T) <= train_end)), min(inside), train_end,
                                 int(tr["n"]) + len(inside), last_row)
        test_period = (float(te["start"]), float(te["end"])) if te["start"] is not None else None
        return lk.temporal_outcome(col, kind_tr, params, gap, ctx.test.n_rows, flagged,
                                   [match.get(r, last_row) for r in flagged],
                                   (float(tr["start"]), train_end), test_period,
                                   ctx.train.n_rows - int(tr["n"]), sorted(missing))
    finally:
        train.unpersist()
        test.unpersist()
