"""data.label_issues: training rows whose given label is likely wrong (cleanlab confident learning).

cleanlab needs out-of-sample predicted probabilities. When the policy gives none (``pred_probs``, an
``.npy`` of shape rows x classes, produced out-of-sample), a cross-validated baseline model provides them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from auditor.checks._baseline import design_matrix, out_of_sample_proba
from auditor.checks._tabular import label_series
from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    from auditor.engine import AuditContext

MIN_ROWS_PER_CLASS = 2


class LabelIssuesParams(Params):
    max_fraction: float = Field(0.02, ge=0, le=1, description="fail when more than this fraction of rows is flagged")
    cv_folds: int = Field(10, ge=2, le=20, description="folds for the cross-validated baseline")
    filter_by: Literal[
        "balanced", "low_self_confidence", "low_normalized_margin", "prune_by_noise_rate", "prune_by_class", "both",
        "confident_learning", "predicted_neq_given",
    ] = Field("balanced", description=(
        "'balanced' flags the mean of cleanlab's low_self_confidence and prune_by_class counts, lowest "
        "self-confidence first; or any cleanlab filter_by"))
    pred_probs: str | None = Field(None, description="path to out-of-sample predicted probabilities (.npy)")
    max_classes: int = Field(1000, ge=2, description="labels with more distinct values are treated as continuous")


class LabelIssues(Check):
    id = "data.label_issues"
    title = "Likely mislabelled training rows"
    family = "data"
    description = (
        "cleanlab's find_label_issues on out-of-sample predicted probabilities from a cross-validated "
        "baseline (or supplied by the policy); every flagged training row is listed, most suspicious first."
    )
    requires = ("train", "label")
    default_severity = "high"
    controls = (
        "nist-ai-rmf:MEASURE 2.5", "nist-ai-rmf:MEASURE 2.7", "iso-42001:A.7.4", "iso-42001:A.6.2.4",
        "eu-ai-act:Art.10(3)", "mitre-atlas:AML.T0020", "nist-aml:NISTAML.013",
    )
    tracked_metrics = {"flagged_fraction": "lower"}
    Params = LabelIssuesParams

    def run(self, ctx: "AuditContext", params: LabelIssuesParams) -> Outcome:
        import numpy as np
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        ds = ctx.train
        labels = label_series(ds.labels())
        known = labels.notna().to_numpy()
        classes, y = np.unique(labels[known].to_numpy(dtype=object), return_inverse=True)
        if len(classes) > params.max_classes or len(classes) > 0.5 * known.sum():
            return Outcome.skipped(f"label has {len(classes)} distinct values: looks continuous, not classes")
        if len(classes) < 2:
            return Outcome.skipped("fewer than two classes")
        counts = np.bincount(y)
        rows = np.flatnonzero(known)
        keep = counts[y] >= MIN_ROWS_PER_CLASS
        rows, y = rows[keep], y[keep]
        kept_classes = classes[counts >= MIN_ROWS_PER_CLASS]
        _, y = np.unique(y, return_inverse=True)  # re-index after dropping singleton classes
        metrics: dict = {"max_fraction": params.max_fraction, "filter_by": params.filter_by,
                         "rows_considered": int(len(rows)), "classes": int(len(classes))}

        if params.pred_probs:
            proba = self._load_pred_probs(params.pred_probs, ds.n_rows, len(classes))
            proba = proba[rows][:, counts >= MIN_ROWS_PER_CLASS]
            proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
            metrics["pred_probs_source"] = params.pred_probs
        else:
            ctx.progress.step(f"cross-validating a baseline on {len(rows)} rows")
            features = ds.features().iloc[rows].reset_index(drop=True)
            if design_matrix(features, ds.text_columns()).shape[1] == 0:
                return Outcome.skipped("no usable feature columns for the baseline model")
            proba, folds = out_of_sample_proba(features, y, params.cv_folds, ctx.check_seed(), ds.text_columns())
            metrics["pred_probs_source"] = (
                f"logistic regression x gradient boosting (geometric mean), {folds}-fold cross-validation"
            )
            metrics["baseline_accuracy"] = round(float((proba.argmax(1) == y).mean()), 4)
            if metrics["baseline_accuracy"] < 0.9:
                metrics["note"] = ("the baseline's cross-validated accuracy is below 0.9: flagged rows then include "
                                   "many of the baseline's own mistakes; supply better out-of-sample pred_probs")
        quality = get_label_quality_scores(y, proba, method="self_confidence")
        if params.filter_by == "balanced":
            # low_self_confidence is precise but misses some flips, prune_by_class finds more at lower precision
            # (digits, 6 % noise: recall .94 / precision .94 for the mean count vs .90/.96 and .93/.91)
            counts_by = {f: int(find_label_issues(labels=y, pred_probs=proba, filter_by=f).sum())
                         for f in ("low_self_confidence", "prune_by_class")}
            n_flag = int(round(sum(counts_by.values()) / 2))
            ranked = np.argsort(quality, kind="stable")[:n_flag]
            metrics["filter_counts"] = counts_by
        else:
            ranked = find_label_issues(
                labels=y, pred_probs=proba, filter_by=params.filter_by, return_indices_ranked_by="self_confidence"
            )
        flagged = rows[ranked]
        fraction = len(flagged) / max(len(rows), 1)
        metrics.update({"flagged": int(len(flagged)), "flagged_fraction": round(fraction, 6)})
        findings = []
        if len(flagged):
            top = [
                {"row": int(rows[i]), "given": str(kept_classes[y[i]]), "suggested": str(kept_classes[int(proba[i].argmax())]),
                 "label_quality": round(float(quality[i]), 4)}
                for i in ranked[:20]
            ]
            findings.append(Finding(
                f"train: {len(flagged)} of {len(rows)} rows ({fraction:.2%}) are likely mislabelled",
                dataset="train", rows=tuple(int(r) for r in flagged), details={"most_suspicious": top},
            ))
        status = "fail" if fraction > params.max_fraction else "warn" if len(flagged) else "pass"
        return Outcome(status=status, metrics=metrics, findings=findings)

    @staticmethod
    def _load_pred_probs(path: str, n_rows: int, n_classes: int):
        import numpy as np

        from auditor.errors import InputError

        try:
            proba = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read predicted probabilities: {e}", path) from None
        if proba.ndim != 2 or proba.shape != (n_rows, n_classes):
            raise InputError(
                f"predicted probabilities must be {n_rows} rows x {n_classes} classes (sorted labels), got {proba.shape}", path
            )
        return proba
