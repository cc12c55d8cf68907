"""The models under audit: the original, a user-supplied optimized model and the auditor's own variants.

``audited_models(ctx)`` returns the original model (``--model``), the optimized model the user passed
(``--optimized``) and one variant per optimization the policy names in
``checks.optimization.comparison.params.optimizations``. The robustness checks audit each one as a model
of its own; ``optimization.comparison`` compares each against the original. The list is built once per
run (``ctx.cache``).

Optimizations the auditor applies itself:

``int8_dynamic``
    int8 weights and dynamically quantized int8 activations for every ``nn.Linear`` (torchao
    ``Int8DynamicActivationInt8WeightConfig``; ``torch.ao.quantization.quantize_dynamic`` when torchao is
    unavailable). Convolutions stay float32 (neither library quantizes them dynamically). Needs an eager
    module (``state_dict`` + ``--model-factory``): a TorchScript or ``torch.export`` graph cannot have its
    layers swapped, so the variant is skipped with that reason (quantize before exporting and pass the
    result with ``--optimized``).
``int8_weight_only``
    int8 weights (per output channel) for every ``nn.Linear``, activations in float: torchao
    ``Int8WeightOnlyConfig`` on eager modules. On TorchScript / ``torch.export`` graphs, and without torchao,
    it is *simulated*: each 2-D weight is rounded in place to its symmetric per-row int8 grid and kept as
    float32, which computes the same function as weight-only int8 but without the memory saving.
``prune_unstructured`` / ``prune_structured``
    magnitude pruning of every weight with two or more dimensions (Linear and convolution weights), layer
    by layer, like ``torch.nn.utils.prune.l1_unstructured`` (the ``sparsity`` fraction of smallest
    |w| set to 0) and ``ln_structured(n=2, dim=0)`` (that fraction of whole output channels with the
    smallest L2 norm set to 0). Structured pruning leaves the last layer alone, since removing its rows
    would delete classes. Works on eager modules, TorchScript and ``torch.export`` graphs alike (the
    parameters of a copy are edited in place); the result is dense float32, so its size does not shrink.

A variant holding int8 modules is marked ``int8``: no gradient is ever taken through it. White-box
attacks are crafted on its float32 source (the original) and transferred, and black-box attacks query it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from auditor.models import Model
from auditor.registry import Params

if TYPE_CHECKING:
    from auditor.engine import AuditContext

OptimizationKind = Literal["int8_dynamic", "int8_weight_only", "prune_unstructured", "prune_structured"]
PRUNING = ("prune_unstructured", "prune_structured")
CACHE_KEY = "audited_models"


class Optimization(Params):
    """One optimization the auditor applies to the original model."""

    kind: OptimizationKind
    sparsity: float | None = Field(None, gt=0, lt=1, description="fraction of weights (or channels) pruned")
    name: str | None = Field(None, description="label in the report (default: kind, or kind@sparsity)")

    @model_validator(mode="after")
    def _sparsity_for_pruning(self) -> "Optimization":
        if self.kind in PRUNING and self.sparsity is None:
            raise ValueError(f"{self.kind} needs a sparsity, e.g. {{kind: {self.kind}, sparsity: 0.5}}")
        if self.kind not in PRUNING and self.sparsity is not None:
            raise ValueError(f"{self.kind} takes no sparsity")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.kind}@{self.sparsity:g}" if self.sparsity is not None else self.kind


@dataclass
class Audited:
    """A model under audit."""

    name: str  # original | optimized | the optimization's label
    origin: str  # original | supplied | derived
    model: Model | None  # None when it could not be built (see ``skipped``)
    int8: bool = False  # holds int8 modules: never differentiate through it
    source: str | None = None  # the float32 model whose gradients craft transfer attacks for an int8 model
    method: str = ""
    skipped: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.model is not None and self.skipped is None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "origin": self.origin, "int8": self.int8, "method": self.method}
        if self.source:
            out["attack_source"] = self.source
        if self.skipped:
            out["skipped"] = self.skipped
        out.update(self.details)
        return out


def configured_optimizations(ctx: "AuditContext") -> tuple[list[Optimization], str]:
    """The optimizations and the quantization backend the policy names (on optimization.comparison)."""
    configured = ctx.policy.checks.get("optimization.comparison")
    if configured is None:
        return [], "auto"
    params = configured.params
    return list(getattr(params, "optimizations", ()) or ()), getattr(params, "backend", "auto")


def audited_models(ctx: "AuditContext") -> list[Audited]:
    """Original first, then the supplied optimized model, then the policy's variants (built once per run)."""
    cached = ctx.cache.get(CACHE_KEY)
    if cached is not None:
        return cached
    # a quantized --model is audited too, but only through predictions (no float32 source to transfer from)
    out = [Audited("original", "original", ctx.model, int8=holds_int8(ctx.model.module),
                   method=f"as loaded ({ctx.model.format})")]
    optimized = getattr(ctx, "optimized", None)
    if optimized is not None:
        int8 = holds_int8(optimized.module)
        out.append(Audited("optimized", "supplied", optimized, int8=int8, source="original" if int8 else None,
                           method=f"--optimized {optimized.path} ({optimized.format})"))
    optimizations, backend = configured_optimizations(ctx)
    for opt in optimizations:
        ctx.progress.step(f"building variant {opt.label}")
        out.append(build_variant(ctx.model, opt, backend))
    names = [a.name for a in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"two audited models are named {sorted(dupes)[0]!r}: give the optimizations distinct names")
    ctx.cache[CACHE_KEY] = out
    return out


