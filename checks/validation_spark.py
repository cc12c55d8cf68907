"""data.validation on Spark: the same suites as the pandas engine, run by Great Expectations' Spark datasource.

The suite, the result matching (by each expectation's index tag) and the findings are the pandas check's
(:mod:`auditor.checks.validation`); what differs is how GX is asked, so that the data is never collected:

1. every expectation runs once with ``BOOLEAN_ONLY`` on the table without the row-number column, which
   GX answers from a few aggregate scans (its metrics are bundled into one ``agg`` per domain and level),
   and which keeps column-set expectations from seeing :data:`~auditor.spark.ROW`;
2. only the failed ones run again with ``COMPLETE``: row-level (map) expectations on the table with
   :data:`~auditor.spark.ROW` as GX's ``unexpected_index_column_names``, so the failing rows come back
   as file row numbers (GX collects those rows, and only those); the others for their observed value.
   With ``COMPLETE`` for all, GX would scan twice more per row-level expectation (the first 200 failing
   values, then the failing rows) even when it passes: with the defaults on a 4-column table of 2M rows,
   30 Spark jobs instead of 19; with only 3 policy expectations, 2 of them failing, about the same.

GX sees the values the pandas engine sees (:func:`pandas_like`): NaN as null, and CSV columns typed as
pyarrow types them where Spark's inferSchema differs (``NA`` in a column of numbers, ``inf`` as pandas
writes it, empty text fields). The table is cached for the two passes and released afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from auditor.checks import validation as v
from auditor.report import Outcome

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from auditor.engine import AuditContext
    from auditor.spark import SparkDataset

#: Spark types the pandas engine sees as numeric (and not boolean): they get the finite-values default
NUMERIC_TYPES = ("tinyint", "smallint", "int", "bigint", "float", "double")


def is_numeric(spark_type: str) -> bool:
    return spark_type in NUMERIC_TYPES or spark_type.startswith("decimal")


def pandas_like(ds: "SparkDataset") -> "tuple[DataFrame, set[str]]":
    """(``ds``'s table with the pandas engine's values, its numeric columns holding any value), one aggregate.

    NaN in float columns is null (pandas treats NaN as missing; for Spark NaN is a value larger than any
    number), and for a CSV file the string columns are typed as pyarrow reads them: numbers or booleans with
    null spellings (``NA``, ``inf`` spelled as pandas writes it) as such, columns of null spellings as nulls,
    and empty fields of text columns as "" (pyarrow keeps them, Spark reads null)."""
    from pyspark.sql import functions as F

    from auditor.checks.leakage_group_spark import CSV_FALSE, CSV_TRUE, UNICODE_EDGES, csv_nulls, csv_string_aggregates

    numeric = [c for c in ds.columns if is_numeric(ds.dtype(c))]
    counts = [F.count(F.when(~F.isnan(F.col(f"`{c}`")), 1)).alias(f"num{i}") for i, c in enumerate(numeric)]
    csv_aggs, classify = csv_string_aggregates(ds, list(ds.columns))
    row = ds.df.agg(*counts, *csv_aggs).first() if counts or csv_aggs else None
    as_csv = classify(row) if csv_aggs else {}
    filled = {c for i, c in enumerate(numeric) if row[f"num{i}"]} | {c for c, k in as_csv.items() if k == "number"}
    cols = []
    for name, dtype in ds.df.dtypes:
        col, kind = F.col(f"`{name}`"), as_csv.get(name)
        if dtype in ("float", "double"):
            col = F.when(F.isnan(col), F.lit(None)).otherwise(col)
        elif kind == "number":
            col = F.regexp_replace(csv_nulls(col), UNICODE_EDGES, "").cast("double")
        elif kind == "boolean":
            col = F.when(col.isin(*CSV_TRUE), F.lit(True)).when(col.isin(*CSV_FALSE), F.lit(False))
        elif kind == "null":
            col = F.lit(None).cast("string")
        elif kind == "string":
            col = F.coalesce(col, F.lit(""))
        cols.append(col.alias(name))
    return ds.df.select(*cols), filled


def is_row_level(name: str) -> bool:
    """Whether a GX expectation judges rows (a map expectation), so GX can report which rows failed."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation,
    )

    return issubclass(v.expectation_class(name), (ColumnMapExpectation, ColumnPairMapExpectation,
                                                   MulticolumnMapExpectation))


