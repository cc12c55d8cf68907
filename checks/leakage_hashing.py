"""Value-level canonical row hashing for cross-file exact matching, in memory or chunk by chunk.

``_tabular.normalise`` decides per *frame* whether a text column holds numbers; across two files (or
two chunks of one file) that decision can differ, so ``"1"`` in one and ``1`` in the other would not
match. Here every *value* is canonicalised on its own, which makes the hash independent of the file,
the dtype pyarrow inferred and the chunk a row was read in:

- numbers, booleans and numeric-looking strings compare as float64 (``1 == 1.0 == True == " 1.0 "``),
  ``-0.0 == 0.0``; a column stored as float32 on either side is compared at float32 precision;
- strings are stripped and inner whitespace folded (``" a  b " == "a b"``); an empty string is missing;
- missing values (None, NaN, NaT, empty string) are equal to each other;
- datetimes compare as UTC nanoseconds.

Rows hash to 64 bits by mixing the column hashes in a fixed column order (splitmix64 finaliser).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_MISSING = 0x6A09E667F3BCC909
_NUM_TAG = 0xBB67AE8584CAA73B
_STR_TAG = 0x3C6EF372FE94F82B
_DT_TAG = 0xA54FF53A5F1D36F1
_INT_TAG = 0x510E527FADE682D1
_ROW_SEED = 0x9B05688C2B3E6C1F
_ROW_MUL = 0x9E3779B97F4A7C15
_STR_KEY = "auditor-leak-key"  # 16 bytes, pandas' siphash key for strings
_WHITESPACE = r"\s+"
#: integers beyond this lose precision as float64; such columns hash their exact int64 value instead
_EXACT_INT = 2**53


def mix64(x: "np.ndarray") -> "np.ndarray":
    """splitmix64 finaliser, in place on a uint64 array (returned for chaining)."""
    import numpy as np

    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


# ----------------------------------------------------------------------------- canonical values


@dataclass
class Canonical:
    """Canonical values of one column: ``kind`` 0 missing, 1 number (``num``), 2 text (``text``), 3 datetime/int (``ints``)."""

    kind: "np.ndarray"  # uint8
    num: "np.ndarray"  # float64, meaningful where kind == 1
    text: "np.ndarray"  # object, meaningful where kind == 2
    ints: "np.ndarray"  # int64, meaningful where kind == 3

    def take(self, idx: "np.ndarray") -> "Canonical":
        return Canonical(self.kind[idx], self.num[idx], self.text[idx], self.ints[idx])

    def hashes(self) -> "np.ndarray":
        import numpy as np
        from pandas.util import hash_array

        n = len(self.kind)
        out = np.full(n, _MISSING, dtype=np.uint64)
        num = self.kind == 1
        if num.any():
            bits = self.num[num].view(np.uint64) ^ np.uint64(_NUM_TAG)
            out[num] = mix64(bits)
        txt = self.kind == 2
        if txt.any():
            out[txt] = hash_array(self.text[txt], hash_key=_STR_KEY) ^ np.uint64(_STR_TAG)
        ints = self.kind == 3
        if ints.any():
            out[ints] = mix64(self.ints[ints].view(np.uint64) ^ np.uint64(_DT_TAG))
        return out

    def equals(self, other: "Canonical") -> "np.ndarray":
        """Element-wise equality of two canonical columns of the same length."""
        import numpy as np

        same = self.kind == other.kind
        num = same & (self.kind == 1)
        same[num] = self.num[num] == other.num[num]
        txt = same & (self.kind == 2)
        if txt.any():
            same[txt] = np.asarray(self.text[txt] == other.text[txt], dtype=bool)
        ints = same & (self.kind == 3)
        same[ints] = self.ints[ints] == other.ints[ints]
        return same


def _float_canon(v: "np.ndarray", float32: bool) -> "tuple[np.ndarray, np.ndarray]":
    """(is_missing, canonical float64 values) of a float array."""
    import numpy as np

    v = np.array(v, dtype=np.float64, copy=True)
    if float32:
        with np.errstate(over="ignore"):
            v = v.astype(np.float32).astype(np.float64)
    v[v == 0] = 0.0  # folds -0.0
    return np.isnan(v), v


def _canon_objects(values: "np.ndarray", float32: bool) -> Canonical:
    """Canonical form of an object/string array (used on the distinct values of a column)."""
    import numpy as np
    import pandas as pd

    n = len(values)
    kind = np.zeros(n, dtype=np.uint8)
    num = np.zeros(n, dtype=np.float64)
    text = np.empty(n, dtype=object)
    ints = np.zeros(n, dtype=np.int64)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        _canon_strings(values, float32, kind, num, text)
        return Canonical(kind, num, text, ints)
    s = pd.Series(values, dtype=object)
    is_bool = s.map(lambda x: isinstance(x, (bool, np.bool_))).to_numpy(dtype=bool)
    is_num = s.map(lambda x: isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))).to_numpy(dtype=bool)
    is_ts = s.map(lambda x: isinstance(x, (pd.Timestamp, np.datetime64, _dt.date))).to_numpy(dtype=bool)
    if is_bool.any():
        kind[is_bool] = 1
        num[is_bool] = s[is_bool].astype(float).to_numpy()
    if is_num.any():
        miss, v = _float_canon(s[is_num].astype(float).to_numpy(), float32)
        idx = np.flatnonzero(is_num)
        kind[idx[~miss]] = 1
        num[idx[~miss]] = v[~miss]
    if is_ts.any():
        idx = np.flatnonzero(is_ts)
        stamps = pd.to_datetime(s[is_ts], utc=True).dt.as_unit("ns")  # dates parse at second resolution
        ok = stamps.notna().to_numpy()
        kind[idx[ok]] = 3
        ints[idx[ok]] = stamps[ok].astype("int64").to_numpy() if ok.any() else ints[idx[ok]]
    rest = ~(is_bool | is_num | is_ts)
    if rest.any():
        raw = s[rest]
        notnull = raw.notna().to_numpy()
        idx = np.flatnonzero(rest)[notnull]
        strings = raw[notnull].map(lambda x: x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x))
        folded = strings.str.strip().str.replace(_WHITESPACE, " ", regex=True)
        nonempty = (folded != "").to_numpy(dtype=bool)
        parsed = pd.to_numeric(folded.where(nonempty, None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        is_number = ~np.isnan(parsed) & nonempty
        # "nan" and the like parse to NaN: missing, like a NaN number
        looks_nan = nonempty & np.isnan(parsed) & folded.str.lower().isin(["nan", "-nan", "+nan"]).to_numpy(dtype=bool)
        if is_number.any():
            _, v = _float_canon(parsed[is_number], float32)
            kind[idx[is_number]] = 1
            num[idx[is_number]] = v
        is_text = nonempty & ~is_number & ~looks_nan
        kind[idx[is_text]] = 2
        text[idx[is_text]] = folded.to_numpy(dtype=object)[is_text]
    return Canonical(kind, num, text, ints)


def _canon_strings(values: "np.ndarray", float32: bool, kind, num, text) -> None:
    """Fast path of _canon_objects when every value is a str (pyarrow kernels; fills the arrays in place)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values, type=pa.large_string())
    folded = pc.replace_substring_regex(pc.utf8_trim_whitespace(arr), _WHITESPACE, " ")
    nonempty = pc.not_equal(pc.utf8_length(folded), 0).to_numpy(zero_copy_only=False)
    # only strings that look like numbers are parsed
    looks = pc.match_substring_regex(folded, r"^[+-]?(\d|\.\d|inf|nan|infinity)", ignore_case=True).to_numpy(zero_copy_only=False)
    folded_np = folded.to_numpy(zero_copy_only=False).astype(object)
    cand = np.flatnonzero(looks & nonempty)
    is_number = np.zeros(len(values), dtype=bool)
    looks_nan = np.zeros(len(values), dtype=bool)
    if len(cand):
        import pandas as pd

        parsed = pd.to_numeric(pd.Series(folded_np[cand]), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        low = pd.Series(folded_np[cand]).str.lower()
        ok = ~np.isnan(parsed)
        is_number[cand[ok]] = True
        looks_nan[cand[~ok & low.isin(["nan", "-nan", "+nan"]).to_numpy(dtype=bool)]] = True
        _, v = _float_canon(parsed[ok], float32)
        kind[cand[ok]] = 1
        num[cand[ok]] = v
    is_text = nonempty & ~is_number & ~looks_nan
    kind[is_text] = 2
    text[is_text] = folded_np[is_text]


def canonical(values: "pd.Series | np.ndarray", float32: bool = False) -> Canonical:
    """Canonical values of one column (any dtype), element by element."""
    import numpy as np
    import pandas as pd

    s = values if isinstance(values, pd.Series) else pd.Series(values)
    n = len(s)
    zeros_f, zeros_i = np.zeros(n), np.zeros(n, dtype=np.int64)
    empty_text = np.empty(n, dtype=object)
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        if pd.api.types.is_integer_dtype(s) and not s.isna().any():
            iv = s.to_numpy(dtype=np.int64)
            big = np.abs(iv) > _EXACT_INT  # beyond float64's exact integers: keep every bit (value by value)
            if big.any():
                kind = np.where(big, 3, 1).astype(np.uint8)
                num = np.where(big, 0.0, iv.astype(np.float64)) + 0.0
                return Canonical(kind, num, empty_text, np.where(big, iv ^ np.int64(_INT_TAG >> 1), 0))
        miss, v = _float_canon(s.to_numpy(dtype=np.float64, na_value=np.nan), float32 or s.dtype == np.float32)
        kind = np.where(miss, 0, 1).astype(np.uint8)
        return Canonical(kind, np.where(miss, 0.0, v), empty_text, zeros_i)
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        miss = s.isna().to_numpy()
        iv = s.to_numpy(dtype="datetime64[ns]").view(np.int64)
        kind = np.where(miss, 0, 3).astype(np.uint8)
        return Canonical(kind, zeros_f, empty_text, np.where(miss, 0, iv))
    if pd.api.types.is_timedelta64_dtype(s):
        miss = s.isna().to_numpy()
        iv = s.to_numpy(dtype="timedelta64[ns]").view(np.int64)
        return Canonical(np.where(miss, 0, 3).astype(np.uint8), zeros_f, empty_text, np.where(miss, 0, iv))
    # strings, categories, mixed objects: canonicalise each distinct value once
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    uvals = np.asarray(uniques.astype(object) if hasattr(uniques, "astype") else uniques, dtype=object)
    canon = _canon_objects(uvals, float32)
    missing = codes < 0
    safe = np.where(missing, 0, codes)
    if len(uvals) == 0:
        return Canonical(np.zeros(n, dtype=np.uint8), zeros_f, empty_text, zeros_i)
    out = canon.take(safe)
    out.kind[missing] = 0
    return out


def _float_hashes(v: "np.ndarray", float32: bool) -> "np.ndarray":
    """Hashes of float values (NaN missing): the same as Canonical.hashes() of numbers."""
    import numpy as np

    v = np.asarray(v, dtype=np.float64)
    if float32:
        with np.errstate(over="ignore"):
            v = v.astype(np.float32).astype(np.float64)
    v = v + 0.0  # a fresh copy, and -0.0 + 0.0 == +0.0
    miss = np.isnan(v)
    h = v.view(np.uint64)
    h ^= np.uint64(_NUM_TAG)
    mix64(h)
    if miss.any():
        h[miss] = np.uint64(_MISSING)
    return h


def _int_hashes(iv: "np.ndarray") -> "np.ndarray":
    """Hashes of integers: as numbers (1 == 1.0), except values beyond 2**53, hashed exactly."""
    import numpy as np

    h = _float_hashes(iv.astype(np.float64), False)
    big = np.abs(iv) > _EXACT_INT
    if big.any():
        h[big] = canonical(iv[big]).hashes()
    return h


def _coded_hashes(codes: "np.ndarray", uniques: "np.ndarray", float32: bool) -> "np.ndarray":
    """Hashes of a dictionary-coded column: each distinct value canonicalised and hashed once."""
    import numpy as np

    if not len(uniques):
        return np.full(len(codes), _MISSING, dtype=np.uint64)
    u_hash = _canon_objects(np.asarray(uniques, dtype=object), float32).hashes()
    missing = codes < 0
    out = u_hash[np.where(missing, 0, codes)]
    out[missing] = np.uint64(_MISSING)
    return out


def column_hashes(values: "pd.Series | np.ndarray", float32: bool = False) -> "np.ndarray":
    """A 64-bit hash per value of one column (equal canonical values, equal hashes)."""
    import numpy as np
    import pandas as pd

    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        if pd.api.types.is_integer_dtype(s) and not s.isna().any():
            return _int_hashes(s.to_numpy(dtype=np.int64))
        return _float_hashes(s.to_numpy(dtype=np.float64, na_value=np.nan), float32 or s.dtype == np.float32)
    elif not (pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s)):
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        uvals = uniques.astype(object) if hasattr(uniques, "astype") else uniques
        return _coded_hashes(codes, np.asarray(uvals, dtype=object), float32)
    return canonical(s, float32).hashes()


