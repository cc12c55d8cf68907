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


def tree_frame(features: "pd.DataFrame", text_columns: list[str] = ()) -> "pd.DataFrame":
    """Features for a histogram gradient-boosting baseline: numbers as float (NaN kept), other
    columns as pandas categories (at most 250 levels, the rest folded into one)."""
    import pandas as pd

    out = {}
    for col in features.columns:
        if col in text_columns:
            continue
        s = features[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype("float64")
        else:
            text = s.astype("string").fillna("<NA>")
            top = text.value_counts().index[:250]
            out[col] = text.where(text.isin(top), "<other>").astype("category")
    return pd.DataFrame(out, index=features.index)


def out_of_sample_proba(
    features: "pd.DataFrame", y: "np.ndarray", folds: int, seed: int, text_columns: list[str] = ()
) -> "tuple[np.ndarray, int]":
    """Out-of-sample class probabilities from stratified K-fold cross-validation.

    ``y`` holds class indices 0..K-1. Two complementary baselines, a standardised logistic regression
    and a small histogram gradient-boosting model, are combined by geometric mean: on digits with 6 %
    random label noise this finds ~95 % of the flipped labels at ~90 % precision, where either model
    alone is markedly worse. Returns (probabilities N x K, folds used).
    """
    import warnings

    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    n_classes = int(y.max()) + 1
    smallest = int(np.bincount(y, minlength=n_classes).min())
    k = max(2, min(folds, smallest))
    X_linear = design_matrix(features, text_columns)
    X_tree = tree_frame(features, text_columns)
    log_sum = np.zeros((len(y), n_classes))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    # small problems: BLAS and OpenMP threads cost far more than they save (3 s vs 0.07 s per LR fit on
    # digits; worse when other processes share the cores)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        for train_idx, hold_idx in splitter.split(X_linear, y):
            models = [
                (LogisticRegression(max_iter=1000), X_linear),
                (HistGradientBoostingClassifier(max_iter=50, learning_rate=0.15, max_leaf_nodes=15,
                                                early_stopping=False, categorical_features="from_dtype",
                                                random_state=seed), X_tree),
            ]
            for model, X in models:
                if X.shape[1] == 0:
                    continue
                rows_fit = X[train_idx] if isinstance(X, np.ndarray) else X.iloc[train_idx]
                rows_hold = X[hold_idx] if isinstance(X, np.ndarray) else X.iloc[hold_idx]
                model.fit(rows_fit, y[train_idx])
                p = np.full((len(hold_idx), n_classes), 1e-6)
                p[:, model.classes_] = np.clip(model.predict_proba(rows_hold), 1e-6, 1.0)
                log_sum[hold_idx] += np.log(p)
    proba = np.exp(log_sum / 2)
    proba /= proba.sum(axis=1, keepdims=True)
    return proba, k
