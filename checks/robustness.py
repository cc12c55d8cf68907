"""robustness.adversarial and robustness.noise: accuracy under evasion attacks and under random corruption.

Both audit every model under audit (the original, ``--optimized``, and the variants the policy names; see
``auditor.checks._variants``) as a model of its own, on a seeded, stratified sample of the test set.

Adversarial robustness uses the Adversarial Robustness Toolbox (ART): FGSM and PGD (L-inf and L2) at the
policy's budgets, and the black-box Square attack. Robust accuracy follows RobustBench: the fraction of
*all* evaluated points that are classified correctly and stay correct under the attack (a point the model
already gets wrong counts as not robust). Per (norm, eps) the worst case over the attacks run at that
budget is reported too.

Gradients never run through int8 modules. A model holding int8 layers gets the white-box attacks crafted
on its float32 source (the original) and *transferred*, plus the black-box attack, which only queries it.
Its figure is therefore an upper bound on its true robust accuracy.

Budgets (``eps``) are in units of the input range by default (``eps_units: range``): eps 0.1 on pixels in
0..16 is 1.6. The input range (clip values) comes from the policy (``clip: [lo, hi]``) or from the data
(``clip: data``: the minimum and maximum over every dataset given).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from auditor.checks._features import static_batches

from auditor.checks._variants import Audited, audited_models
from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import numpy as np

    from auditor.engine import AuditContext
    from auditor.models import Model

WHITE_BOX = ("fgsm", "pgd")
BLACK_BOX = ("square",)
ATTACK_TITLES = {"fgsm": "FGSM", "pgd": "PGD", "square": "Square"}
#: Square's smallest usable image side (with p_init 0.8 its first tile would otherwise cover the image)
SQUARE_MIN_SIDE = 5


# ------------------------------------------------------------------ shared evaluation set-up


def torch_threads() -> int:
    """Threads for model work: AUDITOR_TORCH_THREADS, else 1 on small machines (<= 4 cores), else half the cores.

    On a small shared machine more intra-op threads than free cores makes small models many times slower.
    """
    env = os.environ.get("AUDITOR_TORCH_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    cores = os.cpu_count() or 1
    return 1 if cores <= 4 else cores // 2


@contextlib.contextmanager
def compute_limits():
    """torch intra-op threads as :func:`torch_threads`, BLAS pools single-threaded; restored afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads())
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed numpy's global RNG and torch's (ART draws from both) and restore them afterwards."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed % (2**63))
    try:
        yield
    finally:
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)


def derived_seed(run_seed: int, *parts: Any) -> int:
    text = "/".join(str(p) for p in parts)
    return (run_seed * 1_000_003 + zlib.crc32(text.encode())) % (2**32)


def stratified_sample(y: "np.ndarray", size: int, rng: "np.random.Generator") -> "np.ndarray":
    """Sorted indices of a sample of ``size`` rows keeping each class's share (largest remainder); all rows if fewer."""
    import numpy as np

    n = len(y)
    if size >= n:
        return np.arange(n)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * size / n
    take = np.floor(quota).astype(int)
    remainder = size - take.sum()
    if remainder:
        order = np.lexsort((rng.random(len(classes)), -(quota - take)))
        take[order[:remainder]] += 1
    picked = [rng.choice(np.flatnonzero(y == c), k, replace=False) for c, k in zip(classes, take) if k]
    return np.sort(np.concatenate(picked))


def class_indices(labels: "np.ndarray", n_classes: int) -> "tuple[np.ndarray | None, np.ndarray, str]":
    """Labels as indices of the model's outputs: (indices or None, rows with a label, how, or why not).

    Integer labels are used as they are and must lie in 0..n_classes-1; other labels are mapped to their
    position in sorted order (the convention of scikit-learn and torchvision's ImageFolder).
    """
    import numpy as np
    import pandas as pd

    values = pd.Series(labels)
    known = values.notna().to_numpy()
    rows = np.flatnonzero(known)
    v = values[known]
    numeric = pd.to_numeric(v, errors="coerce")
    if numeric.notna().all() and np.all(numeric == np.round(numeric)):
        idx = numeric.to_numpy(dtype=np.int64)
        if idx.min() < 0 or idx.max() >= n_classes:
            return None, rows, (f"integer labels run {idx.min()}..{idx.max()}, but the model has {n_classes} "
                                "outputs: labels must be the indices of the model's classes")
        return idx, rows, "integer labels are output indices"
    classes = sorted(v.astype(str).str.strip().unique())
    if len(classes) > n_classes:
        return None, rows, f"{len(classes)} distinct labels, but the model has {n_classes} outputs"
    lookup = {c: i for i, c in enumerate(classes)}
    return v.astype(str).str.strip().map(lookup).to_numpy(dtype=np.int64), rows, "labels mapped to outputs in sorted order"