def arrow_column_hashes(arr, float32: bool = False) -> "np.ndarray":
    """column_hashes for a pyarrow array (no pandas round trip for numbers and strings)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        arr, t = pc.dictionary_encode(arr), None
    if t is None or pa.types.is_dictionary(t):
        codes = pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return _coded_hashes(codes, arr.dictionary.to_numpy(zero_copy_only=False), float32)
    if pa.types.is_floating(t) or pa.types.is_boolean(t):
        v = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        return _float_hashes(v, float32 or pa.types.is_float32(t) or pa.types.is_float16(t))
    if pa.types.is_integer(t):
        if arr.null_count == 0:
            return _int_hashes(arr.to_numpy().astype(np.int64, copy=False))
        return _float_hashes(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), float32)
    return column_hashes(arr.to_pandas(), float32)


def combine(row_hash: "np.ndarray | None", col_hash: "np.ndarray") -> "np.ndarray":
    """Fold one column's hashes into the running row hashes (order matters)."""
    import numpy as np

    if row_hash is None:
        row_hash = np.full(len(col_hash), _ROW_SEED, dtype=np.uint64)
    row_hash ^= col_hash
    return mix64(row_hash)


def _fold_rows(n: int, column_hash_iter) -> "np.ndarray":
    """Row hashes from well-mixed column hashes: h = (h ^ c) * odd, column by column, mixed once at the end."""
    import numpy as np

    h = np.full(n, _ROW_SEED, dtype=np.uint64)
    mul = np.uint64(_ROW_MUL)
    for c in column_hash_iter:
        h ^= c
        h *= mul
    return mix64(h)