# ------------------------------------------------------------------ building variants


def build_variant(model: Model, opt: Optimization, backend: str = "auto") -> Audited:
    """Apply ``opt`` to a copy of ``model``; an optimization that does not fit the model is skipped, with why."""
    module = model.module
    kind = module_kind(module)
    base = Audited(opt.label, "derived", None, details={"kind": opt.kind, **({"sparsity": opt.sparsity} if opt.sparsity else {})})
    try:
        if opt.kind == "int8_dynamic":
            if kind != "eager":
                base.skipped = (
                    f"int8 dynamic quantization swaps nn.Linear modules, which a {kind} graph does not have: "
                    "load the model as a state_dict with --model-factory, or quantize before exporting and pass "
                    "the result with --optimized"
                )
                return base
            new, method, count = quantize_int8(module, dynamic=True, backend=backend)
            int8 = True
        elif opt.kind == "int8_weight_only":
            if backend == "torchao" and _torchao() is None:
                raise _NotApplicable("the policy asks for the torchao backend, but torchao does not import here")
            if kind == "eager" and backend in ("auto", "torchao") and _torchao() is not None:
                new, method, count = quantize_int8(module, dynamic=False, backend="torchao")
                int8 = True
            else:
                new = copy_module(module)
                count = simulate_int8_weights(new)
                method = "simulated int8 weight-only: 2-D weights rounded to a symmetric per-row int8 grid, kept as float32"
                int8 = False
        else:
            new = copy_module(module)
            structured = opt.kind == "prune_structured"
            count, zeroed, total = prune_magnitude(new, float(opt.sparsity), structured=structured)
            method = ("L2 structured pruning of output channels (last layer kept)" if structured
                      else "L1 unstructured magnitude pruning") + f", {opt.sparsity:g} per layer"
            base.details.update({"weights_zeroed": zeroed, "weights_total": total})
            int8 = False
    except _NotApplicable as e:
        base.skipped = str(e)
        return base
    if count == 0:
        base.skipped = f"{opt.kind}: the model has no layer it applies to"
        return base
    base.details["layers_changed"] = count
    base.model = replace(model, module=new, format=f"{model.format}+{opt.label}")
    base.int8 = int8
    base.source = "original" if int8 else None
    base.method = method
    return base


class _NotApplicable(Exception):
    pass


def module_kind(module: Any) -> str:
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        return "TorchScript"
    if isinstance(module, torch.fx.GraphModule):
        return "torch.export"
    return "eager"


def copy_module(module: Any) -> Any:
    """A deep copy (ScriptModules and export graphs copy too); the original is never modified."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = copy.deepcopy(module)
    new.eval()
    return new


def _torchao():
    """torchao's quantization API, or None when it is not installed or does not import with this torch."""
    try:
        with _quiet_torchao():
            from torchao import quantization
        return quantization
    except Exception:
        return None


@contextlib.contextmanager
def _quiet_torchao():
    """torchao logs a warning per CUDA kernel library it cannot load on a CPU machine; keep them (and torch's
    own log records and warnings, as while loading a model) off stderr."""
    from auditor.models import _quiet

    log = logging.getLogger("torchao")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with _quiet():
            yield
    finally:
        log.setLevel(level)


def quantize_int8(module: Any, dynamic: bool, backend: str = "auto") -> tuple[Any, str, int]:
    """An int8 copy of an eager module's Linear layers: (module, method, number of layers quantized)."""
    import torch
    from torch import nn

    n_linear = sum(isinstance(m, nn.Linear) for m in module.modules())
    if n_linear == 0:
        return module, "", 0
    ao = _torchao() if backend in ("auto", "torchao") else None
    if backend == "torchao" and ao is None:
        raise _NotApplicable("the policy asks for the torchao backend, but torchao does not import here")
    new = copy_module(module)
    with _quiet_torchao():
        if ao is not None:
            config = ao.Int8DynamicActivationInt8WeightConfig() if dynamic else ao.Int8WeightOnlyConfig()
            ao.quantize_(new, config)
            method = f"torchao quantize_({type(config).__name__}) on {n_linear} Linear layers"
        else:
            if not dynamic:
                raise _NotApplicable("int8 weight-only quantization needs torchao")
            new = torch.ao.quantization.quantize_dynamic(new, {nn.Linear}, dtype=torch.qint8)
            method = f"torch.ao.quantization.quantize_dynamic(qint8) on {n_linear} Linear layers (deprecated API; torchao unavailable)"
    new.eval()
    return new, method, n_linear


