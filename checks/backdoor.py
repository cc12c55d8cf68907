"""backdoor.scan: does the model carry a backdoor, and towards which class?

Two signals:

1. **Trigger reverse engineering** in the spirit of Neural Cleanse (Wang et al., S&P 2019), written for torch
   so it works on TorchScript, ``torch.export`` and eager models (ART's ``NeuralCleanse`` is Keras-only). For
   every class ``t`` a mask ``m`` and a pattern ``p`` are optimised so that ``(1 - m) * x + m * p`` is
   classified as ``t`` for clean inputs ``x``, with an L1 penalty on ``m`` whose weight is tuned per class
   during the optimisation (raised while the attack succeeds, lowered while it fails), as in Neural Cleanse.
   All classes are optimised together in one batched pass. A backdoored class needs a much smaller trigger
   than the others: the anomaly index of each class is ``(median - size) / (1.4826 * MAD)`` over the classes'
   trigger sizes (L1 norms of the masks, on a log scale by default: trigger sizes are ratios, and a log scale
   keeps one tiny trigger from hiding behind the spread of large ones), and a class is flagged when its index
   exceeds ``anomaly_threshold`` (2, as in the paper), its trigger is at most ``max_size_ratio`` of the median
   class's (a guard against the MAD being tiny when ten clean classes happen to need similar triggers), and at most
   ``max_separation`` of the smallest trigger among the unflagged classes (when three classes all need tiny
   triggers, none of them stands out as the target of a backdoor).
   Images (N x C x H x W) get one mask per pixel shared by the channels; other inputs (tables) one mask entry
   per feature. Patterns stay within the range of the training and test data (per channel for images, per
   feature for tables).
2. **STRIP** (Gao et al., ACSAC 2019) on test inputs: each input is superimposed on random clean inputs and
   the entropy of the predictions is measured; a trojaned input keeps its prediction (low entropy). The
   threshold is the ``strip_far`` quantile of a normal fit to the entropies of held-out clean inputs, as in
   ART's ``STRIPMixin``, whose ``combine_images`` blends the inputs. ART 1.20.1's ``STRIPMixin`` sums the
   entropies over the perturbation axis instead of over the classes of each prediction; on a backdoored digits
   CNN that flagged 4 % of triggered inputs (0.4 % of clean ones), so the paper's per-input entropy is the
   default (``strip_entropy: art`` runs ART's). STRIP reports the fraction of held-out test inputs that look
   trojaned and, for each flagged class, the fraction of inputs stamped with its reconstructed trigger that
   STRIP catches.

Verdict: ``fail`` when a class is flagged; ``warn`` when STRIP finds more than ``strip_max_fraction`` of the
test inputs trojaned (the test data itself may carry triggers); ``pass`` otherwise. The reconstructed trigger
(mask and pattern) of the most anomalous class is kept in the metrics, those of flagged classes in the findings.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import numpy as np

    from auditor.checks._features import ModelProbe
    from auditor.engine import AuditContext
    from auditor.inputs import Dataset

CHECK_ID = "backdoor.scan"
MAD_CONSISTENCY = 1.4826  # MAD x 1.4826 estimates the standard deviation of normally distributed sizes


class BackdoorParams(Params):
    data: Literal["auto", "test", "train"] = Field(
        "auto", description="inputs for trigger reverse engineering and STRIP: the test set when given (auto)")
    max_samples: int = Field(1000, ge=20, description="inputs sampled for trigger reverse engineering")
    steps: int = Field(300, ge=20, le=20000, description="optimisation steps (all classes at once)")
    batch_size: int = Field(32, ge=4, le=1024, description="inputs per class per step")
    learning_rate: float = Field(0.1, gt=0, le=10)
    attack_success: float = Field(0.95, gt=0, le=1, description="success rate a reconstructed trigger must reach")
    init_cost: float = Field(0.01, gt=0, description="initial weight of the mask's L1 norm in the loss")
    anomaly_threshold: float = Field(2.0, gt=0, description="flag a class whose anomaly index exceeds this")
    max_size_ratio: float = Field(
        0.5, gt=0, le=1, description="a flagged trigger is also at most this fraction of the median class's")
    max_separation: float = Field(
        0.75, gt=0, le=1, description="a flagged trigger is also at most this fraction of the smallest unflagged one")
    size_scale: Literal["log", "linear"] = Field("log", description="scale of the trigger sizes for the MAD")
    strip: bool = Field(True, description="run STRIP on the test inputs")
    strip_samples: int = Field(400, ge=20, description="test inputs for STRIP (half calibrate, half are tested)")
    strip_blends: int = Field(20, ge=2, le=200, description="superimpositions per input")
    strip_far: float = Field(0.01, gt=0, lt=0.5, description="false acceptance rate that sets STRIP's threshold")
    strip_max_fraction: float = Field(
        0.1, ge=0, le=1, description="warn when more held-out test inputs than this look trojaned to STRIP")
    strip_entropy: Literal["paper", "art"] = Field(
        "paper", description="per-input entropy (paper) or ART 1.20.1's STRIPMixin formula")
    threads: int | None = Field(None, ge=1, le=64, description="torch threads (default: 1 for small inputs, else 2)")


@dataclass
class Triggers:
    """Reverse-engineered triggers, one per model output class."""

    sizes: "np.ndarray"  # L1 norm of each class's mask
    masks: "np.ndarray"  # (K, *mask_shape) in [0, 1]
    patterns: "np.ndarray"  # (K, *input_shape) within the data range
    success: "np.ndarray"  # attack success rate of each trigger on held-out inputs
    anomaly: "np.ndarray"  # anomaly index per class (NaN with fewer than 3 classes)
    ratio: "np.ndarray"  # size / median size
    flagged: list[int]  # class indices, most anomalous first
    mask_cells: int  # entries of one mask (pixels or features)
    seconds: float
    source: str  # which dataset the inputs came from
    n_inputs: int

    @property
    def most_anomalous(self) -> int:
        import numpy as np

        a = np.where(np.isfinite(self.anomaly), self.anomaly, -np.inf)
        return int(np.argmax(a)) if np.isfinite(a).any() else int(np.argmin(self.sizes))

    def stamp(self, k: int, X: "np.ndarray") -> "np.ndarray":
        import numpy as np

        m = self.masks[k]
        return ((1 - m) * X + m * self.patterns[k]).astype(np.float32)


def configured_params(ctx: "AuditContext") -> BackdoorParams:
    """backdoor.scan's parameters as the policy sets them (poisoning.scan reuses its triggers)."""
    conf = ctx.policy.checks.get(CHECK_ID) if hasattr(ctx.policy, "checks") else None
    params = getattr(conf, "params", None)
    return params if isinstance(params, BackdoorParams) else BackdoorParams()


