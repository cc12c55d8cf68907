"""Datasets: CSV, Parquet, JSONL tables and NPZ arrays, read strictly.

Every problem is an :class:`~auditor.errors.InputError` naming the file: empty file, header only,
ragged rows, unknown extension, truncated Parquet, broken NPZ, object arrays (never unpickled),
missing label column. Row ``i`` is the i-th data row of the file, counted from 0.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from auditor.errors import InputError
from auditor.hashing import sha256_file

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ARRAY_FORMATS = {".npz": "npz"}
LABEL_CANDIDATES = ("label", "target", "class", "y")
#: arrays with more flattened features than this are summarised per row for the tabular data checks
MAX_FLAT_FEATURES = 1024
#: a string column whose values average more characters than this is treated as text
TEXT_MIN_MEAN_LENGTH = 40


@dataclass
class Dataset:
    name: str  # "train" | "test"
    path: Path
    sha256: str
    format: str
    label: str | None
    frame: "pd.DataFrame | None" = None  # tables: every column of the file, in file order
    X: "np.ndarray | None" = None  # arrays: as stored
    y: "np.ndarray | None" = None
    excluded: tuple[str, ...] = ()
    extras: "dict[str, np.ndarray]" = field(default_factory=dict)  # NPZ: other per-row arrays (e.g. groups)
    #: a sample drawn from a larger dataset (Spark engine): each row's number in the file, and how it was drawn
    row_ids: "np.ndarray | None" = field(default=None, repr=False)
    sample_of: dict | None = None
    _flat: "pd.DataFrame | None" = field(default=None, repr=False)

    is_spark = False

    @property
    def is_array(self) -> bool:
        return self.X is not None

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0]) if self.is_array else int(len(self.frame))

    @property
    def has_label(self) -> bool:
        return self.y is not None if self.is_array else self.label is not None

    @property
    def feature_columns(self) -> list[str]:
        """Columns the model receives: everything but the label and the excluded columns."""
        if self.is_array:
            return list(self.table().columns.drop(self.label, errors="ignore"))
        return [c for c in self.frame.columns if c != self.label and c not in self.excluded]

    def labels(self) -> "np.ndarray | None":
        if self.is_array:
            return self.y
        if self.label is None:
            return None
        return self.frame[self.label].to_numpy(copy=True)  # pandas copy-on-write hands out read-only views

    def features(self) -> "pd.DataFrame":
        """Feature columns as a table (arrays flattened, or summarised when very wide)."""
        return self.table()[self.feature_columns]

    def table(self) -> "pd.DataFrame":
        """The dataset as a table for the data checks: features then label."""
        if not self.is_array:
            return self.frame
        if self._flat is None:
            import numpy as np
            import pandas as pd

            flat = self.X.reshape(self.X.shape[0], -1)
            if flat.shape[1] <= MAX_FLAT_FEATURES:
                width = len(str(flat.shape[1] - 1))
                df = pd.DataFrame(flat, columns=[f"x{i:0{width}d}" for i in range(flat.shape[1])])
            else:
                f = flat.astype(np.float64, copy=False)
                finite = np.isfinite(f)
                safe = np.where(finite, f, np.nan)
                df = pd.DataFrame(
                    {
                        "x_mean": np.nanmean(safe, axis=1),
                        "x_std": np.nanstd(safe, axis=1),
                        "x_min": np.nanmin(safe, axis=1),
                        "x_max": np.nanmax(safe, axis=1),
                        "x_nonfinite": (~finite).sum(axis=1),
                    }
                )
            df[self.label] = self.y
            self._flat = df
        return self._flat

    def model_input(self) -> "np.ndarray":
        """What a model receives: X as stored (float32), or the feature columns in file order."""
        import numpy as np

        if self.is_array:
            return np.ascontiguousarray(self.X, dtype=np.float32)
        self.check_model_features()
        return self.frame[self.feature_columns].to_numpy(dtype=np.float32, na_value=np.nan, copy=True)

    def attribute(self, name: str) -> "np.ndarray":
        """Values of a per-row attribute (a column, or an NPZ array such as ``groups``); KeyError if absent."""
        if self.is_array:
            return self.extras[name]
        if name not in self.frame.columns:
            raise KeyError(name)
        return self.frame[name].to_numpy()

    def has_attribute(self, name: str) -> bool:
        return name in self.extras if self.is_array else name in self.frame.columns

    def check_model_features(self) -> None:
        """Raise InputError (exit 2, before auditing) when a feature column cannot become a float tensor."""
        import pandas as pd

        if self.is_array:
            return
        bad = [c for c in self.feature_columns
               if not (_is_numeric(self.frame[c]) or pd.api.types.is_bool_dtype(self.frame[c]))]
        if bad:
            raise InputError(
                f"non-numeric feature column(s) {', '.join(map(repr, bad[:5]))} cannot be fed to the model; "
                "leave them out with --exclude (or the policy's exclude)",
                self.path,
            )

    def text_columns(self) -> list[str]:
        """String feature columns long enough to be free text."""
        if self.is_array:
            return []
        out = []
        for c in self.feature_columns:
            s = self.frame[c]
            if not _is_numeric(s) and s.dtype != bool:
                lengths = s.dropna().astype(str).str.len()
                if len(lengths) and lengths.mean() >= TEXT_MIN_MEAN_LENGTH:
                    out.append(c)
        return out

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "rows": self.n_rows,
            "label": self.label,
            "features": len(self.feature_columns),
            "excluded": list(self.excluded),
            **({"shape": list(self.X.shape), "dtype": str(self.X.dtype)} if self.is_array else {}),
            **({"sample": dict(self.sample_of)} if self.sample_of else {}),
        }


def _is_numeric(series: "pd.Series") -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())[:300]


def load_dataset(
    path: str | Path, name: str, label: str | None = None, exclude: Sequence[str] = (), label_required: bool = False
) -> Dataset:
    """Read a dataset strictly. ``label`` given explicitly must exist; otherwise it is guessed."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a directory, expected a data file", path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS and suffix not in ARRAY_FORMATS:
        known = ", ".join(sorted(set(TABLE_FORMATS) | set(ARRAY_FORMATS)))
        raise InputError(f"unknown file extension {suffix or '(none)'!r} (supported: {known})", path)
    try:
        if path.stat().st_size == 0:
            raise InputError("file is empty", path)
        digest = sha256_file(path)
    except OSError as e:
        raise InputError(f"cannot read file: {e.strerror or _one_line(e)}", path) from None
    if suffix in ARRAY_FORMATS:
        X, y, extras = _read_npz(path)
        extras = {k: v for k, v in extras.items() if v.ndim == 1 and v.shape[0] == X.shape[0]}
        return Dataset(name=name, path=path, sha256=digest, format="npz", label="label", X=X, y=y, extras=extras)

    fmt = TABLE_FORMATS[suffix]
    frame = _read_table(path, fmt)
    if len(frame) == 0:
        raise InputError("has a header but no data rows" if fmt == "csv" else "has no data rows", path)
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise InputError(f"duplicate column name {dup!r}", path)
    if label is not None:
        if label not in frame.columns:
            raise InputError(f"label column {label!r} not found (columns: {_cols(frame)})", path)
    else:
        label = next((c for c in LABEL_CANDIDATES if c in frame.columns), None)
        if label is None and label_required:
            raise InputError(f"no label column: pass --label (columns: {_cols(frame)})", path)
    missing = [c for c in exclude if c not in frame.columns]
    if missing:
        raise InputError(f"excluded column {missing[0]!r} not found (columns: {_cols(frame)})", path)
    return Dataset(name=name, path=path, sha256=digest, format=fmt, label=label, frame=frame, excluded=tuple(exclude))


