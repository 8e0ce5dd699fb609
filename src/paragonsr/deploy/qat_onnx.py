"""QDQ INT8 ONNX from a QAT model, with the scales it learned (no recalibration).

The quantisers are switched to ``export`` mode, so the classic ONNX exporter writes each one as
QuantizeLinear + DequantizeLinear with the learned scale / zero point. The graph is then put into the form ONNX
Runtime fuses into integer kernels (QLinearConv etc.), as its own quantiser writes it:

- each weight QuantizeLinear of a constant becomes an int8 initializer (codes ``clip(round(w / s), -127, 127)``,
  per output channel, zero point 0) feeding its DequantizeLinear;
- each Conv bias whose input and weight are dequantised becomes int32 codes at scale ``s_in * s_w`` with a
  DequantizeLinear (the usual QDQ bias form; rounding error <= s_in * s_w / 2, far below one activation step).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from paragonsr.deploy.onnx_export import MIN_OPSET, export_onnx, save_onnx_atomic, set_metadata
from paragonsr.deploy.qat import W_QMAX, W_QMIN, QConv2d, is_qat, set_mode


def _consts(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out


def _axis(node: Any) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "axis"), 1)


def weight_codes(w: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """int8 codes of a float weight at a per-channel (or scalar) scale: clip(round-half-even(w / s), -127, 127)."""
    shape = [1] * w.ndim
    if scale.ndim:
        shape[axis] = -1
    q = np.round(w.astype(np.float32) / scale.astype(np.float32).reshape(shape))
    return np.clip(q, W_QMIN, W_QMAX).astype(np.int8)


def _weight_key(w: np.ndarray) -> tuple[tuple[int, ...], bytes]:
    return tuple(w.shape), np.ascontiguousarray(w, dtype=np.float32).tobytes()


def weight_table(model: nn.Module) -> dict[tuple[tuple[int, ...], bytes], tuple[np.ndarray, np.ndarray]]:
    """(shape, bytes of the dequantised fp32 weight) -> (int8 codes, per-channel scale) for every QConv2d of a
    model in export mode (the exporter folds each weight's fake-quant into that constant; it is found by value)."""
    import torch

    table = {}
    for c in model.modules():
        if isinstance(c, QConv2d):
            ws, scale = c.wq.frozen
            deq = torch.fake_quantize_per_channel_affine(
                ws, scale, torch.zeros(scale.shape, dtype=torch.int32), 0, -128, 127
            )
            codes = weight_codes(ws.numpy(), scale.numpy(), 0)
            table[_weight_key(deq.numpy())] = (codes, scale.numpy().astype(np.float32))
    return table


def finish_qdq(proto: Any, table: dict[tuple[tuple[int, ...], bytes], tuple[np.ndarray, np.ndarray]]) -> Any:
    """Weights of quantised convs -> int8 initializers + DequantizeLinear (found in ``table`` by value), Conv
    biases -> int32 + DequantizeLinear (in place). Raises ValueError when a conv fed by a DequantizeLinear has a
    weight that is not in ``table`` (it would silently stay float)."""
    from onnx import helper, numpy_helper

    g = proto.graph
    consts = _consts(g)
    producer = {o: n for n in g.node for o in n.output}
    for n in list(g.node):
        if n.op_type != "Conv" or n.input[1] not in consts:
            continue
        dq_x = producer.get(n.input[0])
        if dq_x is None or dq_x.op_type != "DequantizeLinear":
            continue
        hit = table.get(_weight_key(consts[n.input[1]]))
        if hit is None:
            raise ValueError(f"{n.name}: its weight is not one of the QAT model's quantised weights")
        codes, scale = hit
        base = f"{n.name}/weight"
        g.initializer.extend(
            [
                numpy_helper.from_array(codes, f"{base}_quantized"),
                numpy_helper.from_array(scale, f"{base}_scale"),
                numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{base}_zero_point"),
            ]
        )
        g.node.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
                [f"{base}_dequantized"],
                name=f"{base}_DequantizeLinear",
                axis=0,
            )
        )
        n.input[1] = f"{base}_dequantized"
    consts = _consts(g)
    producer = {o: n for n in g.node for o in n.output}
    for n in list(g.node):
        if n.op_type != "Conv" or len(n.input) < 3 or n.input[2] not in consts:
            continue
        dq_x, dq_w = producer.get(n.input[0]), producer.get(n.input[1])
        if not (dq_x and dq_w and dq_x.op_type == dq_w.op_type == "DequantizeLinear"):
            continue
        if dq_x.input[1] not in consts or dq_w.input[1] not in consts:
            continue
        s = (consts[dq_x.input[1]].astype(np.float64) * consts[dq_w.input[1]].astype(np.float64)).reshape(-1)
        s = np.broadcast_to(s, consts[n.input[2]].shape).astype(np.float32)
        codes = np.round(consts[n.input[2]].astype(np.float64) / s).astype(np.int32)
        base = n.input[2]
        g.initializer.extend(
            [
                numpy_helper.from_array(codes, f"{base}_quantized"),
                numpy_helper.from_array(s, f"{base}_quantized_scale"),
                numpy_helper.from_array(np.zeros_like(codes), f"{base}_quantized_zero_point"),
            ]
        )
        g.node.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{base}_quantized", f"{base}_quantized_scale", f"{base}_quantized_zero_point"],
                [f"{base}_dequantized"],
                name=f"{n.name}/bias_DequantizeLinear",
                axis=0,
            )
        )
        n.input[2] = f"{base}_dequantized"
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]:
        g.node.remove(n)
    for init in list(g.initializer):
        if init.name not in used:
            g.initializer.remove(init)
    _toposort(g)
    return proto


def _toposort(g: Any) -> None:
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    nodes, out = list(g.node), []
    while nodes:
        rest = []
        for n in nodes:
            if all(i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(nodes):
            raise ValueError("QDQ graph has a cycle or a dangling input")
        nodes = rest
    del g.node[:]
    g.node.extend(out)


def export_qat_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    opset: int = MIN_OPSET,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a QAT model, see :func:`paragonsr.deploy.qat.prepare_qat`) as a QDQ INT8 ONNX at ``path``
    (atomic), dynamic batch/height/width, with the learned scales. Raises ValueError for a model without QAT."""
    import onnx

    if not is_qat(model):
        raise ValueError("export_qat_onnx needs a QAT model (prepare_qat / a QAT checkpoint)")
    m = set_mode(copy.deepcopy(model).cpu().float().eval(), "export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as tmp:
        raw = Path(tmp) / "qdq.onnx"
        export_onnx(m, raw, opset=opset, optimize=False, metadata=metadata)
        proto = finish_qdq(onnx.load(str(raw)), weight_table(m))
    set_metadata(proto, {"precision": "int8", "int8_calibration": "qat (learned scales)"})
    onnx.checker.check_model(proto)
    return save_onnx_atomic(proto, path)


def read_qdq_scales(path: str | os.PathLike[str]) -> dict[str, list[np.ndarray]]:
    """Scales of a QDQ file by kind: ``weight`` (per-channel scale arrays of int8 initializers' DequantizeLinear)
    and ``activation`` (the scalar scales of every QuantizeLinear), in graph order."""
    import onnx

    g = onnx.load(str(path)).graph
    consts = _consts(g)
    out: dict[str, list[np.ndarray]] = {"weight": [], "activation": []}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in consts and consts[n.input[0]].dtype == np.int8:
            out["weight"].append(consts[n.input[1]])
        elif n.op_type == "QuantizeLinear":
            out["activation"].append(consts[n.input[1]])
    return out