def trigger_source(ctx: "AuditContext", params: BackdoorParams) -> "Dataset | None":
    if params.data == "test" or (params.data == "auto" and ctx.test is not None):
        return ctx.test
    return ctx.train


def class_labels(ctx: "AuditContext", k: int) -> list:
    """The label value of each model output index: the index itself when the labels are integers 0..K-1,
    else the sorted distinct labels when there are exactly K of them."""
    import numpy as np

    values = []
    for d in ctx.datasets():
        if d.has_label:
            y = d.labels()
            values.append(np.asarray([v for v in y if v is not None and v == v], dtype=object))
    if not values:
        return list(range(k))
    allv = np.concatenate(values)
    try:
        ints = np.asarray(allv, dtype=float)
        if np.all(ints == np.round(ints)) and ints.min() >= 0 and ints.max() < k:
            return list(range(k))
    except (TypeError, ValueError):
        pass
    uniq = sorted({v.item() if hasattr(v, "item") else v for v in allv}, key=lambda v: (str(type(v)), v))
    return uniq if len(uniq) == k else list(range(k))


def shared_probe(ctx: "AuditContext", sample: "np.ndarray") -> "ModelProbe":
    from auditor.checks._features import probe

    key = ("probe", id(ctx.model))
    if key not in ctx.cache:
        ctx.cache[key] = probe(ctx.model, sample)
    return ctx.cache[key]