def _items(ds: "SparkDataset", filled: set[str], params: v.ValidationParams,
           train_columns: list[str]) -> list[tuple[str, dict]]:
    """The pandas check's suite for ``ds`` (``filled``: its numeric columns holding any value)."""
    return v.suite_items(ds.name, params, lambda: v.default_suite(
        ds.label, list(ds.columns), filled, train_columns if ds.name != "train" else None))


def _rows(result: dict) -> list[int] | None:
    """File row numbers of GX's ``unexpected_index_list`` (dicts holding ROW, and the failing values)."""
    from auditor.spark import ROW

    listed = result.get("unexpected_index_list")
    if not listed:
        return None
    return sorted(int(entry[ROW]) for entry in listed)


def _validate_dataset(context, source, name: str, table: "DataFrame", items: list[tuple[str, dict]]) -> list:
    """(index, GX result, failing rows or None) of every failed expectation of ``items`` on ``table``."""
    from auditor.spark import ROW

    batches = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(f"{name}-all")
    plain = table.drop(ROW)
    first = batches.get_batch(batch_parameters={"dataframe": plain}).validate(
        v.add_suite(context, f"auditor-{name}", items), result_format={"result_format": "BOOLEAN_ONLY"})
    by_index = v.results_by_index(first)
    failed = [i for i in range(len(items)) if not by_index[i].success]
    again = [i for i in failed if not v.exception_message(by_index[i].exception_info)]
    row_level = [i for i in again if is_row_level(items[i][0])]
    observed = [i for i in again if i not in set(row_level)]
    rows: dict[int, list[int] | None] = {}
    for label, indexes, frame, fmt in (
        ("rows", row_level, table, {"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]}),
        ("observed", observed, plain, {"result_format": "COMPLETE"}),
    ):
        if not indexes:
            continue
        suite = v.add_suite(context, f"auditor-{name}-{label}", items, indexes)
        second = batches.get_batch(batch_parameters={"dataframe": frame}).validate(suite, result_format=fmt)
        for index, r in v.results_by_index(second).items():
            by_index[index] = r
            rows[index] = _rows(r.result or {}) if label == "rows" else None
    return [(i, by_index[i], rows.get(i)) for i in failed]


def validate(ctx: "AuditContext", params: v.ValidationParams) -> Outcome:
    """The Spark engine's data.validation: the pandas check's suites, metrics and findings, rows from Spark."""
    from auditor.spark import persist

    gx, context = v.gx_context()
    source = context.data_sources.add_spark("auditor", persist=False)
    metrics: dict = {"defaults": params.defaults}
    findings = []
    train_columns = list(ctx.train.columns)
    for ds in ctx.datasets():
        table, filled = pandas_like(ds)
        table = persist(table)  # GX scans it several times (one aggregate per domain, then the failing rows)
        try:
            items = _items(ds, filled, params, train_columns)
            ctx.progress.step(f"validating {ds.name} ({len(items)} expectations) with Great Expectations on Spark")
            failed = _validate_dataset(context, source, ds.name, table, items)
        finally:
            table.unpersist()
        for index, r, rows in failed:
            name, kwargs = items[index]
            findings.append(v.failure_finding(ds.name, name, kwargs, r, rows, ds.n_rows))
        metrics[ds.name] = v.dataset_metrics(items, len(failed))
    return Outcome(status="fail" if findings else "pass", metrics=metrics, findings=findings)
