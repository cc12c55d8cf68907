"""Model internals for the poisoning and backdoor scans: differentiable logits and penultimate features.

``ModelProbe`` wraps a loaded :class:`~auditor.models.Model` (TorchScript, ``torch.export`` program or
eager ``nn.Module``) and gives

- ``logits_t(x)``: differentiable logits for a batch tensor of any size (programs traced with a static batch
  are fed in padded chunks; a single-output binary model gets two logits ``[0, z]``);
- ``features(X)``: the penultimate representation, i.e. the input of the final classifier layer, found
  automatically, or the input/output of a layer the policy names (``feature_layer: "head"``,
  ``"body.3:output"``).

How the layer is found, per format:

- eager modules: a forward pre-hook on every linear layer records the call order; the last one called is the
  classifier head and its input is the feature vector (hooks on the named layer when overridden);
- TorchScript: TorchScript modules take no hooks, so the inlined graph is searched for the last
  ``aten::linear`` / ``aten::addmm`` / ``aten::matmul`` node, and a copy of the graph that returns that node's
  input is compiled into a function (a named layer is located by the module hierarchy recorded on each node);
- ``torch.export`` programs: an ``fx.Interpreter`` runs the graph and stops at the input of the last
  ``aten.linear`` / ``aten.addmm`` / ``aten.matmul`` node (or the nodes of the named layer, via
  ``nn_module_stack``).

A model without any linear layer falls back to its outputs (the logits), and says so in ``info``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from auditor.models import Model

LINEAR_OPS_TS = ("aten::linear", "aten::addmm", "aten::matmul", "aten::mm")
LINEAR_OPS_FX = ("aten.linear", "aten.addmm", "aten.matmul", "aten.mm")
#: inputs with at most this many values per row run single-threaded (thread start-up costs more than it saves)
SMALL_INPUT = 4096


class FeatureError(ValueError):
    """The requested feature layer cannot be found or used."""


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run torch with ``n`` intra-op threads (restored afterwards); None leaves torch's setting alone."""
    import torch

    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_for(X: "np.ndarray") -> int:
    """One thread for small inputs (8x8 images, tables), two otherwise (the machines this targets have two)."""
    per_row = int(X[0].size) if len(X) else 0
    return 1 if per_row <= SMALL_INPUT else 2


@dataclass
class ModelProbe:
    model: "Model"
    n_outputs: int = 0
    _feature_fn: Callable[[Any], Any] | None = field(default=None, repr=False)
    feature_info: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ logits

    def _raw(self, x: "torch.Tensor") -> "torch.Tensor":
        fixed = self.model.fixed_batch
        run = _first_output(self.model.module)
        out = static_batches(run, fixed)(x) if fixed else run(x)
        return out.float().reshape(out.shape[0], -1)

    def logits_t(self, x: "torch.Tensor") -> "torch.Tensor":
        """Differentiable logits, shape (batch, classes), at least two classes."""
        import torch

        z = self._raw(x)
        if z.shape[1] == 1:  # a binary classifier's single score
            z = torch.cat([torch.zeros_like(z), z], dim=1)
        return z

    def logits(self, X: "np.ndarray", batch_size: int = 1024) -> "np.ndarray":
        import numpy as np
        import torch

        outs = []
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(X[start : start + batch_size], dtype=np.float32))
                outs.append(self.logits_t(chunk).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, max(self.n_outputs, 2)), dtype=np.float32)

    def predict(self, X: "np.ndarray") -> "np.ndarray":
        return self.logits(X).argmax(axis=1)

    def proba(self, X: "np.ndarray") -> "np.ndarray":
        import numpy as np

        z = self.logits(X).astype(np.float64)
        if self.n_outputs > 1 and np.all(z >= 0) and np.allclose(z.sum(axis=1), 1.0, atol=1e-4):
            return z  # the model already outputs probabilities
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def parameters_frozen(self):
        """Context manager: the model's parameters do not require gradients (inputs still get them)."""
        return _frozen(self.model.module)

    # ------------------------------------------------------------------ penultimate features

    def features(self, X: "np.ndarray", layer: str | None = None, batch_size: int = 1024) -> "np.ndarray":
        """The representation the model's classifier layer receives (or the named layer's), one row per input."""
        import numpy as np
        import torch

        fn = self._features_fn(layer, X[:2])
        outs = []
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(X[start : start + batch_size], dtype=np.float32))
                outs.append(fn(chunk).float().reshape(chunk.shape[0], -1).numpy())
        return np.concatenate(outs).astype(np.float32)

    def _features_fn(self, layer: str | None, sample: "np.ndarray") -> Callable[[Any], Any]:
        if self._feature_fn is not None and self.feature_info.get("requested") == layer:
            return self._feature_fn
        import numpy as np
        import torch

        name, where = _parse_layer(layer)
        module = self.model.module
        x0 = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
        if self.model.fixed_batch:
            x0 = x0[:1].expand(self.model.fixed_batch, *x0.shape[1:]).contiguous()
        if isinstance(module, torch.jit.ScriptModule):
            fn, info = _torchscript_features(module, name, where)
        elif isinstance(module, torch.fx.GraphModule):
            fn, info = _fx_features(module, name, where)
        elif isinstance(module, torch.nn.Module):
            fn, info = _eager_features(module, name, where, x0)
        else:
            raise FeatureError(f"cannot read the internals of a {type(module).__name__}")
        if fn is None:  # no linear layer anywhere: the outputs are the best representation there is
            fn, info = (lambda x: self._raw(x)), {"layer": "(model outputs)", "how": info.get("how", ""),
                                                   "note": "no linear layer found: clustering the model outputs"}
        elif self.model.fixed_batch:
            fn = static_batches(fn, self.model.fixed_batch)
        with torch.inference_mode():
            dim = int(fn(x0).reshape(x0.shape[0], -1).shape[1])
        self._feature_fn = fn
        self.feature_info = {"requested": layer, **info, "dim": dim}
        return fn


