"""Helpers shared by the tabular checks: type-stable normalisation and exact row grouping."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def normalise(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Values that mean the same compare equal: 1 == 1.0 == True, ' a  b ' == 'a b', -0.0 == 0.0, NaN == NaN."""
    import numpy as np
    import pandas as pd

    out = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            v = s.astype("float64").to_numpy(copy=True)
            v[v == 0] = 0.0  # folds -0.0
            out[col] = v
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s.astype("int64", errors="ignore") if not s.isna().any() else s.astype("string")
        else:
            text = s.astype("string").str.strip().str.replace(r"\s+", " ", regex=True)
            numeric = pd.to_numeric(text, errors="coerce")
            # a column of numbers stored as text compares as numbers
            if numeric.notna().sum() == text.notna().sum() and text.notna().any():
                out[col] = numeric.astype("float64").to_numpy()
            else:
                out[col] = text.fillna("\x00<NA>")
    return pd.DataFrame(out, index=frame.index)


def row_hashes(frame: "pd.DataFrame") -> "np.ndarray":
    """A 64-bit hash per row of an already normalised frame (equal rows, equal hashes)."""
    import pandas as pd

    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def array_row_hashes(X: "np.ndarray", extra: "np.ndarray | None" = None) -> "np.ndarray":
    """A 64-bit hash per row of an array (rows flattened; values compared as float64)."""
    import numpy as np
    import pandas as pd

    flat = np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=np.float64) + 0.0  # folds -0.0
    frame = pd.DataFrame(flat)
    if extra is not None:
        frame["__label__"] = np.asarray(extra, dtype=np.float64)
    return row_hashes(frame)


def label_series(values: "np.ndarray") -> "pd.Series":
    """Labels as comparable text: integral numbers lose their '.0', strings their outer whitespace."""
    import numpy as np
    import pandas as pd

    s = pd.Series(values)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = s.to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(v)
        if np.all(v[finite] == np.round(v[finite])):
            out = pd.Series(pd.array(np.where(finite, v, 0).astype(np.int64), dtype="Int64")).astype("string")
            out[~finite] = pd.NA
            return out
    return s.astype("string").str.strip()
