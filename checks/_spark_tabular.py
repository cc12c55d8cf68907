"""Spark forms of the tabular helpers: ``_tabular.normalise`` / ``label_series`` (a dataset's rows grouped by value)
and ``leakage_hashing``'s value-level canonical form (rows matched across two files), as DataFrame expressions.

The pandas engine compares what pyarrow read; Spark reads the same files with its own CSV type inference, which
differs where it matters: ``NA``, ``null``, ``nan``, ``#N/A`` and the other pyarrow null tokens, ``inf`` and
``NAN`` spellings make Spark keep a column of numbers as text while pyarrow reads numbers and missing values;
``true``/``NA`` columns likewise; an empty CSV field is ``""`` in a pyarrow text column but null in Spark. So a
CSV dataset's text columns are first *typed as pyarrow would type them* (numbers, booleans, or text with ``""``
for empty fields), decided per column over the whole dataset in the same single aggregation pass that makes the
other per-column decisions (does every value of a text column parse as a number, are the labels integral, do
big integer columns hold nulls). Everything else is row by row in Spark SQL functions: no Python UDFs.

Whitespace follows the pandas side exactly: ``normalise`` and ``label_series`` strip and fold Python's
whitespace (``str.isspace``), while the value-level canonical form strips that set but folds inner runs of
``[\\t\\n\\f\\r ]`` only (pyarrow's RE2 ``\\s``). Numbers in text follow ``pd.to_numeric``'s grammar.

Rows are grouped by ``xxhash64`` over the normalised fields (64 bits, like the pandas engine's hashes); every
field is non-null (missing values have their own marker), since ``xxhash64`` skips nulls and would otherwise
confuse ``(null, "a")`` with ``("a", null)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import Column

    from auditor.engine import AuditContext
    from auditor.spark import SparkDataset


def _java_class(chars: list[int]) -> str:
    """A Java regex character class of the given code points (runs as ranges)."""
    parts, i = [], 0
    while i < len(chars):
        j = i
        while j + 1 < len(chars) and chars[j + 1] == chars[j] + 1:
            j += 1
        lo, hi = chars[i], chars[j]
        parts.append(f"\\x{{{lo:X}}}" + (f"-\\x{{{hi:X}}}" if hi > lo else ""))
        i = j + 1
    return "[" + "".join(parts) + "]"


#: Python's whitespace (str.isspace, re's \s): what pandas strips and folds
WS = _java_class([c for c in range(0x110000) if chr(c).isspace()])
#: RE2's \s, which pyarrow's replace_substring_regex folds in the value-level canonical form
RE2_WS = "[\\t\\n\\f\\r ]"
_NUM = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
#: what pd.to_numeric accepts (on stripped text): decimal numbers and inf/infinity in any case
PD_NUMBER = rf"^[+-]?(?:{_NUM}|(?i:inf|infinity))$"
#: what pyarrow's CSV reader parses as a number (it trims spaces and tabs; nan in any case is NaN)
PA_NUMBER = rf"^[ \t]*[+-]?(?:{_NUM}|(?i:inf|infinity|nan))[ \t]*$"
NAN_TEXT = r"^[+-]?(?i:nan)$"
#: what pyarrow's CSV reader parses as a date or an ISO 8601 timestamp
PA_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}(?::[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?)?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
NA = "\x00<NA>"  # the missing-value marker of the pandas side's text columns
_EXACT_INT = 2**53
_MISSING_MICROS = -(2**63)

NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double")
INTEGER = ("tinyint", "smallint", "int", "bigint")


def _pa_tokens() -> tuple[list[str], list[str], list[str]]:
    """pyarrow's CSV null, true and false spellings (read from the installed pyarrow, so both engines agree)."""
    from pyarrow import csv

    opts = csv.ConvertOptions()
    return list(opts.null_values), list(opts.true_values), list(opts.false_values)


def _kind_of(dtype: str) -> str:
    if dtype in NUMERIC or dtype.startswith("decimal"):
        return "number"
    if dtype == "boolean":
        return "bool"
    if dtype == "string":
        return "text"
    if dtype in ("date", "timestamp", "timestamp_ntz"):
        return "datetime"
    return "other"