def probe(model: "Model", sample: "np.ndarray") -> ModelProbe:
    """A probe for ``model``, with its number of outputs read from one forward pass on ``sample``."""
    import numpy as np
    import torch

    p = ModelProbe(model)
    with torch.inference_mode():
        z = p._raw(torch.from_numpy(np.ascontiguousarray(sample[:2], dtype=np.float32)))
    p.n_outputs = int(z.shape[1])
    return p


# ---------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _frozen(module: Any):
    # optimized copies (pruned, int8-rounded) may hold computed, non-leaf weights: leave those alone
    params = [p for p in module.parameters() if p.requires_grad and p.is_leaf]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _parse_layer(layer: str | None) -> tuple[str | None, str]:
    if not layer:
        return None, "input"
    name, _, where = layer.partition(":")
    where = where or "input"
    if where not in ("input", "output"):
        raise FeatureError(f"feature_layer {layer!r}: the part after ':' must be 'input' or 'output'")
    return name.strip(), where


def _first_output(module: Any) -> Callable:
    def run(x):
        out = module(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    return run


def static_batches(fn: Callable, fixed: int) -> Callable:
    """Call ``fn`` (a program traced with a static batch size) on chunks of exactly ``fixed`` rows, padding the
    last chunk with copies of its last row and dropping their outputs."""
    import torch

    def run(x):
        outs = []
        for start in range(0, x.shape[0], fixed):
            chunk = x[start : start + fixed]
            n = chunk.shape[0]
            if n < fixed:
                chunk = torch.cat([chunk, chunk[-1:].expand(fixed - n, *chunk.shape[1:])])
            outs.append(fn(chunk)[:n])
        return torch.cat(outs)

    return run


def _is_linear(m: Any) -> bool:
    import torch

    return isinstance(m, torch.nn.Linear) or type(m).__name__ in ("Linear", "LazyLinear", "NonDynamicallyQuantizableLinear")


def _eager_features(module: Any, name: str | None, where: str, x0: Any):
    import torch

    named = dict(module.named_modules())
    if name is not None:
        if name not in named:
            raise FeatureError(f"feature_layer {name!r} is not a layer of the model (layers: {_some(named)})")
        target, how = name, f"forward hook on {name!r} ({where})"
    else:
        order: list[str] = []
        hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: order.append(n))
                 for n, m in named.items() if _is_linear(m)]
        try:
            with torch.inference_mode():
                module(x0)
        finally:
            for h in hooks:
                h.remove()
        if not order:
            return None, {"how": "eager module without a linear layer"}
        target, how, where = order[-1], "forward pre-hook on the last linear layer called", "input"

    layer = named[target]

    def fn(x):
        store: list = []
        if where == "input":
            h = layer.register_forward_pre_hook(lambda mod, inp: store.append(inp[0]))
        else:
            h = layer.register_forward_hook(lambda mod, inp, out: store.append(out[0] if isinstance(out, tuple) else out))
        try:
            module(x)
        finally:
            h.remove()
        if not store:
            raise FeatureError(f"layer {target!r} was not called by the model's forward")
        return store[-1]

    return fn, {"layer": f"{target}:{where}", "how": how}


