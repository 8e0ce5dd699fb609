"""On-device figures that follow from a model's graph alone (no phone needed): parameters, MACs per output pixel,
weight bytes per storage type, peak activation memory of a tiled 1920x1080 output, and whether an INT8 (QDQ)
ONNX graph uses only operators that ONNX Runtime's QNN execution provider (Qualcomm HTP/NPU) accepts.

Peak activation memory: the fixed-shape tile graph (ONNX, shapes inferred for one tile) is walked in its
topological order with each tensor freed after its last reader, the plan a runtime with a static memory planner
(ORT, QNN, ncnn in light mode) can reach; the peak is the largest sum of live tensors, at ``act_bytes`` per
element (4 fp32, 2 fp16, 1 int8). Weights, the whole input frame and the whole output frame are counted apart.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# ONNX operators ONNX Runtime's QNN execution provider lists as supported ("Supported ONNX operators" of its
# documentation, onnxruntime-qnn repository, docs/execution_providers/QNN-ExecutionProvider.md, 2026), the ai.onnx
# ones this project's exports can contain. The list names operators; data types and attributes per HTP op are in
# Qualcomm's QNN HTP op definitions and are not checked here.
QNN_EP_ONNX_OPS = frozenset(
    [
        "Abs",
        "Add",
        "And",
        "ArgMax",
        "ArgMin",
        "Asin",
        "Atan",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "Ceil",
        "Clip",
        "Concat",
        "Conv",
        "ConvTranspose",
        "Cos",
        "CumSum",
        "DepthToSpace",
        "DequantizeLinear",
        "Div",
        "Einsum",
        "Elu",
        "Equal",
        "Exp",
        "Expand",
        "Flatten",
        "Floor",
        "Gather",
        "GatherElements",
        "GatherND",
        "Gelu",
        "Gemm",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Greater",
        "GreaterOrEqual",
        "GridSample",
        "GroupNormalization",
        "HardSigmoid",
        "HardSwish",
        "Identity",
        "InstanceNormalization",
        "LRN",
        "LSTM",
        "LayerNormalization",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "LogSoftmax",
        "LpNormalization",
        "MatMul",
        "Max",
        "MaxPool",
        "Mean",
        "Min",
        "Mod",
        "Mul",
        "Neg",
        "NonZero",
        "Not",
        "Or",
        "PRelu",
        "Pad",
        "Pow",
        "QuantizeLinear",
        "Reciprocal",
        "ReduceL2",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "Relu",
        "Reshape",
        "Resize",
        "Round",
        "Sigmoid",
        "Sign",
        "Sin",
        "Slice",
        "Softmax",
        "Softplus",
        "SpaceToDepth",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Tan",
        "Tanh",
        "ThresholdedRelu",
        "Tile",
        "TopK",
        "Transpose",
        "Unsqueeze",
        "Upsample",
        "Where",
    ]
)
ACT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass
class DeviceFigures:
    arch: str
    scale: int
    params: int
    macs_per_output_px: float
    weight_bytes: dict[str, int]
    tile_lr: int  # 0: the whole frame as one fixed-shape input
    tile_input_hw: tuple[int, int]  # the graph's LR input, context included
    tiles_for_frame: int
    frame_out: tuple[int, int]
    macs_per_frame: float  # tiles (overlap included) x MACs per tile
    peak_activation_bytes: dict[str, int]  # one tile's graph, per activation storage
    frame_io_bytes: dict[str, int]  # whole LR input + whole output frame, per storage

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the weights per storage: fp32 / fp16 (every parameter) and int8 (conv/linear weights 1 byte each
    plus an fp32 scale per output channel and an int32 bias; other parameters, e.g. PReLU slopes, stay fp32)."""
    n = sum(p.numel() for p in model.parameters())
    int8 = 0
    for m in model.modules():
        w = getattr(m, "weight", None)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and isinstance(w, torch.Tensor):
            out_ch = w.shape[1] * m.groups if isinstance(m, nn.ConvTranspose2d) else w.shape[0]
            int8 += w.numel() + 4 * out_ch + (4 * out_ch if m.bias is not None else 0)
        else:
            int8 += 4 * sum(p.numel() for p in m.parameters(recurse=False))
    return {"fp32": 4 * n, "fp16": 2 * n, "int8": int8}