def frame_row_hashes(frame: "pd.DataFrame", columns: Sequence[str], float32: Iterable[str] = ()) -> "np.ndarray":
    """A 64-bit hash per row of ``frame[columns]`` with value-level canonical forms."""
    f32 = set(float32)
    return _fold_rows(len(frame), (column_hashes(frame[col], col in f32) for col in columns))


def array_row_hashes(X: "np.ndarray", chunk: int = 65536) -> "np.ndarray":
    """A 64-bit hash per row of an array (rows flattened, values compared as float64; NaN == NaN)."""
    import numpy as np

    flat = X.reshape(X.shape[0], -1)
    out = np.empty(flat.shape[0], dtype=np.uint64)
    for start in range(0, flat.shape[0], chunk):
        block = np.array(flat[start:start + chunk], dtype=np.float64, copy=True)
        block[block == 0] = 0.0
        nan = np.isnan(block)
        bits = block.view(np.uint64)
        bits[nan] = np.uint64(_MISSING)
        h = np.full(block.shape[0], _ROW_SEED, dtype=np.uint64)
        for j in range(block.shape[1]):
            h ^= bits[:, j]
            mix64(h)
        out[start:start + chunk] = h
    return out


# ----------------------------------------------------------------------------- chunked files


def float32_columns(*schemas: "dict[str, str]") -> set[str]:
    """Columns stored as float32 in any of the given {column: dtype string} schemas."""
    return {c for schema in schemas for c, t in schema.items() if t in ("float32", "float", "halffloat", "float16")}


