"""Export a (fused) generator to ONNX with dynamic batch/height/width, optimise it, convert to FP16.

The classic TorchScript-based exporter is used (``dynamo=False``): the dynamo exporter needs onnxscript, and the
classic one produces a clean graph for plain conv nets. Every writer goes through a temporary file in the target
folder and ``os.replace`` so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paragonsr.utils.atomic import atomic_output

# Keys written into the ONNX ``metadata_props`` so a runtime can learn the model's contract without probing.
META_PREFIX = "paragonsr."
INPUT_NAME = "input"
OUTPUT_NAME = "output"
MIN_OPSET = 17


def _require_onnx() -> Any:
    try:
        import onnx
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
        raise ModuleNotFoundError(
            "ONNX export needs the optional dependencies: pip install 'paragonsr[onnx]'"
        ) from exc
    return onnx


def save_onnx_atomic(model_proto: Any, path: str | os.PathLike[str]) -> Path:
    """Serialise an ``onnx.ModelProto`` to ``path`` via a temporary file and ``os.replace``."""
    onnx = _require_onnx()
    with atomic_output(path, suffix=".onnx.tmp") as tmp:
        onnx.save(model_proto, str(tmp))
    return Path(path)


def set_metadata(model_proto: Any, metadata: Mapping[str, Any]) -> None:
    """Write ``paragonsr.<key>`` entries into ``metadata_props`` (replacing existing keys of the same name)."""
    wanted = {f"{META_PREFIX}{k}": str(v) for k, v in metadata.items()}
    keep = [p for p in model_proto.metadata_props if p.key not in wanted]
    del model_proto.metadata_props[:]
    for p in keep:
        model_proto.metadata_props.add(key=p.key, value=p.value)
    for k, v in wanted.items():
        model_proto.metadata_props.add(key=k, value=v)


def read_metadata(model_proto: Any) -> dict[str, str]:
    """The ``paragonsr.*`` metadata of an ONNX model, prefix stripped."""
    return {
        p.key[len(META_PREFIX) :]: p.value
        for p in model_proto.metadata_props
        if p.key.startswith(META_PREFIX)
    }


def model_metadata(model: nn.Module, precision: str) -> dict[str, Any]:
    """The contract a runtime needs: scale, channels, arch, precision (and a size multiple the model declares)."""
    import json

    meta: dict[str, Any] = {
        "scale": int(getattr(model, "scale", 1)),
        "in_ch": int(getattr(model, "in_ch", 3)),
        "out_ch": int(getattr(model, "out_ch", 3)),
        "precision": precision,
    }
    if getattr(model, "arch_name", None):
        meta["arch"] = model.arch_name
        meta["arch_kwargs"] = json.dumps(getattr(model, "arch_kwargs", {}), sort_keys=True)
    needs = getattr(model, "size_needs", None)  # a model whose inputs must be a multiple of some size
    if needs is not None and getattr(needs, "multiple", 1) > 1:
        meta["size_multiple"] = int(needs.multiple)
    return meta


def slim(model_proto: Any) -> Any:
    """Optimise with onnxslim (constant folding, dead-node removal, fusions); dynamic axes are preserved."""
    import onnxslim

    return onnxslim.slim(model_proto)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    opset: int = MIN_OPSET,
    optimize: bool = True,
    example_hw: tuple[int, int] = (37, 29),
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``model`` (eval, CPU, fp32) to an FP32 ONNX file with dynamic batch/height/width.

    ``example_hw`` is deliberately odd and non-square: tracing with a square multiple-of-8 size is how static
    64x64 graphs and size-dependent constants sneak in.
    """
    onnx = _require_onnx()
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: use {MIN_OPSET} or newer")
    path = Path(path)
    p = next(iter(model.parameters()), None)
    if p is not None and (p.device.type != "cpu" or p.dtype != torch.float32):
        model = copy.deepcopy(model).to(
            "cpu", torch.float32
        )  # export on CPU fp32; leave the caller's model be
    model = model.eval()
    in_ch = int(getattr(model, "in_ch", 3))
    dummy = torch.rand(1, in_ch, *example_hw)
    with atomic_output(path, suffix=".onnx.tmp") as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # The Magic Kernel upsampler's strided phase slices cannot be constant-folded; harmless noise.
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            # The classic exporter is chosen on purpose (see module docstring); its deprecation notice is noise.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
                },
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        if optimize:
            proto = slim(proto)
        set_metadata(proto, {**model_metadata(model, "fp32"), **dict(metadata or {})})
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))  # the scratch file becomes the output on success
    return path


def convert_fp16(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, keep_io_types: bool = True
) -> Path:
    """FP16 copy of an FP32 ONNX file. ``keep_io_types`` keeps float32 input/output (casts inside the graph)
    so callers need no change; without it the graph takes and returns float16."""
    onnx = _require_onnx()
    from onnxconverter_common import float16

    proto = onnx.load(str(src))
    meta = read_metadata(proto)
    # Drop the inferred value_info (onnxslim writes it): the converter retypes tensors but leaves stale float32
    # entries beside its casts around blocked ops (Resize), which ORT then rejects as a type mismatch.
    del proto.graph.value_info[:]
    with warnings.catch_warnings():
        # "float32 number 1e-09 will be truncated to 1e-07" per tiny weight: expected, checked by the FP16 gate.
        warnings.filterwarnings("ignore", message=".*will be truncated.*", category=UserWarning)
        half = float16.convert_float_to_float16(proto, keep_io_types=keep_io_types)
    meta["precision"] = "fp16"
    meta["io_dtype"] = "float32" if keep_io_types else "float16"
    set_metadata(half, meta)
    onnx.checker.check_model(half)
    return save_onnx_atomic(half, dst)