def _cols(frame: "pd.DataFrame") -> str:
    names = [str(c) for c in frame.columns[:12]]
    return ", ".join(names) + (", ..." if len(frame.columns) > 12 else "")


def _read_table(path: Path, fmt: str) -> "pd.DataFrame":
    try:
        if fmt == "csv":
            from pyarrow import csv

            table = csv.read_csv(path, parse_options=csv.ParseOptions(newlines_in_values=True))
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            from pyarrow import json

            table = json.read_json(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ValueError, ...: all mean "unreadable"
        msg = _one_line(e)
        if fmt == "csv" and "Empty CSV file" in msg:
            raise InputError("file is empty", path) from None
        if fmt == "csv" and "Expected" in msg and "columns" in msg:
            ragged = _ragged_row(path)
            if ragged:
                raise InputError(f"ragged CSV: {ragged}", path) from None
        raise InputError(f"cannot read {fmt.upper()}: {msg}", path) from None
    if table.num_columns == 0:
        raise InputError("has no columns", path)
    try:
        frame = table.to_pandas()
    except Exception as e:
        raise InputError(f"cannot convert to a table: {_one_line(e)}", path) from None
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def _ragged_row(path: Path) -> str | None:
    """The first data row whose field count differs from the header's, described (only on the error path)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return None
            row = -1
            for fields in reader:
                if not fields:  # blank lines are skipped, like the reader does
                    continue
                row += 1
                if len(fields) != len(header):
                    many = "many" if len(fields) > len(header) else "few"
                    return (f"data row {row} (line {reader.line_num}) has too {many} fields: "
                            f"{len(fields)}, expected {len(header)}")
    except (OSError, csv.Error):
        return None
    return None


def _read_npz(path: Path) -> "tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]":
    import numpy as np

    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        what = "a single .npy array" if magic == b"\x93NUM" else "not a zip archive"
        raise InputError(f"broken NPZ: {what}; expected an .npz archive (numpy.savez) with arrays 'X' and 'y'", path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if "X" not in names or "y" not in names:
                raise InputError(f"NPZ must contain arrays 'X' and 'y' (found: {', '.join(sorted(names)) or 'none'})", path)
            X = archive["X"]
            y = archive["y"]
            # other 1-D arrays with one value per row, e.g. ``groups`` (sensitive attributes)
            extras = {n: archive[n] for n in sorted(names - {"X", "y"})}
    except InputError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError("NPZ holds object arrays (pickled Python objects); refusing to unpickle", path) from None
        raise InputError(f"broken NPZ: {_one_line(e)}", path) from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, TypeError, AttributeError, RuntimeError,
            NotImplementedError) as e:  # truncated or corrupted members, unsupported compression, ...
        raise InputError(f"broken NPZ: {_one_line(e)}", path) from None
    if X.ndim < 1 or X.shape[0] == 0:
        raise InputError("NPZ array 'X' has no rows", path)
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise InputError(f"NPZ array 'X' must be numeric, got dtype {X.dtype}", path)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InputError(f"NPZ array 'y' must be 1-D with one label per row of X ({X.shape[0]}), got shape {y.shape}", path)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise InputError(f"NPZ array 'y' must hold integer labels, got dtype {y.dtype}", path)
    return X, y, extras