@dataclass
class EvalSet:
    """The sample every model is evaluated on, as the model receives it."""

    X: "np.ndarray"
    y: "np.ndarray"
    rows: "np.ndarray"  # 0-based rows of the test set
    n_classes: int
    output_kind: str  # logits | probs | binary_logit | binary_prob
    clip: "tuple[float, float] | None"
    data_range: "tuple[float, float]"
    label_mapping: str

    @property
    def scale(self) -> float:
        lo, hi = self.clip if self.clip is not None else self.data_range
        return float(hi - lo) if hi > lo else 1.0

    def describe(self) -> dict:
        return {"sample_size": int(len(self.y)), "classes": self.n_classes, "clip": list(self.clip) if self.clip else None,
                "input_range": [float(self.data_range[0]), float(self.data_range[1])],
                "input_shape": list(self.X.shape[1:]), "label_mapping": self.label_mapping}


class NoEvalSet(Exception):
    """The models cannot be evaluated on this data (the reason is the message)."""


def output_kind(z: "np.ndarray") -> str:
    import numpy as np

    if z.ndim == 1 or z.shape[1] == 1:
        s = z.reshape(-1)
        return "binary_prob" if np.all((s >= 0) & (s <= 1)) else "binary_logit"
    if np.all(z >= 0) and np.allclose(z.sum(axis=1), 1.0, atol=1e-4):
        return "probs"
    return "logits"


def evaluation_set(ctx: "AuditContext", sample_size: int, clip: Any) -> EvalSet:
    """The seeded, stratified sample of the test set (shared by the checks of one run, so results pair up)."""
    import numpy as np

    key = ("eval_set", sample_size, json.dumps(clip))
    if key in ctx.cache:
        return ctx.cache[key]
    ds = ctx.test
    X_all = ds.model_input()
    labels = ds.labels()
    if labels is None:
        raise NoEvalSet("the test set has no label column")
    if len(X_all) == 0:
        raise NoEvalSet("the test set is empty")
    z = ctx.model.logits(X_all[: min(len(X_all), 64)])
    if z.ndim > 2:
        raise NoEvalSet(f"the model's output has shape {list(z.shape)}; a classifier's is (rows, classes)")
    n_classes = 2 if (z.ndim == 1 or z.shape[1] == 1) else int(z.shape[1])
    y, rows, how = class_indices(labels, n_classes)
    if y is None:
        raise NoEvalSet(how)
    finite = np.isfinite(X_all[rows].reshape(len(rows), -1)).all(axis=1)
    rows, y = rows[finite], y[finite]
    if len(rows) == 0:
        raise NoEvalSet("no test row with a label and finite features")
    rng = np.random.default_rng(derived_seed(ctx.seed, "robustness.sample"))
    pick = stratified_sample(y, sample_size, rng)
    rows, y = rows[pick], y[pick]
    X = np.ascontiguousarray(X_all[rows], dtype=np.float32)
    spans = [d.model_input() for d in ctx.datasets()]
    finite_vals = np.concatenate([s[np.isfinite(s)].ravel() for s in spans])
    data_range = (float(finite_vals.min()), float(finite_vals.max()))
    if clip == "data":
        clip_values = data_range
    elif clip == "none":
        clip_values = None
    else:
        clip_values = (float(clip[0]), float(clip[1]))
    if clip_values is not None:
        X = np.clip(X, *clip_values)
    kind = output_kind(ctx.model.logits(X[:64]).astype(np.float64))
    out = EvalSet(X, y, rows, n_classes, kind, clip_values, data_range, how)
    ctx.cache[key] = out
    return out


