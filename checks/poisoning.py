"""poisoning.scan: training rows that look poisoned (carrying a backdoor trigger, or deliberately mislabelled).

Four signals, each aimed at a different attack, computed on the model's penultimate representation (the input
of its final classifier layer, found automatically for TorchScript, ``torch.export`` and eager models; the
policy's ``feature_layer`` overrides it) or on the raw inputs:

- ``trigger``: for each class that backdoor.scan flags as a backdoor target, the rows labelled with it that
  carry the trigger it reconstructed. A row carries it when (a) its values under the trigger's mask match the
  trigger's pattern more closely than all but ``trigger_alpha`` of the rows of the other classes (which an
  all-to-one attack leaves untouched), and (b) replacing the masked region with content from other rows moves
  the model's prediction away from the target class more often than it moves the prediction of all but
  ``restoration_alpha`` of the other classes' rows, and in at least half the replacements (on images the region
  replaced is the mask grown by one pixel: a reconstructed mask often misses a pixel of the real trigger).
- ``activation_clustering`` (Chen et al. 2018): per class, the penultimate features reduced by PCA are split
  in two by k-means. The smaller cluster is a candidate when the split is real (silhouette >=
  ``ac_min_silhouette``) and the cluster is small enough (relative size <= ``ac_max_relative_size``); it is
  poisonous when *exclusionary reclassification* sends it elsewhere: a linear head refitted on the features of
  every other training row classifies fewer than ``ac_max_own_fraction`` of the cluster's rows as their label.
- ``spectral_signature`` (Tran et al. 2018): per class, the projection on the top singular vector of the
  centred features; a row fires when its robust z-score (median, 1.4826 x MAD) exceeds the two-sided normal
  quantile for ``ss_alpha``, i.e. the threshold is calibrated to a false-positive rate, not to an expected
  poison fraction (ART's default removes 1.5 x 33 % of every class).
- ``label_issue``: cleanlab's ``find_label_issues`` on out-of-sample probabilities of a cross-validated
  logistic regression on the raw inputs (a row whose content says another class).

A row's score is the weighted sum of the signals that fired (trigger 2, label issue 1, activation clustering
0.5, spectral signature 0.5); rows scoring at least ``min_score`` (1.5) are flagged: the trigger alone suffices,
and so does label-issue evidence confirmed by a feature-space anomaly; the two feature-space signals together do
not (they see the same features and both fire on natural sub-populations, e.g. differently written 9s).
Every flagged row is listed, most suspicious first, with its score and signals. ``fail`` when trigger-carrying rows are found or more than
``max_fraction`` of the rows are flagged; ``warn`` when fewer rows are flagged; ``pass`` when none are.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

from pydantic import Field

from auditor.checks.backdoor import _r, class_labels, configured_params, shared_probe, shared_triggers
from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import numpy as np

    from auditor.checks._features import ModelProbe
    from auditor.checks.backdoor import Triggers
    from auditor.engine import AuditContext

#: a row is flagged when the weights of its signals add up to ``min_score`` (1.5): the trigger alone, or label-issue
#: evidence (the raw inputs say another class) together with a feature-space anomaly. Activation clustering and
#: spectral signatures look at the same features and fire together on natural sub-populations, so their
#: agreement alone is not enough.
WEIGHTS = {"trigger": 2.0, "label_issue": 1.0, "activation_clustering": 0.5, "spectral_signature": 0.5}
MIN_CLASS_ROWS = 10
#: raw inputs wider than this are reduced by PCA before the label-issue baseline
MAX_BASELINE_DIMS = 256


class PoisoningParams(Params):
    feature_layer: str | None = Field(
        None, description="layer whose input (or 'name:output') is the representation; default: the classifier's input")
    min_score: float = Field(1.5, gt=0, description="flag rows whose weighted signal count reaches this")
    max_fraction: float = Field(0.01, ge=0, le=1, description="fail when more than this fraction of rows is flagged")
    signals: list[str] = Field(
        default_factory=lambda: list(WEIGHTS), description="signals to compute (trigger, activation_clustering, "
        "spectral_signature, label_issue)")
    trigger_alpha: float = Field(0.01, gt=0, lt=0.5, description="false-positive rate calibrating the pattern match")
    restoration_alpha: float = Field(
        0.05, gt=0, lt=0.5, description="false-positive rate calibrating the restoration test (at least 0.5 flips)")
    trigger_replacements: int = Field(16, ge=2, le=64, description="replacements of the masked region per row")
    ac_dims: int = Field(10, ge=2, le=100, description="PCA components for activation clustering")
    ac_min_silhouette: float = Field(0.15, ge=-1, le=1)
    ac_max_relative_size: float = Field(0.45, gt=0, le=0.5)
    ac_max_own_fraction: float = Field(0.5, ge=0, le=1, description="exclusionary reclassification: poisonous "
                                       "when fewer of the cluster's rows than this keep their label")
    ss_alpha: float = Field(0.002, gt=0, lt=0.5, description="two-sided normal false-positive rate of the spectral test")
    label_folds: int = Field(5, ge=2, le=20)
    label_filter: str = Field("prune_by_noise_rate", description="cleanlab find_label_issues filter_by")
    threads: int | None = Field(None, ge=1, le=64)


class PoisoningScan(Check):
    id = "poisoning.scan"
    title = "Poisoned training rows (trigger, activation clustering, spectral signature, label issues)"
    family = "security"
    description = (
        "Training rows that look poisoned: rows carrying the trigger backdoor.scan reconstructs, per-class "
        "activation clustering of the penultimate features with exclusionary reclassification, spectral "
        "signatures with a calibrated threshold, and label-issue evidence; every flagged row with its score."
    )
    requires = ("train", "label", "model")
    default_severity = "high"
    controls = (
        "nist-ai-rmf:MEASURE 2.7", "nist-ai-rmf:MEASURE 2.5", "iso-42001:A.7.4", "iso-42001:A.6.2.4",
        "eu-ai-act:Art.15(5)", "eu-ai-act:Art.10(3)", "mitre-atlas:AML.T0020", "mitre-atlas:AML.T0018",
        "nist-aml:NISTAML.013", "nist-aml:NISTAML.023",
    )
    Params = PoisoningParams

    def run(self, ctx: "AuditContext", params: PoisoningParams) -> Outcome:
        import numpy as np
        from threadpoolctl import threadpool_limits

        from auditor.checks._features import threads_for, torch_threads

        unknown = sorted(set(params.signals) - set(WEIGHTS))
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}; known: {sorted(WEIGHTS)}")
        ds = ctx.train
        X = np.nan_to_num(ds.model_input())
        raw_labels = ds.labels()
        known = np.array([v is not None and v == v for v in raw_labels], dtype=bool)
        classes, y = np.unique(np.asarray(raw_labels[known], dtype=object).astype(str)
                               if not _numeric(raw_labels[known]) else raw_labels[known], return_inverse=True)
        rows_all = np.flatnonzero(known)
        if len(classes) < 2:
            return Outcome.skipped("fewer than two classes")
        n = len(rows_all)
        rng = np.random.default_rng(ctx.check_seed())
        timings: dict[str, float] = {}
        metrics: dict[str, Any] = {"rows_considered": int(n), "classes": int(len(classes)),
                                   "min_score": params.min_score, "max_fraction": params.max_fraction,
                                   "weights": {k: WEIGHTS[k] for k in params.signals}}
        fired: dict[str, np.ndarray] = {}
        threads = params.threads or threads_for(X)

        with torch_threads(threads), threadpool_limits(limits=1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pr = shared_probe(ctx, X)
            t0 = time.perf_counter()
            ctx.progress.step(f"penultimate features of {n} training rows")
            F = pr.features(X[rows_all], params.feature_layer)
            timings["features"] = time.perf_counter() - t0
            metrics["features"] = {k: v for k, v in pr.feature_info.items() if k != "requested"}

            if "trigger" in params.signals:
                t0 = time.perf_counter()
                fired["trigger"], metrics["trigger"] = self._trigger(ctx, pr, X[rows_all], y, classes, params, rng)
                timings["trigger"] = time.perf_counter() - t0
            if "activation_clustering" in params.signals:
                t0 = time.perf_counter()
                ctx.progress.step("activation clustering per class")
                fired["activation_clustering"], metrics["activation_clustering"] = activation_clustering(
                    F, y, classes, params, ctx.check_seed())
                timings["activation_clustering"] = time.perf_counter() - t0
            if "spectral_signature" in params.signals:
                t0 = time.perf_counter()
                fired["spectral_signature"], metrics["spectral_signature"] = spectral_signatures(F, y, classes, params)
                timings["spectral_signature"] = time.perf_counter() - t0
            if "label_issue" in params.signals:
                t0 = time.perf_counter()
                ctx.progress.step("cross-validated baseline for label-issue evidence")
                fired["label_issue"], metrics["label_issue"] = label_issue_evidence(
                    X[rows_all], y, params, ctx.check_seed())
                timings["label_issue"] = time.perf_counter() - t0

        score = np.zeros(n)
        for sig, hit in fired.items():
            score += WEIGHTS[sig] * hit
        flagged_local = np.flatnonzero(score >= params.min_score)
        order = flagged_local[np.lexsort((flagged_local, -score[flagged_local]))]
        flagged_rows = rows_all[order]
        fraction = len(flagged_rows) / max(n, 1)
        triggered = int(fired["trigger"][flagged_local].sum()) if "trigger" in fired else 0
        metrics.update({
            "flagged": int(len(flagged_rows)),
            "flagged_fraction": round(fraction, 6),
            "signals_fired": {sig: int(hit.sum()) for sig, hit in fired.items()},
            "signals_in_flagged_rows": {sig: int(hit[flagged_local].sum()) for sig, hit in fired.items()},
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
        })
        findings = []
        if len(flagged_rows):
            per_row = [
                {"row": int(rows_all[i]), "score": float(score[i]), "label": _plain(classes[y[i]]),
                 "signals": [s for s, hit in fired.items() if hit[i]]}
                for i in order
            ]
            by_signal = ", ".join(f"{sig} {cnt}" for sig, cnt in metrics["signals_in_flagged_rows"].items() if cnt)
            findings.append(Finding(
                f"train: {len(flagged_rows)} of {n} rows ({fraction:.2%}) look poisoned ({by_signal})",
                dataset="train", rows=tuple(int(r) for r in flagged_rows), details={"rows": per_row},
            ))
        status = "fail" if (triggered or fraction > params.max_fraction) else "warn" if len(flagged_rows) else "pass"
        return Outcome(status=status, metrics=metrics, findings=findings)

    @staticmethod
    def _trigger(ctx, pr: "ModelProbe", X: "np.ndarray", y: "np.ndarray", classes, params: PoisoningParams, rng):
        import numpy as np

        hit = np.zeros(len(y), dtype=bool)
        bparams = configured_params(ctx)
        trig = shared_triggers(ctx, bparams)
        if trig is None:
            return hit, {"skipped": "no inputs for trigger reverse engineering"}
        K = len(trig.sizes)
        labels = class_labels(ctx, K)
        index_of = {_key(v): i for i, v in enumerate(labels)}
        model_idx = np.array([index_of.get(_key(c), -1) for c in classes])[y]
        info: dict[str, Any] = {"backdoor_flagged_classes": [_plain(labels[k]) for k in trig.flagged],
                                "pattern_alpha": params.trigger_alpha, "restoration_alpha": params.restoration_alpha,
                                "replacements": params.trigger_replacements, "per_class": {}}
        for k in trig.flagged:
            ctx.progress.step(f"rows of class {labels[k]} carrying the reconstructed trigger")
            fires, detail = trigger_carriers(pr, X, model_idx, trig, k, params, rng)
            hit |= fires
            info["per_class"][str(_plain(labels[k]))] = detail
        return hit, info


def trigger_carriers(pr: "ModelProbe", X: "np.ndarray", model_idx: "np.ndarray", trig: "Triggers", k: int,
                     params: PoisoningParams, rng: "np.random.Generator") -> tuple["np.ndarray", dict]:
    """Rows labelled ``k`` that carry class ``k``'s reconstructed trigger (pattern match and restoration test,
    both calibrated on the rows of the other classes)."""
    import numpy as np

    from auditor.checks.backdoor import _data_range

    fires = np.zeros(len(X), dtype=bool)
    target = np.flatnonzero(model_idx == k)
    others = np.flatnonzero((model_idx != k) & (model_idx >= 0))
    if len(target) == 0 or len(others) < 10:
        return fires, {"skipped": "too few rows"}
    mask = trig.masks[k].astype(np.float64)
    pattern = trig.patterns[k]
    lo, hi = _data_range(X)
    weight = np.broadcast_to(mask, X.shape[1:]) / (np.broadcast_to(mask, X.shape[1:]).sum() + 1e-12)
    span = np.broadcast_to(hi - lo, X.shape[1:])
    dist = np.empty(len(X))
    for s in range(0, len(X), 4096):
        dist[s : s + 4096] = (np.abs(X[s : s + 4096] - pattern) / span * weight).reshape(len(X[s : s + 4096]), -1).sum(1)
    dist_thr = float(np.quantile(dist[others], params.trigger_alpha))

    null_rows = others if len(others) <= 1000 else rng.choice(others, 1000, replace=False)
    donors = X[others]
    # a reconstructed mask often misses a pixel or two of the real trigger, and the pixels left behind can keep the
    # backdoor firing: on images the region replaced is the mask grown by one pixel (its 3x3 maximum)
    region = _grow(mask) if mask.ndim >= 2 else mask

    def flip_rate(rows: "np.ndarray", reference: "np.ndarray") -> "np.ndarray":
        flips = np.zeros(len(rows))
        for _ in range(params.trigger_replacements):
            d = donors[rng.integers(0, len(donors), len(rows))]
            restored = ((1 - region) * X[rows] + region * d).astype(np.float32)
            flips += pr.predict(restored) != reference
        return flips / params.trigger_replacements

    flip_null = flip_rate(null_rows, pr.predict(X[null_rows]))
    flip_thr = max(0.5, float(np.quantile(flip_null, 1 - params.restoration_alpha)))
    flip_t = flip_rate(target, np.full(len(target), k))
    matches = dist[target] <= dist_thr
    if flip_thr >= 1.0:  # the mask is so large that replacing it flips anything: restoration says nothing
        restores = np.ones(len(target), dtype=bool)
    else:
        restores = flip_t >= flip_thr
    fires[target] = matches & restores
    return fires, {
        "rows_of_class": int(len(target)), "pattern_match": int(matches.sum()), "restoration_flip": int(restores.sum()),
        "carriers": int(fires.sum()), "distance_threshold": _r(dist_thr), "flip_threshold": _r(flip_thr),
    }


def _grow(mask: "np.ndarray") -> "np.ndarray":
    """The 3x3 maximum filter of a mask over its last two (spatial) axes."""
    from scipy.ndimage import maximum_filter

    size = (1,) * (mask.ndim - 2) + (3, 3)
    return maximum_filter(mask, size=size, mode="constant", cval=0.0)


def activation_clustering(F: "np.ndarray", y: "np.ndarray", classes, params: PoisoningParams, seed: int):
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    hit = np.zeros(len(y), dtype=bool)
    Fs = StandardScaler().fit_transform(F.astype(np.float64))
    # the reclassification head sees at most 32 PCA components of the features: fast, and enough to separate classes
    head_dims = min(32, Fs.shape[1], len(y) - 1)
    H = PCA(head_dims, random_state=seed).fit_transform(Fs) if Fs.shape[1] > head_dims else Fs
    per_class = {}
    for c in range(len(classes)):
        idx = np.flatnonzero(y == c)
        if len(idx) < MIN_CLASS_ROWS:
            continue
        Fc = Fs[idx] - Fs[idx].mean(axis=0)
        dims = min(params.ac_dims, Fc.shape[1], len(idx) - 1)
        Z = PCA(dims, random_state=seed).fit_transform(Fc)
        lab = KMeans(2, n_init=4, random_state=seed).fit_predict(Z)
        sizes = np.bincount(lab, minlength=2)
        if sizes.min() < 2:
            continue
        sil = float(silhouette_score(Z, lab, sample_size=min(len(idx), 2000), random_state=seed))
        small = int(np.argmin(sizes))
        rel = float(sizes[small] / len(idx))
        entry: dict[str, Any] = {"silhouette": round(sil, 4), "relative_size": round(rel, 4)}
        if sil >= params.ac_min_silhouette and rel <= params.ac_max_relative_size:
            cluster = idx[lab == small]
            keep = np.ones(len(y), dtype=bool)
            keep[cluster] = False
            head = LogisticRegression(max_iter=300).fit(H[keep], y[keep])
            own = float((head.predict(H[cluster]) == c).mean())
            entry["own_label_fraction"] = round(own, 4)
            if own < params.ac_max_own_fraction:
                hit[cluster] = True
                entry["poisonous_rows"] = int(len(cluster))
        per_class[str(_plain(classes[c]))] = entry
    info = {"min_silhouette": params.ac_min_silhouette, "max_relative_size": params.ac_max_relative_size,
            "max_own_fraction": params.ac_max_own_fraction, "pca_dims": params.ac_dims,
            "poisonous_classes": [k for k, v in per_class.items() if "poisonous_rows" in v], "per_class": per_class}
    return hit, info


def spectral_signatures(F: "np.ndarray", y: "np.ndarray", classes, params: PoisoningParams):
    import numpy as np
    from scipy.stats import norm

    hit = np.zeros(len(y), dtype=bool)
    z_thr = float(norm.ppf(1 - params.ss_alpha / 2))
    per_class = {}
    for c in range(len(classes)):
        idx = np.flatnonzero(y == c)
        if len(idx) < MIN_CLASS_ROWS:
            continue
        Fc = F[idx].astype(np.float64)
        Fc = Fc - Fc.mean(axis=0)
        try:
            _, _, vt = np.linalg.svd(Fc, full_matrices=False)
        except np.linalg.LinAlgError:
            continue
        proj = Fc @ vt[0]
        med = np.median(proj)
        mad = 1.4826 * np.median(np.abs(proj - med))
        if mad <= 0:
            continue
        z = np.abs(proj - med) / mad
        hit[idx] = z > z_thr
        per_class[str(_plain(classes[c]))] = int((z > z_thr).sum())
    return hit, {"alpha": params.ss_alpha, "z_threshold": round(z_thr, 4), "rows_per_class": per_class}


def label_issue_evidence(X: "np.ndarray", y: "np.ndarray", params: PoisoningParams, seed: int):
    import numpy as np
    from cleanlab.filter import find_label_issues
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    hit = np.zeros(len(y), dtype=bool)
    counts = np.bincount(y)
    folds = max(2, min(params.label_folds, int(counts[counts > 0].min())))
    if counts[counts > 0].min() < 2:
        return hit, {"skipped": "a class has fewer than two rows"}
    flat = StandardScaler().fit_transform(X.reshape(len(X), -1).astype(np.float64))
    if flat.shape[1] > MAX_BASELINE_DIMS:
        flat = PCA(64, random_state=seed).fit_transform(flat)
    K = int(y.max()) + 1
    proba = np.full((len(y), K), 1e-6)
    for fit, hold in StratifiedKFold(folds, shuffle=True, random_state=seed % (2**32)).split(flat, y):
        model = LogisticRegression(max_iter=500).fit(flat[fit], y[fit])
        proba[np.ix_(hold, model.classes_)] = np.clip(model.predict_proba(flat[hold]), 1e-6, 1)
    proba /= proba.sum(axis=1, keepdims=True)
    issues = find_label_issues(labels=y, pred_probs=proba, filter_by=params.label_filter)
    hit[:] = issues
    return hit, {"baseline": f"logistic regression on the raw inputs, {folds}-fold cross-validation",
                 "baseline_accuracy": round(float((proba.argmax(1) == y).mean()), 4),
                 "filter_by": params.label_filter, "rows": int(hit.sum())}


def _numeric(values) -> bool:
    import numpy as np

    try:
        np.asarray(values, dtype=float)
        return True
    except (TypeError, ValueError):
        return False


def _key(v: Any) -> str:
    """Label values compare as text, with 3 == 3.0."""
    v = _plain(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
