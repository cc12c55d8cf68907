"""contamination.ngram on Spark: the same normalised tokens and n-gram rule as the pandas engine, with the
training text never leaving the executors.

Tokens: Unicode normalisation and lower case run in an Arrow UDF with the pandas engine's own kernels
(:func:`auditor.checks.contamination.normalise`), which also cuts the text at the same token boundaries
(RE2's ``[^\\p{L}\\p{N}\\p{M}]+``) and joins the tokens with single spaces. Spark SQL has no NFKC, Java's
``toLowerCase`` differs from Arrow's (final sigma, dotted capital I) and Java 17's Unicode tables are older
than RE2's, so doing these in Java would change which texts match. Everything after that is Spark SQL:
``split`` on the space, a 64-bit ``xxhash64`` per token, and per n-gram ``xxhash64`` of the slice of token
hashes, built inside ``transform(sequence(...))`` so only (document, hash) rows are exploded.

Matching: the test side's distinct n-gram hashes (broadcast when they fit) semi-join the training (and
reference) n-grams, which are grouped to the first document holding each hash, so the training corpus is
scanned once and never shuffled whole when the test side is broadcast; the corpus' token and n-gram totals
ride along in the same scan. Items shorter than n tokens (but at least ``min_tokens``) are looked up whole
against the corpus' n-grams of their own length, as in pandas. Per test item, the found positions, sorted,
are folded into the longest run of consecutive n-grams (``aggregate``); its span in tokens, the overlap
fraction and the verdict follow the pandas rules exactly, and the report is built by the same
:func:`~auditor.checks.contamination.ngram_outcome`. Only aggregates, a few counts per reference column
and the contaminated rows reach the driver.

Hashes are 64-bit (xxhash64 of the tokens' xxhash64s, forced odd), so, as in the pandas engine's own
64-bit hashes, two different n-grams match only by a collision (about test n-grams x corpus n-grams /
2^63, ~1e-5 for 1.3M x 160M).

A document is a 64-bit key ``source << 56 | column << 40 | row`` (source 0 = training, k = k-th reference
corpus), whose order is the pandas engine's corpus order, so the smallest key is the same "first" document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from auditor.checks.contamination import _TOKEN_SPLIT, NgramContamination, NgramParams, ngram_outcome, normalise
from auditor.report import Outcome

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from auditor.engine import AuditContext

_SRC_SHIFT, _COL_SHIFT = 56, 40
_MAX_SOURCES, _MAX_COLUMNS, _MAX_ROW = (1 << 7) - 1, (1 << 16) - 1, (1 << 40) - 1
#: distinct test n-gram hashes up to which the test side is broadcast to the corpus scan (~16 bytes each)
BROADCAST_HASHES = 4_000_000
_QUANTILES = [0.5, 0.9, 0.99, 1.0]
#: the key of the corpus totals row in the match (n-gram hashes are odd)
_TOTALS = 0
_TEXT_SUFFIXES = (".txt", ".md", ".text")
_TABLE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


# ----------------------------------------------------------------------------- tokens and n-grams


def _token_udf():
    """Arrow UDF: a text's normalised tokens joined by single spaces ('' for no token; null stays null)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark.sql.functions import arrow_udf

    def normalised_tokens(texts):
        spaced = pc.replace_substring_regex(normalise(texts), _TOKEN_SPLIT, " ")
        return pc.utf8_trim(spaced, " ")

    # real classes, not this module's postponed (string) annotations: arrow_udf reads the hints
    normalised_tokens.__annotations__ = {"texts": pa.Array, "return": pa.Array}
    return arrow_udf(normalised_tokens, "string")


def _token_hashes(text: "Column") -> "Column":
    """A text's tokens hashed one by one (an empty array for null, empty or separator-only text)."""
    from pyspark.sql import functions as F

    spaced = _token_udf()(text)
    tokens = F.when(F.length(spaced) > 0, F.split(spaced, " ", -1)).otherwise(F.array().cast("array<string>"))
    return F.transform(tokens, lambda t: F.xxhash64(t))


def _gram(th: "Column", start: "Column", length: "Column") -> "Column":
    """Hash of the ``length`` tokens from 0-based ``start`` (the same formula on the test and corpus sides),
    forced odd so that :data:`_TOTALS` (even) can never be an n-gram."""
    from pyspark.sql import functions as F

    return F.xxhash64(F.slice(th, start + 1, length)).bitwiseOR(F.lit(1))