def predict(model: "Model", X: "np.ndarray") -> "np.ndarray":
    return model.predict_proba(X).argmax(axis=1)


# ------------------------------------------------------------------ ART wrappers


def _as_logits_module(module: Any, kind: str, fixed_batch: int | None):
    """The module with logits out, for ART's cross-entropy loss; the module itself when nothing is needed."""
    import torch
    from torch import nn

    exported = isinstance(module, torch.fx.GraphModule)  # torch.export programs refuse .train()/.eval()
    if kind == "logits" and not fixed_batch and not exported:
        return module

    class AsLogits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def train(self, mode: bool = True) -> "AsLogits":
            """ART switches modes before each gradient; the audited model always stays in eval mode."""
            self.training = mode
            return self

        def _call(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            return out[0] if isinstance(out, (tuple, list)) else out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if fixed_batch:
                out = static_batches(self._call, fixed_batch)(x)
            else:
                out = self._call(x)
            if kind == "probs":
                return torch.log(out.clamp_min(1e-12))
            if kind in ("binary_logit", "binary_prob"):
                s = out.reshape(-1)
                if kind == "binary_prob":
                    p = s.clamp(1e-7, 1 - 1e-7)
                    return torch.stack([torch.log1p(-p), torch.log(p)], dim=1)
                return torch.stack([torch.zeros_like(s), s], dim=1)
            return out

    return AsLogits().eval()


def white_box_classifier(model: "Model", ev: EvalSet):
    """ART's PyTorchClassifier for a float32 model (never an int8 one: see the module docstring)."""
    from torch import nn
    from art.estimators.classification import PyTorchClassifier

    with _quiet_grad_access():
        return PyTorchClassifier(
            model=_as_logits_module(model.module, ev.output_kind, model.fixed_batch),
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(ev.X.shape[1:]),
            nb_classes=ev.n_classes,
            clip_values=ev.clip,
            device_type="cpu",
        )


@contextlib.contextmanager
def _quiet_grad_access():
    """ART moves the model and reads .grad of every parameter; TorchScript parameters warn about that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*grad attribute of a Tensor that is not a leaf.*")
        yield


def _grid(shape: tuple[int, ...]) -> "tuple[tuple[int, ...], int]":
    """The N x C x H x W shape Square attacks, for inputs of ``shape`` (rows excluded), and padding added."""
    if len(shape) == 3:
        return shape, 0
    if len(shape) == 2:
        return (1, *shape), 0
    n = int(math.prod(shape))
    side = max(math.ceil(math.sqrt(n)), SQUARE_MIN_SIDE)
    return (1, side, side), side * side - n


def black_box_classifier(model: "Model", ev: EvalSet):
    """ART's black-box classifier: it only ever calls the model for predictions (no gradients anywhere).

    Square attacks images; other inputs are laid out as a (padded) square grid, the padding dropped
    before the model sees it.
    """
    import numpy as np
    from art.estimators.classification.blackbox import BlackBoxClassifierNeuralNetwork

    shape = tuple(ev.X.shape[1:])
    grid, pad = _grid(shape)
    n_features = int(math.prod(shape))

    def predict_fn(x: "np.ndarray") -> "np.ndarray":
        flat = x.reshape(len(x), -1)[:, :n_features]
        return model.predict_proba(np.ascontiguousarray(flat.reshape(len(x), *shape), dtype=np.float32))

    lo, hi = ev.clip if ev.clip is not None else ev.data_range
    clf = BlackBoxClassifierNeuralNetwork(predict_fn, input_shape=grid, nb_classes=ev.n_classes,
                                          channels_first=True, clip_values=(lo, hi))
    return clf, grid, pad


def to_grid(X: "np.ndarray", grid: tuple[int, ...], pad: int, fill: float) -> "np.ndarray":
    import numpy as np

    flat = X.reshape(len(X), -1)
    if pad:
        flat = np.concatenate([flat, np.full((len(X), pad), fill, dtype=X.dtype)], axis=1)
    return flat.reshape(len(X), *grid)


def from_grid(Xg: "np.ndarray", shape: tuple[int, ...]) -> "np.ndarray":
    import numpy as np

    n = int(math.prod(shape))
    return np.ascontiguousarray(Xg.reshape(len(Xg), -1)[:, :n].reshape(len(Xg), *shape), dtype=np.float32)


# ------------------------------------------------------------------ adversarial attacks


class AttackSpec(Params):
    """One attack at one or more budgets."""

    name: Literal["fgsm", "pgd", "square"]
    norm: Literal["inf", "2"] = "inf"
    eps: list[float] = Field(min_length=1, description="budgets, in units of the input range unless eps_units: absolute")
    steps: int | None = Field(None, ge=1, le=10_000, description="PGD iterations (default 10); Square queries (default 100)")
    step_size: float | None = Field(None, gt=0, description="PGD step as a fraction of eps (default 2.5 / steps)")
    random_init: bool = Field(False, description="PGD: start from a random point in the eps-ball")
    min_robust_accuracy: float | list[float | None] | None = Field(
        None, description="fail below this robust accuracy (one value, or one per eps)")

    @field_validator("norm", mode="before")
    @classmethod
    def _norm(cls, v: Any) -> Any:
        text = str(v).lower().strip()
        return {"linf": "inf", "l_inf": "inf", "infinity": "inf", "l2": "2", "2.0": "2"}.get(text, text)

    @field_validator("eps")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(not (e > 0 and math.isfinite(e)) for e in v):
            raise ValueError("every eps must be a positive number")
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> "AttackSpec":
        t = self.min_robust_accuracy
        if isinstance(t, list) and len(t) != len(self.eps):
            raise ValueError(f"min_robust_accuracy lists {len(t)} values for {len(self.eps)} eps")
        for value in t if isinstance(t, list) else [t]:
            if value is not None and not 0 <= value <= 1:
                raise ValueError("min_robust_accuracy values lie in [0, 1]")
        if self.name == "fgsm" and (self.steps or self.step_size or self.random_init):
            raise ValueError("fgsm is a single step: steps, step_size and random_init do not apply")
        if self.name == "square" and (self.step_size or self.random_init):
            raise ValueError("square takes steps (queries) only")
        return self

    @property
    def n_steps(self) -> int | None:
        if self.name == "pgd":
            return self.steps or 10
        if self.name == "square":
            return self.steps or 100
        return None

    def threshold(self, i: int) -> float | None:
        t = self.min_robust_accuracy
        return t[i] if isinstance(t, list) else t

    @property
    def label(self) -> str:
        return f"{ATTACK_TITLES[self.name]} L{'inf' if self.norm == 'inf' else '2'}"


def _default_attacks() -> list[AttackSpec]:
    return [
        AttackSpec(name="fgsm", norm="inf", eps=[0.05, 0.1]),
        AttackSpec(name="pgd", norm="inf", eps=[0.05, 0.1], steps=10, min_robust_accuracy=[0.5, None]),
        AttackSpec(name="pgd", norm="2", eps=[0.5, 1.0], steps=10),
        AttackSpec(name="square", norm="inf", eps=[0.1], steps=100),
    ]


Clip = Literal["data", "none"] | tuple[float, float]


class AdversarialParams(Params):
    sample_size: int = Field(500, ge=10, description="test rows evaluated (stratified, seeded)")
    clip: Clip = Field("data", description="input range: 'data' (min/max of the data), 'none', or [lo, hi]")
    eps_units: Literal["range", "absolute"] = Field("range", description="eps as a fraction of the input range, or as is")
    batch_size: int = Field(256, ge=1)
    attacks: list[AttackSpec] = Field(default_factory=_default_attacks)

    @field_validator("clip")
    @classmethod
    def _clip_order(cls, v: Any) -> Any:
        if isinstance(v, tuple) and not v[0] < v[1]:
            raise ValueError("clip: [lo, hi] needs lo < hi")
        return v


def eps_absolute(eps: float, ev: EvalSet, units: str) -> float:
    return float(eps * ev.scale) if units == "range" else float(eps)


def run_white_box(clf: Any, spec: AttackSpec, eps_abs: float, X: "np.ndarray", y: "np.ndarray", batch_size: int) -> "np.ndarray":
    """FGSM or PGD with ART, exactly as one would call it directly; returns the adversarial inputs."""
    import numpy as np
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    norm = np.inf if spec.norm == "inf" else 2
    if spec.name == "fgsm":
        attack = FastGradientMethod(clf, norm=norm, eps=eps_abs, eps_step=eps_abs, batch_size=batch_size)
    else:
        steps = spec.n_steps
        step = (spec.step_size if spec.step_size is not None else 2.5 / steps) * eps_abs
        attack = ProjectedGradientDescent(clf, norm=norm, eps=eps_abs, eps_step=step, max_iter=steps,
                                          num_random_init=1 if spec.random_init else 0, batch_size=batch_size,
                                          verbose=False)
    with _quiet_grad_access():
        return attack.generate(X, y=y)


def run_square(model: "Model", ev: EvalSet, spec: AttackSpec, eps_abs: float, X: "np.ndarray",
               y: "np.ndarray", batch_size: int) -> "np.ndarray":
    """ART's Square attack through the black-box classifier (predictions only)."""
    import numpy as np
    from art.attacks.evasion import SquareAttack

    clf, grid, pad = black_box_classifier(model, ev)
    if min(grid[1:]) < SQUARE_MIN_SIDE:
        raise ValueError(f"Square needs images of at least {SQUARE_MIN_SIDE}x{SQUARE_MIN_SIDE} pixels, got {grid[1]}x{grid[2]}")
    fill = ev.clip[0] if ev.clip is not None else ev.data_range[0]
    norm = np.inf if spec.norm == "inf" else 2
    attack = SquareAttack(clf, norm=norm, eps=eps_abs, max_iter=spec.n_steps, nb_restarts=1,
                          batch_size=batch_size, verbose=False)
    adv = attack.generate(to_grid(X, grid, pad, fill), y=y)
    return from_grid(adv, tuple(X.shape[1:]))


@dataclass
class AttackRun:
    model: str
    attack: str  # fgsm | pgd | square
    norm: str
    eps: float
    eps_abs: float
    steps: int | None
    mode: str  # white-box | transfer from <source> | black-box
    robust: "np.ndarray | None"  # per evaluated point: correct and still correct under attack
    threshold: float | None
    skipped: str | None = None

    @property
    def robust_accuracy(self) -> float | None:
        return None if self.robust is None else float(self.robust.mean())

    @property
    def passed(self) -> bool | None:
        if self.robust is None or self.threshold is None:
            return None
        return self.robust_accuracy >= self.threshold

    def to_dict(self) -> dict:
        out = {"model": self.model, "attack": self.attack, "norm": self.norm, "eps": self.eps,
               "eps_abs": round(self.eps_abs, 6), "steps": self.steps, "mode": self.mode,
               "robust_accuracy": None if self.robust is None else round(self.robust_accuracy, 4),
               "min_robust_accuracy": self.threshold}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


@dataclass
class AdversarialResults:
    ev: EvalSet
    models: list[Audited]
    clean: dict[str, "np.ndarray"] = field(default_factory=dict)  # model -> correct on the clean sample
    runs: list[AttackRun] = field(default_factory=list)

    def worst_case(self, model: str) -> dict[tuple[str, float], float]:
        """(norm, eps) -> fraction of points robust to every attack run at that budget."""
        import numpy as np

        masks: dict[tuple[str, float], Any] = {}
        for r in self.runs:
            if r.model == model and r.robust is not None:
                key = (r.norm, r.eps)
                masks[key] = r.robust if key not in masks else (masks[key] & r.robust)
        return {k: float(np.mean(v)) for k, v in sorted(masks.items())}

    def clean_accuracy(self, model: str) -> float:
        return float(self.clean[model].mean())


def adversarial_results(ctx: "AuditContext", params: AdversarialParams) -> AdversarialResults:
    """Every attack of ``params`` on every model under audit (computed once per run and parameters)."""
    import numpy as np

    key = ("adversarial", params.model_dump_json())
    if key in ctx.cache:
        return ctx.cache[key]
    ev = evaluation_set(ctx, params.sample_size, params.clip)
    models = audited_models(ctx)
    res = AdversarialResults(ev, models)
    transfer_cache: dict[tuple[str, int, float], np.ndarray] = {}  # (source model, attack index, eps) -> adversarial X
    by_name = {m.name: m for m in models}
    for audited in models:
        if not audited.usable:
            continue
        model = audited.model
        clf = None
        res.clean[audited.name] = predict(model, ev.X) == ev.y
        for a_idx, spec in enumerate(params.attacks):
            for e_idx, eps in enumerate(spec.eps):
                eps_abs = eps_absolute(eps, ev, params.eps_units)
                run = AttackRun(audited.name, spec.name, spec.norm, eps, eps_abs, spec.n_steps, "", None,
                                spec.threshold(e_idx))
                ctx.progress.step(f"{spec.label} eps {eps:g} on {audited.name}")
                seed = derived_seed(ctx.seed, "robustness.adversarial", audited.name, a_idx, eps)
                if spec.name in BLACK_BOX:
                    run.mode = "black-box"
                    with seeded(seed):
                        try:
                            adv = run_square(model, ev, spec, eps_abs, ev.X, ev.y, params.batch_size)
                        except ValueError as e:
                            run.skipped = str(e)
                            res.runs.append(run)
                            continue
                elif audited.int8:
                    source = by_name.get(audited.source or "")
                    if source is None or not source.usable or source.int8:
                        run.mode = "transfer"
                        run.skipped = ("no gradients through int8 modules, and no float32 source model to craft "
                                       "transfer attacks on: only the black-box attacks apply")
                        res.runs.append(run)
                        continue
                    run.mode = f"transfer from {source.name}"
                    adv = transfer_cache.get((source.name, a_idx, eps))
                    if adv is None:  # the source's own run did not happen (cannot, as it comes first; kept safe)
                        with seeded(derived_seed(ctx.seed, "robustness.adversarial", source.name, a_idx, eps)):
                            adv = run_white_box(white_box_classifier(source.model, ev), spec, eps_abs, ev.X, ev.y,
                                                params.batch_size)
                        transfer_cache[(source.name, a_idx, eps)] = adv
                else:
                    run.mode = "white-box"
                    clf = clf or white_box_classifier(model, ev)
                    with seeded(seed):
                        adv = run_white_box(clf, spec, eps_abs, ev.X, ev.y, params.batch_size)
                    transfer_cache[(audited.name, a_idx, eps)] = adv
                run.robust = res.clean[audited.name] & (predict(model, adv) == ev.y)
                res.runs.append(run)
    ctx.cache[key] = res
    return res


class Adversarial(Check):
    id = "robustness.adversarial"
    title = "Accuracy under evasion attacks"
    family = "robustness"
    description = (
        "ART FGSM, PGD (L-inf and L2) and the black-box Square attack at the policy's budgets, on a seeded, "
        "stratified test sample, for the model and each optimized variant. Robust accuracy is the fraction of "
        "all evaluated points still classified correctly (RobustBench). int8 models are never differentiated: "
        "they get attacks transferred from their float32 source plus the black-box attack."
    )
    requires = ("test", "model")
    default_severity = "medium"
    controls = (
        "nist-ai-rmf:MEASURE 2.7", "nist-ai-rmf:MEASURE 2.6", "nist-ai-rmf:MEASURE 2.5", "iso-42001:A.6.2.4",
        "eu-ai-act:Art.15(1)", "eu-ai-act:Art.15(5)", "mitre-atlas:AML.T0043", "mitre-atlas:AML.T0015",
        "nist-aml:NISTAML.022", "nist-aml:NISTAML.025",
    )
    #: for baseline comparisons (--baseline): dotted metric path -> which direction is better
    tracked_metrics = {"original_clean_accuracy": "higher", "original_min_robust_accuracy": "higher"}
    Params = AdversarialParams

    def run(self, ctx: "AuditContext", params: AdversarialParams) -> Outcome:
        try:
            with compute_limits():
                res = adversarial_results(ctx, params)
        except NoEvalSet as e:
            return Outcome.skipped(str(e))
        metrics: dict[str, Any] = {**res.ev.describe(), "eps_units": params.eps_units,
                                   "robust_accuracy_definition": "correct on the clean input and under attack, over all evaluated points"}
        metrics["models"] = {
            m.name: {**m.describe(), **({"clean_accuracy": round(res.clean_accuracy(m.name), 4)} if m.usable else {}),
                     **({"worst_case": [{"norm": n, "eps": e, "robust_accuracy": round(v, 4)}
                                        for (n, e), v in res.worst_case(m.name).items()]} if m.usable else {})}
            for m in res.models
        }
        metrics["results"] = [r.to_dict() for r in res.runs]
        if "original" in res.clean:
            worst = res.worst_case("original")
            metrics["original_clean_accuracy"] = round(res.clean_accuracy("original"), 4)
            metrics["original_min_robust_accuracy"] = round(min(worst.values()), 4) if worst else None
        findings = []
        failed = []
        for r in res.runs:
            if r.passed is False:
                failed.append(r)
                findings.append(Finding(
                    f"{r.model}: {ATTACK_TITLES[r.attack]} L{'inf' if r.norm == 'inf' else '2'} eps {r.eps:g} "
                    f"({r.mode}): robust accuracy {r.robust_accuracy:.3f} < {r.threshold:.3f}",
                    dataset="test", details=r.to_dict()))
        for m in res.models:
            if m.skipped:
                findings.append(Finding(f"{m.name}: not audited: {m.skipped}"))
        for r in res.runs:
            if r.skipped:
                findings.append(Finding(f"{r.model}: {r.attack} L{r.norm} eps {r.eps:g} not run: {r.skipped}"))
        metrics["failed"] = [f"{r.model}: {r.attack} L{r.norm} eps {r.eps:g}" for r in failed]
        if not any(r.robust is not None for r in res.runs):
            return Outcome(status="skipped", reason="no attack could be run: " + "; ".join(
                sorted({r.skipped for r in res.runs if r.skipped} | {m.skipped for m in res.models if m.skipped})
                or {"the policy lists no attack"}), metrics=metrics, findings=findings)
        return Outcome(status="fail" if failed else "pass", metrics=metrics, findings=findings)


# ------------------------------------------------------------------ random corruption

NOISE = ("gaussian", "uniform")
IMAGE_ONLY = ("salt_pepper", "blur", "contrast", "brightness")


class Corruption(Params):
    """A corruption at one or more severities.

    gaussian: noise with standard deviation ``level`` (x the input range); uniform: noise in
    [-level, level] (x the input range); images only: salt_pepper: ``level`` of the values set to the
    range's ends; blur: Gaussian blur with sigma ``level`` pixels; contrast: each image's pixels pulled
    towards its mean, keeping ``level`` of their deviation; brightness: + ``level`` x the input range.
    """

    name: Literal["gaussian", "uniform", "salt_pepper", "blur", "contrast", "brightness"]
    levels: list[float] = Field(min_length=1)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1, description="overrides the check's max_accuracy_drop")


