"""Data-family checks: duplicates inside a dataset, class balance, and train/test drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from auditor.checks._tabular import array_row_hashes, label_series, normalise, row_hashes
from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from auditor.engine import AuditContext
    from auditor.inputs import Dataset

DATA_QUALITY = ("iso-42001:A.7.4", "iso-42001:A.6.2.4")


# ----------------------------------------------------------------------------- duplicates


class DuplicatesParams(Params):
    max_fraction: float = Field(0.01, ge=0, le=1, description="fail above this fraction of duplicate rows")
    max_conflicting_groups: int = Field(0, ge=0, description="fail above this many feature-identical groups with different labels")
    include_label: bool = Field(True, description="a row duplicates another only if its label matches too")


def _feature_and_row_hashes(ds: "Dataset", include_label: bool) -> "tuple[np.ndarray, np.ndarray]":
    """(hash of the features, hash of the row as compared) per row."""
    import numpy as np

    labels = ds.labels()
    if ds.is_array:
        feat = array_row_hashes(ds.X)
        if include_label and labels is not None:
            return feat, array_row_hashes(ds.X, extra=labels)
        return feat, feat
    feats = normalise(ds.features())
    feat = row_hashes(feats)
    if include_label and labels is not None:
        feats = feats.assign(__label__=label_series(labels).fillna("\x00<NA>").to_numpy())
        return feat, row_hashes(feats)
    return feat, np.asarray(feat)


class Duplicates(Check):
    id = "data.duplicates"
    title = "Duplicate rows inside a dataset"
    family = "data"
    description = (
        "Rows that repeat an earlier row of the same dataset (values normalised: 1 == 1.0, whitespace folded), "
        "and groups of identical features carrying different labels."
    )
    requires = ("train",)
    default_severity = "medium"
    controls = ("nist-ai-rmf:MEASURE 2.5", "nist-ai-rmf:MAP 2.3", *DATA_QUALITY, "eu-ai-act:Art.10(3)", "mitre-atlas:AML.T0059")
    tracked_metrics = {"train.duplicate_fraction": "lower", "test.duplicate_fraction": "lower", "train.conflicting_groups": "lower"}
    Params = DuplicatesParams

    spark_native = True

    def run(self, ctx: "AuditContext", params: DuplicatesParams) -> Outcome:
        import numpy as np
        import pandas as pd

        found = []
        for ds in ctx.datasets():
            ctx.progress.step(f"hashing {ds.name} rows")
            feat_hash, row_hash = _feature_and_row_hashes(ds, params.include_label)
            dup_rows = np.flatnonzero(pd.Series(row_hash).duplicated(keep="first").to_numpy())
            conflict_rows: list[int] = []
            n_conflict_groups = 0
            labels = ds.labels()
            if labels is not None:
                frame = pd.DataFrame({"f": feat_hash, "y": label_series(labels).fillna("\x00<NA>")})
                n_labels = frame.groupby("f", sort=False)["y"].transform("nunique")
                conflicted = frame[n_labels.to_numpy() > 1]
                conflict_rows = conflicted.index.tolist()
                n_conflict_groups = int(conflicted["f"].nunique())
            found.append(DatasetDuplicates(ds.name, ds.n_rows, [int(r) for r in dup_rows], conflict_rows,
                                           n_conflict_groups))
        return duplicates_outcome(params, found)

    def run_spark(self, ctx: "AuditContext", params: DuplicatesParams) -> Outcome:
        from auditor.checks.data_spark import duplicates

        return duplicates(ctx, params)


@dataclass
class DatasetDuplicates:
    """What the duplicate search found in one dataset (rows ascending), whichever engine searched."""

    name: str
    n_rows: int
    dup_rows: list[int]
    conflict_rows: list[int]
    conflict_groups: int


def duplicates_outcome(params: DuplicatesParams, found: "list[DatasetDuplicates]") -> Outcome:
    """Metrics, findings and verdict of data.duplicates from each dataset's duplicate and conflicting rows."""
    metrics: dict = {"max_fraction": params.max_fraction, "max_conflicting_groups": params.max_conflicting_groups}
    findings = []
    failed = warned = False
    for d in found:
        fraction = len(d.dup_rows) / d.n_rows
        metrics[d.name] = {
            "rows": d.n_rows,
            "duplicate_rows": len(d.dup_rows),
            "duplicate_fraction": round(fraction, 6),
            "conflicting_groups": d.conflict_groups,
            "conflicting_rows": len(d.conflict_rows),
        }
        if d.dup_rows:
            findings.append(
                Finding(
                    f"{d.name}: {len(d.dup_rows)} of {d.n_rows} rows ({fraction:.2%}) repeat an earlier row",
                    dataset=d.name,
                    rows=tuple(int(r) for r in d.dup_rows),
                )
            )
            if fraction > params.max_fraction:
                failed = True
            else:
                warned = True
        if d.conflict_groups:
            findings.append(
                Finding(
                    f"{d.name}: {d.conflict_groups} groups of identical features carry different labels "
                    f"({len(d.conflict_rows)} rows)",
                    dataset=d.name,
                    rows=tuple(int(r) for r in d.conflict_rows),
                )
            )
            if d.conflict_groups > params.max_conflicting_groups:
                failed = True
            else:
                warned = True
    return Outcome(status="fail" if failed else "warn" if warned else "pass", metrics=metrics, findings=findings)


