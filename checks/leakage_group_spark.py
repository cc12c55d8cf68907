"""leakage.group on Spark: test rows whose entity id also occurs in training, by a join on canonical ids.

Ids compare as the pandas check compares them (:mod:`auditor.checks.leakage_hashing`, value by value):
numbers, booleans and numeric-looking strings as float64 (``"7" == 7 == 7.0``, ``-0.0 == 0.0``), integers
beyond 2**53 exactly when their column has no nulls, strings trimmed with inner ASCII whitespace folded,
datetimes as UTC nanoseconds; an empty string, NaN or a "nan" string is a missing id. In a CSV file, a
column of numbers (or booleans) with pyarrow's null spellings such as ``NA`` is typed as strings by Spark and
as numbers with nulls by pyarrow: those spellings are missing ids here too. Here each id becomes a
struct ``(kind, number, text, integer)`` (null when missing), so equal canonical ids are equal structs and the
match is an equi-join instead of the pandas check's 64-bit hashes.

Work per set: at most one aggregate about the id columns (nulls in integer columns, CSV strings) and one for
the counts (distinct ids, rows without one); then the first training row of every id (a ``groupBy``) joined
with the test rows. Only the matched test rows, with their training row, come back to the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from auditor.checks import leakage as lk
from auditor.checks import leakage_hashing as lh
from auditor.report import Outcome

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from auditor.engine import AuditContext
    from auditor.spark import SparkDataset

INTEGRAL = ("tinyint", "smallint", "int", "bigint")
FLOATING = ("float", "double")
#: what ``pd.to_numeric`` turns into a number (after trimming); "nan" strings are missing ids instead
NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[iI][nN][fF]([iI][nN][iI][tT][yY])?)$"
NAN = r"^[+-]?[nN][aA][nN]$"
#: pyarrow's utf8_trim_whitespace strips Unicode whitespace; RE2's \s, used to fold inner runs, is ASCII only
UNICODE_EDGES = r"(?U)^\s+|\s+$"
ASCII_RUNS = r"[\t\n\f\r ]+"
#: pyarrow's CSV null spellings: in a column pyarrow types as numbers or booleans they are nulls, where Spark
#: (whose only CSV null is the empty field) types the column as strings and keeps them
CSV_NULLS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "N/A", "NA",
             "NULL", "NaN", "n/a", "nan", "null")
CSV_TRUE, CSV_FALSE = ("1", "True", "TRUE", "true"), ("0", "False", "FALSE", "false")
KEY = "struct<kind:tinyint,num:double,text:string,ints:bigint>"


def _key(kind: int, num: "Column | None" = None, text: "Column | None" = None, ints: "Column | None" = None) -> "Column":
    """A canonical id: unused fields hold constants so that equal ids are equal structs."""
    from pyspark.sql import functions as F

    return F.struct(
        F.lit(kind).cast("tinyint").alias("kind"),
        (num if num is not None else F.lit(0.0)).cast("double").alias("num"),
        (text if text is not None else F.lit("")).cast("string").alias("text"),
        (ints if ints is not None else F.lit(0)).cast("long").alias("ints"),
    )


def _number(v: "Column") -> "Column":
    """A float64 id: missing for NaN (and null), -0.0 folded into 0.0."""
    from pyspark.sql import functions as F

    return F.when(v.isNull() | F.isnan(v), F.lit(None)).otherwise(_key(1, num=F.when(v == 0, F.lit(0.0)).otherwise(v)))


def _text(v: "Column") -> "Column":
    """A string id, like leakage_hashing's string path: numbers when they parse, missing when empty or 'nan'."""
    from pyspark.sql import functions as F

    folded = F.regexp_replace(F.regexp_replace(v, UNICODE_EDGES, ""), ASCII_RUNS, " ")
    number = folded.cast("double")
    return (
        F.when(folded.isNull() | (folded == "") | folded.rlike(NAN), F.lit(None))
        .when(folded.rlike(NUMBER), _key(1, num=F.when(number == 0, F.lit(0.0)).otherwise(number)))
        .otherwise(_key(2, text=folded))
    )


def csv_nulls(col: "Column") -> "Column":
    """``col`` with pyarrow's CSV null spellings as nulls."""
    from pyspark.sql import functions as F

    return F.when(col.isin(*CSV_NULLS), F.lit(None)).otherwise(col)


def csv_string_aggregates(ds: "SparkDataset", cols: list[str]):
    """What pyarrow makes of each string column of a CSV file (Spark's inferSchema typed it as strings):
    ``"number"`` or ``"boolean"`` when every value other than a null spelling is one (the spellings then are
    nulls), ``"null"`` when there is no such value, else ``"string"``. Returns (aggregate columns, a function
    of the aggregated row giving {column: type}), for callers to fold into an aggregate of their own; no
    aggregates for other formats."""
    from pyspark.sql import functions as F

    strings = [c for c in cols if ds.format == "csv" and ds.dtype(c) == "string"]
    aggs = []
    for i, c in enumerate(strings):
        v = csv_nulls(F.col(f"`{c}`"))
        number = F.regexp_replace(v, UNICODE_EDGES, "").rlike(NUMBER)  # pyarrow reads " 1" as a number
        aggs += [F.count(v).alias(f"csv_n{i}"), F.count(F.when(number, 1)).alias(f"csv_num{i}"),
                 F.count(F.when(v.isin(*CSV_TRUE, *CSV_FALSE), 1)).alias(f"csv_bool{i}")]

    def classify(row) -> dict[str, str]:
        out = {}
        for i, c in enumerate(strings):
            n = row[f"csv_n{i}"]
            out[c] = ("null" if not n else "number" if row[f"csv_num{i}"] == n
                      else "boolean" if row[f"csv_bool{i}"] == n else "string")
        return out

    return aggs, classify