def _default_corruptions() -> list[Corruption]:
    return [
        Corruption(name="gaussian", levels=[0.05, 0.1]),
        Corruption(name="uniform", levels=[0.1, 0.2]),
        Corruption(name="salt_pepper", levels=[0.02]),
        Corruption(name="blur", levels=[0.5]),
        Corruption(name="contrast", levels=[0.7]),
        Corruption(name="brightness", levels=[0.1]),
    ]


class NoiseParams(Params):
    sample_size: int = Field(1000, ge=10, description="test rows evaluated (stratified, seeded)")
    clip: Clip = "data"
    max_accuracy_drop: float = Field(0.1, ge=0, le=1, description="fail when accuracy drops by more than this")
    corruptions: list[Corruption] = Field(default_factory=_default_corruptions)


def is_image(X: "np.ndarray") -> bool:
    """N x C x H x W (C of 1, 3 or 4) or N x H x W with both sides of at least 4 pixels."""
    if X.ndim == 4:
        return X.shape[1] in (1, 3, 4) and min(X.shape[2:]) >= 4
    return X.ndim == 3 and min(X.shape[1:]) >= 4


def corrupt(X: "np.ndarray", name: str, level: float, lo: float, hi: float, rng: "np.random.Generator") -> "np.ndarray":
    import numpy as np

    span = hi - lo
    if name == "gaussian":
        out = X + rng.normal(0.0, level * span, size=X.shape)
    elif name == "uniform":
        out = X + rng.uniform(-level * span, level * span, size=X.shape)
    elif name == "salt_pepper":
        hit = rng.random(X.shape) < level
        out = np.where(hit, np.where(rng.random(X.shape) < 0.5, lo, hi), X)
    elif name == "blur":
        from scipy.ndimage import gaussian_filter

        sigma = [0.0] * (X.ndim - 2) + [level, level]
        out = gaussian_filter(X.astype(np.float64), sigma=sigma, mode="nearest")
    elif name == "contrast":
        axes = tuple(range(1, X.ndim))
        mean = X.mean(axis=axes, keepdims=True)
        out = mean + level * (X - mean)
    elif name == "brightness":
        out = X + level * span
    else:  # pragma: no cover - the params model allows only the names above
        raise ValueError(name)
    return np.clip(out, lo, hi).astype(np.float32)


