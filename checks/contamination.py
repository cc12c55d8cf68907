"""contamination.ngram: test text items whose long token n-grams occur in the training text or in
reference corpora named by the policy.

Text is normalised before tokenising: Unicode NFKC, lower case, and every run of characters that are
not letters, digits or combining marks is a token boundary, so case, whitespace and punctuation are
folded. Tokens hash to 64 bits; an n-gram's hash is a polynomial of its token hashes (mixed), so the
whole training text becomes one sorted array of n-gram hashes and each test n-gram is a binary search.
Per test item: the fraction of its n-grams found (overlap) and the longest run of consecutive found
n-grams, in tokens (longest overlapping span; ConTAM finds the longest contaminated span the better
signal). An item shorter than n tokens (but at least ``min_tokens``) is looked up whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pydantic import Field

from auditor.checks.leakage import LEAKAGE_CONTROLS
from auditor.checks.leakage_hashing import mix64
from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import numpy as np

    from auditor.engine import AuditContext

_TOKEN_SPLIT = r"[^\p{L}\p{N}\p{M}]+"
_POLY = 0x100000001B3  # odd multiplier of the n-gram polynomial
_TOKEN_KEY = "auditor-tok-key!"  # 16 bytes
_SHORT_TAG = 0xC2B2AE3D27D4EB4F


@dataclass
class Tokens:
    """Token hashes of many documents: ``values[i]`` belongs to document ``doc[i]`` (non-decreasing)."""

    values: "np.ndarray"  # uint64
    doc: "np.ndarray"  # int64
    n_docs: int

    @property
    def lengths(self) -> "np.ndarray":
        import numpy as np

        return np.bincount(self.doc, minlength=self.n_docs)


def normalise(arr):
    """NFKC then lower case, with Arrow's kernels (the Spark engine calls this too: Java's lower case and
    Unicode tables differ, e.g. final sigma and dotted capital I)."""
    import pyarrow.compute as pc

    return pc.utf8_lower(pc.utf8_normalize(arr, "NFKC"))


def tokenize_many(texts: Sequence[str | None]) -> Tokens:
    """Normalised word tokens of each text, hashed (vectorised with pyarrow; None is an empty text)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from pandas.util import hash_array

    arr = pa.array([t if isinstance(t, str) else (None if t is None else str(t)) for t in texts], pa.large_string())
    arr = normalise(arr)
    parts = pc.split_pattern_regex(arr, _TOKEN_SPLIT)
    parents = pc.list_parent_indices(parts).to_numpy().astype(np.int64)
    flat = pc.list_flatten(parts)
    keep = pc.not_equal(pc.utf8_length(flat), 0)
    flat = pc.filter(flat, keep)
    parents = parents[keep.to_numpy(zero_copy_only=False)]
    if len(flat) == 0:
        return Tokens(np.zeros(0, np.uint64), np.zeros(0, np.int64), len(texts))
    enc = pc.dictionary_encode(flat).combine_chunks() if isinstance(flat, pa.ChunkedArray) else pc.dictionary_encode(flat)
    uniq = enc.dictionary.to_numpy(zero_copy_only=False)
    values = hash_array(uniq.astype(object), hash_key=_TOKEN_KEY)[enc.indices.to_numpy()]
    return Tokens(values.astype(np.uint64), parents, len(texts))


def ngram_hashes(tokens: Tokens, n: int, short_as_whole: bool = False,
                 short_min: int = 1) -> "tuple[np.ndarray, np.ndarray]":
    """(hash, document) of every n-gram, in document then position order.

    With ``short_as_whole``, a document with ``short_min <= length < n`` tokens contributes one hash of
    its whole token sequence (tagged with its length, so it never equals an n-gram).
    """
    h, doc, _ = ngram_hashes_with_positions(tokens, n, short_as_whole, short_min)
    return h, doc


