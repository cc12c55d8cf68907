"""``leakage.near_duplicates`` on Spark: the pandas check's definition of a near-copy, computed without
collecting either dataset.

The same definition as the pandas engine (:mod:`auditor.checks.leakage_neighbours`), step by step:

- **exact copies** (canonical values of the shared feature columns equal a training row's) are found by a
  hash join and excluded, as the pandas check does;
- **space**: numeric columns scaled by the training median and IQR / 1.349 (population std when the IQR is
  0), computed *exactly* as numpy does: approximate percentiles bracket the order statistics needed, one
  aggregation counts the values below and inside each bracket (a distributed sort when a bracket misses),
  numpy's interpolation is reproduced operation for operation; categoricals, numeric
  columns constant in training and the pattern of missing numbers form an exact-match block key; training
  rows equal in the space are kept once (the first in the file);
- **null model**: the same rows as the pandas engine (the same draws of the check's random generator over
  the distinct training rows ranked by first occurrence), their two nearest other training rows found by
  an exact float64 brute force (the <= 2,000 query rows are broadcast, the index stays distributed), then
  the same fit (:func:`~auditor.checks.leakage_neighbours.reference_fit`);
- **search**: the pandas engine's scalable path, E2LSH at the radius ``max(distance guard, threshold)``,
  with the same plan (:func:`~auditor.checks.leakage_neighbours.plan_grid` on the same 20,000-row sample)
  and the same random projections. Each row's cell keys come from the pandas engine's own ``cell_keys``
  per Arrow batch (a dense matrix product, see ``_cell_key_fn``); the explode, the join on cell keys, the
  exact float64 distance of every candidate pair and each test row's two nearest are Spark SQL;
- **rows beyond the radius**: a row whose ratio rule applies (nearest within the distance guard) but whose
  second neighbour the grid did not see inside the radius would get the radius as its second distance (the
  pandas E2LSH rule, which under-states the ratio of exactly the near-copies). Those rows are few (the
  near-copies and a handful of others), so they are searched exactly (the broadcast brute force again)
  within the ``exact_pairs`` budget; their p-values are then the exact search's. With budget 0 the pandas
  E2LSH rule is kept, and the result equals the pandas engine's E2LSH path;
- **verdict**: the same p-values (TwoNN ratio below the guard, Weibull distance law) and Benjamini-Hochberg
  at ``false_alarm``, both in Spark.

LSH parameters, and why (they are the pandas engine's, see ``plan_grid``): cells are ``4 x radius`` wide,
so one Gaussian projection keeps a pair exactly at the radius in one cell with probability
``q = 1 - sqrt(2 / pi) / 4 = 0.80``; a table ANDs ``p`` projections, ``p`` the fewest that keep a row's
expected same-cell training rows <= 4 (measured on the sample, so the join stays ~linear); tables are ORed,
``L = ceil(log(1 - target_recall) / log(1 - q ** p))`` of them (<= 64), so a pair exactly at the radius is
found with probability >= ``target_recall`` (0.99). The radius is the distance guard (half the lower
quartile of training nearest-neighbour distances), or the fixed ``threshold`` when larger. A near-copy lies
well inside it and collides in almost every table (at half the radius: >= 0.9999 with 9 projections x 32
tables, the 200k-row benchmark's plan). Compared with the pandas exact search, what remains approximate:
a row whose nearest training row the grid misses entirely gets p = 1 (probability <= 1 - target_recall at
the radius, far less nearer), and a row farther than the radius from every training row is never scored by
the Weibull rule (it could pass only when a large share of the test set is flagged).

Text columns: the pandas engine's word shingles and MinHash signatures (computed by the same functions,
per Arrow batch: tokenisation needs NFKC normalisation and the same token regex, which Spark SQL lacks),
LSH bands joined in Spark SQL with the same 50-row cap per bucket, and the exact Jaccard similarity of
every candidate pair's shingle sets in Spark SQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from pyspark.sql import Column, DataFrame

    from auditor.checks.leakage import NearParams
    from auditor.checks.leakage_neighbours import Neighbours, Reference
    from auditor.engine import AuditContext
    from auditor.spark import SparkDataset

TID = "__train_row__"  # a distinct training row's id: its first row in the training file
BLOCK = "__block__"
EXACT = "__exact__"
RANK = "__rank__"
_MONO = "__mono__"
_HASH, _CANON = "__h__", "__canon__"
_BLOCK_SEED = 0x2545F4914F6CDD1D
_INT_TYPES = ("tinyint", "smallint", "int", "bigint")
_FLOAT_TYPES = ("float", "double", "boolean")
_TIME_TYPES = ("timestamp", "timestamp_ntz", "date")
#: strings pandas' to_numeric reads as numbers (Spark's cast also takes "1d", "0x1p3", which pandas does not)
_NUMBER_RE = r"(?i)^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf|infinity)$"
_NAN_RE = r"(?i)^[+-]?nan$"
_EXACT_INT = 2**53
#: rows per partition below which small input splits are merged
ROWS_PER_PARTITION = 100_000


def _q(name: str) -> "Column":
    from pyspark.sql import functions as F

    return F.col(f"`{name}`")


# ----------------------------------------------------------------------------- canonical values
#
# Expressions are written as Spark SQL text: one call to the JVM per column instead of dozens of Column
# objects, each a py4j round trip (building the plan was most of a small run's time).


def ident(name: str) -> str:
    """A column name quoted for Spark SQL."""
    return "`" + name.replace("`", "``") + "`"


def sql_str(text: str) -> str:
    """A Spark SQL string literal (backslash escapes, the parser's default)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_NAN = "CAST('NaN' AS DOUBLE)"
_TRIM = sql_str(r"(?U)^\s+|\s+$")  # strip (Unicode whitespace, like pyarrow's utf8_trim_whitespace)
_FOLD = sql_str(r"[\t\n\f\r ]+")  # fold inner runs (RE2's \s, as the pandas engine's pyarrow kernel)
_INF = "CAST('Infinity' AS DOUBLE)"


def dlit(x: float) -> str:
    """A double as a Spark SQL literal (repr round-trips exactly)."""
    x = float(x)
    if math.isfinite(x):
        return f"{x!r}D"
    return _NAN if math.isnan(x) else (_INF if x > 0 else f"-{_INF}")


def finite(x: str) -> str:
    """SQL: ``x`` is a finite number (not null, NaN or infinite)."""
    return f"({x} IS NOT NULL AND NOT isnan({x}) AND abs({x}) != {_INF})"


def canonical(name: str, dtype: str, float32: bool = False) -> str:
    """SQL for a column's canonical values, value by value, as leakage_hashing.canonical defines them: a
    struct (k kind: 0 missing, 1 number, 2 text, 3 datetime or exact integer; n number; t text; i integer),
    never null, so equal structs are equal values. 1 == 1.0 == True == " 1.0 "; strings stripped with
    whitespace folded; "", NaN, "nan" missing; -0.0 == 0.0; datetimes as UTC nanoseconds; ``float32``:
    numbers compared at float32 precision."""
    c = ident(name)

    def number(v: str) -> str:
        if float32:
            v = f"CAST(CAST({v} AS FLOAT) AS DOUBLE)"
        return f"CASE WHEN {v} = 0 THEN 0.0D ELSE {v} END"

    k, n, t, i = "0", "0.0D", "''", "0L"
    if dtype in _INT_TYPES:
        big = f"abs(CAST({c} AS BIGINT)) > {_EXACT_INT}" if dtype == "bigint" else "false"
        k = f"CASE WHEN {c} IS NULL THEN 0 WHEN {big} THEN 3 ELSE 1 END"
        n = f"CASE WHEN {c} IS NULL OR {big} THEN 0.0D ELSE {number(f'CAST({c} AS DOUBLE)')} END"
        i = f"CASE WHEN {c} IS NULL OR NOT ({big}) THEN 0L ELSE CAST({c} AS BIGINT) END"
    elif dtype in _FLOAT_TYPES or dtype.startswith("decimal"):
        v = f"CAST({c} AS DOUBLE)"
        missing = f"({v} IS NULL OR isnan({v}))"
        k = f"CASE WHEN {missing} THEN 0 ELSE 1 END"
        n = f"CASE WHEN {missing} THEN 0.0D ELSE {number(v)} END"
    elif dtype in _TIME_TYPES:
        k = f"CASE WHEN {c} IS NULL THEN 0 ELSE 3 END"
        i = f"CASE WHEN {c} IS NULL THEN 0L ELSE unix_micros(CAST({c} AS TIMESTAMP)) * 1000L END"
    else:
        f = f"regexp_replace(regexp_replace(CAST({c} AS STRING), {_TRIM}, ''), {_FOLD}, ' ')"
        missing = f"({f} IS NULL OR {f} = '' OR {f} RLIKE {sql_str(_NAN_RE)})"
        is_num = f"{f} RLIKE {sql_str(_NUMBER_RE)}"
        k = f"CASE WHEN {missing} THEN 0 WHEN {is_num} THEN 1 ELSE 2 END"
        n = f"CASE WHEN {missing} OR NOT {is_num} THEN 0.0D ELSE {number(f'try_cast({f} AS DOUBLE)')} END"
        t = f"CASE WHEN {missing} OR {is_num} THEN '' ELSE {f} END"
    return f"named_struct('k', {k}, 'n', {n}, 't', {t}, 'i', {i})"


def numeric_view(struct: str) -> str:
    """SQL: the numeric view of a canonical struct column: numbers, datetimes as nanoseconds, else NaN."""
    return (f"CASE WHEN {struct}.k = 1 THEN {struct}.n WHEN {struct}.k = 3 THEN CAST({struct}.i AS DOUBLE) "
            f"ELSE {_NAN} END")


def compared_columns(train: "SparkDataset", test: "SparkDataset", ignore: list[str]) -> list[str]:
    """The shared feature columns in training order, as the pandas engine's near-duplicate check compares them."""
    from auditor.checks.leakage import compared_columns as shared

    return shared(train, test, False, None, ignore)


@dataclass
class Staged:
    """A dataset's canonical values, computed once per check run (persisted): ROW; ``c{i}``, column i's
    canonical struct as this side reads it (its own float32 precision, as table_space); ``e{i}`` where the
    exact comparison reads it differently (float32 on the other side only); ``v{i}``, the numeric view."""

    df: "DataFrame"
    exact: list[str]  # the struct column per compared column that the exact comparison uses


def stage(ds: "SparkDataset", other: "SparkDataset", cols: list[str], cache: "_Cached") -> Staged:
    from auditor.spark import ROW

    parts, exact = [f"{ident(ROW)} AS {ROW}"], []
    for i, c in enumerate(cols):
        own32 = ds.dtype(c) == "float"
        either32 = own32 or other.dtype(c) == "float"
        parts.append(f"{canonical(c, ds.dtype(c), own32)} AS c{i}")
        exact.append(f"c{i}")
        if either32 != own32:
            parts.append(f"{canonical(c, ds.dtype(c), either32)} AS e{i}")
            exact[-1] = f"e{i}"
    frame = ds.df.selectExpr(*parts)
    frame = frame.selectExpr("*", *[f"{numeric_view(f'c{i}')} AS v{i}" for i in range(len(cols))])
    return Staged(cache.keep(sized(frame, ds.n_rows)), exact)


def exact_flags(train: Staged, test: Staged) -> "DataFrame":
    """The test rows (ROW, EXACT) with EXACT true when a training row has the same canonical values in
    every compared column: a join on a 64-bit hash of the values, verified on the values themselves."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    def keyed(st: Staged) -> "DataFrame":
        ck = F.struct(*[F.col(n).alias(f"k{i}") for i, n in enumerate(st.exact)])
        return st.df.select(ROW, ck.alias(_CANON)).withColumn(_HASH, F.xxhash64(_CANON))

    tr = keyed(train).select(_HASH, _CANON).distinct().withColumn(EXACT, F.lit(True)).alias("tr")
    te = keyed(test).alias("te")
    cond = (F.col(f"te.{_HASH}") == F.col(f"tr.{_HASH}")) & (F.col(f"te.{_CANON}") == F.col(f"tr.{_CANON}"))
    return te.join(tr, cond, "left").select(F.col(f"te.{ROW}").alias(ROW),
                                            F.coalesce(F.col(f"tr.{EXACT}"), F.lit(False)).alias(EXACT))


# ----------------------------------------------------------------------------- distributed helpers


class _Cached:
    """DataFrames persisted for the run of one check, released together at the end."""

    def __init__(self) -> None:
        self.frames: list = []

    def keep(self, df: "DataFrame") -> "DataFrame":
        from auditor.spark import persist

        df = persist(df)
        self.frames.append(df)
        return df

    def release(self) -> None:
        for df in self.frames:
            df.unpersist(blocking=False)
        self.frames.clear()


def ranked(df: "DataFrame", order: list, cache: _Cached) -> "tuple[DataFrame, int]":
    """(``df`` sorted by ``order`` with RANK, each row's 0-based position; its row count), without moving
    every row to one partition: a range-partitioned sort, then one small aggregate (a row per partition:
    its first id and row count) gives each partition's offset. Persisted, so the ids are computed once."""
    from pyspark.sql import functions as F

    srt = cache.keep(df.orderBy(*order).withColumn(_MONO, F.monotonically_increasing_id()))
    part = F.shiftright(F.col(_MONO), 33)
    rows = srt.groupBy(part.alias("p")).agg(F.min(_MONO).alias("first"), F.count(F.lit(1)).alias("n")).collect()
    offset, pairs = 0, []
    for r in sorted(rows, key=lambda r: r["p"]):
        pairs += [F.lit(int(r["p"])), F.lit(int(offset - r["first"]))]
        offset += int(r["n"])
    if not pairs:
        return srt.withColumn(RANK, F.lit(None).cast("long")).drop(_MONO), 0
    return srt.withColumn(RANK, F.col(_MONO) + F.create_map(*pairs)[part]).drop(_MONO), offset


def sized(df: "DataFrame", rows: int) -> "DataFrame":
    """``df`` in about ``rows`` / ROWS_PER_PARTITION partitions (never fewer than the cluster's parallelism),
    merged without a shuffle: many small input splits or shuffle partitions would make every later stage
    that many tasks (each Python stage starting workers), while large inputs keep their partitioning."""
    target = max(df.sparkSession.sparkContext.defaultParallelism, math.ceil(rows / ROWS_PER_PARTITION))
    return df.coalesce(target)


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation between order statistics, operation for operation."""
    d = b - a
    return b - d * (1 - t) if t >= 0.5 else a + d * t


_QUARTILES = (0.25, 0.5, 0.75)


def _order_ranks(n: int) -> dict[float, tuple[int, int]]:
    """The 0-based ranks (of n sorted values) np.percentile (q 0.25, 0.75) and np.median (0.5) read."""
    out = {0.5: ((n - 1) // 2, n // 2)}
    for q in (0.25, 0.75):
        lo = math.floor(n * q + (1 - q) - 1)  # numpy's virtual index for the linear method, operation for operation
        out[q] = (lo, min(lo + 1, n - 1))
    return out


def _quartiles_at(n: int, at) -> tuple[float, float, float]:
    """(q25, median, q75) from ``at(rank)``, the value of that rank, as numpy computes them."""
    med = at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2.0
    qs = []
    for q in (0.25, 0.75):
        vi = n * q + (1 - q) - 1
        lo = math.floor(vi)
        qs.append(_lerp(at(lo), at(min(lo + 1, n - 1)), vi - lo))
    return qs[0], med, qs[1]


#: percentile_approx accuracy of the brackets around each needed order statistic
QUANTILE_ACCURACY = 10_000


def bracket_percentages(n_rows: int) -> list[float]:
    """Percentages a little below and above each quartile: with a rank error <= 1 / QUANTILE_ACCURACY, the
    values found there enclose the order statistics the quartile needs (the 4 / n_rows term covers small
    sets, where one rank is more than the approximation's error)."""
    delta = 3.0 / QUANTILE_ACCURACY + 4.0 / max(n_rows, 1)
    return [min(1.0, max(0.0, q + s * delta)) for q in _QUARTILES for s in (-1, 1)]


def bracketed_quartiles(frame: "DataFrame", counts: dict[int, int], brackets: dict[int, list[float]]
                        ) -> dict[int, tuple]:
    """Exact quartiles of columns ``v{i}`` from approximate brackets, in one aggregation: per bracket, how
    many values lie below it and how many times each value inside it occurs (a handful of values, or a few
    distinct ones when values repeat). Columns whose bracket missed a needed rank are left out (the caller
    sorts those)."""
    items = []
    for i, b in brackets.items():
        v = f"v{i}"
        for j in range(len(_QUARTILES)):
            lo, hi = b[2 * j], b[2 * j + 1]
            w = (f"CASE WHEN {finite(v)} AND {v} < {dlit(lo)} THEN {dlit(-math.inf)} "
                 f"WHEN {finite(v)} AND {v} <= {dlit(hi)} THEN {v} END")
            items.append(f"named_struct('b', {3 * i + j}, 'w', {w})")
    if not items:
        return {}
    rows = (frame.selectExpr(f"inline(array({', '.join(items)}))").where("w IS NOT NULL")
            .groupBy("b", "w").count().collect())
    below: dict[int, int] = {}
    inside: dict[int, list] = {}
    for r in rows:
        if r["w"] == -math.inf:
            below[r["b"]] = int(r["count"])
        else:
            inside.setdefault(r["b"], []).append((float(r["w"]), int(r["count"])))
    out = {}
    for i in brackets:
        n, found = counts[i], {}
        for j, q in enumerate(_QUARTILES):
            start, hist = below.get(3 * i + j, 0), sorted(inside.get(3 * i + j, []))
            for rank in _order_ranks(n)[q]:
                cum = start
                for value, c in hist:
                    if cum <= rank < cum + c:
                        found[rank] = value
                        break
                    cum += c
        if all(k in found for ks in _order_ranks(n).values() for k in ks):
            out[i] = _quartiles_at(n, found.__getitem__)
    return out


def sorted_quartiles(values: "DataFrame", counts: dict[int, int], cache: _Cached) -> dict[int, tuple]:
    """{column index: (q25, median, q75)} of the (``ci``, ``v``) rows, exactly as np.percentile(., [25, 75])
    and np.median compute them: the needed order statistics are picked by rank after one distributed sort
    (the fallback when a bracket misses)."""
    from pyspark.sql import functions as F

    starts, s = {}, 0
    for ci in sorted(counts):
        starts[ci] = s
        s += counts[ci]
    ranks = sorted({starts[ci] + k for ci, n in counts.items() for ks in _order_ranks(n).values() for k in ks})
    if not ranks:
        return {}
    picks = values.sparkSession.createDataFrame([(int(r),) for r in ranks], f"{RANK} long")
    got = {int(r[RANK]): float(r["v"]) for r in
           ranked(values, ["ci", "v"], cache)[0].join(F.broadcast(picks), RANK).select(RANK, "v").collect()}
    return {ci: _quartiles_at(n, lambda k, ci=ci: got[starts[ci] + k]) for ci, n in counts.items()}


# ----------------------------------------------------------------------------- the space


@dataclass
class SparkSpace:
    """Training and test rows as scaled coordinates x0..x{d-1} plus a block key (columns ROW, BLOCK, x*)."""

    train: "DataFrame"
    test: "DataFrame"
    numeric: list[str]
    categorical: list[str]

    @property
    def dims(self) -> int:
        return len(self.numeric)

    @property
    def xcols(self) -> list[str]:
        return [f"x{i}" for i in range(self.dims)]


def table_space(train: "SparkDataset", test: "SparkDataset", cols: list[str], staged: "tuple[Staged, Staged]",
                cache: _Cached) -> SparkSpace:
    """leakage_neighbours.table_space on Spark: which columns are numeric, their training median and IQR
    (std if 0), scaled coordinates, and the block key of categoricals and missing-number patterns."""
    from auditor.spark import ROW

    tr_df, te_df = staged[0].df, staged[1].df
    # a column has a numeric view on a side when none of its values there is text (only strings can be)
    stringy = [i for i, c in enumerate(cols) if train.dtype(c) == "string" or test.dtype(c) == "string"]
    is_text = [f"sum(CAST(c{i}.k = 2 AS BIGINT)) AS t{i}" for i in stringy]
    pct = ", ".join(dlit(x) for x in bracket_percentages(train.n_rows))
    stats_tr = tr_df.selectExpr(*is_text, *[f"count(CASE WHEN {finite(f'v{i}')} THEN 1 END) AS n{i}" for i in range(len(cols))],
                                *[f"stddev_pop(CASE WHEN {finite(f'v{i}')} THEN v{i} END) AS s{i}"
                                  for i in range(len(cols))],
                                *[f"percentile_approx(CASE WHEN {finite(f'v{i}')} THEN v{i} END, array({pct}), "
                                  f"{QUANTILE_ACCURACY}) AS a{i}" for i in range(len(cols))]).first()
    stats_te = te_df.selectExpr(*is_text).first() if stringy else None
    candidates = [i for i in range(len(cols))
                  if (i not in stringy or not (stats_tr[f"t{i}"] or stats_te[f"t{i}"])) and stats_tr[f"n{i}"] > 0]
    counts = {i: int(stats_tr[f"n{i}"]) for i in candidates}
    quart = bracketed_quartiles(tr_df, counts, {i: list(stats_tr[f"a{i}"]) for i in candidates})
    missed = [i for i in candidates if i not in quart]
    if missed:
        values = tr_df.selectExpr("inline(array({}))".format(
            ", ".join(f"named_struct('ci', {i}, 'v', v{i})" for i in missed))).where(finite("v"))
        quart.update(sorted_quartiles(values, {i: counts[i] for i in missed}, cache))
    scales = {}
    for i in candidates:
        q1, med, q3 = quart[i]
        scale = float(q3 - q1) / 1.349
        if not scale > 0:
            scale = float(stats_tr[f"s{i}"] or 0.0)
        if scale > 0:
            scales[i] = (med, scale)
    numeric = [c for i, c in enumerate(cols) if i in scales]
    categorical = [c for i, c in enumerate(cols) if i not in scales]

    def side(frame: "DataFrame") -> "DataFrame":
        coords, parts = [], [str(_BLOCK_SEED)]
        for j, i in enumerate(sorted(scales)):
            med, scale = scales[i]
            coords.append(f"CASE WHEN {finite(f'v{i}')} THEN (v{i} - {dlit(med)}) / {dlit(scale)} ELSE 0.0D END AS x{j}")
            parts.append(finite(f"v{i}"))  # the pattern of missing numbers must match exactly
        parts += [f"c{i}" for i in range(len(cols)) if i not in scales]
        return frame.selectExpr(ROW, f"xxhash64({', '.join(parts)}) AS {BLOCK}", *coords)

    return SparkSpace(side(tr_df), side(te_df), numeric, categorical)


# ----------------------------------------------------------------------------- null model


def _two_nearest_fn(Q: "np.ndarray", q_block: "np.ndarray", q_ids: "np.ndarray", xcols: list[str]):
    """A mapInPandas function: for each batch of index rows, every query's two nearest (same block; not
    itself, ``q_ids`` being the queries' own index ids, if any) by exact float64 distance; rows (q, d, t).
    Candidates are ranked by |x|^2 - 2 q.x, the best four recomputed from differences (no cancellation)."""
    step = max(256, (1 << 22) // max(len(Q), 1))  # index rows per distance matrix: about 32 MB of float64

    def fn(batches):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # skinny products; Spark runs a worker per core already
            yield from _batches(batches)

    def _batches(batches):
        import numpy as np
        import pandas as pd

        qsq = np.einsum("ij,ij->i", Q, Q)
        one_block = bool(len(q_block)) and bool(np.all(q_block == q_block[0]))
        q_pos = {int(t): j for j, t in enumerate(q_ids)}
        for pdf in batches:
            if not len(pdf):
                continue
            X = pdf[xcols].to_numpy(dtype=np.float64) if xcols else np.zeros((len(pdf), 0))
            blk, ids = pdf[BLOCK].to_numpy(), pdf[TID].to_numpy()
            out_q, out_d, out_t = [], [], []
            for s in range(0, len(X), step):
                Xs, bs, ts = X[s:s + step], blk[s:s + step], ids[s:s + step]
                D = qsq[:, None] + np.einsum("ij,ij->i", Xs, Xs)[None, :] - 2.0 * (Q @ Xs.T)
                if not (one_block and np.all(bs == q_block[0])):
                    D[q_block[:, None] != bs[None, :]] = np.inf
                for j in np.flatnonzero(np.isin(ts, q_ids)):  # a query is not its own neighbour
                    D[q_pos[int(ts[j])], j] = np.inf
                k = min(4, Xs.shape[0])
                top = np.argpartition(D, k - 1, axis=1)[:, :k] if k < Xs.shape[0] else \
                    np.tile(np.arange(Xs.shape[0]), (len(Q), 1))
                ok = np.isfinite(np.take_along_axis(D, top, axis=1))
                qi = np.repeat(np.arange(len(Q)), top.shape[1])[ok.ravel()]
                ti = top.ravel()[ok.ravel()]
                diff = Q[qi] - Xs[ti]
                out_q.append(qi)
                out_d.append(np.sqrt(np.einsum("ij,ij->i", diff, diff)))
                out_t.append(ts[ti])
            if not out_q:
                continue
            frame = pd.DataFrame({"q": np.concatenate(out_q), "d": np.concatenate(out_d),
                                  "t": np.concatenate(out_t)})
            yield frame.sort_values(["q", "d", "t"]).groupby("q", sort=False).head(2)

    return fn


def draw_samples(index: "DataFrame", n: int, xcols: list[str], rng: "np.random.Generator", params: "NearParams"
                 ) -> "tuple[np.ndarray, pd.DataFrame, pd.DataFrame]":
    """The rows the pandas engine samples from the distinct training rows (ranked by first occurrence), with
    the same draws from ``rng`` in the same order: the null model's index and query rows, then the E2LSH
    planner's sample (every row when n <= PLAN_SAMPLE). One Spark job fetches the (small) sampled rows.
    Returns (index ranks, query rows, planner rows), rows as frames of RANK, TID, BLOCK and coordinates."""
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    from auditor.checks import leakage_neighbours as nb

    index_ids, local = nb.reference_sample(n, rng, params.reference_rows, params.max_reference_index)
    queries = index_ids[local]
    plan_ranks = np.sort(rng.choice(n, nb.PLAN_SAMPLE, replace=False)) if n > nb.PLAN_SAMPLE else None
    rows = index
    if plan_ranks is not None:
        wanted = np.union1d(queries, plan_ranks).astype(np.int64)
        rows = index.join(F.broadcast(index.sparkSession.createDataFrame(pd.DataFrame({RANK: wanted}))), RANK)
    got = rows.select(RANK, TID, BLOCK, *xcols).toPandas().set_index(RANK).sort_index()
    return index_ids, got.loc[queries], got if plan_ranks is None else got.loc[plan_ranks]


def two_nearest(index: "DataFrame", xcols: list[str], queries: "pd.DataFrame", self_ids: "np.ndarray | None"
                ) -> "Neighbours":
    """The exact two nearest index rows (same block) of each of a few ``queries`` (BLOCK and coordinates;
    ``self_ids``: each query's own TID, left out): the queries are broadcast, the index stays distributed,
    each partition keeps its best two per query and the driver merges those."""
    import numpy as np

    from auditor.checks import leakage_neighbours as nb

    Q = queries[xcols].to_numpy(dtype=np.float64) if xcols else np.zeros((len(queries), 0))
    ids = np.asarray(self_ids, dtype=np.int64) if self_ids is not None else np.zeros(0, dtype=np.int64)
    fn = _two_nearest_fn(Q, queries[BLOCK].to_numpy(), ids, xcols)
    found = index.select(TID, BLOCK, *xcols).mapInPandas(fn, "q long, d double, t long").toPandas()
    best = found.sort_values(["q", "d", "t"]).groupby("q", sort=False).head(2)
    out = nb.Neighbours.empty(len(Q))
    first = best.groupby("q", sort=False).head(1)
    second = best[~best.index.isin(first.index)]
    out.d1[first["q"].to_numpy()], out.i1[first["q"].to_numpy()] = first["d"].to_numpy(), first["t"].to_numpy()
    out.d2[second["q"].to_numpy()], out.i2[second["q"].to_numpy()] = second["d"].to_numpy(), second["t"].to_numpy()
    return out


def reference(index: "DataFrame", n: int, dims: int, xcols: list[str], index_ids: "np.ndarray",
              queries: "pd.DataFrame", max_ratio: float) -> "Reference | None":
    """The pandas engine's null model from the sampled ``queries``' exact two nearest other rows among the
    ``index_ids`` rows (all n distinct rows, or the pandas engine's subset of them)."""
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    from auditor.checks import leakage_neighbours as nb

    if len(index_ids) < n:
        keep = index.sparkSession.createDataFrame(pd.DataFrame({RANK: index_ids.astype(np.int64)}))
        index = index.join(F.broadcast(keep), RANK)
    found = two_nearest(index, xcols, queries, queries[TID].to_numpy())
    return nb.reference_fit(found, n, dims, len(index_ids), max_ratio)


# ----------------------------------------------------------------------------- E2LSH search


def plan(sample: "pd.DataFrame", n: int, xcols: list[str], radius: float, rng: "np.random.Generator",
         target_recall: float):
    """plan_grid on the pandas engine's sample of the ``n`` distinct rows, so both engines choose the same
    projections per table and number of tables (see the module docstring for the reasoning)."""
    import numpy as np

    from auditor.checks import leakage_neighbours as nb

    X = sample[xcols].to_numpy(dtype=np.float64)
    block = sample[BLOCK].to_numpy(dtype=np.int64).view(np.uint64)
    return nb.plan_grid(X, block, radius, rng, target_recall, population=n)


def _cell_key_fn(id_col: str, xcols: list[str], tables: list, width: float):
    """A mapInArrow function: (id, tab, key) for each row and table, key = the pandas engine's
    ``cell_keys`` (a hash of the block and floor((x . G + b) / w) along the table's projections).

    Why Python here: the projections are a dense matrix product (rows x dims x tables x projections);
    Spark SQL can only spell it as that many scalar terms, which its code generator cannot compile at
    realistic sizes (1 GB of driver heap exhausted at 26 x 8 x 17) and which are slow to plan as one
    select per table. numpy does it per Arrow batch, and the keys are the pandas engine's own."""

    def fn(batches):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # skinny products; Spark runs a worker per core already
            yield from _batches(batches)

    def _batches(batches):
        import numpy as np
        import pyarrow as pa

        from auditor.checks import leakage_neighbours as nb

        for b in batches:
            n = b.num_rows
            if not n:
                continue
            X = np.column_stack([b.column(x).to_numpy(zero_copy_only=False) for x in xcols]).astype(np.float64)
            blk = b.column(BLOCK).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
            keys = np.stack([nb.cell_keys(X, blk, G, off, width) for G, off in tables], axis=1)  # (n, tables)
            offsets = pa.array((np.arange(n + 1) * len(tables)).astype(np.int32))
            yield pa.RecordBatch.from_arrays(
                [b.column(id_col), pa.ListArray.from_arrays(offsets, pa.array(keys.reshape(-1).view(np.int64)))],
                names=[id_col, "keys"])

    return fn


def _cell_keys(df: "DataFrame", id_col: str, xcols: list[str], tables: list, width: float) -> "DataFrame":
    """(id, tab, key) rows: a row's keys leave Python as one array (cheaper than a row per table)."""
    keyed = df.select(id_col, BLOCK, *xcols).mapInArrow(_cell_key_fn(id_col, xcols, tables, width),
                                                        f"{id_col} long, keys array<bigint>")
    return keyed.selectExpr(id_col, "posexplode(keys) AS (tab, key)")


#: a coordinate table up to this size is broadcast to the candidate pairs instead of shuffled to them
BROADCAST_BYTES = 64 << 20


def grid_search(index: "DataFrame", n_index: int, test: "DataFrame", n_test: int, xcols: list[str], plan_,
                rng: "np.random.Generator", cache: _Cached) -> "DataFrame":
    """Per test row with any candidate: (ROW, i1, d1, d2, pairs). Candidates share a cell with the row in
    some table (the same draws as the pandas grid_search); d1 / d2 are the exact distances of the two
    nearest distinct candidates (ties: lower training row); pairs counts candidate pairs with repeats (a pair
    in several tables), as pandas does.

    Shuffles are kept few: the smaller side's cell keys and coordinates are broadcast when they fit
    BROADCAST_BYTES (else joined by shuffle), repeated pairs are not removed first (most pairs meet in one
    table only), and the two nearest come from two aggregations of min(struct(d, row)), the second
    excluding the first, which combine within each partition before anything is shuffled."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    d = len(xcols)
    tables = [(rng.standard_normal((d, plan_.cells_per_table)), rng.uniform(0, plan_.width, plan_.cells_per_table))
              for _ in range(plan_.tables)]
    tk = _cell_keys(index, TID, xcols, tables, plan_.width)
    qk = _cell_keys(test, ROW, xcols, tables, plan_.width)
    if n_test * plan_.tables * 24 <= BROADCAST_BYTES:
        qk = F.broadcast(qk)
    te = test.select(F.col(ROW), F.col(BLOCK).alias("qb"), *[F.col(x).alias(f"q{x}") for x in xcols])
    tr = index.select(F.col(TID), F.col(BLOCK).alias("tb"), *xcols)
    small = lambda rows: rows * (d + 2) * 8 <= BROADCAST_BYTES  # noqa: E731
    te, tr = (F.broadcast(te) if small(n_test) else te), (F.broadcast(tr) if small(n_index) else tr)
    sq = " + ".join(f"(q{x} - {x}) * (q{x} - {x})" for x in xcols)
    dist = cache.keep(tk.join(qk, ["tab", "key"]).select(ROW, TID).join(te, ROW).join(tr, TID)
                      .where(F.col("qb") == F.col("tb")).selectExpr(ROW, TID, f"sqrt({sq}) AS d"))
    best = F.min(F.struct("d", TID))
    first = dist.groupBy(ROW).agg(best.alias("b1"), F.count(F.lit(1)).alias("pairs"))
    first = cache.keep(first.select(ROW, F.col("b1.d").alias("d1"), F.col(f"b1.{TID}").alias("i1"), "pairs"))
    second = (dist.join(F.broadcast(first.select(ROW, "i1")) if small(n_test) else first.select(ROW, "i1"), ROW)
              .where(F.col(TID) != F.col("i1")).groupBy(ROW).agg(F.min("d").alias("d2")))
    return first.join(second, ROW, "left")


# ----------------------------------------------------------------------------- p-values and BH


def p_value(ref: "Reference", radius: float) -> str:
    """SQL for leakage_neighbours.p_values over (i1, d1, d2, exact2): the TwoNN ratio below the guard, the
    Weibull distance law, the smaller doubled. After the fixed-radius search a second neighbour beyond the
    radius (or none found) counts as the radius, unless the row was searched exactly (exact2)."""
    d2 = f"CASE WHEN exact2 THEN coalesce(d2, {_INF}) ELSE least(coalesce(d2, {_INF}), {dlit(radius)}) END"
    usable = f"(i1 IS NOT NULL AND d1 > 0 AND {finite('d1')})"
    p_local = (f"CASE WHEN {usable} AND d1 <= {dlit(ref.guard)} "
               f"THEN pow({d2} / d1, {dlit(-ref.twonn_dimension)}) ELSE 1.0D END")
    scale, m_w = ref.weibull_scale, ref.weibull_shape
    p_global = f"-expm1(-pow(d1 / {dlit(scale)}, {dlit(m_w)}))" if math.isfinite(scale) and scale > 0 else "1.0D"
    p = f"least(1.0D, 2.0D * least({p_local}, {p_global}))"
    return f"CASE WHEN {usable} AND NOT isnan({p}) THEN {p} ELSE 1.0D END"


#: Benjamini-Hochberg on the driver when at most this many p-values are <= q (else by a distributed rank)
BH_COLLECT_LIMIT = 1_000_000


def bh_cutoff(p_values: "DataFrame", n: int, q: float, cache: _Cached) -> float:
    """leakage_neighbours.bh_cutoff over all ``n`` eligible rows, of which ``p_values`` (column p) holds
    those with p <= q (only they can be rejected: p_(i) <= q i / n <= q). Up to BH_COLLECT_LIMIT of them
    are ranked on the driver (one job), more by a distributed rank."""
    import numpy as np
    from pyspark.sql import functions as F

    from auditor.checks import leakage_neighbours as nb

    if not n:
        return 0.0
    few = [r[0] for r in p_values.limit(BH_COLLECT_LIMIT + 1).collect()]
    if len(few) <= BH_COLLECT_LIMIT:
        return nb.bh_cutoff(np.array(few, dtype=np.float64), q, n)
    r, _ = ranked(p_values, ["p"], cache)
    got = r.where(F.col("p") <= F.lit(float(q)) * (F.col(RANK) + 1) / F.lit(n)).agg(F.max("p")).first()[0]
    return float(got) if got is not None else 0.0


# ----------------------------------------------------------------------------- the check


def run(ctx: "AuditContext", params: "NearParams") -> Outcome:
    """NearDuplicates.run for SparkDatasets: the same modes, metrics, findings and status."""
    from auditor.checks.leakage import NO_SHARED_TEXT, near_mode

    train, test = ctx.train, ctx.test
    cache = _Cached()
    try:
        cols = compared_columns(train, test, params.ignore)
        ctx.progress.step("finding exact copies (excluded here)")
        staged = (stage(train, test, cols, cache), stage(test, train, cols, cache)) if cols else None
        flags = cache.keep(exact_flags(*staged)) if staged else None
        mode, text_cols = near_mode(params.mode, train, test, cols)
        if mode == "text":
            return _text(ctx, params, text_cols, flags, cache) if text_cols else Outcome.skipped(NO_SHARED_TEXT)
        ctx.progress.step("scaling features")
        if not cols:
            return Outcome.skipped("no numeric feature varies in training: a near-copy would be an exact copy")
        space = table_space(train, test, cols, staged, cache)
        return _numeric(ctx, params, space, flags, cache)
    finally:
        cache.release()


def _refine(base: "DataFrame", beyond: "Column", index: "DataFrame", xcols: list[str]) -> "DataFrame":
    """``base`` with the ``beyond`` rows' two nearest replaced by an exact search (exact2 true for them)."""
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    rows = base.where(beyond).select(ROW, BLOCK, *xcols).toPandas()
    nbs = two_nearest(index, xcols, rows, None)
    ok = nbs.i1 >= 0
    exact = pd.DataFrame({ROW: rows[ROW].to_numpy(dtype=np.int64)[ok], "xi1": nbs.i1[ok], "xd1": nbs.d1[ok],
                          "xd2": nbs.d2[ok]})
    exact = base.sparkSession.createDataFrame(exact).withColumn("exact2", F.lit(True))
    return (base.join(F.broadcast(exact), ROW, "left")
            .withColumn("i1", F.coalesce("xi1", "i1")).withColumn("d1", F.coalesce("xd1", "d1"))
            .withColumn("d2", F.when(F.col("exact2").isNotNull(), F.col("xd2")).otherwise(F.col("d2")))
            .withColumn("exact2", F.coalesce("exact2", F.lit(False))))


def _numeric(ctx: "AuditContext", params: "NearParams", space: SparkSpace, flags: "DataFrame | None",
             cache: _Cached) -> Outcome:
    import numpy as np
    from pyspark.sql import functions as F

    from auditor.checks import leakage_neighbours as nb
    from auditor.checks.leakage import _status
    from auditor.spark import ROW

    if space.dims == 0:
        return Outcome.skipped("no numeric feature varies in training: a near-copy would be an exact copy")
    rng = ctx.rng()
    xcols = space.xcols
    distinct = space.train.groupBy(BLOCK, *xcols).agg(F.min(ROW).alias(TID))
    index, n_distinct = ranked(distinct, [TID], cache)
    index = sized(index, n_distinct)
    n_test, n_train = ctx.test.n_rows, ctx.train.n_rows
    test = space.test.join(flags, ROW) if flags is not None else space.test.withColumn(EXACT, F.lit(False))
    test = cache.keep(sized(test, n_test))
    ctx.progress.step(f"reference distances on {min(params.reference_rows, n_distinct)} training rows")
    index_ids, queries, plan_rows = draw_samples(index, n_distinct, xcols, rng, params)
    ref = reference(index, n_distinct, space.dims, xcols, index_ids, queries, params.max_ratio)
    metrics: dict = {
        "mode": "table", "false_alarm": params.false_alarm, "max_ratio": params.max_ratio,
        "max_fraction": params.max_fraction, "numeric_columns": len(space.numeric),
        "block_columns": space.categorical, "space_dims": space.dims, "train_rows": n_train,
        "distinct_train_rows": n_distinct, "test_rows": n_test,
        "exact_copies_excluded": None,  # counted with the search (one job fewer); set here for the key order
    }
    if ref is None:
        return Outcome.skipped("too few training rows have a distinct neighbour in the same categorical block "
                               "to fit the near-duplicate null model")
    metrics.update(ref.metrics())
    if params.threshold is not None:
        metrics["fixed_distance_threshold"] = params.threshold
    radius = max(ref.guard, params.threshold or 0.0)
    ctx.progress.step("planning the E2LSH grid")
    plan_ = plan(plan_rows, n_distinct, xcols, radius, rng, params.target_recall)
    ctx.progress.step(f"E2LSH grid search with Spark ({plan_.tables} tables x {plan_.cells_per_table} projections)")
    found = grid_search(index, n_distinct, test, n_test, xcols, plan_, rng, cache)
    base = cache.keep(test.join(found, ROW, "left"))
    eligible = ~F.col(EXACT)
    # the rows whose verdict depends on a second neighbour beyond the radius: the ratio rule applies (d1 <= guard)
    # but the grid saw no second neighbour inside the radius. Few (near-copies and a handful of others): they are
    # searched exactly, within the exact-search budget, so their p-values are the exact search's.
    beyond = (eligible & F.col("i1").isNotNull() & (F.col("d1") > 0) & (F.col("d1") <= F.lit(float(ref.guard)))
              & (F.col("d2").isNull() | (F.col("d2") >= F.lit(float(radius)))))
    counts = base.agg(F.count(F.when(F.col(EXACT), 1)).alias("exact"), F.count(F.when(beyond, 1)).alias("beyond"),
                      F.sum(F.coalesce(F.col("pairs"), F.lit(0))).alias("pairs")).first()
    n_exact, n_beyond = int(counts["exact"]), int(counts["beyond"])
    n_eligible = n_test - n_exact
    refined = 0 < n_beyond and n_beyond * n_distinct <= params.exact_pairs
    if refined:
        ctx.progress.step(f"exact search for {n_beyond} rows whose second neighbour lies beyond the radius")
        scored = _refine(base, beyond, index, xcols)
    else:
        scored = base.withColumn("exact2", F.lit(False))
    scored = cache.keep(scored.select(ROW, EXACT, "i1", "d1", "d2", "pairs", "exact2")
                        .selectExpr("*", f"{p_value(ref, radius)} AS p"))
    ctx.progress.step("Benjamini-Hochberg over the test rows' p-values")
    cutoff = bh_cutoff(scored.where(eligible & (F.col("p") <= params.false_alarm)).select("p"), n_eligible,
                       params.false_alarm, cache)
    near = eligible & (F.col("p") <= F.lit(cutoff)) if cutoff > 0 else F.lit(False)
    if params.threshold is not None:
        near = near | (eligible & F.col("i1").isNotNull() & (F.col("d1") > 0) & (F.col("d1") <= params.threshold))
    scored = scored.withColumn("near", near)
    unflagged = ~F.col("near") & eligible & F.col("i1").isNotNull() & (F.col("d1") > 0)
    # one pass: how close the rows not flagged came, and the flagged rows themselves (bounded by what is flagged)
    agg = scored.agg(F.min(F.when(unflagged, F.col("p"))).alias("min_p"),
                     F.min(F.when(unflagged, F.col("d1"))).alias("min_d"),
                     F.collect_list(F.when(F.col("near"), F.struct(ROW, "i1", "d1", "d2", "exact2", "p"))).alias("hits")
                     ).first()
    metrics["exact_copies_excluded"] = n_exact
    metrics.update({"search": "e2lsh", "pairs_compared": int(counts["pairs"] or 0), "lsh_tables": plan_.tables,
                    "lsh_projections_per_table": plan_.cells_per_table, "lsh_cell_width": plan_.width,
                    "lsh_recall_at_radius": round(plan_.pair_recall, 6),
                    "rows_second_neighbour_beyond_radius": n_beyond, "rows_searched_exactly": n_beyond if refined else 0})
    metrics.update(nb.equivalent_thresholds(ref, cutoff or params.false_alarm / max(n_eligible, 1)))
    if agg["min_p"] is not None:
        metrics["unflagged_min_p_value"] = float(agg["min_p"])
        metrics["unflagged_min_distance"] = round(float(agg["min_d"]), 6)
    hits = sorted(agg["hits"], key=lambda h: h[ROW])
    fraction = len(hits) / max(n_test, 1)
    metrics.update({"near_duplicate_rows": len(hits), "near_duplicate_fraction": round(fraction, 6),
                    "expected_false_flags_at_most": round(params.false_alarm * len(hits), 4)})
    findings = []
    if hits:
        def ratio(h) -> float | None:
            d2 = h["d2"] if h["d2"] is not None else float("inf")
            r = (d2 if h["exact2"] else min(d2, radius)) / h["d1"] if h["d1"] else float("inf")
            return round(float(r), 3) if np.isfinite(r) else None

        findings.append(Finding(
            f"test: {len(hits)} of {n_test} rows ({fraction:.2%}) are near-copies of training rows "
            f"(far closer to one training row than ordinary rows are; false discovery rate {params.false_alarm:g})",
            dataset="test", rows=tuple(int(h[ROW]) for h in hits),
            details={"matches": [[int(h[ROW]), int(h["i1"]), round(float(h["d1"]), 6), ratio(h), float(f"{h['p']:.3g}")]
                                 for h in hits],
                     "match_columns": ["test_row", "train_row", "distance", "second_over_first", "p_value"]},
        ))
    return Outcome(status=_status(fraction, len(hits), params.max_fraction), metrics=metrics, findings=findings)


# ----------------------------------------------------------------------------- text


def _shingle_fn(k: int, num_perm: int, bands: int, seed: int):
    """A mapInArrow function: (ROW, text) batches to (ROW, size, shingles, band keys) with the pandas
    engine's own tokeniser, shingles and MinHash (document by document, so batches do not matter)."""

    def fn(batches):
        import numpy as np
        import pyarrow as pa

        from auditor.checks import leakage_neighbours as nb

        for b in batches:
            texts = b.column(1).to_pylist()
            sets = nb.shingle_sets(texts, k)
            keys = nb.band_keys(nb.minhash_signatures(sets, num_perm, seed), bands)
            n = len(texts)
            shingles = pa.ListArray.from_arrays(pa.array(sets.offsets.astype(np.int32)),
                                                pa.array(sets.values.view(np.int64)))
            band_arr = pa.ListArray.from_arrays(pa.array((np.arange(n + 1) * bands).astype(np.int32)),
                                                pa.array(keys.reshape(-1).view(np.int64)))
            yield pa.RecordBatch.from_arrays([b.column(0), pa.array(sets.sizes.astype(np.int64)), shingles, band_arr],
                                             names=[b.schema.names[0], "size", "sh", "bk"])

    return fn


def _docs(ds: "SparkDataset", text_cols: list[str], params: "NearParams", seed: int) -> "DataFrame":
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    parts = []
    for c in text_cols:
        parts += [F.coalesce(_q(c).cast("string"), F.lit("")), F.lit("\n")]
    joined = F.concat(*parts[:-1]).alias("text")
    return sized(ds.df.select(_q(ROW).alias(ROW), joined), ds.n_rows).mapInArrow(
        _shingle_fn(params.shingle, params.num_perm, params.bands, seed),
        f"{ROW} long, size long, sh array<bigint>, bk array<bigint>")


def _text(ctx: "AuditContext", params: "NearParams", text_cols: list[str], flags: "DataFrame | None",
          cache: _Cached) -> Outcome:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from auditor.checks import leakage_neighbours as nb
    from auditor.checks.leakage import _matches_detail, _status
    from auditor.spark import ROW

    if params.num_perm % params.bands:
        raise ValueError(f"num_perm ({params.num_perm}) must be a multiple of bands ({params.bands})")
    ctx.progress.step("MinHash signatures and LSH candidates")
    seed = ctx.check_seed()
    tr = cache.keep(_docs(ctx.train, text_cols, params, seed).withColumnRenamed(ROW, TID))
    te = cache.keep(_docs(ctx.test, text_cols, params, seed))

    def bands(df: "DataFrame", id_col: str) -> "DataFrame":
        return df.where(F.col("size") > 0).select(id_col, F.posexplode("bk").alias("band", "key"))

    first = F.row_number().over(Window.partitionBy("band", "key").orderBy(TID))
    capped = bands(tr, TID).withColumn("rn", first).where(F.col("rn") <= nb.TEXT_MAX_CANDIDATES).drop("rn")
    pairs = cache.keep(bands(te, ROW).join(capped, ["band", "key"]).select(ROW, TID).distinct())
    n_pairs = int(pairs.count())
    inter = F.size(F.array_intersect("qsh", "tsh"))
    scored = (pairs.join(te.select(ROW, F.col("sh").alias("qsh"), F.col("size").alias("qn")), ROW)
              .join(tr.select(TID, F.col("sh").alias("tsh"), F.col("size").alias("tn")), TID)
              .select(ROW, TID, (inter / (F.col("qn") + F.col("tn") - inter)).alias("j")))
    best = scored.groupBy(ROW).agg(F.max(F.struct("j", (-F.col(TID)).alias("nt"))).alias("b")).select(
        ROW, F.col("b.j").alias("j"), (-F.col("b.nt")).alias(TID))
    if flags is not None:
        best = best.join(flags, ROW).where(~F.col(EXACT))
    hits = best.where(F.col("j") >= params.text_jaccard).orderBy(ROW).collect()
    n_exact = int(flags.where(F.col(EXACT)).count()) if flags is not None else 0
    n = ctx.test.n_rows
    fraction = len(hits) / n
    rows = [int(h[ROW]) for h in hits]
    metrics = {"mode": "text", "text_columns": text_cols, "jaccard_threshold": params.text_jaccard,
               "max_fraction": params.max_fraction, "test_rows": n, "train_rows": ctx.train.n_rows,
               "exact_copies_excluded": n_exact,
               **nb.text_lsh_stats(n_pairs, params.text_jaccard, params.shingle, params.num_perm, params.bands),
               "near_duplicate_rows": len(rows), "near_duplicate_fraction": round(fraction, 6)}
    findings = []
    if rows:
        findings.append(Finding(
            f"test: {len(rows)} of {n} text rows ({fraction:.2%}) have a training row with word-shingle "
            f"Jaccard similarity >= {params.text_jaccard:g} without being exact copies",
            dataset="test", rows=tuple(rows),
            details=_matches_detail(rows, [int(h[TID]) for h in hits], [float(h["j"]) for h in hits], "jaccard"),
        ))
    return Outcome(status=_status(fraction, len(rows), params.max_fraction), metrics=metrics, findings=findings)