def tile_count(frame_lr: tuple[int, int], tile: int, overlap: int) -> int:
    """Tiles of ``tile`` LR pixels (each read with ``overlap`` extra pixels per side) covering the LR frame."""
    return math.ceil(frame_lr[0] / tile) * math.ceil(frame_lr[1] / tile)


def peak_activation_elements(model: nn.Module, hw: tuple[int, int]) -> int:
    """Largest number of activation elements alive at once when the graph runs on one 1xCxHxW input with every
    tensor freed after its last reader (ONNX export with fixed shapes; initializers excluded)."""
    import onnx

    from paragonsr.deploy.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="paragonsr-ondevice-") as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(model, path, example_hw=hw)
        proto = onnx.load(str(path))
    inp = proto.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    for d, v in zip(dims, (1, int(getattr(model, "in_ch", 3)), *hw)):
        d.ClearField("dim_param")
        d.dim_value = v
    del proto.graph.value_info[:]
    for o in proto.graph.output:
        o.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    sizes: dict[str, int] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if shape and all(s > 0 for s in shape):
            sizes[vi.name] = math.prod(shape)
    inits = {i.name for i in inferred.graph.initializer}
    nodes = list(inferred.graph.node)
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            last_use[name] = i
    outputs = {o.name for o in inferred.graph.output}
    live = {inp.name: sizes.get(inp.name, 0)}
    peak = sum(live.values())
    for i, node in enumerate(nodes):
        for name in node.output:
            if name not in sizes and node.op_type not in ("Constant", "Shape"):
                raise ValueError(f"no inferred shape for tensor {name!r} ({node.op_type}) at {hw}")
            live[name] = sizes.get(name, 0)
        peak = max(peak, sum(live.values()))
        for name in list(live):
            if name not in outputs and name not in inits and last_use.get(name, -1) <= i:
                del live[name]
    return peak