@dataclass
class Profile:
    """One dataset's per-column decisions, from one aggregation pass over it.

    ``kinds``: how each column compares (number, bool, text, datetime, other) after typing CSV text columns as
    pyarrow would; ``pa_typed``: the CSV text columns pyarrow reads as numbers, booleans or datetimes; ``numeric_text``:
    text columns whose every value parses as a number (``normalise`` compares them as numbers);
    ``whole_ints``: integer columns without nulls (pandas holds them as int64, not float64), and among them
    ``exact_ints``, those holding values beyond 2**53 (compared exactly); ``label_integral``: every finite
    label is a whole number (``label_series`` then drops the ``.0``).
    """

    ds: "SparkDataset" = field(repr=False)
    kinds: dict[str, str]
    pa_typed: dict[str, str]
    numeric_text: set[str]
    whole_ints: set[str]
    exact_ints: set[str]
    label_integral: bool

    def col(self, name: str) -> "Column":
        from pyspark.sql import functions as F

        return F.col(f"`{name}`")

    # ------------------------------------------------------------------ typed view

    def typed(self, name: str) -> "Column":
        """The column as the pandas engine would hold it: pyarrow's typing of CSV text columns applied."""
        from pyspark.sql import functions as F

        c = self.col(name)
        how = self.pa_typed.get(name)
        if how == "number":  # null tokens (and Spark's nulls) are missing; nan parses to NaN
            return F.when(c.rlike(PA_NUMBER), F.regexp_replace(c, r"^[ \t]+|[ \t]+$", "").cast("double"))
        if how == "bool":
            nulls, true, false = _pa_tokens()
            return F.when(c.isin(true), F.lit(True)).when(c.isin(false), F.lit(False))
        if how == "datetime":
            return F.when(c.rlike(PA_DATETIME), c.cast("timestamp"))
        dtype = self.ds.dtype(name)
        if dtype == "string" and self.ds.format == "csv":
            return F.coalesce(c, F.lit(""))  # pyarrow reads an empty field of a text column as ""
        if dtype == "binary":
            return F.hex(c)
        if self.kinds[name] == "other" and not dtype.startswith(("array", "map", "struct")):
            return c.cast("string")
        if self.kinds[name] == "other":
            return F.to_json(c)
        return c

    # ------------------------------------------------------------------ normalise (one dataset)

    def normalised(self, name: str) -> "Column":
        """One non-null hash field per column whose equality is ``_tabular.normalise``'s: numbers and booleans
        as float64 (-0.0 == 0.0, NaN == null), text stripped and folded (a column of numbers in text as
        numbers), datetimes as instants."""
        from pyspark.sql import functions as F

        kind, t = self.kinds[name], self.typed(name)
        if kind in ("number", "bool"):
            return _float_field(t.cast("double"))
        if kind == "text":
            folded = fold(t)
            if name in self.numeric_text:
                return _float_field(folded.cast("double"))
            return F.coalesce(folded, F.lit(NA))
        if kind == "datetime":
            return F.coalesce(F.unix_micros(t.cast("timestamp")), F.lit(_MISSING_MICROS))
        return F.coalesce(t, F.lit(NA))

    def label_key(self) -> "Column":
        """The label as ``label_series`` compares it (null where it is missing): integral numbers as integers,
        non-finite ones missing; other numbers by value; booleans; text stripped (not folded)."""
        from pyspark.sql import functions as F

        kind, t = self.kinds[self.ds.label], self.typed(self.ds.label)
        if kind == "number":
            x = t.cast("double")
            if self.label_integral:
                return F.when(_finite(x), x.cast("bigint").cast("string"))
            # pandas writes floats with repr: -0.0 stays apart from 0.0, as Spark's cast to string keeps it
            return F.when(~F.isnan(x), x.cast("string"))
        if kind == "bool":
            return F.when(t, F.lit("True")).when(~t, F.lit("False"))
        if kind == "text":
            return strip(t)
        if kind == "datetime":
            return t.cast("timestamp").cast("string")
        return t

    # ------------------------------------------------------------------ value-level canonical form (two files)

    def canonical(self, name: str, float32: bool) -> "list[Column]":
        """(kind, number, text, integer) of each value, equal where ``leakage_hashing.canonical`` is equal:
        kind 0 missing (null, NaN, "", "nan"), 1 number (float64; at float32 precision when ``float32``;
        booleans and numeric-looking text included), 2 text (stripped, spaces folded), 3 instant (UTC
        microseconds), 4 an integer beyond 2**53 in an integer column without nulls (compared exactly)."""
        from pyspark.sql import functions as F

        kind, t = self.kinds[name], self.typed(name)
        zero_f, empty, zero_i = F.lit(0.0), F.lit(""), F.lit(0).cast("bigint")
        if kind in ("number", "bool"):
            x = t.cast("double")
            # an integer column without nulls is compared as integers (pandas holds it as int64), never rounded
            v = _f32(x) if float32 and name not in self.whole_ints else x
            missing = x.isNull() | F.isnan(x)
            if name in self.exact_ints:
                big = F.abs(t.cast("bigint")) > F.lit(_EXACT_INT)
                return [F.when(big, 4).otherwise(1), F.when(big, zero_f).otherwise(_fold_zero(v)), empty,
                        F.when(big, t.cast("bigint")).otherwise(zero_i)]
            return [F.when(missing, 0).otherwise(1), F.when(missing, zero_f).otherwise(_fold_zero(v)), empty, zero_i]
        if kind == "datetime":
            micros = F.unix_micros(t.cast("timestamp"))
            return [F.when(micros.isNull(), 0).otherwise(3), zero_f, empty, F.coalesce(micros, zero_i)]
        text = fold_re2(t)
        number = text.rlike(PD_NUMBER)
        raw = text.cast("double")
        num = _f32(raw) if float32 else raw
        missing = text.isNull() | (text == "") | text.rlike(NAN_TEXT)
        k = F.when(missing, 0).when(number, 1).otherwise(2)
        return [k, F.when(~missing & number, _fold_zero(num)).otherwise(zero_f),
                F.when(missing | number, empty).otherwise(text), zero_i]

    # ------------------------------------------------------------------ labels as label_series text

    def label_value(self) -> "Column":
        """The label to group by for class counts (collected, then written as text by ``label_texts``)."""
        from pyspark.sql import functions as F

        name = self.ds.label
        t, dtype = self.typed(name), self.ds.dtype(name)
        if self.kinds[name] == "datetime" and dtype != "date":
            return F.unix_micros(t.cast("timestamp"))  # not a Python datetime: no local time zone on the way
        if self.kinds[name] == "number" and (dtype in ("float", "double") or name in self.pa_typed):
            # grouping on a double merges -0.0 with 0.0, which label_series keeps apart; Java's shortest
            # round-trip text keeps every double distinct and Python's float() reads it back exactly
            return t.cast("double").cast("string")
        return t

    def label_texts(self, values: list[Any]) -> "np.ndarray":
        """``label_series`` of distinct ``label_value`` s collected from Spark, built with the dtype pandas holds
        (so the text is pandas' own: ``1`` for 1.0, ``1.5``, ``True``, ``2020-01-01 00:00:00``, ...)."""
        import numpy as np

        from auditor.checks._tabular import label_series

        kind = self.kinds[self.ds.label]
        dtype = self.ds.dtype(self.ds.label)
        if kind == "number" and not dtype.startswith("decimal"):
            arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
            if dtype == "float":  # pandas holds float32 and writes it as float32
                arr = arr.astype(np.float32)
        elif kind == "bool" and all(v is not None for v in values):
            arr = np.array(values, dtype=bool)
        elif kind == "datetime" and dtype != "date":
            arr = np.array([np.datetime64("NaT") if v is None else np.datetime64(int(v), "us") for v in values],
                           dtype="datetime64[us]")
        else:
            arr = np.array(values, dtype=object)
        return label_series(arr).to_numpy(dtype=object, na_value=None)


