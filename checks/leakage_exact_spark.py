"""Spark form of leakage.exact_duplicates: test rows whose compared columns equal a training row's, values in the
value-level canonical form of ``leakage_hashing`` (1 == 1.0 == "1", whitespace folded, NaN == null == ""), found
by a hash join that never collects either dataset.

Each row gets a 64-bit ``xxhash64`` of its canonical fields. The distinct test hashes (8 bytes a row) are
broadcast when the test set is moderate, so the training set is streamed through a semi join and only the
training rows whose hash occurs in the test set go further: grouped by hash to (first training row, number of
copies), joined to the test rows and verified field by field against that first row, as the pandas engine
verifies its hash matches. Only the matched pairs come back to the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from auditor.checks import leakage_hashing as lh
from auditor.checks._spark_tabular import Profile, profile, row_hash
from auditor.checks.leakage import ExactParams, compared_columns, exact_outcome
from auditor.report import Outcome

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from auditor.engine import AuditContext

#: test sets up to this many rows have their distinct hashes broadcast (8 bytes each, plus the hash table)
BROADCAST_TEST_ROWS = 2_000_000


def exact_duplicates(ctx: "AuditContext", params: ExactParams) -> Outcome:
    import numpy as np
    from pyspark.sql import functions as F

    train, test = ctx.train, ctx.test
    cols = compared_columns(train, test, params.include_label, params.columns, params.ignore)
    if not cols:
        return Outcome.skipped("the training and test sets share no columns to compare")
    # a column stored as float32 on either side is compared at float32 precision on both, as in pandas
    f32 = {c for c in cols if train.dtype(c) == "float" or test.dtype(c) == "float"}
    with_label = bool(train.label and test.label and not params.include_label)
    ctx.progress.step("profiling training and test columns")
    p_train, p_test = profile(train, ctx), profile(test, ctx)
    ctx.progress.step("hashing training and test rows; joining on the hash")
    tr = _canonical_rows(p_train, cols, f32, with_label)
    te = _canonical_rows(p_test, cols, f32, with_label)
    keys = te.select("h").distinct()
    if test.n_rows <= BROADCAST_TEST_ROWS:
        keys = F.broadcast(keys)
    firsts = (tr.join(keys, "h", "left_semi").groupBy("h")
              .agg(F.min(F.struct("row", "v", "y")).alias("first"), F.count(F.lit(1)).alias("copies")))
    matched = (te.join(firsts, "h").filter(F.col("v") == F.col("first.v"))
               .select(F.col("row").alias("test_row"), F.col("first.row").alias("train_row"), "copies",
                       (F.col("y") == F.col("first.y")).alias("same")))
    pairs = sorted((int(r["test_row"]), int(r["train_row"]), int(r["copies"]), bool(r["same"]))
                   for r in matched.toLocalIterator())
    m = lh.Matches(np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64),
                   np.array([p[2] for p in pairs], dtype=np.int64))
    same_label = sum(p[3] for p in pairs) if with_label and pairs else None
    return exact_outcome(params, test.n_rows, train.n_rows, len(cols), m, same_label)


def _canonical_rows(prof: Profile, cols: list[str], f32: set[str], with_label: bool) -> "DataFrame":
    """(row, h: hash of the canonical fields, v: the fields, y: the label's canonical fields) per row."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    fields = [prof.canonical(c, c in f32) for c in cols]
    flat = [x for f in fields for x in f]
    value = F.struct(*[F.struct(*[x.alias(f"k{j}") for j, x in enumerate(f)]).alias(f"c{i}")
                       for i, f in enumerate(fields)])
    label = (F.struct(*[x.alias(f"k{j}") for j, x in enumerate(prof.canonical(prof.ds.label, False))])
             if with_label else F.lit(None).cast("boolean"))
    return prof.ds.df.select(F.col(ROW).alias("row"), row_hash(flat).alias("h"), value.alias("v"), label.alias("y"))
