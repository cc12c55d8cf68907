"""Fairness checks: group representation and label rates in the data (fairness.data), and per-group model
metrics with parity gaps and bootstrap confidence intervals (fairness.model, fairlearn's MetricFrame).

Groups smaller than ``min_group_size`` are listed as such and never produce a verdict on their own.
Numeric attributes with many values are cut into quartiles. The positive class (for selection rates,
true and false positive rates) is ``positive_label``, or the larger of two labels.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any

from pydantic import Field

from auditor.checks._tabular import label_series
from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from auditor.engine import AuditContext
    from auditor.inputs import Dataset

CONTROLS = (
    "nist-ai-rmf:MEASURE 2.11", "nist-ai-rmf:MAP 5.1", "iso-42001:A.7.4", "iso-42001:A.5.4", "iso-42001:A.6.2.4",
    "eu-ai-act:Art.10(2)(f)", "eu-ai-act:Art.10(2)(g)", "iso-24027:TR 24027",
)
MAX_GROUP_LEVELS = 12


def group_values(ds: "Dataset", name: str) -> "pd.Series":
    """The attribute as group labels (text); numeric attributes with many values become quartiles."""
    import pandas as pd

    values = pd.Series(ds.attribute(name))
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.nunique() > MAX_GROUP_LEVELS:
        binned = pd.qcut(values.astype(float), 4, duplicates="drop")
        return binned.astype("string").fillna("<missing>")
    return label_series(values.to_numpy()).fillna("<missing>").astype(str)


def _positive(labels: "pd.Series", positive_label: str | None) -> str | None:
    classes = sorted(labels.dropna().unique().tolist())
    if positive_label is not None:
        return str(positive_label)
    return str(classes[-1]) if len(classes) == 2 else None


# ----------------------------------------------------------------------------- data


class FairnessDataParams(Params):
    min_group_size: int = Field(30, ge=1, description="groups smaller than this are listed, never judged")
    min_label_rate_ratio: float = Field(
        0.8, ge=0, le=1, description="fail when a group's positive-label rate is below this fraction of the highest"
    )
    max_representation_shift: float = Field(
        0.1, ge=0, le=1, description="fail when a group's share differs by more between train and test"
    )
    positive_label: str | None = Field(None, description="the favourable label (default: the larger of two labels)")
    intersections: bool = Field(True, description="also examine pairs of attributes, where cells are large enough")


class FairnessData(Check):
    id = "fairness.data"
    title = "Group representation and label rates"
    family = "fairness"
    description = (
        "For each sensitive attribute (and pairs of them): each group's share of train and test, its "
        "positive-label rate, the lowest-to-highest label-rate ratio (four-fifths rule) and train/test "
        "representation shifts. Groups below the minimum size are listed and not judged."
    )
    requires = ("train", "label", "sensitive")
    default_severity = "medium"
    controls = CONTROLS
    tracked_metrics = {}
    Params = FairnessDataParams

    def run(self, ctx: "AuditContext", params: FairnessDataParams) -> Outcome:
        import pandas as pd

        metrics: dict[str, Any] = {**params.model_dump(), "attributes": {}}
        findings: list[Finding] = []
        failed = False
        attrs = list(ctx.sensitive)
        combos: list[tuple[str, ...]] = [(a,) for a in attrs]
        if params.intersections:
            combos += list(combinations(attrs, 2))
        for combo in combos:
            key = " x ".join(combo)
            per_ds: dict[str, pd.DataFrame] = {}
            for ds in ctx.datasets():
                groups = group_values(ds, combo[0])
                for other in combo[1:]:
                    groups = groups + " & " + group_values(ds, other)
                labels = label_series(ds.labels()) if ds.has_label else None
                frame = pd.DataFrame({"group": groups.to_numpy()})
                if labels is not None:
                    frame["label"] = labels.to_numpy()
                per_ds[ds.name] = frame
            train = per_ds["train"]
            pos = _positive(train["label"], params.positive_label)
            entry: dict[str, Any] = {"positive_label": pos, "groups": {}}
            sizes = train["group"].value_counts()
            large = sizes[sizes >= params.min_group_size].index.tolist()
            small = sizes[sizes < params.min_group_size]
            if len(combo) > 1 and len(large) < 2:
                continue  # intersections only where the data is large enough
            for g, n in sizes.items():
                info: dict[str, Any] = {"train_count": int(n), "train_share": round(n / len(train), 6),
                                        "judged": bool(n >= params.min_group_size)}
                if pos is not None:
                    info["positive_rate"] = round(float((train.loc[train["group"] == g, "label"] == pos).mean()), 6)
                if "test" in per_ds:
                    test = per_ds["test"]
                    info["test_share"] = round(float((test["group"] == g).mean()), 6)
                entry["groups"][str(g)] = info
            if len(small):
                entry["too_small"] = {str(g): int(n) for g, n in small.items()}
                findings.append(Finding(
                    f"{key}: {len(small)} group(s) below {params.min_group_size} training rows, reported but not judged: "
                    + ", ".join(f"{g} ({n})" for g, n in small.items())))
            judged = {g: entry["groups"][str(g)] for g in large}
            if pos is not None and len(judged) >= 2:
                rates = {g: v["positive_rate"] for g, v in judged.items()}
                hi_g, lo_g = max(rates, key=rates.get), min(rates, key=rates.get)
                ratio = rates[lo_g] / rates[hi_g] if rates[hi_g] > 0 else 1.0
                entry["label_rate_ratio"] = round(ratio, 6)
                if ratio < params.min_label_rate_ratio:
                    failed = True
                    findings.append(Finding(
                        f"{key}={lo_g}: positive-label rate {rates[lo_g]:.3f} is {ratio:.2f} of {key}={hi_g} "
                        f"({rates[hi_g]:.3f}); below {params.min_label_rate_ratio:g} (label rate ratio)",
                        dataset="train", details={"attribute": key, "group": lo_g, "metric": "label_rate_ratio"}))
            if "test" in per_ds:
                for g, v in judged.items():
                    shift = abs(v["train_share"] - v.get("test_share", 0.0))
                    if shift > params.max_representation_shift:
                        failed = True
                        findings.append(Finding(
                            f"{key}={g}: {v['train_share']:.1%} of train but {v['test_share']:.1%} of test "
                            f"(representation shift {shift:.3f} > {params.max_representation_shift:g})",
                            details={"attribute": key, "group": g, "metric": "representation_shift"}))
            metrics["attributes"][key] = entry
        return Outcome(status="fail" if failed else "pass", metrics=metrics, findings=findings)


# ----------------------------------------------------------------------------- model


class FairnessModelParams(Params):
    min_group_size: int = Field(30, ge=1, description="groups with fewer test rows are listed, never judged")
    min_selection_rate_ratio: float = Field(0.8, ge=0, le=1, description="four-fifths rule on selection rates")
    max_equalized_odds_difference: float = Field(0.2, ge=0, le=1, description="largest TPR or FPR gap between groups")
    max_accuracy_difference: float = Field(0.1, ge=0, le=1, description="largest accuracy gap between groups")
    positive_label: str | None = Field(None, description="the favourable label (default: the larger of two labels)")
    bootstrap: int = Field(200, ge=0, le=5000, description="bootstrap resamples for confidence intervals (0: none)")
    confidence: float = Field(0.95, gt=0.5, lt=1)


def model_predictions(ctx: "AuditContext", ds: "Dataset") -> "np.ndarray":
    """Predicted labels (as text, like the given labels): class index i is the i-th sorted training label."""
    import numpy as np

    proba = ctx.model.predict_proba(ds.model_input())
    classes = sorted(set(label_series(ctx.train.labels()).dropna()) | set(label_series(ds.labels()).dropna())) \
        if ctx.train is not None else sorted(set(label_series(ds.labels()).dropna()))
    try:
        classes = sorted(classes, key=float)
    except ValueError:
        pass
    idx = proba.argmax(axis=1)
    if idx.max() >= len(classes):
        return idx.astype(str)
    return np.asarray(classes, dtype=object)[idx].astype(str)


def group_report(y_true, y_pred, groups, pos: str | None, rng, n_boot: int, confidence: float) -> dict[str, Any]:
    """Per-group metrics (fairlearn MetricFrame) and parity gaps, with percentile bootstrap intervals."""
    import numpy as np
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    def frame(t, p, g):
        metrics = {"accuracy": accuracy_score, "count": lambda a, b: len(a)}
        if pos is not None:
            tb, pb = (t == pos).astype(int), (p == pos).astype(int)
            metrics.update({"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate})
            mf = MetricFrame(metrics=metrics, y_true=tb, y_pred=pb, sensitive_features=g)
            acc = MetricFrame(metrics=accuracy_score, y_true=t, y_pred=p, sensitive_features=g).by_group
            by = mf.by_group.copy()
            by["accuracy"] = acc
            return by
        return MetricFrame(metrics=metrics, y_true=t, y_pred=p, sensitive_features=g).by_group

    def gaps(by):
        out = {"accuracy_difference": float(by["accuracy"].max() - by["accuracy"].min())}
        if pos is not None:
            sr = by["selection_rate"]
            out["demographic_parity_difference"] = float(sr.max() - sr.min())
            out["demographic_parity_ratio"] = float(sr.min() / sr.max()) if sr.max() > 0 else 1.0
            out["equalized_odds_difference"] = float(max(by["tpr"].max() - by["tpr"].min(),
                                                         by["fpr"].max() - by["fpr"].min()))
        return out

    by = frame(y_true, y_pred, groups)
    point = gaps(by)
    boot_group: dict[str, list] = {}
    boot_gap: dict[str, list] = {k: [] for k in point}
    n = len(y_true)
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        g_i = groups[i]
        if len(set(g_i)) < len(set(groups)):
            continue
        b = frame(y_true[i], y_pred[i], g_i)
        for k, v in gaps(b).items():
            if np.isfinite(v):
                boot_gap[k].append(v)
        for g, row in b.iterrows():
            for m, v in row.items():
                if m != "count" and np.isfinite(v):
                    boot_group.setdefault(f"{g}|{m}", []).append(float(v))
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2

    def ci(values):
        return [float(np.quantile(values, lo_q)), float(np.quantile(values, hi_q))] if len(values) >= 20 else None

    groups_out = {}
    for g, row in by.iterrows():
        entry = {"count": int(row["count"])}
        for m, v in row.items():
            if m == "count":
                continue
            entry[m] = round(float(v), 6) if np.isfinite(v) else None
            interval = ci(boot_group.get(f"{g}|{m}", []))
            if interval:
                entry[f"{m}_ci"] = [round(x, 6) for x in interval]
        groups_out[str(g)] = entry
    gaps_out = {k: {"value": round(v, 6), "ci": [round(x, 6) for x in ci(boot_gap[k])] if ci(boot_gap[k]) else None}
                for k, v in point.items()}
    return {"groups": groups_out, "gaps": gaps_out}


class FairnessModel(Check):
    id = "fairness.model"
    title = "Per-group model performance and parity"
    family = "fairness"
    description = (
        "The model's per-group accuracy, selection rate and true/false positive rates on the test set "
        "(fairlearn MetricFrame), demographic parity difference and ratio, equalized odds difference, with "
        "bootstrap confidence intervals; fails on the four-fifths rule and on gaps beyond the policy's limits."
    )
    requires = ("test", "label", "model", "sensitive")
    default_severity = "high"
    controls = CONTROLS
    tracked_metrics = {}
    Params = FairnessModelParams

    def run(self, ctx: "AuditContext", params: FairnessModelParams) -> Outcome:
        import numpy as np

        ds = ctx.test
        if not ds.has_label:
            return Outcome.skipped("the test set has no labels")
        ctx.progress.step("predicting the test set")
        y_pred = model_predictions(ctx, ds)
        y_true = label_series(ds.labels()).fillna("<missing>").to_numpy().astype(str)
        pos = _positive(label_series(ds.labels()), params.positive_label)
        rng = ctx.rng()
        metrics: dict[str, Any] = {**params.model_dump(), "positive_label": pos, "attributes": {}}
        findings: list[Finding] = []
        failed = False
        for attr in ctx.sensitive:
            groups = group_values(ds, attr).to_numpy().astype(str)
            sizes = {g: int((groups == g).sum()) for g in sorted(set(groups))}
            small = {g: n for g, n in sizes.items() if n < params.min_group_size}
            keep = np.isin(groups, [g for g in sizes if g not in small])
            entry: dict[str, Any] = {"group_sizes": sizes, "too_small": small}
            if small:
                findings.append(Finding(
                    f"{attr}: {len(small)} group(s) below {params.min_group_size} test rows, reported but not judged: "
                    + ", ".join(f"{g} ({n})" for g, n in small.items()), dataset="test"))
            if len(sizes) - len(small) < 2:
                entry["note"] = "fewer than two groups large enough to compare"
                metrics["attributes"][attr] = entry
                continue
            ctx.progress.step(f"{attr}: per-group metrics and {params.bootstrap} bootstrap resamples")
            rep = group_report(y_true[keep], y_pred[keep], groups[keep], pos, rng, params.bootstrap, params.confidence)
            entry.update(rep)
            metrics["attributes"][attr] = entry
            by = rep["groups"]
            gaps = rep["gaps"]

            def worst(metric: str, low: bool = True) -> str:
                vals = {g: v[metric] for g, v in by.items() if v.get(metric) is not None}
                return (min if low else max)(vals, key=vals.get)

            checks = [("accuracy_difference", params.max_accuracy_difference, "accuracy", "above")]
            if pos is not None:
                checks += [("demographic_parity_ratio", params.min_selection_rate_ratio, "selection_rate", "below"),
                           ("equalized_odds_difference", params.max_equalized_odds_difference, "tpr", "above")]
            for gap, limit, per_group, direction in checks:
                value = gaps[gap]["value"]
                breach = value < limit if direction == "below" else value > limit
                if not breach:
                    continue
                failed = True
                g_low = worst(per_group)
                g_high = worst(per_group, low=False)
                ci = gaps[gap]["ci"]
                ci_text = f", {int(params.confidence * 100)}% CI {ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
                findings.append(Finding(
                    f"{attr}={g_low}: {gap} {value:.3f} {direction} the limit {limit:g}{ci_text} "
                    f"({per_group} {by[g_low][per_group]:.3f} for {attr}={g_low} vs {by[g_high][per_group]:.3f} "
                    f"for {attr}={g_high})",
                    dataset="test", details={"attribute": attr, "group": g_low, "metric": gap, "value": value,
                                             "limit": limit, "ci": ci}))
        return Outcome(status="fail" if failed else "pass", metrics=metrics, findings=findings)