def _weights(module: Any) -> list[tuple[str, Any]]:
    """Weights with two or more dimensions (Linear, convolution), in parameter order."""
    import torch

    return [(n, p) for n, p in module.named_parameters()
            if n.rsplit(".", 1)[-1] == "weight" and p.dim() >= 2 and p.dtype.is_floating_point
            and type(p) in (torch.Tensor, torch.nn.Parameter)]  # not int8 tensor subclasses


def simulate_int8_weights(module: Any) -> int:
    """Round every 2-D weight in place to a symmetric per-row int8 grid; returns how many were rounded."""
    import torch

    count = 0
    with torch.no_grad():
        for _, w in _weights(module):
            if w.dim() != 2:
                continue
            scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
            w.copy_(torch.clamp(torch.round(w / scale), -127, 127) * scale)
            count += 1
    return count


def unstructured_mask(w: Any, amount: float) -> Any:
    """The mask ``torch.nn.utils.prune.l1_unstructured`` keeps: the round(amount * n) smallest |w| are pruned."""
    import torch

    n_prune = int(round(amount * w.numel()))
    mask = torch.ones_like(w, dtype=torch.bool)
    if n_prune:
        idx = torch.topk(w.abs().reshape(-1), k=n_prune, largest=False).indices
        mask.view(-1)[idx] = False
    return mask


def structured_mask(w: Any, amount: float) -> Any:
    """The mask ``torch.nn.utils.prune.ln_structured(n=2, dim=0)`` keeps: whole rows with the smallest L2 norm pruned."""
    import torch

    n_rows = w.shape[0]
    n_prune = int(round(amount * n_rows))
    mask = torch.ones_like(w, dtype=torch.bool)
    if n_prune:
        norms = w.reshape(n_rows, -1).norm(p=2, dim=1)
        idx = torch.topk(norms, k=n_prune, largest=False).indices
        mask[idx] = False
    return mask


def prune_magnitude(module: Any, sparsity: float, structured: bool = False) -> tuple[int, int, int]:
    """Prune in place, layer by layer; returns (layers pruned, weights zeroed, weights in those layers)."""
    import torch

    weights = _weights(module)
    if structured:
        weights = weights[:-1]  # the output layer: removing its rows would delete classes
    layers = zeroed = total = 0
    with torch.no_grad():
        for _, w in weights:
            mask = structured_mask(w, sparsity) if structured else unstructured_mask(w, sparsity)
            w.mul_(mask.to(w.dtype))
            layers += 1
            zeroed += int((~mask).sum())
            total += w.numel()
    return layers, zeroed, total


# ------------------------------------------------------------------ inspecting models


def holds_int8(module: Any) -> bool:
    """Whether a module computes with int8 (or other quantized) tensors, found without running it."""
    import torch

    quantized = {torch.qint8, torch.quint8, torch.qint32, torch.int8, torch.quint4x2}
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dtype in quantized or type(t) not in (torch.Tensor, torch.nn.Parameter):
            return True
    for sub in module.modules():
        name = type(sub).__module__
        if name.startswith(("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized")):
            return True
    text = ""
    if isinstance(module, torch.jit.ScriptModule):
        with contextlib.suppress(Exception):
            text = str(module.inlined_graph)
    elif isinstance(module, torch.fx.GraphModule):
        with contextlib.suppress(Exception):
            text = module.code
    return any(marker in text for marker in ("quantized::", "quantized_decomposed", "aten::quantize_per",
                                              "aten::dequantize", "torchao", "prepacked::"))


def serialized_size(module: Any) -> int:
    """Bytes of the model as it would be saved (TorchScript archive, or its state_dict)."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(module, torch.jit.ScriptModule):
            torch.jit.save(module, buf)
        else:
            torch.save(module.state_dict(), buf)
    return len(buf.getvalue())


def weight_sparsity(module: Any) -> float | None:
    """Fraction of zero entries among the float weights with two or more dimensions."""
    weights = _weights(module)
    total = sum(w.numel() for _, w in weights)
    if not total:
        return None
    return float(sum(int((w == 0).sum()) for _, w in weights) / total)
