"""Spark forms of data.duplicates and data.class_balance: the same metrics, findings and verdicts as the pandas
``run`` (shared through ``duplicates_outcome`` / ``balance_outcome``), on whole datasets that are never collected:
only the flagged rows and the per-class counts come back to the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from auditor.checks._spark_tabular import NA, profile, row_hash
from auditor.checks.data import (ClassBalanceParams, DatasetDuplicates, DuplicatesParams, balance_outcome,
                                 duplicates_outcome)
from auditor.report import Outcome

if TYPE_CHECKING:
    from auditor.engine import AuditContext
    from auditor.spark import SparkDataset


def duplicates(ctx: "AuditContext", params: DuplicatesParams) -> Outcome:
    return duplicates_outcome(params, [_dataset_duplicates(ctx, ds, params.include_label) for ds in ctx.datasets()])


def _dataset_duplicates(ctx: "AuditContext", ds: "SparkDataset", include_label: bool) -> DatasetDuplicates:
    """Rows repeating an earlier row (every row of a group but the one with the smallest row number) and rows of
    feature-identical groups with more than one label, in one Spark job with a window per grouping."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    ctx.progress.step(f"profiling {ds.name} columns")
    prof = profile(ds, ctx)
    ctx.progress.step(f"hashing and grouping {ds.name} rows")
    feat = row_hash([prof.normalised(c) for c in ds.feature_columns])
    label = F.coalesce(prof.label_key(), F.lit(NA)) if ds.label is not None else F.lit(NA)
    whole = F.xxhash64(feat, label) if include_label and ds.label is not None else feat
    slim = ds.df.select(F.col(ROW).alias("row"), feat.alias("f"), whole.alias("r"), label.alias("y"))
    by_row, by_feat = Window.partitionBy("r"), Window.partitionBy("f")
    marked = slim.select(
        "row", "f",
        (F.col("row") != F.min("row").over(by_row)).alias("dup"),
        (F.min("y").over(by_feat) != F.max("y").over(by_feat)).alias("conflict"),
    )
    dup_rows, conflict_rows, conflict_groups = [], [], set()
    for r in marked.filter(F.col("dup") | F.col("conflict")).toLocalIterator():
        if r["dup"]:
            dup_rows.append(int(r["row"]))
        if r["conflict"]:
            conflict_rows.append(int(r["row"]))
            conflict_groups.add(r["f"])
    return DatasetDuplicates(ds.name, ds.n_rows, sorted(dup_rows), sorted(conflict_rows), len(conflict_groups))


def class_balance(ctx: "AuditContext", params: ClassBalanceParams) -> Outcome:
    labelled = []
    for ds in ctx.datasets():
        if ds.label is None:
            continue
        labelled.append(_label_counts(ctx, ds))
    return balance_outcome(params, labelled)


def _label_counts(ctx: "AuditContext", ds: "SparkDataset") -> tuple:
    """(name, rows per label as label_series text, rows without a label): a groupBy on the label, whose distinct
    values are written as text by pandas itself; the unlabelled rows are collected only when there are some."""
    import pandas as pd
    from pyspark.sql import functions as F

    from auditor.spark import collect_rows

    ctx.progress.step(f"counting {ds.name} labels")
    prof = profile(ds, ctx)
    groups = ds.df.groupBy(prof.label_value().alias("v")).count().collect()
    texts = prof.label_texts([g["v"] for g in groups])
    counts: dict[str, int] = {}
    n_missing = 0
    for text, g in zip(texts, groups):
        if text is None:
            n_missing += int(g["count"])
        else:
            counts[str(text)] = counts.get(str(text), 0) + int(g["count"])
    missing = collect_rows(ds.df.filter(prof.label_key().isNull())) if n_missing else []
    if len(missing) != n_missing:
        raise RuntimeError(f"{ds.name}: {n_missing} labels are missing by count but {len(missing)} by row")
    return ds.name, pd.Series(counts, dtype="int64"), missing