# ----------------------------------------------------------------------------- class balance


class ClassBalanceParams(Params):
    max_ratio: float = Field(10.0, ge=1, description="fail when the largest class outnumbers the smallest by more")
    min_class_count: int = Field(5, ge=0, description="fail when a class has fewer training rows")
    max_label_shift: float = Field(
        0.1, ge=0, le=1, description="fail when train and test label distributions differ by more (total variation)"
    )


class ClassBalance(Check):
    id = "data.class_balance"
    title = "Label balance and train/test label shift"
    family = "data"
    description = (
        "Counts of each class in train and test: imbalance ratio, rare classes, test classes unseen in "
        "training, and the total variation distance between the train and test label distributions."
    )
    requires = ("train", "label")
    default_severity = "medium"
    controls = ("nist-ai-rmf:MEASURE 2.11", "nist-ai-rmf:MAP 2.3", *DATA_QUALITY, "eu-ai-act:Art.10(2)(f)", "eu-ai-act:Art.10(3)")
    tracked_metrics = {"label_shift_tvd": "lower", "train.imbalance_ratio": "lower"}
    Params = ClassBalanceParams

    spark_native = True

    def run(self, ctx: "AuditContext", params: ClassBalanceParams) -> Outcome:
        labelled = []
        for ds in ctx.datasets():
            labels = ds.labels()
            if labels is None:
                continue
            s = label_series(labels)
            missing = [int(i) for i in s.index[s.isna()]]
            labelled.append((ds.name, s.dropna().value_counts(), missing))
        return balance_outcome(params, labelled)

    def run_spark(self, ctx: "AuditContext", params: ClassBalanceParams) -> Outcome:
        from auditor.checks.data_spark import class_balance

        return class_balance(ctx, params)