def file_schema(path: str | Path) -> "dict[str, str]":
    """{column: arrow type} of a Parquet file without reading its rows; CSV/JSONL from a first block."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(path).schema_arrow
    elif suffix == ".csv":
        from pyarrow import csv

        with csv.open_csv(path) as reader:
            schema = reader.schema
    else:
        from pyarrow import json

        schema = json.read_json(path).schema
    return {str(f.name): str(f.type) for f in schema}


def iter_file_batches(path: str | Path, columns: Sequence[str], batch_rows: int = 1 << 20) -> "Iterator":
    """pyarrow record batches of ``columns`` in file order, a bounded batch at a time.

    Parquet is read batch by batch with string columns dictionary-encoded (so each distinct string is
    canonicalised once per batch); CSV is streamed with every column read as text (type inference per
    block could otherwise change a column's type between blocks; the canonical form parses numbers
    itself). JSONL is read whole (pyarrow has no streaming JSON reader).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        pf = _parquet(path, columns)
        yield from pf.iter_batches(batch_size=batch_rows, columns=list(columns))
    elif suffix == ".csv":
        import pyarrow as pa
        from pyarrow import csv

        names = file_schema(path)
        convert = csv.ConvertOptions(column_types={c: pa.string() for c in names}, include_columns=list(columns),
                                     strings_can_be_null=True)
        read = csv.ReadOptions(block_size=64 << 20)
        with csv.open_csv(path, read_options=read, convert_options=convert,
                          parse_options=csv.ParseOptions(newlines_in_values=True)) as reader:
            yield from reader
    else:
        from pyarrow import json

        yield from json.read_json(path).select(list(columns)).to_batches(max_chunksize=batch_rows)