def ngram_hashes_with_positions(tokens: Tokens, n: int, short_as_whole: bool = False,
                                short_min: int = 1) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """(hash, document, start position in the document) of every n-gram."""
    import numpy as np

    v, doc = tokens.values, tokens.doc
    T = len(v)
    lengths = tokens.lengths
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    pos = np.arange(T, dtype=np.int64) - starts[doc] if T else np.zeros(0, np.int64)
    valid = pos + n <= lengths[doc] if T else np.zeros(0, bool)
    H = np.zeros(T, dtype=np.uint64)
    P = np.uint64(_POLY)
    for j in range(min(n, T)):
        seg = H[:T - j]
        seg *= P
        seg += v[j:]
    out_h = mix64(H[valid])
    out_doc, out_pos = doc[valid], pos[valid]
    if short_as_whole:
        short = np.flatnonzero((lengths < n) & (lengths >= max(short_min, 1)))
        if len(short):
            sh = np.empty(len(short), dtype=np.uint64)
            for i, d in enumerate(short):
                acc = np.uint64(0)
                for t in v[starts[d]:starts[d] + lengths[d]]:
                    acc = acc * P + t
                sh[i] = acc ^ np.uint64(_SHORT_TAG) ^ np.uint64(int(lengths[d]))
            sh = mix64(sh)
            out_h = np.concatenate([out_h, sh])
            out_doc = np.concatenate([out_doc, short])
            out_pos = np.concatenate([out_pos, np.zeros(len(short), np.int64)])
            order = np.lexsort((out_pos, out_doc))
            out_h, out_doc, out_pos = out_h[order], out_doc[order], out_pos[order]
    return out_h, out_doc, out_pos


@dataclass
class Overlap:
    """Per test document: n-grams, found n-grams, longest run of found n-grams (in tokens) and a source."""

    ngrams: "np.ndarray"
    found: "np.ndarray"
    longest_span: "np.ndarray"
    source_doc: "np.ndarray"  # corpus document of the first n-gram of the longest run, -1 if none

    @property
    def fraction(self) -> "np.ndarray":
        import numpy as np

        return np.where(self.ngrams > 0, self.found / np.maximum(self.ngrams, 1), 0.0)


def overlap(test_tokens: Tokens, corpus: "CorpusIndex", n: int, min_tokens: int) -> Overlap:
    """Overlap of every test document with a corpus (n-grams; a short document's whole sequence)."""
    import numpy as np

    n_docs = test_tokens.n_docs
    lengths = test_tokens.lengths
    h, doc, pos = ngram_hashes_with_positions(test_tokens, n)
    found, src = corpus.lookup(n, h)
    span_len = np.full(len(h), n, dtype=np.int64)
    # documents shorter than n: whole-sequence lookup against the corpus' L-grams of that length
    short = np.flatnonzero((lengths < n) & (lengths >= min_tokens))
    if len(short):
        starts = np.r_[0, np.cumsum(lengths)[:-1]]
        sh, sdoc, sfound, ssrc, slen = [], [], [], [], []
        for L in np.unique(lengths[short]):
            docs_L = short[lengths[short] == L]
            sel = np.concatenate([np.arange(starts[d], starts[d] + L) for d in docs_L])
            sub = Tokens(test_tokens.values[sel], np.repeat(np.arange(len(docs_L)), L), len(docs_L))
            hL, dL = ngram_hashes(sub, int(L))
            f, s = corpus.lookup(int(L), hL)
            sh.append(hL); sdoc.append(docs_L[dL]); sfound.append(f); ssrc.append(s)
            slen.append(np.full(len(hL), int(L)))
        h = np.concatenate([h, *sh]); doc = np.concatenate([doc, *sdoc]); found = np.concatenate([found, *sfound])
        src = np.concatenate([src, *ssrc]); span_len = np.concatenate([span_len, *slen])
        pos = np.concatenate([pos, np.zeros(sum(len(x) for x in sh), np.int64)])
        order = np.lexsort((pos, doc))
        h, doc, found, src, span_len, pos = h[order], doc[order], found[order], src[order], span_len[order], pos[order]
    ngrams = np.bincount(doc, minlength=n_docs)
    n_found = np.bincount(doc, weights=found.astype(np.float64), minlength=n_docs).astype(np.int64)
    longest = np.zeros(n_docs, dtype=np.int64)
    source = np.full(n_docs, -1, dtype=np.int64)
    fi = np.flatnonzero(found)
    if len(fi):
        fd, fp = doc[fi], pos[fi]
        # runs of consecutive positions within a document
        new_run = np.r_[True, (fd[1:] != fd[:-1]) | (fp[1:] != fp[:-1] + 1)]
        run_id = np.cumsum(new_run) - 1
        run_first = np.flatnonzero(new_run)
        run_count = np.bincount(run_id)
        run_doc = fd[run_first]
        run_tokens = run_count + span_len[fi][run_first] - 1
        # longest run per document (ties: the earliest)
        order = np.lexsort((np.arange(len(run_doc)), -run_tokens, run_doc))
        firsts = order[np.r_[True, run_doc[order][1:] != run_doc[order][:-1]]]
        longest[run_doc[firsts]] = run_tokens[firsts]
        source[run_doc[firsts]] = src[fi][run_first[firsts]]
    return Overlap(ngrams, n_found, longest, source)