def balance_outcome(params: ClassBalanceParams, labelled: "list[tuple[str, pd.Series, list[int]]]") -> Outcome:
    """Metrics, findings and verdict of data.class_balance from each labelled dataset's
    (name, count per label as label_series text, rows without a label), whichever engine counted them."""
    metrics: dict = params.model_dump()
    findings = []
    failed = False
    dists = {}
    for name, counts, missing in labelled:
        if missing:
            findings.append(Finding(f"{name}: {len(missing)} rows have no label", dataset=name, rows=tuple(missing)))
            failed = True
        counts = counts.sort_index()
        dists[name] = counts / counts.sum()
        entry = {"classes": len(counts), "counts": {str(k): int(v) for k, v in counts.items()}}
        if len(counts) >= 2:
            ratio = float(counts.max() / counts.min())
            entry["imbalance_ratio"] = round(ratio, 4)
            if name == "train" and ratio > params.max_ratio:
                failed = True
                findings.append(Finding(
                    f"train: largest class {counts.idxmax()!r} ({counts.max()}) outnumbers smallest "
                    f"{counts.idxmin()!r} ({counts.min()}) {ratio:.1f}:1 (limit {params.max_ratio:g}:1)",
                    dataset="train"))
        elif name == "train":
            failed = True
            findings.append(Finding("train: only one class present", dataset="train"))
        if name == "train":
            rare = counts[counts < params.min_class_count]
            if len(rare):
                failed = True
                findings.append(Finding(
                    f"train: {len(rare)} classes have fewer than {params.min_class_count} rows: "
                    + ", ".join(f"{k!r} ({v})" for k, v in rare.items()), dataset="train"))
        metrics[name] = entry
    if "train" in dists and "test" in dists:
        train, test = dists["train"], dists["test"]
        unseen = sorted(set(test.index) - set(train.index))
        if unseen:
            failed = True
            findings.append(Finding(f"test: classes never seen in training: {', '.join(map(repr, unseen))}",
                                    dataset="test"))
        keys = sorted(set(train.index) | set(test.index))
        tvd = 0.5 * sum(abs(float(train.get(k, 0.0)) - float(test.get(k, 0.0))) for k in keys)
        metrics["label_shift_tvd"] = round(tvd, 6)
        if tvd > params.max_label_shift:
            failed = True
            findings.append(Finding(
                f"train and test label distributions differ by {tvd:.3f} (total variation; limit {params.max_label_shift:g})"))
    return Outcome(status="fail" if failed else "pass", metrics=metrics, findings=findings)


# ----------------------------------------------------------------------------- drift


class DriftParams(Params):
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level after multiple-testing correction")
    correction: Literal["bh", "holm", "bonferroni", "none"] = Field(
        "bh", description="multiple-testing correction across features (Benjamini-Hochberg by default)"
    )
    min_effect: float = Field(
        0.1, ge=0, le=1, description="a feature drifts only if its effect (KS statistic or total variation) reaches this"
    )
    max_drifted_features: int = Field(0, ge=0, description="fail when more features drift")
    max_categories: int = Field(50, ge=2, description="categorical columns with more distinct values are not tested")
    max_rows: int = Field(200_000, ge=100, description="rows sampled per dataset (seeded) for the tests")