def device_figures(
    model: nn.Module,
    frame_out: tuple[int, int] = (1080, 1920),
    tile: int = 128,
    overlap: int = 8,
) -> DeviceFigures:
    """Figures of ``model`` (fused eval model; weights do not matter except through their count) for a
    ``frame_out`` (H, W) output produced in ``tile``-pixel LR tiles read with ``overlap`` pixels of context
    (``tile=0``: the whole LR frame as one input, no overlap)."""
    from paragonsr.deploy.fuse import macs_per_output_mp

    model = model.eval()
    scale, in_ch = int(getattr(model, "scale", 1)), int(getattr(model, "in_ch", 3))
    out_ch = int(getattr(model, "out_ch", in_ch))
    frame_lr = (frame_out[0] // scale, frame_out[1] // scale)
    if tile <= 0:
        hw, tiles = frame_lr, 1
    else:
        side = min(tile, *frame_lr) + 2 * overlap
        hw, tiles = (side, side), tile_count(frame_lr, tile, overlap)
    macs_px = macs_per_output_mp(model) / 1e6
    peak = peak_activation_elements(model, hw)
    io = frame_lr[0] * frame_lr[1] * in_ch + frame_out[0] * frame_out[1] * out_ch
    return DeviceFigures(
        arch=str(getattr(model, "arch_name", type(model).__name__)),
        scale=scale,
        params=sum(p.numel() for p in model.parameters()),
        macs_per_output_px=macs_px,
        weight_bytes=weight_bytes(model),
        tile_lr=max(0, tile),
        tile_input_hw=hw,
        tiles_for_frame=tiles,
        frame_out=frame_out,
        macs_per_frame=macs_px * tiles * hw[0] * hw[1] * scale**2,
        peak_activation_bytes={k: peak * b for k, b in ACT_BYTES.items()},
        frame_io_bytes={k: io * b for k, b in ACT_BYTES.items()},
    )


def qnn_op_check(onnx_path: str | Path) -> dict[str, Any]:
    """Operator types of an ONNX graph and those not in :data:`QNN_EP_ONNX_OPS` (``ok`` when none)."""
    import onnx

    ops = sorted({n.op_type for n in onnx.load(str(onnx_path)).graph.node})
    missing = [o for o in ops if o not in QNN_EP_ONNX_OPS]
    return {"ops": ops, "not_in_qnn_list": missing, "ok": not missing}


def card_lines(section: dict[str, Any] | None) -> list[str]:
    """The model card's on-device section (Markdown lines) from ``bench/on_device.py --card``: measured CPU
    figures beside the derived (ESTIMATED) NPU needs, per plan (tiles, whole frame). Empty without figures."""
    if not section:
        return []
    figs, m, derived = section["figures"], section["measured"], section["derived"]
    f = next(iter(figs.values()))
    mb = 1e6
    wb, q = f["weight_bytes"], m["qnn"]
    ncnn = "—" if m.get("ncnn_fp32_ms") is None else f"{m['ncnn_fp32_ms']:.1f} ms"
    qnn = "all ops in the QNN EP list" if q["ok"] else "NOT in the list: " + ", ".join(q["not_in_qnn_list"])
    lines = [
        "",
        "## On-device figures (seed 002 target: QCS8550, <= 33 ms and < 50 MB per 1920x1080 frame)",
        "",
        f"Parameters {f['params']:,}; MACs per output pixel {f['macs_per_output_px']:,.0f}; weights fp32 / fp16 / "
        f"int8 {wb['fp32'] / mb:.3f} / {wb['fp16'] / mb:.3f} / {wb['int8'] / mb:.3f} MB. INT8 QDQ graph: {qnn} "
        f"({', '.join(q['ops'])}). Measured here on one {m['tile_input']} tile ({m['threads']} CPU threads; flags "
        f"{section['cpu_flags']}; load average {section['load_average']:.1f}): ORT FP32 {m['ort_fp32_ms']:.1f} ms, "
        f"ORT INT8 {m['ort_int8_ms']:.1f} ms, ncnn fp32 {ncnn}.",
        "",
        "| plan | inputs | peak activations fp16 / int8 | memory fp16 / int8 (ESTIMATE) | NPU TOPS for 33 ms (ESTIMATE) "
        "| CPU here, ORT FP32 / INT8 per frame |",
        "|---|---|---|---|---|---|",
    ]
    for plan, fig in figs.items():
        d, pa = derived[plan], fig["peak_activation_bytes"]
        hw = "x".join(str(v) for v in fig["tile_input_hw"])
        lines.append(
            f"| {plan} | {fig['tiles_for_frame']} x {hw} | {pa['fp16'] / mb:.1f} / {pa['int8'] / mb:.1f} MB | "
            f"{d['memory_fp16_mb']:.1f} / {d['memory_int8_mb']:.1f} MB | {d['npu_tops_needed_for_33ms']:.1f} | "
            f"{d['cpu_frame_s_ort_fp32']:.1f} / {d['cpu_frame_s_ort_int8']:.1f} s |"
        )
    lines += [
        "",
        "Memory = weights + one input's peak live activations + the whole LR and output frames; TOPS = 2 x MACs "
        "per frame / 33 ms. Estimates from the graph, not measured on the device.",
    ]
    return lines


__all__ = [
    "ACT_BYTES",
    "QNN_EP_ONNX_OPS",
    "DeviceFigures",
    "card_lines",
    "device_figures",
    "peak_activation_elements",
    "qnn_op_check",
    "tile_count",
    "weight_bytes",
]