def canonical(name: str, dtype: str, exact_ints: bool, csv_type: str | None = None) -> "Column":
    """The canonical id of column ``name`` of Spark type ``dtype`` (null when missing). ``exact_ints``: an
    integral column without nulls, whose values beyond 2**53 the pandas check keeps exact (tagged as it does);
    ``csv_type``: what pyarrow would have made of a CSV string column (:func:`csv_string_aggregates`)."""
    from pyspark.sql import functions as F

    col = F.col(f"`{name}`")
    if csv_type == "null":
        return F.lit(None).cast(KEY)
    if csv_type == "boolean":
        return _number(F.when(col.isin(*CSV_TRUE), F.lit(1.0)).when(col.isin(*CSV_FALSE), F.lit(0.0)))
    if csv_type == "number":
        return _text(csv_nulls(col))
    if dtype in INTEGRAL:
        number = _number(col.cast("double"))
        if not exact_ints:
            return number
        exact = _key(3, ints=col.cast("long").bitwiseXOR(F.lit(lh._INT_TAG >> 1)))
        return F.when(F.abs(col.cast("long")) > lh._EXACT_INT, exact).otherwise(number)
    if dtype in FLOATING or dtype == "boolean" or dtype.startswith("decimal"):
        return _number(col.cast("double"))
    if dtype in ("timestamp", "timestamp_ntz", "date"):
        ns = F.unix_micros(col.cast("timestamp")) * F.lit(1000)
        return F.when(col.isNull(), F.lit(None)).otherwise(_key(3, ints=ns))
    return _text(col.cast("string"))


def _keyed(ds: "SparkDataset", cols: list[str]) -> "tuple[DataFrame, list[str]]":
    """``ds``'s row numbers and canonical ids (columns k0, k1, ...); what the ids need to know about their
    columns (nulls in integer columns, CSV strings pyarrow would type otherwise) takes one aggregate."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    integral = [c for c in cols if ds.dtype(c) in INTEGRAL]
    counts = [F.count(F.col(f"`{c}`")).alias(f"c{i}") for i, c in enumerate(integral)]
    csv_aggs, classify = csv_string_aggregates(ds, cols)
    row = ds.df.agg(*counts, *csv_aggs).first() if counts or csv_aggs else None
    full = {c for i, c in enumerate(integral) if row[f"c{i}"] == ds.n_rows}
    as_csv = classify(row) if csv_aggs else {}
    keys = [f"k{i}" for i in range(len(cols))]
    keyed = ds.df.select(F.col(ROW), *[canonical(c, ds.dtype(c), c in full, as_csv.get(c)).alias(k)
                                       for c, k in zip(cols, keys)])
    return keyed, keys


def _present(keys: list[str]) -> "Column":
    from pyspark.sql import functions as F

    cond = F.lit(True)
    for k in keys:
        cond = cond & F.col(k).isNotNull()
    return cond


def group_leakage(ctx: "AuditContext", params: lk.GroupParams) -> Outcome:
    """The Spark engine's leakage.group: the pandas check's metrics and finding, the matching done by Spark."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    if not params.column:
        return Outcome.skipped(lk.NO_ID_COLUMN)
    cols = lk._columns_of(params.column)
    for ds in (ctx.train, ctx.test):
        lk._require_columns(ds, cols, "id")
    ctx.progress.step(f"matching test ids ({', '.join(cols)}) with training ids in Spark")
    train, keys = _keyed(ctx.train, cols)
    test, _ = _keyed(ctx.test, cols)
    train_groups = train.agg(F.countDistinct(*[F.col(k) for k in keys])).first()[0]
    stats = test.agg(F.countDistinct(*[F.col(k) for k in keys]).alias("groups"),
                     F.sum(F.when(_present(keys), 0).otherwise(1)).alias("without")).first()
    first_rows = train.where(_present(keys)).groupBy(*keys).agg(F.min(ROW).alias("__train_row__"))
    pairs = test.where(_present(keys)).join(first_rows, on=keys, how="inner").select(ROW, "__train_row__")
    matched = sorted((int(r[0]), int(r[1])) for r in pairs.toLocalIterator())
    test_rows = [t for t, _ in matched]
    train_rows = [s for _, s in matched]
    # each id's first training row stands for the id: distinct rows = distinct shared ids
    return lk.group_outcome(cols, params, ctx.test.n_rows, test_rows, train_rows, shared=len(set(train_rows)),
                            train_groups=train_groups, test_groups=stats["groups"], without_id=stats["without"] or 0)