class CorpusIndex:
    """A corpus' tokens, and lookups of test n-gram hashes among its L-grams.

    The (fewer) test hashes go into a hash probe and the corpus' L-grams stream past it, so the
    corpus is never sorted: time and memory are linear in its tokens.
    """

    def __init__(self, texts: Sequence[str | None]):
        self.tokens = tokenize_many(texts)
        self._grams: dict[int, tuple] = {}

    def grams(self, L: int) -> "tuple[np.ndarray, np.ndarray]":
        """(hash, document) of every L-gram of the corpus."""
        if L not in self._grams:
            self._grams[L] = ngram_hashes(self.tokens, L)
        return self._grams[L]

    def lookup(self, L: int, hashes: "np.ndarray") -> "tuple[np.ndarray, np.ndarray]":
        """(found, first corpus document or -1) for each hash of a test L-gram."""
        import numpy as np

        from auditor.checks.leakage_hashing import HashProbe

        found = np.zeros(len(hashes), dtype=bool)
        docs = np.full(len(hashes), -1, dtype=np.int64)
        if not len(hashes):
            return found, docs
        h, doc = self.grams(L)
        probe = HashProbe(hashes)
        m = probe.matches([probe.probe(h)])
        found[m.test_rows] = True
        docs[m.test_rows] = doc[m.train_rows]
        return found, docs


# ----------------------------------------------------------------------------- reference corpora


def read_corpus(path: Path, max_chars: int = 2_000_000_000) -> list[str]:
    """Documents of a reference corpus: a .txt/.md file is one document; .jsonl, .csv and .parquet
    give every string value of every record as a document."""
    from auditor.errors import InputError

    if not path.is_file():
        raise InputError("reference corpus not found", path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".txt", ".md", ".text"):
            return [path.read_text("utf-8", errors="replace")[:max_chars]]
        if suffix in (".jsonl", ".ndjson", ".csv", ".parquet", ".pq"):
            import pyarrow as pa

            if suffix == ".csv":
                from pyarrow import csv

                table = csv.read_csv(path, parse_options=csv.ParseOptions(newlines_in_values=True))
            elif suffix in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                table = pq.read_table(path)
            else:
                from pyarrow import json

                table = json.read_json(path)
            docs: list[str] = []
            for col in table.columns:
                if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                    docs.extend(v for v in col.to_pylist() if isinstance(v, str))
            return docs
    except OSError as e:
        raise InputError(f"cannot read reference corpus: {e}", path) from None
    except Exception as e:  # pyarrow parse errors
        raise InputError(f"cannot read reference corpus: {' '.join(str(e).split())[:200]}", path) from None
    raise InputError(f"unknown reference corpus format {suffix!r} (use .txt, .md, .jsonl, .csv or .parquet)", path)


# ----------------------------------------------------------------------------- the report