def fold(c: "Column") -> "Column":
    """Python whitespace runs folded to one space, then stripped (``normalise``)."""
    from pyspark.sql import functions as F

    return F.regexp_replace(F.regexp_replace(c, WS + "+", " "), "^ | $", "")


def fold_re2(c: "Column") -> "Column":
    """Stripped of Python whitespace, inner runs of RE2 whitespace folded (the value-level canonical form)."""
    from pyspark.sql import functions as F

    return F.regexp_replace(strip(c), RE2_WS + "+", " ")


def strip(c: "Column") -> "Column":
    from pyspark.sql import functions as F

    return F.regexp_replace(c, f"^{WS}+|{WS}+$", "")


def _finite(x: "Column") -> "Column":
    from pyspark.sql import functions as F

    return x.isNotNull() & ~F.isnan(x) & (F.abs(x) != F.lit(float("inf")))


def _fold_zero(x: "Column") -> "Column":
    from pyspark.sql import functions as F

    return F.when(x == 0, F.lit(0.0)).otherwise(x)


def _f32(x: "Column") -> "Column":
    return x.cast("float").cast("double")


def _float_field(x: "Column") -> "Column":
    """A float64 hash field: -0.0 folded to 0.0, null and NaN one value (NaN)."""
    from pyspark.sql import functions as F

    return F.when(x.isNull() | F.isnan(x), F.lit(float("nan"))).otherwise(_fold_zero(x))


