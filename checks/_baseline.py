"""Cross-validated baseline models for checks that need out-of-sample predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MAX_ONE_HOT_CATEGORIES = 50


def design_matrix(features: "pd.DataFrame", text_columns: list[str] = ()) -> "np.ndarray":
    """Numeric matrix for a scikit-learn baseline: numbers imputed and scaled, low-cardinality
    categoricals one-hot encoded; free text and high-cardinality identifiers left out."""
    import numpy as np
    import pandas as pd

    parts = []
    for col in features.columns:
        if col in text_columns:
            continue
        s = features[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            v = np.array(s.to_numpy(dtype=float, na_value=np.nan), dtype=float, copy=True)
            v[~np.isfinite(v)] = np.nan
            if np.all(np.isnan(v)):
                continue
            med = np.nanmedian(v)
            missing = np.isnan(v)
            v = np.where(missing, med, v)
            sd = v.std()
            parts.append(((v - v.mean()) / sd if sd > 0 else v - v.mean()).reshape(-1, 1))
            if missing.any():
                parts.append(missing.astype(float).reshape(-1, 1))
        else:
            cats = s.astype("string").fillna("<NA>")
            if cats.nunique() > MAX_ONE_HOT_CATEGORIES:
                continue
            parts.append(pd.get_dummies(cats, dtype=float).to_numpy())
    if not parts:
        return np.zeros((len(features), 0))
    return np.hstack(parts)


def out_of_sample_proba(X: "np.ndarray", y: "np.ndarray", folds: int, seed: int) -> "tuple[np.ndarray, int]":
    """Out-of-sample class probabilities from stratified K-fold cross-validation.

    ``y`` holds class indices 0..K-1. Returns (probabilities N x K, folds used). The baseline is a
    standardised multinomial logistic regression: fast, well calibrated for confident learning.
    """
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    n_classes = int(y.max()) + 1
    smallest = int(np.bincount(y, minlength=n_classes).min())
    k = max(2, min(folds, smallest))
    proba = np.zeros((len(y), n_classes))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    # small dense problems: BLAS threads cost far more than they save (3 s vs 0.07 s per fit on digits)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        for train_idx, hold_idx in splitter.split(X, y):
            clf = LogisticRegression(max_iter=500, C=1.0)
            clf.fit(X[train_idx], y[train_idx])
            p = np.zeros((len(hold_idx), n_classes))
            p[:, clf.classes_] = clf.predict_proba(X[hold_idx])
            proba[hold_idx] = p
    return proba, k
