"""INT8 post-training static quantisation with ONNX Runtime (QDQ format, per-channel weights).

Activations are calibrated on low-resolution crops (what the model actually sees at inference). The result is
written to a temporary path; :mod:`paragonsr.deploy.verify` decides whether it may replace the real file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paragonsr.deploy.onnx_export import INPUT_NAME, read_metadata, save_onnx_atomic, set_metadata

if TYPE_CHECKING:
    from torch import nn


def keep_float_scopes(model: nn.Module) -> tuple[str, ...]:
    """ONNX node-name scopes that INT8 quantisation leaves in float for ``model``.

    Read from the optional arch attribute ``int8_keep_float`` (dotted submodule names, see
    :mod:`paragonsr.archs`); each submodule present on this instance becomes the scope ``/a/b/`` that the
    TorchScript exporter gives its nodes. Names the instance does not have (or that are ``None``, e.g. a
    ParagonSR2 built without the image residual) are skipped; archs without the attribute keep nothing in float.
    """
    scopes = []
    for name in getattr(model, "int8_keep_float", ()):
        try:
            model.get_submodule(name)
        except AttributeError:
            continue
        scopes.append("/" + name.replace(".", "/") + "/")
    return tuple(scopes)


def float_closure(nodes: Sequence[Any], keep_float: Sequence[str]) -> list[str]:
    """Names of the nodes INT8 leaves in float: those inside a ``keep_float`` scope and everything downstream of
    them (the image-residual add and the output: an image-range tensor quantised to uint8 costs ~1/255 rms, most of
    the 0.3 dB budget of a ~42 dB model; measured on the packaged default x2, 5 held-out photos, 384 px crops:
    minmax 0.66 dB -> 0.40 dB, percentile 0.32 dB). Graph order is topological (ONNX requires it)."""
    floating: set[str] = set()
    out: list[str] = []
    for n in nodes:
        if (keep_float and any(k in n.name for k in keep_float)) or any(i in floating for i in n.input):
            out.append(n.name)
            floating.update(n.output)
    return out


def _calibration_reader_base() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


def make_calibration_reader(inputs: Sequence[np.ndarray], input_name: str = INPUT_NAME) -> Any:
    """A ``CalibrationDataReader`` feeding each NCHW float32 array (batch of LR crops) once."""
    base = _calibration_reader_base()

    class _Reader(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self._arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in inputs]
            self._it: Iterator[np.ndarray] = iter(self._arrays)

        def get_next(self) -> dict[str, np.ndarray] | None:
            arr = next(self._it, None)
            return None if arr is None else {input_name: arr}

        def rewind(self) -> None:
            self._it = iter(self._arrays)

        def __len__(self) -> int:
            return len(self._arrays)

    return _Reader()


def quantize_int8(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calib_inputs: Sequence[np.ndarray],
    *,
    per_channel: bool = True,
    method: str = "minmax",
    exclude_first_last: bool = False,
    keep_float: Sequence[str] = (),
) -> Path:
    """Quantise ``fp32_path`` to QDQ INT8 at ``out_path`` using ``calib_inputs`` (NCHW float32 LR batches).

    ``method``: "minmax" (default; SR outputs need the full range, so clipping outliers hurts more than the
    coarser step), "percentile" or "entropy". ``exclude_first_last`` keeps the first and last Conv in float,
    the usual remedy when the image-domain layers dominate the error. Nodes whose name contains any of
    ``keep_float`` stay in float, and so does everything downstream of them (:func:`float_closure`): pass
    ``keep_float_scopes(model)`` for the exported model, the submodules its architecture declares fixed-function
    (ParagonSR2's image-space MKS upsampler); default none.
    """
    import onnx

    from paragonsr.infer.onnx_backend import _ort

    _ort()  # telemetry off before onnxruntime.quantization creates its calibration sessions
    import onnxruntime.quantization as oq
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calib_inputs:
        raise ValueError("INT8 quantisation needs calibration images (--calib DIR): none were given")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"unknown calibration method '{method}'; choose from {', '.join(methods)}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = read_metadata(onnx.load(str(fp32_path)))
    pre = out_path.with_name(f".{out_path.stem}.pre.onnx")
    raw = out_path.with_name(f".{out_path.stem}.raw.onnx")
    try:
        # Shape inference + ORT graph optimisation first, as ORT recommends for static quantisation. ORT's
        # symbolic shape inference gives up on onnxslim's dim expressions (floor(2.0*height)); ONNX's own
        # inference is enough for conv nets.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        nodes = onnx.load(str(pre)).graph.node
        nodes_to_exclude = float_closure(nodes, keep_float)
        if exclude_first_last:
            convs = [n.name for n in nodes if n.op_type == "Conv"]
            nodes_to_exclude += convs[:1] + convs[-1:]
        oq.quantize_static(
            str(pre),
            str(raw),
            make_calibration_reader(calib_inputs),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            nodes_to_exclude=nodes_to_exclude or None,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        proto = onnx.load(str(raw))
        set_metadata(
            proto, {**meta, "precision": "int8", "int8_calibration": f"{method}, {len(calib_inputs)} batches"}
        )
        save_onnx_atomic(proto, out_path)
    finally:
        for p in (pre, raw, pre.with_suffix(".onnx.data")):
            p.unlink(missing_ok=True)
    return out_path