def adjust_pvalues(p: "np.ndarray", method: str) -> "np.ndarray":
    """Multiple-testing adjusted p-values (BH step-up, Holm step-down, Bonferroni)."""
    import numpy as np

    p = np.asarray(p, dtype=float)
    n = len(p)
    if n == 0 or method == "none":
        return p
    if method == "bonferroni":
        return np.minimum(p * n, 1.0)
    order = np.argsort(p)
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((n - np.arange(n)) * ranked)
    else:  # bh
        adj = np.minimum.accumulate((ranked * n / np.arange(1, n + 1))[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adj, 1.0)
    return out


class Drift(Check):
    id = "data.drift"
    title = "Train/test distribution shift per feature"
    family = "data"
    description = (
        "Two-sample Kolmogorov-Smirnov test per numeric feature and chi-square test per categorical feature, "
        "with a multiple-testing correction across features and a minimum effect size, so large samples do "
        "not flag trivial shifts."
    )
    requires = ("train", "test")
    default_severity = "medium"
    controls = ("nist-ai-rmf:MEASURE 2.5", "nist-ai-rmf:MEASURE 2.3", *DATA_QUALITY, "eu-ai-act:Art.10(3)", "eu-ai-act:Art.10(4)")
    tracked_metrics = {"features_drifted": "lower"}
    Params = DriftParams

    def run(self, ctx: "AuditContext", params: DriftParams) -> Outcome:
        import numpy as np
        import pandas as pd
        from scipy import stats

        rng = ctx.rng()
        train, test = ctx.train.features(), ctx.test.features()
        common = [c for c in train.columns if c in test.columns]

        def sample(df: pd.DataFrame) -> pd.DataFrame:
            if len(df) <= params.max_rows:
                return df
            return df.iloc[np.sort(rng.choice(len(df), params.max_rows, replace=False))]

        train, test = sample(train[common]), sample(test[common])
        text_cols = set(ctx.train.text_columns())
        tested, not_tested = [], {}
        stats_rows = []
        for col in common:
            a, b = train[col], test[col]
            if col in text_cols:
                not_tested[col] = "free text"
                continue
            numeric = pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b) and not pd.api.types.is_bool_dtype(a)
            if numeric:
                x = a.to_numpy(dtype=float, na_value=np.nan)
                y = b.to_numpy(dtype=float, na_value=np.nan)
                x, y = x[np.isfinite(x)], y[np.isfinite(y)]
                if len(x) < 2 or len(y) < 2:
                    not_tested[col] = "fewer than 2 finite values"
                    continue
                if np.ptp(np.concatenate([x, y])) == 0:
                    not_tested[col] = "constant"
                    continue
                res = stats.ks_2samp(x, y)
                stats_rows.append((col, "numeric", "ks", float(res.statistic), float(res.pvalue), float(res.statistic)))
            else:
                ca, cb = a.astype("string").fillna("<NA>"), b.astype("string").fillna("<NA>")
                cats = sorted(set(ca.unique()) | set(cb.unique()))
                if len(cats) > params.max_categories:
                    not_tested[col] = f"{len(cats)} distinct values (> max_categories)"
                    continue
                if len(cats) < 2:
                    not_tested[col] = "constant"
                    continue
                va, vb = ca.value_counts(), cb.value_counts()
                table = np.array([[va.get(c, 0) for c in cats], [vb.get(c, 0) for c in cats]], dtype=float)
                chi = stats.chi2_contingency(table)
                pa, pb = table[0] / table[0].sum(), table[1] / table[1].sum()
                tvd = 0.5 * float(np.abs(pa - pb).sum())
                stats_rows.append((col, "categorical", "chi2", float(chi.statistic), float(chi.pvalue), tvd))
            tested.append(col)
        p_adj = adjust_pvalues(np.array([r[4] for r in stats_rows]), params.correction)
        per_feature = {}
        drifted = []
        for (col, kind, test_name, statistic, p, effect), q in zip(stats_rows, p_adj):
            is_drift = bool(q < params.alpha and effect >= params.min_effect)
            per_feature[col] = {
                "type": kind, "test": test_name, "statistic": round(statistic, 6), "effect": round(effect, 6),
                "p_value": p, "p_adjusted": float(q), "drifted": is_drift,
            }
            if is_drift:
                drifted.append(col)
        drifted.sort(key=lambda c: -per_feature[c]["effect"])
        findings = [
            Finding(
                f"{col}: {per_feature[col]['test'].upper()} effect {per_feature[col]['effect']:.3f}, "
                f"adjusted p = {per_feature[col]['p_adjusted']:.2g}",
                details=per_feature[col],
            )
            for col in drifted
        ]
        metrics = {
            **params.model_dump(),
            "features_tested": len(tested),
            "features_drifted": len(drifted),
            "drifted": drifted,
            "not_tested": not_tested,
            "per_feature": per_feature,
            "rows_used": {"train": len(train), "test": len(test)},
        }
        status = "fail" if len(drifted) > params.max_drifted_features else "warn" if drifted else "pass"
        return Outcome(status=status, metrics=metrics, findings=findings)
