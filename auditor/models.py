"""Models: TorchScript, ``torch.export`` programs (.pt2) and ``state_dict`` + factory.

Loading never unpickles arbitrary objects. ``torch.load`` runs with ``weights_only=True``;
TorchScript archives go through TorchScript's own restricted loader; ``.pt2`` archives are scanned
first, because ``torch.export.load`` itself falls back to full unpickling for some members
(pickled weights/constants, opaque objects, sample inputs). Anything else is refused (exit 2) before
a byte of it is unpickled.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import sys
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from auditor.errors import InputError
from auditor.hashing import sha256_file

if TYPE_CHECKING:
    import numpy as np

PICKLE_PROTO = 0x80
REFUSE = "refusing to unpickle it (that could run code from the file)"
#: members of a .pt2 archive that torch.export.load may unpickle (they must pass torch's allow-list)
PICKLED_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle")
#: errors reading a zip archive with the standard library (corrupt, truncated, encrypted, odd compression)
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError, ValueError)


@dataclass
class Model:
    path: Path
    sha256: str
    format: str  # torchscript | torch.export | state_dict
    module: Any  # a callable torch module
    factory: str | None = None
    #: a torch.export program traced with a static batch size only accepts batches of exactly that size
    fixed_batch: int | None = None

    def logits(self, X: "np.ndarray", batch_size: int = 512) -> "np.ndarray":
        import numpy as np
        import torch

        if self.fixed_batch:
            batch_size = self.fixed_batch
        outs = []
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                chunk = np.ascontiguousarray(X[start : start + batch_size], dtype=np.float32)
                n = len(chunk)
                if self.fixed_batch and n < self.fixed_batch:  # pad with copies of the last row, then drop them
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.fixed_batch - n, axis=0)])
                out = self.module(torch.from_numpy(chunk))
                if isinstance(out, (tuple, list)):
                    out = out[0]
                outs.append(out.detach().float().cpu().numpy()[:n])
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, 0), dtype=np.float32)

    def predict_proba(self, X: "np.ndarray", batch_size: int = 512) -> "np.ndarray":
        """Class probabilities: softmax of the outputs unless they already are probabilities."""
        import numpy as np

        z = self.logits(X, batch_size).astype(np.float64)
        if z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1):  # one output: a binary classifier's score
            s = z.reshape(-1)
            p = s if np.all((s >= 0) & (s <= 1)) else 1.0 / (1.0 + np.exp(-s))
            return np.stack([1.0 - p, p], axis=1)
        if z.ndim > 2:
            z = z.reshape(z.shape[0], -1)
        if z.ndim == 2 and np.all(z >= 0) and np.allclose(z.sum(axis=1), 1.0, atol=1e-4):
            return z
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def describe(self) -> dict:
        return {"path": str(self.path), "format": self.format, "factory": self.factory}


def load_model(path: str | Path, factory: str | None = None) -> Model:
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a directory, expected a model file", path)
    try:
        if path.stat().st_size == 0:
            raise InputError("model file is empty", path)
        digest = sha256_file(path)
        is_zip = zipfile.is_zipfile(path)
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as e:
        raise InputError(f"cannot read model file: {e.strerror or _short(e)}", path) from None

    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except ZIP_ERRORS as e:
            raise InputError(f"broken model archive: {_short(e)}", path) from None
        with _quiet():
            if any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") or n.endswith("data.pkl") for n in names):
                return Model(path, digest, "torchscript", _load_torchscript(path))
            if any(n.endswith("models/model.json") or n.endswith("/archive_format") for n in names):
                module, fixed_batch = _load_exported(path, names)
                return Model(path, digest, "torch.export", module, fixed_batch=fixed_batch)
            if any(n.endswith("data.pkl") for n in names):
                return _load_state_dict(path, digest, factory)
        raise InputError("zip archive is not a TorchScript, torch.export or torch.save file", path)

    if head[:1] == bytes([PICKLE_PROTO]):
        with _quiet():
            return _load_state_dict(path, digest, factory)
    raise InputError(
        "not a recognised model format (expected TorchScript, a torch.export .pt2, or a state_dict with --model-factory)",
        path,
    )


def _load_torchscript(path: Path) -> Any:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError and friends with long messages
        raise InputError(f"cannot load TorchScript model: {_short(e)}", path) from None
    module.eval()
    return module


def _weights_only_ok(data: bytes) -> str | None:
    """None if torch's allow-list unpickler accepts ``data``, else the reason."""
    import pickle

    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        return None
    except pickle.UnpicklingError as e:
        return _short(e)
    except Exception as e:
        return _short(e)


def _load_exported(path: Path, names: list[str]) -> "tuple[Any, int | None]":
    """Scan a .pt2 archive for members that torch.export.load would unpickle or execute, then load it."""
    import torch

    try:
        _scan_exported(path)
    except InputError:
        raise
    except ZIP_ERRORS as e:
        raise InputError(f"broken torch.export archive: {_short(e)}", path) from None
    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as e:
        reason = _short(e)
        if "warnings above" in reason:  # torch logged the real error (silenced here); ask for it directly
            try:
                from torch.export.pt2_archive._package import load_pt2

                load_pt2(str(path))
            except Exception as inner:
                reason = _short(inner)
        raise InputError(f"cannot load torch.export program: {reason}", path) from None
    return module, _static_batch(program)