def _parquet(path: Path, columns: Sequence[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(path).schema_arrow
    strings = [f.name for f in schema if f.name in columns
               and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
    return pq.ParquetFile(path, read_dictionary=strings)


def batch_row_hashes(batch, columns: Sequence[str], float32: Iterable[str] = ()) -> "np.ndarray":
    """Row hashes of a pyarrow record batch or table (the same values as frame_row_hashes)."""
    f32 = set(float32)
    return _fold_rows(batch.num_rows, (arrow_column_hashes(batch.column(col), col in f32) for col in columns))


def file_row_hashes(path: str | Path, columns: Sequence[str], float32: Iterable[str] = (),
                    batch_rows: int = 1 << 20, workers: int | None = None) -> "np.ndarray":
    """Row hashes of a data file computed batch by batch: memory is a batch per worker plus 8 bytes a row.

    Parquet row groups are read and hashed by ``workers`` threads (default: the usable cores; numpy
    and pyarrow release the GIL), each reading its own row group; other formats stream in one thread.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        workers = workers or _workers()
        pf = _parquet(path, columns)
        groups = list(range(pf.num_row_groups))
        big = max((pf.metadata.row_group(i).num_rows for i in groups), default=0) > 2 * batch_rows

        def one(i: int) -> "np.ndarray":
            f = _parquet(path, columns)
            if big:  # a huge row group: stream it in batches
                return np.concatenate([batch_row_hashes(b, columns, float32)
                                       for b in f.iter_batches(batch_size=batch_rows, row_groups=[i], columns=list(columns))])
            return batch_row_hashes(f.read_row_group(i, columns=list(columns), use_threads=False), columns, float32)

        if workers > 1 and len(groups) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(one, groups))
        else:
            parts = [one(i) for i in groups]
    else:
        parts = [batch_row_hashes(b, columns, float32) for b in iter_file_batches(path, columns, batch_rows)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


# ----------------------------------------------------------------------------- matching


@dataclass
class Matches:
    """Test rows whose hash equals a training row's: the first such training row and how many there are."""

    test_rows: "np.ndarray"
    train_rows: "np.ndarray"
    train_copies: "np.ndarray"


class HashProbe:
    """Looks up training row hashes, chunk by chunk, among the (fewer) test row hashes.

    A bitmap on the top bits of the test hashes discards most training rows with one memory access
    each; the survivors go through a hash table of the distinct test hashes. Thread-safe for ``probe``.
    """

    def __init__(self, test_hash: "np.ndarray"):
        import math

        import numpy as np
        import pandas as pd

        self.unique, self.inverse = np.unique(test_hash, return_inverse=True)
        self.bits = int(min(30, max(16, math.ceil(math.log2(max(len(self.unique), 1))) + 5)))
        self.shift = np.uint64(64 - self.bits)
        self.bitmap = np.zeros(1 << self.bits, dtype=bool)
        self.bitmap[self.unique >> self.shift] = True
        self.index = pd.Index(self.unique)
        self.index.get_indexer(self.unique[:1])  # build the hash table now, not in a worker thread
        self.n_test = len(test_hash)

    def probe(self, train_hash: "np.ndarray", offset: int = 0) -> "tuple[np.ndarray, np.ndarray]":
        """(training rows, index of the distinct test hash) of every training row that matches."""
        import numpy as np

        cand = np.flatnonzero(self.bitmap[train_hash >> self.shift])
        pos = self.index.get_indexer(train_hash[cand])
        ok = pos >= 0
        return cand[ok] + offset, pos[ok]

    def matches(self, parts: "Iterable[tuple[np.ndarray, np.ndarray]]") -> Matches:
        import numpy as np

        parts = list(parts)
        rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        uidx = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        copies = np.bincount(uidx, minlength=len(self.unique))
        first = np.full(len(self.unique), -1, dtype=np.int64)
        order = np.lexsort((rows, uidx))
        lead = order[np.r_[True, uidx[order][1:] != uidx[order][:-1]]] if len(order) else order
        first[uidx[lead]] = rows[lead]
        test_rows = np.flatnonzero(copies[self.inverse] > 0)
        j = self.inverse[test_rows]
        return Matches(test_rows=test_rows, train_rows=first[j], train_copies=copies[j])


def match_hashes(train_hash: "np.ndarray", test_hash: "np.ndarray") -> Matches:
    """Test rows whose hash equals a training row's hash, with the first such training row."""
    probe = HashProbe(test_hash)
    return probe.matches([probe.probe(train_hash)])


def _workers() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def exact_leakage_files(train_path: str | Path, test_path: str | Path, columns: Sequence[str] | None = None,
                        exclude: Sequence[str] = (), batch_rows: int = 1 << 20, workers: int | None = None) -> Matches:
    """Exact train/test row matches between two data files, read in bounded batches.

    The test file is hashed first (8 bytes a row); the training file is then hashed row group by row
    group (``workers`` threads for Parquet) and each group probed at once, so the training side never
    needs more than a group per worker in memory. ``columns`` defaults to the columns both files
    share, minus ``exclude`` (e.g. the label). The match is on 64-bit row hashes: the chance that any
    pair of distinct rows collides is about ``train_rows * test_rows / 2**64`` (5e-7 for 10M x 1M).
    """
    from concurrent.futures import ThreadPoolExecutor

    train_path, test_path = Path(train_path), Path(test_path)
    train_schema, test_schema = file_schema(train_path), file_schema(test_path)
    if columns is None:
        columns = [c for c in train_schema if c in test_schema and c not in set(exclude)]
    columns = sorted(columns)
    f32 = float32_columns({c: train_schema[c] for c in columns}, {c: test_schema[c] for c in columns})
    probe = HashProbe(file_row_hashes(test_path, columns, f32, batch_rows, workers))
    if train_path.suffix.lower() not in (".parquet", ".pq"):
        parts, offset = [], 0
        for batch in iter_file_batches(train_path, columns, batch_rows):
            parts.append(probe.probe(batch_row_hashes(batch, columns, f32), offset))
            offset += batch.num_rows
        return probe.matches(parts)
    pf = _parquet(train_path, columns)
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]

    def one(i: int):
        f = _parquet(train_path, columns)
        if sizes[i] > 2 * batch_rows:
            found, off = [], offsets[i]
            for b in f.iter_batches(batch_size=batch_rows, row_groups=[i], columns=list(columns)):
                found.append(probe.probe(batch_row_hashes(b, columns, f32), off))
                off += b.num_rows
            return found
        table = f.read_row_group(i, columns=list(columns), use_threads=False)
        return [probe.probe(batch_row_hashes(table, columns, f32), offsets[i])]

    n = workers or _workers()
    if n > 1 and len(sizes) > 1:
        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(one, range(len(sizes))))
    else:
        results = [one(i) for i in range(len(sizes))]
    return probe.matches(p for group in results for p in group)
