"""Models: TorchScript, ``torch.export`` programs (.pt2) and ``state_dict`` + factory.

Loading never unpickles arbitrary objects. ``torch.load`` runs with ``weights_only=True``;
TorchScript archives go through TorchScript's own restricted loader; ``.pt2`` archives are scanned
first, because ``torch.export.load`` itself falls back to full unpickling for some members
(pickled weights/constants, opaque objects, sample inputs). Anything else is refused (exit 2) before
a byte of it is unpickled.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from auditor.errors import InputError
from auditor.hashing import sha256_file

if TYPE_CHECKING:
    import numpy as np

PICKLE_PROTO = 0x80
REFUSE = "refusing to unpickle it (that could run code from the file)"


@dataclass
class Model:
    path: Path
    sha256: str
    format: str  # torchscript | torch.export | state_dict
    module: Any  # a callable torch module
    factory: str | None = None

    def logits(self, X: "np.ndarray", batch_size: int = 512) -> "np.ndarray":
        import numpy as np
        import torch

        outs = []
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(X[start : start + batch_size], dtype=np.float32))
                out = self.module(batch)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                outs.append(out.detach().float().cpu().numpy())
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, 0), dtype=np.float32)

    def predict_proba(self, X: "np.ndarray", batch_size: int = 512) -> "np.ndarray":
        """Class probabilities: softmax of the outputs unless they already are probabilities."""
        import numpy as np

        z = self.logits(X, batch_size).astype(np.float64)
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
    if path.stat().st_size == 0:
        raise InputError("model file is empty", path)
    digest = sha256_file(path)

    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise InputError(f"broken model archive: {e}", path) from None
        if any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") or n.endswith("data.pkl") for n in names):
            return Model(path, digest, "torchscript", _load_torchscript(path))
        if any(n.endswith("models/model.json") or n.endswith("/archive_format") for n in names):
            return Model(path, digest, "torch.export", _load_exported(path, names))
        if any(n.endswith("data.pkl") for n in names):
            return _load_state_dict(path, digest, factory)
        raise InputError("zip archive is not a TorchScript, torch.export or torch.save file", path)

    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == bytes([PICKLE_PROTO]):
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


def _load_exported(path: Path, names: list[str]) -> Any:
    """Scan a .pt2 archive for members that torch.export.load would fully unpickle, then load it."""
    import torch

    with zipfile.ZipFile(path) as zf:
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if name.endswith(".json") and ("weights_config" in base or "constants_config" in base):
                try:
                    config = json.loads(zf.read(name))
                except ValueError:
                    raise InputError(f"broken torch.export archive: {name} is not JSON", path) from None
                entries = (config.get("config") or {}).values() if isinstance(config, dict) else []
                for entry in entries:
                    if not isinstance(entry, dict):
                        continue
                    member = str(entry.get("path_name", ""))
                    if entry.get("use_pickle") or member.startswith(("custom_obj", "opaque_obj")):
                        raise InputError(f"torch.export archive stores pickled objects ({member}); {REFUSE}", path)
            elif name.endswith((".pt", ".pkl", ".pickle")):
                if "/data/weights/" in name or "/data/constants/" in name:
                    raise InputError(f"torch.export archive uses the legacy pickled weight format ({name}); {REFUSE}", path)
                problem = _weights_only_ok(zf.read(name))
                if problem is not None:
                    raise InputError(f"torch.export archive member {name} holds pickled Python objects; {REFUSE}", path)
    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as e:
        raise InputError(f"cannot load torch.export program: {_short(e)}", path) from None
    return module


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


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:240]