def ngram_outcome(params: "NgramParams", text_cols: Sequence[str], tcols: Sequence[str], refs: Sequence[Path], *,
                  corpus_documents: int, corpus_tokens: int, corpus_ngrams: int, n_rows: int, n_checked: int,
                  matches: Sequence[tuple[int, float, int, str, int]], quantiles: Sequence[float]) -> Outcome:
    """The check's verdict, metrics and finding from its counts, shared by the pandas and Spark engines so
    both report alike. ``matches``: (test row, overlap fraction, longest span, source, source row) of every
    contaminated row, in row order; ``quantiles``: p50, p90, p99 and max of the checked rows' overlap."""
    min_span = params.min_span or params.n
    per_item = [{"test_row": r, "overlap_fraction": round(f, 4), "longest_span_tokens": span, "source": name,
                 "source_row": src_row} for r, f, span, name, src_row in matches]
    frac = len(per_item) / max(n_checked, 1)
    q = list(quantiles)
    metrics = {
        "n": params.n, "min_span_tokens": min_span, "min_overlap": params.min_overlap, "min_tokens": params.min_tokens,
        "max_fraction": params.max_fraction,
        "test_columns": list(text_cols), "train_columns": list(tcols),
        "reference_corpora": [str(p) for p in refs],
        "corpus_documents": corpus_documents, "corpus_tokens": corpus_tokens, "corpus_ngrams": corpus_ngrams,
        "test_items_checked": n_checked,
        "test_items_too_short": n_rows - n_checked,
        "contaminated_items": len(per_item),
        "contaminated_fraction": round(frac, 6),
        "overlap_fraction_quantiles": {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": float(q[3])},
        "contaminated": per_item,
    }
    findings = []
    if per_item:
        findings.append(Finding(
            f"test: {len(per_item)} of {n_checked} text items ({frac:.2%}) share a span of >= {min_span} "
            f"normalised tokens with the training/reference text",
            dataset="test", rows=tuple(m["test_row"] for m in per_item),
            details={"matches": per_item},
        ))
    status = "fail" if frac > params.max_fraction else "warn" if per_item else "pass"
    return Outcome(status=status, metrics=metrics, findings=findings)


# ----------------------------------------------------------------------------- the check


class NgramParams(Params):
    n: int = Field(13, ge=3, le=64, description="n-gram length in normalised tokens (GPT-3 used 13)")
    min_span: int | None = Field(
        None, ge=1, description="an item is contaminated when its longest overlapping span reaches this many tokens "
                                "(default n; an item shorter than that, when all of it is found)"
    )
    min_overlap: float = Field(
        0.0, ge=0, le=1, description="... and at least this fraction of its n-grams occur in the corpus"
    )
    min_tokens: int = Field(8, ge=1, description="items shorter than n tokens but at least this long are looked up whole")
    columns: list[str] | None = Field(None, description="test text columns (default: the test set's text columns)")
    train_columns: list[str] | None = Field(None, description="training text columns (default: the test's text columns plus the training set's own)")
    reference_corpora: list[str] = Field(
        default_factory=list, description="more text to check against: .txt/.md (one document), .jsonl/.csv/.parquet (string values)"
    )
    max_fraction: float = Field(0.0, ge=0, le=1, description="fail when more than this fraction of test items is contaminated")


class NgramContamination(Check):
    id = "contamination.ngram"
    title = "Test text contaminated by training or reference text (n-gram overlap)"
    family = "contamination"
    description = (
        "Test text items whose normalised token n-grams (case, whitespace and punctuation folded; default n = 13) "
        "occur in the training text or in reference corpora named in the policy. Per item: overlap fraction, "
        "longest overlapping span in tokens, and the source document; every contaminated test row listed."
    )
    requires = ("test",)
    default_severity = "high"
    controls = LEAKAGE_CONTROLS
    Params = NgramParams
    spark_native = True

    def run_spark(self, ctx: "AuditContext", params: NgramParams) -> Outcome:
        from auditor.checks.contamination_spark import ngram_contamination_spark

        return ngram_contamination_spark(ctx, params)

    def run(self, ctx: "AuditContext", params: NgramParams) -> Outcome:
        import numpy as np

        test = ctx.test
        if test.is_array:
            return Outcome.skipped("the test set is an array (.npz): no text")
        text_cols = params.columns or test.text_columns()
        missing = [c for c in text_cols if c not in test.frame.columns]
        if missing:
            raise ValueError(f"text column(s) {missing} not in the test set")
        if not text_cols:
            return Outcome.skipped("no text columns in the test set (string columns averaging 40+ characters; or name them in params.columns)")
        refs = [self._resolve(ctx, p) for p in params.reference_corpora]
        sources: list[tuple[str, int]] = []  # per corpus document: (source name, row)
        docs: list[str | None] = []
        train = ctx.train
        if train is not None and not train.is_array:
            tcols = params.train_columns or list(dict.fromkeys(
                [c for c in text_cols if c in train.frame.columns] + train.text_columns()))
            for c in tcols:
                if c not in train.frame.columns:
                    raise ValueError(f"training text column {c!r} not in the training set")
                vals = train.frame[c].tolist()
                docs.extend(v if isinstance(v, str) else None for v in vals)
                sources.extend(("train", i) for i in range(len(vals)))
        else:
            tcols = []
        for p in refs:
            ctx.progress.step(f"reading reference corpus {p.name}")
            rdocs = read_corpus(p)
            docs.extend(rdocs)
            sources.extend((f"reference:{p.name}", i) for i in range(len(rdocs)))
        if not docs:
            return Outcome.skipped("no training text and no reference corpora to compare against")
        n = params.n
        min_span = params.min_span or n
        ctx.progress.step(f"indexing {len(docs)} corpus documents")
        corpus = CorpusIndex(docs)
        n_rows = test.n_rows
        items: list[str | None] = []
        item_row: list[int] = []
        for c in text_cols:
            vals = test.frame[c].tolist()
            items.extend(v if isinstance(v, str) else None for v in vals)
            item_row.extend(range(len(vals)))
        ctx.progress.step(f"looking up {len(items)} test items")
        test_tokens = tokenize_many(items)
        ov = overlap(test_tokens, corpus, n, params.min_tokens)
        item_row_a = np.asarray(item_row, dtype=np.int64)
        # a row's overlap pools its text columns; its span is the longest of them
        row_ngrams = np.bincount(item_row_a, weights=ov.ngrams, minlength=n_rows)
        row_found = np.bincount(item_row_a, weights=ov.found, minlength=n_rows)
        row_frac = np.where(row_ngrams > 0, row_found / np.maximum(row_ngrams, 1), 0.0)
        row_span = np.zeros(n_rows, dtype=np.int64)
        row_src = np.full(n_rows, -1, dtype=np.int64)
        order = np.lexsort((-ov.longest_span, item_row_a))
        firsts = order[np.r_[True, item_row_a[order][1:] != item_row_a[order][:-1]]] if len(order) else order
        row_span[item_row_a[firsts]] = ov.longest_span[firsts]
        row_src[item_row_a[firsts]] = ov.source_doc[firsts]
        checked = row_ngrams > 0
        # an item shorter than the span needed (but looked up whole) is contaminated when all of it is found
        item_len = test_tokens.lengths
        item_hit = (ov.ngrams > 0) & (ov.longest_span >= np.minimum(min_span, item_len))
        row_hit = np.bincount(item_row_a, weights=item_hit, minlength=n_rows) > 0
        flagged = np.flatnonzero(checked & row_hit & (row_frac >= params.min_overlap))
        matches = []
        for r in flagged:
            name, src_row = sources[int(row_src[r])] if row_src[r] >= 0 else ("?", -1)
            matches.append((int(r), float(row_frac[r]), int(row_span[r]), name, int(src_row)))
        q = np.percentile(row_frac[checked], [50, 90, 99, 100]) if checked.any() else [0, 0, 0, 0]
        return ngram_outcome(
            params, text_cols, tcols, refs, corpus_documents=len(docs), corpus_tokens=int(len(corpus.tokens.values)),
            corpus_ngrams=int(len(corpus.grams(n)[0])), n_rows=n_rows, n_checked=int(checked.sum()),
            matches=matches, quantiles=[float(x) for x in q])

    @staticmethod
    def _resolve(ctx: "AuditContext", ref: str) -> Path:
        p = Path(ref).expanduser()
        if p.is_absolute() or p.exists():
            return p
        policy_path = Path(ctx.policy.path)
        if policy_path.is_file():
            candidate = policy_path.parent / p
            if candidate.exists():
                return candidate
        return p