def row_hash(fields: "list[Column]") -> "Column":
    """A 64-bit hash of non-null fields (order matters)."""
    from pyspark.sql import functions as F

    return F.xxhash64(*fields) if fields else F.lit(0).cast("bigint")


# ----------------------------------------------------------------------------- the aggregation pass


def profile(ds: "SparkDataset", ctx: "AuditContext | None" = None) -> Profile:
    """The dataset's per-column decisions, computed in one aggregation pass (shared through ``ctx.cache``)."""
    key = ("spark_tabular.profile", ds.name, ds.path)
    if ctx is not None and key in ctx.cache:
        return ctx.cache[key]
    prof = _profile(ds)
    if ctx is not None:
        ctx.cache[key] = prof
    return prof


def _profile(ds: "SparkDataset") -> Profile:
    from pyspark.sql import functions as F

    nulls, true, false = _pa_tokens()
    csv = ds.format == "csv"
    kinds = {c: _kind_of(ds.dtype(c)) for c in ds.columns}
    aggs = []

    def count(cond: "Column", tag: str) -> None:
        aggs.append(F.sum(F.when(cond, 1).otherwise(0)).alias(tag))

    for i, c in enumerate(ds.columns):
        col, dtype = F.col(f"`{c}`"), ds.dtype(c)
        if dtype == "string":
            count(col.isNotNull(), f"n{i}")
            text = fold(F.coalesce(col, F.lit("")) if csv else col)
            count(text.isNotNull() & ~text.rlike(PD_NUMBER), f"t{i}")
            if csv:
                count(col.isNotNull() & ~col.isin(nulls) & ~col.rlike(PA_NUMBER), f"pn{i}")
                count(col.isNotNull() & ~col.isin(nulls + true + false), f"pb{i}")
                count(col.isin(true + false), f"b{i}")
                count(col.isNotNull() & ~col.isin(nulls) & ~col.rlike(PA_DATETIME), f"pd{i}")
        elif dtype in INTEGER:
            count(col.isNull(), f"z{i}")
            if dtype == "bigint":
                count(F.abs(col) > F.lit(_EXACT_INT), f"big{i}")
    if ds.label is not None:
        col, dtype = F.col(f"`{ds.label}`"), ds.dtype(ds.label)
        x = (F.when(col.rlike(PA_NUMBER), F.regexp_replace(col, r"^[ \t]+|[ \t]+$", "").cast("double"))
             if dtype == "string" else col.cast("double"))
        count(_finite(x) & (x != F.floor(x)), "label_fraction")
    row = ds.df.agg(*aggs).first().asDict() if aggs else {}
    pa_typed, numeric_text, whole_ints, exact_ints = {}, set(), set(), set()
    for i, c in enumerate(ds.columns):
        dtype = ds.dtype(c)
        if dtype == "string":
            if csv and not row[f"pn{i}"]:
                pa_typed[c], kinds[c] = "number", "number"
            elif csv and not row[f"pb{i}"] and row[f"b{i}"]:
                pa_typed[c], kinds[c] = "bool", "bool"
            elif csv and not row[f"pd{i}"]:
                pa_typed[c], kinds[c] = "datetime", "datetime"
            elif row[f"n{i}"] and not row[f"t{i}"]:
                numeric_text.add(c)
        elif dtype in INTEGER and not row[f"z{i}"]:
            whole_ints.add(c)
            if row.get(f"big{i}"):
                exact_ints.add(c)
    return Profile(ds=ds, kinds=kinds, pa_typed=pa_typed, numeric_text=numeric_text, whole_ints=whole_ints,
                   exact_ints=exact_ints, label_integral=not row.get("label_fraction"))