def shared_triggers(ctx: "AuditContext", params: BackdoorParams | None = None) -> Triggers | None:
    """The reverse-engineered triggers for ``ctx.model``, computed once per audit (backdoor.scan and
    poisoning.scan both use them, with backdoor.scan's parameters and seed)."""
    from auditor.checks._features import threads_for, torch_threads

    params = params or configured_params(ctx)
    ds = trigger_source(ctx, params)
    if ds is None:
        return None
    key = ("triggers", ctx.model.sha256, ds.sha256, json.dumps(params.model_dump(), sort_keys=True), ctx.seed)
    if key not in ctx.cache:
        import numpy as np

        X = ds.model_input()
        rng = np.random.default_rng(ctx.seed_for(CHECK_ID))
        if len(X) > params.max_samples:
            X = X[np.sort(rng.choice(len(X), params.max_samples, replace=False))]
        pr = shared_probe(ctx, X)
        # patterns may take any value the model is given in the training or test data: a tabular trigger often
        # sets a feature to a value clean rows rarely have
        bounds = [_data_range(np.nan_to_num(d.model_input())) for d in ctx.datasets()
                  if d.model_input().shape[1:] == X.shape[1:]]
        lo = np.min([b[0] for b in bounds], axis=0)
        hi = np.max([b[1] for b in bounds], axis=0)
        ctx.progress.step(f"reverse-engineering a trigger for each of {max(pr.n_outputs, 2)} classes")
        with torch_threads(params.threads or threads_for(X)):
            trig = reverse_engineer(pr, X, params, ctx.seed_for(CHECK_ID), bounds=(lo, hi))
        trig.source = ds.name
        ctx.cache[key] = trig
    return ctx.cache[key]


def _mask_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1, *shape[1:]) if len(shape) >= 3 else shape


def _data_range(X: "np.ndarray") -> tuple["np.ndarray", "np.ndarray"]:
    """Per channel for images (N x C x H x W), one range for single-channel images (N x H x W), per feature
    for tables (N x F); finite values only."""
    import numpy as np

    Xf = np.where(np.isfinite(X), X, np.nan)
    axes = (0, *range(2, X.ndim)) if X.ndim >= 4 else tuple(range(X.ndim)) if X.ndim == 3 else (0,)
    lo = np.nanmin(Xf, axis=axes, keepdims=True)[0]
    hi = np.nanmax(Xf, axis=axes, keepdims=True)[0]
    lo = np.nan_to_num(lo, nan=0.0)
    hi = np.nan_to_num(hi, nan=1.0)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return lo.astype(np.float32), hi.astype(np.float32)


def anomaly_indices(sizes: "np.ndarray", scale: str = "log") -> "np.ndarray":
    """Neural Cleanse's MAD anomaly index per class: how far below the median a class's trigger size is."""
    import numpy as np

    s = np.asarray(sizes, dtype=np.float64)
    if len(s) < 3:
        return np.full(len(s), np.nan)
    v = np.log(np.maximum(s, 1e-6)) if scale == "log" else s
    med = np.median(v)
    mad = MAD_CONSISTENCY * np.median(np.abs(v - med))
    if mad <= 0:
        mad = max(1e-6, 1e-3 * abs(med))
    return (med - v) / mad


def flag_classes(sizes: "np.ndarray", anomaly: "np.ndarray", ratio: "np.ndarray", params: BackdoorParams) -> list[int]:
    """Classes whose trigger is anomalously small (index > threshold), at most ``max_size_ratio`` of the median's,
    and clearly apart from the unflagged classes (at most ``max_separation`` of the smallest of them): when several
    classes all need tiny triggers (a model easily pushed by out-of-range values, say), none stands out as a target."""
    import numpy as np

    candidates = [int(k) for k in np.argsort(-np.nan_to_num(anomaly, nan=-np.inf))
                  if np.isfinite(anomaly[k]) and anomaly[k] > params.anomaly_threshold and ratio[k] <= params.max_size_ratio]
    rest = [s for k, s in enumerate(sizes) if k not in candidates]
    if not candidates or not rest:
        return candidates
    return [k for k in candidates if sizes[k] <= params.max_separation * min(rest)]


