"""A torch model's ONNX twin, exported once and kept in the cache, for ONNX Runtime under ``--backend auto``.

The file is ``<cache>/onnx/<sha256 of the model file>-torch<version>.onnx`` (``<cache>``: see
:func:`paragonsr.infer.calibrate.cache_dir`): the same weights give the same file, a new torch (exporter) gives a
fresh one. It is written atomically, so two runs exporting at once both end with a whole file. Export needs the
``onnx`` extra (``onnx``, ``onnxslim``); running it needs ``onnxruntime``.

The exporter itself lives in the release layer (``paragonsr.deploy.onnx_export.export_onnx``), which imports this
package; so that the layers stay free of import cycles it is handed in with :func:`set_exporter` by the caller that
sits above both (``paragonsr upscale`` does).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from paragonsr.infer.calibrate import cache_dir


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def onnx_available() -> str | None:
    """None when ONNX export and ONNX Runtime are both installed, else why not (one line)."""
    missing = [m for m in ("onnxruntime", "onnx", "onnxslim") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"ONNX Runtime not compared: {', '.join(missing)} not installed (pip install 'paragonsr[onnx]')"
        )
    return None


def cached_onnx_path(model_sha256: str) -> Path:
    """Where the ONNX export of the model file with this sha256 lives (whether or not it exists yet)."""
    version = torch.__version__.split("+")[0]
    return cache_dir() / "onnx" / f"{model_sha256}-torch{version}.onnx"


Exporter = Callable[..., Path]  # export_onnx(model, path, *, metadata=...) -> path, atomic
_EXPORTER: list[Exporter] = []


def set_exporter(exporter: Exporter | None) -> None:
    """Register the function that exports a torch model to an ONNX file (``None``: none)."""
    _EXPORTER[:] = [exporter] if exporter is not None else []


def can_export(model_sha256: str) -> bool:
    """True when :func:`cached_onnx` can give a file: it is cached already, or an exporter is registered."""
    return bool(_EXPORTER) or cached_onnx_path(model_sha256).is_file()


def cached_onnx(model: nn.Module, model_sha256: str) -> Path:
    """The ONNX FP32 export of ``model`` (whose file has sha256 ``model_sha256``), exporting it on first use.

    Raises:
        RuntimeError: not cached and no exporter registered (:func:`set_exporter`).
        ModuleNotFoundError: the onnx extra is not installed.
        OSError: the cache folder cannot be written.
    """
    path = cached_onnx_path(model_sha256)
    if path.is_file() and path.stat().st_size > 0:
        return path
    if not _EXPORTER:
        raise RuntimeError("no ONNX exporter registered (paragonsr.infer.onnx_cache.set_exporter)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return _EXPORTER[0](model, path, metadata={"source_sha256": model_sha256})


__all__ = [
    "Exporter",
    "cached_onnx",
    "cached_onnx_path",
    "can_export",
    "file_sha256",
    "onnx_available",
    "set_exporter",
]