def _corpus_grams(th: "Column", lengths: list[int]) -> "Column":
    """Every L-gram hash of a document, for each L in ``lengths`` (one flat array, so one explode)."""
    from pyspark.sql import functions as F

    size = F.size(th)
    empty = F.array().cast("array<bigint>")

    def at(L: int):  # transform reads a two-argument lambda as (element, index): bind L by closure
        return lambda i: _gram(th, i, F.lit(L))

    parts = [F.when(size >= L, F.transform(F.sequence(F.lit(0), size - L), at(L))).otherwise(empty) for L in lengths]
    return F.concat(*parts) if len(parts) > 1 else parts[0]


def _doc_key(source: int, column: int, row: "Column") -> "Column":
    from pyspark.sql import functions as F

    return (F.lit((source << _SRC_SHIFT) + (column << _COL_SHIFT)).cast("long") + row.cast("long")).alias("doc")


def _text(df: "DataFrame", column: str) -> "Column":
    """A column as text; a non-string column holds no text (pandas takes only str values)."""
    from pyspark.sql import functions as F

    if dict(df.dtypes)[column] == "string":
        return F.col(f"`{column}`")
    return F.lit(None).cast("string")


# ----------------------------------------------------------------------------- the corpus


@dataclass
class _Reference:
    """A reference corpus read by Spark: its documents as (doc key, text) and how to number them as pandas does."""

    path: Path
    source: int
    docs: "DataFrame"
    n_docs: int
    kind: str  # "text", "csv" (every row of a non-empty string column), "sparse" (non-null values only)
    table: "DataFrame | None" = None
    columns: list[str] = field(default_factory=list)  # string columns that hold documents, in file order
    counts: list[int] = field(default_factory=list)  # documents per column

    def source_rows(self, docs: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """Each (column, row) document's index in the pandas engine's list for this corpus: column by
        column, nulls skipped (a table's non-null values before the row are counted in one pass per column)."""
        out = {}
        for column in sorted({c for c, _ in docs}):
            before = sum(self.counts[:column])
            rows = sorted({r for c, r in docs if c == column})
            ranks = _non_null_before(self.table, self.columns[column], rows) if self.kind == "sparse" else rows
            out.update({(column, r): before + k for r, k in zip(rows, ranks)})
        return out


def _non_null_before(table: "DataFrame", column: str, rows: list[int]) -> list[int]:
    """For each of the sorted ``rows``, how many earlier rows hold a value in ``column``: the non-null rows
    are bucketed between consecutive targets (a binary search per row, in the JVM) and the buckets counted."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    present = table.filter(F.col(f"`{column}`").isNotNull()).select(F.col(ROW).cast("double").alias("r"))
    splits = [float("-inf")] + [float(r) for r in rows] + [float("inf")]
    buckets = Bucketizer(splits=splits, inputCol="r", outputCol="b").transform(present)
    counts = dict.fromkeys(range(len(rows) + 1), 0)
    counts.update({int(b["b"]): int(b["count"]) for b in buckets.groupBy("b").count().collect()})
    out, total = [], 0
    for k in range(len(rows)):  # bucket k holds rows[k-1] <= r < rows[k]
        total += counts[k]
        out.append(total)
    return out


def _read_reference(spark, path: Path, source: int) -> _Reference:
    """A reference corpus as pandas reads it: a text file is one document; a table gives every string value
    (CSV: empty fields are empty strings, as pyarrow reads them; an all-empty column is not text)."""
    from pyspark.sql import functions as F

    from auditor.errors import InputError
    from auditor.spark import ROW, read

    if not path.is_file():
        raise InputError("reference corpus not found", path)
    suffix = path.suffix.lower()
    if suffix in _TEXT_SUFFIXES:
        whole = spark.read.text(str(path), wholetext=True)
        docs = whole.select(_doc_key(source, 0, F.lit(0)), F.col("value").alias("text"))
        return _Reference(path, source, docs, 1, "text", counts=[1])
    if suffix not in _TABLE_FORMATS:
        raise InputError(f"unknown reference corpus format {suffix!r} (use .txt, .md, .jsonl, .csv or .parquet)", path)
    fmt = _TABLE_FORMATS[suffix]
    try:
        table = read(spark, str(path), fmt, csv_multiline=True)
        strings = [c for c, t in table.dtypes if c != ROW and t == "string"]
        row = table.agg(F.count(F.lit(1)).alias("n"),
                        *[F.count(F.col(f"`{c}`")).alias(f"c{i}") for i, c in enumerate(strings)]).first()
    except Exception as e:  # AnalysisException, malformed records
        raise InputError(f"cannot read reference corpus: {' '.join(str(e).split())[:200]}", path) from None
    present = [(c, row[f"c{i}"]) for i, c in enumerate(strings) if row[f"c{i}"] > 0]
    if fmt == "jsonl":  # Spark sorts JSON fields by name; pyarrow keeps them in order of first appearance
        order = _json_key_order(path, {c for c, _ in present})
        present.sort(key=lambda ck: order.index(ck[0]) if ck[0] in order else len(order))
    csv = fmt == "csv"
    columns = [c for c, _ in present]
    counts = [int(row["n"]) if csv else int(k) for _, k in present]
    if len(columns) > _MAX_COLUMNS:
        raise ValueError(f"reference corpus {path.name} has more than {_MAX_COLUMNS} text columns")
    parts = []
    for j, c in enumerate(columns):
        text = F.coalesce(F.col(f"`{c}`"), F.lit("")) if csv else F.col(f"`{c}`")
        part = table.select(_doc_key(source, j, F.col(ROW)), text.alias("text"))
        parts.append(part if csv else part.filter(F.col("text").isNotNull()))
    docs = _union(parts) if parts else spark.createDataFrame([], "doc bigint, text string")
    return _Reference(path, source, docs, sum(counts), "csv" if csv else "sparse", table, columns, counts)


def _json_key_order(path: Path, wanted: set[str]) -> list[str]:
    """Keys of a JSON-lines file in order of first appearance, read until every wanted key was seen
    (usually the first line)."""
    import json

    order: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                break
            if isinstance(record, dict):
                order.extend(k for k in record if k not in order)
            if wanted <= set(order):
                break
    return order


def _union(frames: list["DataFrame"]) -> "DataFrame":
    out = frames[0]
    for f in frames[1:]:
        out = out.unionAll(f)
    return out


# ----------------------------------------------------------------------------- the test side


def _test_grams(test, text_cols: list[str], n: int, min_tokens: int) -> "DataFrame":
    """(col, row, len, L, pos, h) for every n-gram of every test item; an item with min_tokens <= len < n
    is one L-gram (L = len) at position 0; an item shorter than that has none."""
    from pyspark.sql import functions as F

    from auditor.spark import ROW

    items = _union([test.df.select(F.lit(k).alias("col"), F.col(ROW).alias("row"), _text(test.df, c).alias("text"))
                    for k, c in enumerate(text_cols)])
    tok = items.select("col", "row", _token_hashes(F.col("text")).alias("th"))
    size = F.size("th")
    L = F.when(size >= n, F.lit(n)).otherwise(size)
    count = F.when(size >= n, size - n + 1).when(size >= min_tokens, F.lit(1)).otherwise(F.lit(0))
    grams = F.when(count > 0, F.transform(F.sequence(F.lit(0), count - 1),
                                          lambda i: F.struct(i.alias("pos"), _gram(F.col("th"), i, L).alias("h"))))
    return tok.select("col", "row", size.alias("len"), L.alias("L"), F.inline(grams))


def _match(corpus: "DataFrame", hashes: "DataFrame", lengths: list[int], n: int, broadcast: bool) -> "DataFrame":
    """(h, doc, tokens, ngrams): each test hash found in the corpus with its first document, plus the row
    h = :data:`_TOTALS` whose tokens and ngrams are the corpus' totals, from a single scan of the corpus.

    Each document contributes its L-gram hashes and one totals-keyed row (its token and n-gram counts ride
    along as columns); the semi-join on the test hashes plus that key, a plain long key, keeps matches and
    totals, and one aggregation reduces both (partial aggregation first, so only matches move)."""
    from pyspark.sql import functions as F

    size = F.size("th")
    keyed = F.array(F.lit(_TOTALS).cast("long"))
    if lengths:
        keyed = F.concat(keyed, _corpus_grams(F.col("th"), lengths))
    stream = corpus.select("doc", size.cast("long").alias("tokens"),
                           F.greatest(size - n + 1, F.lit(0)).cast("long").alias("ngrams"), F.explode(keyed).alias("h"))
    keys = hashes.select("h").unionAll(hashes.sparkSession.createDataFrame([(_TOTALS,)], "h bigint")).distinct()
    if broadcast:  # the test side's hashes go to every task: the corpus is never shuffled
        keys = F.broadcast(keys)
    return (stream.join(keys, "h", "left_semi")
            .groupBy("h").agg(F.min("doc").alias("doc"), F.sum("tokens").alias("tokens"),
                              F.sum("ngrams").alias("ngrams")))


def _longest_run(hits: "Column") -> "Column":
    """The longest run of consecutive positions in a position-sorted array of (pos, doc) found n-grams:
    struct(k = its n-gram count, src = the document of its first n-gram); the earliest run on a tie."""
    from pyspark.sql import functions as F

    start = F.struct(F.lit(-2).alias("prev"), F.lit(0).alias("k"), F.lit(None).cast("long").alias("src"),
                     F.lit(0).alias("best"), F.lit(None).cast("long").alias("best_src"))

    def step(acc, x):
        on = x["pos"] == acc["prev"] + 1
        k = F.when(on, acc["k"] + 1).otherwise(F.lit(1))
        src = F.when(on, acc["src"]).otherwise(x["doc"])
        longer = k > acc["best"]
        return F.struct(x["pos"].alias("prev"), k.alias("k"), src.alias("src"),
                        F.when(longer, k).otherwise(acc["best"]).alias("best"),
                        F.when(longer, src).otherwise(acc["best_src"]).alias("best_src"))

    return F.aggregate(hits, start, step, lambda acc: F.struct(acc["best"].alias("k"), acc["best_src"].alias("src")))


def _per_row(grams: "DataFrame", matched: "DataFrame", min_span: int, min_overlap: float) -> "DataFrame":
    """(row, frac, span, src, flag) per test row with n-grams, pooled over its text columns as pandas does:
    overlap over all its n-grams; span and source from the item with the longest run in tokens (ties: the
    first column); flagged when an item's run reaches min(min_span, its length) and the overlap suffices."""
    from pyspark.sql import functions as F

    found = grams.join(matched, "h", "left")
    hit = F.when(F.col("doc").isNotNull(), F.struct("pos", "doc"))
    items = found.groupBy("col", "row").agg(
        F.count(F.lit(1)).alias("ngrams"), F.count("doc").alias("found"), F.max("len").alias("len"),
        F.max("L").alias("L"), _longest_run(F.sort_array(F.collect_list(hit))).alias("run"))
    # a run of k n-grams of L tokens spans k + L - 1 tokens
    span = F.when(F.col("run.k") > 0, F.col("run.k") + F.col("L") - 1).otherwise(F.lit(0))
    items = items.select("col", "row", "ngrams", "found", span.alias("span"), F.col("run.src").alias("src"),
                         (span >= F.least(F.lit(min_span), F.col("len"))).cast("int").alias("hit"))
    rows = items.groupBy("row").agg(
        F.sum("ngrams").alias("ngrams"), F.sum("found").alias("found"),
        F.max(F.struct("span", (-F.col("col")).alias("neg_col"), "src")).alias("best"), F.max("hit").alias("hit"))
    frac = F.col("found").cast("double") / F.col("ngrams").cast("double")
    return rows.select("row", frac.alias("frac"), F.col("best.span").alias("span"), F.col("best.src").alias("src"),
                       ((F.col("hit") == 1) & (frac >= F.lit(float(min_overlap)))).alias("flag"))


# ----------------------------------------------------------------------------- the check


def _columns(ctx: "AuditContext", params: NgramParams) -> tuple[list[str], list[str]]:
    """(test text columns, training text columns) chosen as the pandas engine chooses them."""
    test, train = ctx.test, ctx.train
    text_cols = list(params.columns or test.text_columns())
    missing = [c for c in text_cols if c not in test.columns]
    if missing:
        raise ValueError(f"text column(s) {missing} not in the test set")
    tcols: list[str] = []
    if train is not None and not train.is_array and text_cols:
        tcols = list(params.train_columns or dict.fromkeys(
            [c for c in text_cols if c in train.columns] + train.text_columns()))
        for c in tcols:
            if c not in train.columns:
                raise ValueError(f"training text column {c!r} not in the training set")
    return text_cols, tcols


def _split_key(key: int) -> tuple[int, int, int]:
    return key >> _SRC_SHIFT, (key >> _COL_SHIFT) & _MAX_COLUMNS, key & _MAX_ROW


def _sources(keys: list[int], refs: list[_Reference]) -> dict[int, tuple[str, int]]:
    """(source name, row) of each document key, numbered as in the pandas engine's report."""
    out = {}
    for source in sorted({_split_key(k)[0] for k in keys}):
        mine = [k for k in keys if _split_key(k)[0] == source]
        if source == 0:
            out.update({k: ("train", _split_key(k)[2]) for k in mine})
            continue
        ref = refs[source - 1]
        index = ref.source_rows([_split_key(k)[1:] for k in mine])
        out.update({k: (f"reference:{ref.path.name}", index[_split_key(k)[1:]]) for k in mine})
    return out


def ngram_contamination_spark(ctx: "AuditContext", params: NgramParams) -> Outcome:
    from pyspark.sql import functions as F

    from auditor.spark import ROW, persist, session

    test, train = ctx.test, ctx.train
    if test.is_array:
        return Outcome.skipped("the test set is an array (.npz): no text")
    text_cols, tcols = _columns(ctx, params)
    if not text_cols:
        return Outcome.skipped("no text columns in the test set (string columns averaging 40+ characters; "
                               "or name them in params.columns)")
    if len(tcols) > _MAX_COLUMNS or len(params.reference_corpora) > _MAX_SOURCES - 1:
        raise ValueError("too many training text columns or reference corpora for the Spark engine")
    spark = session()
    paths = [NgramContamination._resolve(ctx, p) for p in params.reference_corpora]
    refs = []
    for k, p in enumerate(paths, start=1):
        ctx.progress.step(f"reading reference corpus {p.name}")
        refs.append(_read_reference(spark, p, k))
    parts = [train.df.select(_doc_key(0, k, F.col(ROW)), _text(train.df, c).alias("text")) for k, c in enumerate(tcols)]
    parts += [r.docs for r in refs]
    n_docs = (train.n_rows * len(tcols) if tcols else 0) + sum(r.n_docs for r in refs)
    if not n_docs:
        return Outcome.skipped("no training text and no reference corpora to compare against")
    n, min_span = params.n, params.min_span or params.n

    ctx.progress.step(f"hashing the n-grams of {test.n_rows:,} test rows")
    grams = persist(_test_grams(test, text_cols, n, params.min_tokens))
    info = grams.agg(F.sort_array(F.collect_set("L")).alias("lengths"),
                     F.approx_count_distinct("h").alias("distinct")).first()
    lengths = [int(x) for x in info["lengths"]]

    sizes = ", ".join(map(str, lengths)) or "no"
    ctx.progress.step(f"matching against {n_docs:,} corpus documents (n-grams of {sizes} tokens)")
    corpus = _union(parts).select("doc", _token_hashes(F.col("text")).alias("th"))
    found = persist(_match(corpus, grams.select("h"), lengths, n, broadcast=info["distinct"] <= BROADCAST_HASHES))
    try:
        (corpus_totals,) = found.filter(F.col("h") == _TOTALS).collect() or [{"tokens": 0, "ngrams": 0}]
        matched = found.filter(F.col("h") != _TOTALS).select("h", "doc")
        rows = _per_row(grams, matched, min_span, params.min_overlap)
        # one job: the checked count, the overlap quantiles and the contaminated rows (only those)
        flagged = F.when(F.col("flag"), F.struct("row", "frac", "span", "src"))
        summary = rows.agg(F.count(F.lit(1)).alias("checked"),
                           F.percentile("frac", F.array(*[F.lit(q) for q in _QUANTILES])).alias("q"),
                           F.collect_list(flagged).alias("hits")).first()
    finally:
        found.unpersist()
        grams.unpersist()
    hits = sorted((int(h["row"]), float(h["frac"]), int(h["span"]), int(h["src"])) for h in summary["hits"])
    names = _sources(sorted({src for *_, src in hits}), refs)
    matches = [(row, frac, span, *names[src]) for row, frac, span, src in hits]
    n_checked = int(summary["checked"])
    quantiles = [float(x) for x in summary["q"]] if n_checked else [0.0] * 4
    return ngram_outcome(
        params, text_cols, tcols, paths, corpus_documents=n_docs, corpus_tokens=int(corpus_totals["tokens"]),
        corpus_ngrams=int(corpus_totals["ngrams"]), n_rows=test.n_rows, n_checked=n_checked,
        matches=matches, quantiles=quantiles)