def reverse_engineer(pr: "ModelProbe", X: "np.ndarray", params: BackdoorParams, seed: int,
                     bounds: "tuple[np.ndarray, np.ndarray] | None" = None) -> Triggers:
    """Optimise a mask and a pattern per class (all classes batched), keeping each class's smallest mask that
    reaches ``attack_success`` on the optimisation batches."""
    import numpy as np
    import torch

    started = time.perf_counter()
    X = np.nan_to_num(np.ascontiguousarray(X, dtype=np.float32))
    K = max(pr.n_outputs, 2)
    shape = tuple(X.shape[1:])
    mshape = _mask_shape(shape)
    lo_np, hi_np = bounds if bounds is not None else _data_range(X)
    lo, span = torch.from_numpy(lo_np), torch.from_numpy(hi_np - lo_np)
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    torch.manual_seed(int(seed) % (2**63))
    Xt = torch.from_numpy(X)
    n_opt = len(X) if len(X) < 40 else int(len(X) * 0.8)  # the rest measures the triggers' success
    perm = torch.randperm(len(X), generator=gen)
    opt_idx, eval_idx = perm[:n_opt], (perm[n_opt:] if n_opt < len(X) else perm)

    m_raw = torch.full((K, *mshape), -3.0, requires_grad=True)
    p_raw = torch.zeros((K, *shape), requires_grad=True)
    opt = torch.optim.Adam([m_raw, p_raw], lr=params.learning_rate, betas=(0.5, 0.9))
    B = params.batch_size
    lam = torch.full((K,), params.init_cost)
    up = torch.zeros(K)
    down = torch.zeros(K)
    best_size = torch.full((K,), float("inf"))
    best_m = torch.sigmoid(m_raw).detach().clone()
    best_p = (lo + span * torch.sigmoid(p_raw)).detach().clone()
    targets = torch.arange(K).repeat_interleave(B)
    reduce_dims = tuple(range(1, 1 + len(mshape)))
    warmup = params.steps // 5
    with pr.parameters_frozen():
        for step in range(params.steps):
            x = Xt[opt_idx[torch.randint(0, n_opt, (B,), generator=gen)]].unsqueeze(0)
            m = torch.sigmoid(m_raw).unsqueeze(1)
            pat = (lo + span * torch.sigmoid(p_raw)).unsqueeze(1)
            xa = ((1 - m) * x + m * pat).reshape(K * B, *shape)
            logits = pr.logits_t(xa)
            ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none").view(K, B).mean(1)
            size = m.squeeze(1).sum(dim=reduce_dims)
            loss = (ce + lam * size).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                acc = (logits.argmax(1) == targets).float().view(K, B).mean(1)
                ok = acc >= params.attack_success
                if step >= warmup:
                    better = ok & (size < best_size)
                    if better.any():
                        best_size = torch.where(better, size, best_size)
                        best_m[better] = m.squeeze(1)[better]
                        best_p[better] = pat.squeeze(1)[better]
                # Neural Cleanse's cost schedule: raise the L1 weight while the attack succeeds, lower it while not
                up = torch.where(ok, up + 1, torch.zeros_like(up))
                down = torch.where(ok, torch.zeros_like(down), down + 1)
                lam = torch.where(up >= 5, lam * 1.5, lam)
                lam = torch.where(down >= 5, lam / 1.5**1.5, lam)
                up = torch.where(up >= 5, torch.zeros_like(up), up)
                down = torch.where(down >= 5, torch.zeros_like(down), down)
        never = ~torch.isfinite(best_size)  # never reached the success rate: keep the last mask (an upper bound)
        if never.any():
            with torch.no_grad():
                best_m[never] = torch.sigmoid(m_raw)[never]
                best_p[never] = (lo + span * torch.sigmoid(p_raw))[never]
    masks = best_m.numpy()
    patterns = best_p.numpy()
    sizes = masks.reshape(K, -1).sum(1).astype(np.float64)

    # success of each trigger on held-out inputs that the model does not already assign to the class
    Xe = X[eval_idx.numpy()]
    base = pr.predict(Xe)
    success = np.zeros(K)
    for k in range(K):
        rows = Xe[base != k]
        if len(rows):
            stamped = ((1 - masks[k]) * rows + masks[k] * patterns[k]).astype(np.float32)
            success[k] = float((pr.predict(stamped) == k).mean())
    anomaly = anomaly_indices(sizes, params.size_scale)
    ratio = sizes / max(float(np.median(sizes)), 1e-12)
    flagged = flag_classes(sizes, anomaly, ratio, params)
    return Triggers(
        sizes=sizes, masks=masks, patterns=patterns, success=success, anomaly=anomaly, ratio=ratio, flagged=flagged,
        mask_cells=int(np.prod(mshape)), seconds=time.perf_counter() - started, source="", n_inputs=len(X),
    )