def _hierarchy(node: Any) -> str:
    """'body(Sequential).0(Conv2d).SELF(Conv2d)' -> 'body.0'."""
    try:
        text = node.getModuleHierarchy()
    except Exception:
        return ""
    parts = []
    for part in text.split("."):
        base = re.sub(r"\(.*\)$", "", part)
        if base in ("SELF", "UNKNOWN_INSTANCE", ""):
            continue
        parts.append(base)
    return ".".join(parts)


def _torchscript_features(module: Any, name: str | None, where: str):
    import torch

    graph = module.inlined_graph  # a copy: editing it leaves the model alone
    nodes = list(graph.nodes())  # top-level block only: values inside if/loop blocks cannot be returned
    if name is None:
        linear = [n for n in nodes if n.kind() in LINEAR_OPS_TS]
        if not linear:
            return None, {"how": "TorchScript graph without a linear op"}
        node = linear[-1]
        value = node.inputsAt(0)
        layer = _hierarchy(node) or "(last linear op)"
        info = {"layer": f"{layer}:input", "how": "input of the last linear op in the TorchScript graph"}
    else:
        inside = [n for n in nodes if n.kind().startswith("aten::")
                  and (_hierarchy(n) == name or _hierarchy(n).startswith(name + "."))]
        if not inside:
            layers = sorted({h for h in (_hierarchy(n) for n in nodes) if h})
            raise FeatureError(f"feature_layer {name!r} is not a layer of the model (layers: {', '.join(layers[:20])})")
        value = inside[0].inputsAt(0) if where == "input" else inside[-1].output()
        info = {"layer": f"{name}:{where}", "how": "TorchScript graph rewritten to return the layer's " + where}
    for _ in range(len(list(graph.outputs()))):
        graph.eraseOutput(0)
    graph.registerOutput(value)
    fn = torch._C._create_function_from_graph("auditor_features", graph)
    owner = module._c
    return (lambda x: fn(owner, x)), info


class _Stop(Exception):
    def __init__(self, value: Any):
        self.value = value


def _fx_features(module: Any, name: str | None, where: str):
    import torch

    nodes = list(module.graph.nodes)

    def path(n) -> str:
        stack = n.meta.get("nn_module_stack") or {}
        return list(stack.values())[-1][0] if stack else ""

    calls = [n for n in nodes if n.op == "call_function"]
    if name is None:
        linear = [n for n in calls if str(n.target).rsplit(".", 1)[0] in LINEAR_OPS_FX]
        if not linear:
            return None, {"how": "torch.export graph without a linear op"}
        node, take = linear[-1], "arg0"
        info = {"layer": f"{path(node) or node.name}:input", "how": "input of the last linear op in the torch.export graph"}
    else:
        inside = [n for n in calls if path(n) == name or path(n).startswith(name + ".")]
        if not inside:
            layers = sorted({p for p in (path(n) for n in calls) if p})
            raise FeatureError(f"feature_layer {name!r} is not a layer of the model (layers: {', '.join(layers[:20])})")
        node, take = (inside[0], "arg0") if where == "input" else (inside[-1], "out")
        info = {"layer": f"{name}:{where}", "how": "torch.export graph interpreted up to the layer's " + where}

    class Until(torch.fx.Interpreter):
        def run_node(self, n):
            if n is node and take == "arg0":
                raise _Stop(self.env[n.args[0]])
            out = super().run_node(n)
            if n is node:
                raise _Stop(out)
            return out

    def fn(x):
        try:
            Until(module).run(x)
        except _Stop as s:
            return s.value
        raise FeatureError(f"node {node.name} was not reached")

    return fn, info


def _some(named: dict) -> str:
    names = [n for n in named if n]
    return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