def _scan_exported(path: Path) -> None:
    """Refuse, before torch reads it, any .pt2 whose loading would run code from the file.

    ``torch.export.load`` fully unpickles weights/constants marked ``use_pickle``, opaque and custom
    objects, legacy ``data/weights/<model>.pt`` files, and falls back to full unpickling for sample inputs
    that torch's allow-list rejects; it also loads AOTInductor shared libraries. Torch's own zip reader
    looks members up case-insensitively and may pick either of two same-named members, so names are
    compared case-insensitively and duplicates are refused.
    """
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        seen: set[str] = set()
        for info in infos:
            key = info.filename.lower()
            if key in seen:
                raise InputError(f"torch.export archive has two members named {info.filename!r}; refusing it", path)
            seen.add(key)
        for info in infos:
            name = info.filename
            low = name.lower()
            if info.is_dir():
                continue
            if "data/aotinductor/" in low:
                raise InputError(
                    f"torch.export archive carries AOTInductor compiled code ({name}); refusing to load native code", path
                )
            if low.endswith(".json") and ("data/weights/" in low or "data/constants/" in low):
                _check_payload_config(path, name, zf.read(info), constants="data/constants/" in low)
            elif low.endswith(PICKLED_SUFFIXES):
                if "data/weights/" in low or "data/constants/" in low:
                    raise InputError(
                        f"torch.export archive uses the legacy pickled weight format ({name}); {REFUSE}", path
                    )
                if _weights_only_ok(zf.read(info)) is not None:
                    raise InputError(f"torch.export archive member {name} holds pickled Python objects; {REFUSE}", path)


def _check_payload_config(path: Path, name: str, data: bytes, constants: bool) -> None:
    """A weights/constants config may only point at raw tensor payloads."""
    try:
        config = json.loads(data)
    except ValueError:
        raise InputError(f"broken torch.export archive: {name} is not JSON", path) from None
    if not isinstance(config, dict):
        raise InputError(f"broken torch.export archive: {name} is not a JSON object", path)
    entries = config.get("config", {})
    if not isinstance(entries, dict):
        raise InputError(f"broken torch.export archive: {name} has no 'config' mapping", path)
    for fqn, entry in entries.items():
        if not isinstance(entry, dict):
            raise InputError(f"broken torch.export archive: {name} entry {fqn!r} is not an object", path)
        member = str(entry.get("path_name", ""))
        if entry.get("use_pickle", False) is not False:
            raise InputError(f"torch.export archive stores pickled objects ({member}); {REFUSE}", path)
        if constants and not member.startswith("tensor_"):
            raise InputError(f"torch.export archive stores non-tensor constants ({member}); {REFUSE}", path)


def _static_batch(program: Any) -> int | None:
    """The batch size a program was traced with, when its first dimension is static (else None)."""
    try:
        user_inputs = list(program.graph_signature.user_inputs)
        if len(user_inputs) != 1:
            return None
        for node in program.graph.nodes:
            if node.op == "placeholder" and node.name == user_inputs[0]:
                val = node.meta.get("val")
                dim = val.shape[0] if val is not None and len(val.shape) > 0 else None
                return dim if type(dim) is int and dim > 0 else None
    except Exception:
        return None
    return None


def _load_state_dict(path: Path, digest: str, factory: str | None) -> Model:
    import pickle

    import torch

    try:
        state = torch.load(str(path), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise InputError(f"file is a pickle of Python objects, not a state_dict of tensors; {REFUSE}", path) from None
    except Exception as e:
        raise InputError(f"cannot read torch file: {_short(e)}", path) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("torch file is not a state_dict (a mapping of names to tensors)", path)
    if factory is None:
        raise InputError("file is a state_dict: name the architecture with --model-factory module:function", path)
    build = _import_factory(factory)
    try:
        module = build()
        module.load_state_dict(state, strict=True)
    except Exception as e:
        raise InputError(f"state_dict does not fit the model built by {factory}: {_short(e)}", path) from None
    module.eval()
    return Model(path, digest, "state_dict", module, factory)


def _import_factory(spec: str) -> Callable[[], Any]:
    if spec.count(":") != 1:
        raise InputError(f"--model-factory must be 'module:function', got {spec!r}")
    mod_name, func_name = spec.split(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # the user's working directory, like `python -m`
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:
        raise InputError(f"cannot import model factory module {mod_name!r}: {_short(e)}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InputError(f"model factory {spec!r}: {func_name!r} is not a function of {mod_name}")
    return func


@contextlib.contextmanager
def _quiet():
    """Keep torch's warnings and log records (some carry tracebacks) off stderr while loading."""
    import torch  # noqa: F401  (importing torch configures its loggers: do it before saving their levels)

    loggers = [logging.getLogger("torch")] + [
        log for name, log in logging.root.manager.loggerDict.items()
        if name.startswith("torch.") and isinstance(log, logging.Logger) and log.level != logging.NOTSET
    ]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:240]