# ---------------------------------------------------------------------- STRIP


def strip_entropies(pr: "ModelProbe", X: "np.ndarray", pool: "np.ndarray", blends: int, rng: "np.random.Generator",
                    formula: str = "paper", chunk: int = 64) -> "np.ndarray":
    """STRIP's normalised entropy of each input superimposed on ``blends`` random inputs from ``pool``."""
    import numpy as np
    from art.estimators.poison_mitigation.strip.strip import combine_images
    from scipy.stats import entropy

    out = np.empty(len(X))
    for start in range(0, len(X), chunk):
        xs = X[start : start + chunk]
        idx = rng.integers(0, len(pool), size=(len(xs), blends))
        mixed = combine_images(xs[:, None], pool[idx]).reshape(len(xs) * blends, *X.shape[1:]).astype(np.float32)
        p = pr.proba(mixed).reshape(len(xs), blends, -1)
        if formula == "art":  # ART 1.20.1 STRIPMixin: entropy over the perturbation axis, summed over classes
            ent = np.array([np.sum(entropy(pi, base=2, axis=0)) for pi in p]) / blends
        else:  # the paper: entropy of each perturbed prediction, averaged over the perturbations
            ent = entropy(np.clip(p, 1e-12, 1), base=2, axis=2).mean(axis=1)
        out[start : start + len(xs)] = ent
    return out


def strip_threshold(entropies: "np.ndarray", far: float) -> float:
    """ART's STRIPMixin.mitigate: the ``far`` quantile of a normal fitted to clean inputs' entropies."""
    from scipy.stats import norm

    mean, std = norm.fit(entropies)
    return float(norm.ppf(far, loc=mean, scale=max(std, 1e-12)))