class Noise(Check):
    id = "robustness.noise"
    title = "Accuracy under random corruption"
    family = "robustness"
    description = (
        "Accuracy of the model and each optimized variant under Gaussian and uniform noise and, for image "
        "inputs, salt-and-pepper noise, blur, contrast and brightness changes, on a seeded, stratified test "
        "sample. The same corrupted inputs go to every model. Fails when accuracy drops by more than the policy allows."
    )
    requires = ("test", "model")
    default_severity = "medium"
    controls = (
        "nist-ai-rmf:MEASURE 2.5", "nist-ai-rmf:MEASURE 2.6", "nist-ai-rmf:MEASURE 2.3", "iso-42001:A.6.2.4",
        "eu-ai-act:Art.15(1)", "eu-ai-act:Art.15(4)",
    )
    tracked_metrics = {"clean_accuracy.original": "higher", "worst_accuracy_drop.original": "lower"}
    Params = NoiseParams

    def run(self, ctx: "AuditContext", params: NoiseParams) -> Outcome:
        import numpy as np

        try:
            ev = evaluation_set(ctx, params.sample_size, params.clip)
        except NoEvalSet as e:
            return Outcome.skipped(str(e))
        lo, hi = ev.clip if ev.clip is not None else ev.data_range
        image = is_image(ev.X)
        results, findings, not_applicable = [], [], []
        with compute_limits():
            models = [m for m in audited_models(ctx) if m.usable]
            clean = {m.name: float(np.mean(predict(m.model, ev.X) == ev.y)) for m in models}
            for c in params.corruptions:
                if c.name in IMAGE_ONLY and not image:
                    not_applicable.append(c.name)
                    continue
                limit = c.max_accuracy_drop if c.max_accuracy_drop is not None else params.max_accuracy_drop
                for level in c.levels:
                    rng = np.random.default_rng(derived_seed(ctx.seed, "robustness.noise", c.name, level))
                    Xc = corrupt(ev.X, c.name, level, lo, hi, rng)
                    ctx.progress.step(f"{c.name} {level:g}")
                    for m in models:
                        acc = float(np.mean(predict(m.model, Xc) == ev.y))
                        drop = clean[m.name] - acc
                        r = {"model": m.name, "corruption": c.name, "level": level, "accuracy": round(acc, 4),
                             "accuracy_drop": round(drop, 4), "max_accuracy_drop": limit, "passed": drop <= limit}
                        results.append(r)
                        if drop > limit:
                            findings.append(Finding(
                                f"{m.name}: {c.name} {level:g}: accuracy {acc:.3f} (clean {clean[m.name]:.3f}), "
                                f"drop {drop:.3f} > {limit:.3f}", dataset="test", details=r))
        for m in audited_models(ctx):
            if m.skipped:
                findings.append(Finding(f"{m.name}: not audited: {m.skipped}"))
        metrics = {**ev.describe(), "image_input": image, "max_accuracy_drop": params.max_accuracy_drop,
                   "clean_accuracy": {k: round(v, 4) for k, v in clean.items()}, "results": results,
                   "not_applicable": not_applicable}
        metrics["worst_accuracy_drop"] = {
            name: max((r["accuracy_drop"] for r in results if r["model"] == name), default=None) for name in clean}
        failed = [r for r in results if not r["passed"]]
        metrics["failed"] = [f"{r['model']}: {r['corruption']} {r['level']:g}" for r in failed]
        return Outcome(status="fail" if failed else "pass", metrics=metrics, findings=findings)