class BackdoorScan(Check):
    id = CHECK_ID
    title = "Backdoor in the model (trigger reverse engineering, STRIP)"
    family = "security"
    description = (
        "Neural-Cleanse-style trigger reverse engineering for PyTorch models (a mask and pattern per class, MAD "
        "anomaly index of the trigger sizes) and STRIP on test inputs; names the suspected target class and keeps "
        "the reconstructed trigger."
    )
    requires = ("model",)
    default_severity = "critical"
    controls = (
        "nist-ai-rmf:MEASURE 2.7", "nist-ai-rmf:MANAGE 3.2", "iso-42001:A.6.2.4", "eu-ai-act:Art.15(5)",
        "mitre-atlas:AML.T0018", "mitre-atlas:AML.T0020", "nist-aml:NISTAML.023",
    )
    Params = BackdoorParams

    def run(self, ctx: "AuditContext", params: BackdoorParams) -> Outcome:
        from auditor.checks._features import threads_for, torch_threads

        ds = trigger_source(ctx, params)
        if ds is None:
            return Outcome.skipped("needs a test set (--test) or a training set (--train) to feed the model")
        trig = shared_triggers(ctx, params)
        K = len(trig.sizes)
        labels = class_labels(ctx, K)
        name = lambda k: labels[k]  # noqa: E731
        top = trig.most_anomalous
        metrics: dict[str, Any] = {
            "inputs": {"dataset": trig.source, "rows_used": trig.n_inputs},
            "classes": K,
            "anomaly_threshold": params.anomaly_threshold,
            "max_size_ratio": params.max_size_ratio,
            "max_separation": params.max_separation,
            "size_scale": params.size_scale,
            "mad_consistency": MAD_CONSISTENCY,
            "suspected_target_class": name(trig.flagged[0]) if trig.flagged else None,
            "flagged_classes": [name(k) for k in trig.flagged],
            "most_anomalous_class": name(top),
            "anomaly_index": _r(trig.anomaly[top]),
            "trigger_size": _r(trig.sizes[top]),
            "trigger_fraction": _r(trig.sizes[top] / trig.mask_cells),
            "trigger_attack_success": _r(trig.success[top]),
            "per_class": {
                str(name(k)): {"trigger_size": _r(trig.sizes[k]), "anomaly_index": _r(trig.anomaly[k]),
                               "size_ratio": _r(trig.ratio[k]), "attack_success": _r(trig.success[k])}
                for k in range(K)
            },
            "reconstructed_trigger": _trigger_dict(trig, top, name(top)),
            "reverse_engineering_s": round(trig.seconds, 2),
        }
        if K < 3:
            metrics["note"] = "fewer than 3 classes: the MAD anomaly index is undefined; STRIP only"

        findings = []
        for k in trig.flagged:
            findings.append(Finding(
                f"class {name(k)!s} looks like a backdoor target: a trigger on {trig.sizes[k]:.1f} of "
                f"{trig.mask_cells} input cells ({trig.ratio[k]:.0%} of the median class's) turns "
                f"{trig.success[k]:.0%} of other inputs into it (anomaly index {trig.anomaly[k]:.2f} > "
                f"{params.anomaly_threshold:g})",
                details=_trigger_dict(trig, k, name(k)),
            ))

        strip_warn = False
        if params.strip:
            if ctx.test is None:
                metrics["strip"] = {"skipped": "no test set"}
            else:
                ctx.progress.step("STRIP on test inputs")
                with torch_threads(params.threads or threads_for(ctx.test.model_input()[:1])):
                    metrics["strip"] = self._strip(ctx, params, trig, name)
                strip_warn = metrics["strip"]["flagged_fraction"] > params.strip_max_fraction
                if strip_warn:
                    s = metrics["strip"]
                    findings.append(Finding(
                        f"STRIP: {s['flagged']} of {s['tested']} held-out test inputs ({s['flagged_fraction']:.1%}) "
                        f"keep their prediction under superimposition, like trojaned inputs (expected "
                        f"{params.strip_far:.0%})", dataset="test",
                    ))
        status = "fail" if trig.flagged else "warn" if strip_warn else "pass"
        return Outcome(status=status, metrics=metrics, findings=findings)

    @staticmethod
    def _strip(ctx: "AuditContext", params: BackdoorParams, trig: Triggers, name) -> dict:
        import numpy as np

        rng = np.random.default_rng(ctx.seed_for(CHECK_ID) + 1)
        X = np.nan_to_num(ctx.test.model_input())
        n = min(len(X), params.strip_samples)
        rows = np.sort(rng.choice(len(X), n, replace=False))
        half = n // 2
        cal, held = rows[:half], rows[half:]
        if half < 10:
            return {"skipped": f"only {len(X)} test inputs", "flagged_fraction": 0.0}
        pr = shared_probe(ctx, X[:2])
        pool = X[cal]
        ent_cal = strip_entropies(pr, X[cal], pool, params.strip_blends, rng, params.strip_entropy)
        thr = strip_threshold(ent_cal, params.strip_far)
        ent = strip_entropies(pr, X[held], pool, params.strip_blends, rng, params.strip_entropy)
        flagged = held[ent <= thr]
        out = {
            "entropy": params.strip_entropy, "blends": params.strip_blends, "far": params.strip_far,
            "threshold": _r(thr), "calibration_inputs": int(len(cal)), "tested": int(len(held)),
            "flagged": int(len(flagged)), "flagged_fraction": _r(len(flagged) / len(held)),
            "flagged_test_rows": [int(r) for r in flagged[:50]],
        }
        pred = pr.predict(X[held])
        for k in trig.flagged or [trig.most_anomalous]:
            others = X[held][pred != k]
            if len(others):
                e = strip_entropies(pr, trig.stamp(k, others), pool, params.strip_blends, rng, params.strip_entropy)
                out.setdefault("stamped_with_reconstructed_trigger", {})[str(name(k))] = _r(float((e <= thr).mean()))
        return out


def _trigger_dict(trig: Triggers, k: int, label) -> dict:
    import numpy as np

    return {
        "class": label,
        "size": _r(trig.sizes[k]),
        "anomaly_index": _r(trig.anomaly[k]),
        "attack_success": _r(trig.success[k]),
        "mask_shape": list(trig.masks[k].shape),
        "mask": np.round(trig.masks[k], 3).tolist(),
        "pattern_shape": list(trig.patterns[k].shape),
        "pattern": np.round(trig.patterns[k], 3).tolist(),
    }


def _r(v: Any, digits: int = 4):
    import math

    v = float(v)
    return round(v, digits) if math.isfinite(v) else None
