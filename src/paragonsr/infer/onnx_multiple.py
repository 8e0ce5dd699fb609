"""The size multiple a foreign ONNX graph needs, read from its structure (issue 26).

A U-Net-style model halves H and W at every level (stride-2 convolutions, pools, SpaceToDepth) and doubles them
back (ConvTranspose, Resize, DepthToSpace) before adding or concatenating the skip connections: the input must be
divisible by the product of the strides on the way down, or a skip connection no longer matches.

:func:`graph_size_multiple` walks the graph from its image input in topological order and keeps, per tensor,
how much smaller than the input it is (a fraction per axis: 2 after one stride-2 conv, 1/2 after an x2 upsample).
Every op that divides a tensor of reduction ``f`` by ``s`` needs the input divisible by the numerator of
``f * s``; the answer is the least common multiple of those needs (1 when nothing is divided). It answers None,
and the caller falls back to trial runs, when the spatial path goes through an op whose effect on H and W it
cannot read (a Reshape-based pixel-unshuffle or window attention, a Resize to computed sizes, MatMul, control
flow, custom ops).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Any

Factor = tuple[Fraction, Fraction]  # (H, W): input size / tensor size

# fmt: off
# ops that keep H and W of a spatial input (elementwise, channel-wise, normalisation, quantisation, padding/crop)
_KEEP = frozenset(
    [
        "Abs", "Add", "And", "BatchNormalization", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat", "Cos",
        "DequantizeLinear", "Div", "Dropout", "Elu", "Equal", "Erf", "Exp", "Expand", "Floor", "Gelu", "Greater",
        "GreaterOrEqual", "GroupNormalization", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization",
        "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "LpNormalization", "Max",
        "Mean", "Min", "Mish", "Mod", "Mul", "Neg", "Not", "Or", "PRelu", "Pad", "Pow", "QuantizeLinear",
        "Reciprocal", "Relu", "Round", "Selu", "Shrink", "Sigmoid", "Sign", "Sin", "Slice", "Softmax",
        "Softplus", "Softsign", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "ThresholdedRelu", "Transpose",
        "Unsqueeze", "Where", "Xor",
    ]
)
# ops whose output carries no image size (shape arithmetic, global pooling)
_FLAT = frozenset(
    [
        "Shape", "Size", "Constant", "ConstantOfShape", "Range", "GlobalAveragePool", "GlobalMaxPool",
        "GlobalLpPool", "EyeLike",
    ]
)
_STRIDED = frozenset(
    [
        "Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool",
    ]
)
_REDUCE = frozenset(
    [
        "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceSumSquare",
    ]
)
# fmt: on


class _Unknown(Exception):
    """The spatial path goes through an op whose effect on H and W cannot be read."""


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _constants(graph: Any) -> dict[str, Any]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = _attr(node, "value")
            if value is not None:
                values[node.output[0]] = numpy_helper.to_array(value)
    return values


def _step(node: Any, f: Factor, consts: dict[str, Any], needs: list[int]) -> Factor | None:
    """The reduction of ``node``'s outputs, given that of its spatial input ``f``; appends what it needs."""
    op = node.op_type
    if op in _KEEP:
        return f
    if op in _FLAT:
        return None
    if op in _REDUCE:
        axes = _attr(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            if node.input[1] not in consts:
                raise _Unknown(op)
            axes = consts[node.input[1]].tolist()
        if axes is None or any(int(a) in (2, 3, -1, -2) for a in axes):
            return None  # reduced over H or W: a per-image statistic, not an image
        return f
    if op in _STRIDED or op == "SpaceToDepth":
        strides = (
            [_attr(node, "blocksize", 1)] * 2 if op == "SpaceToDepth" else _attr(node, "strides", [1, 1])
        )
        if len(strides) != 2:
            raise _Unknown(f"{op} with {len(strides)}-D strides")
        out = (f[0] * int(strides[0]), f[1] * int(strides[1]))
        needs += [out[0].numerator, out[1].numerator]
        return out
    if op in ("ConvTranspose", "DepthToSpace"):
        strides = (
            [_attr(node, "blocksize", 1)] * 2 if op == "DepthToSpace" else _attr(node, "strides", [1, 1])
        )
        if len(strides) != 2:
            raise _Unknown(f"{op} with {len(strides)}-D strides")
        return (f[0] / int(strides[0]), f[1] / int(strides[1]))
    if op in ("Resize", "Upsample"):
        index = 1 if op == "Upsample" or len(node.input) == 2 else 2  # Resize-10: (X, scales)
        name = node.input[index] if len(node.input) > index else ""
        scales = consts.get(name)
        if scales is None or scales.size != 4:
            raise _Unknown(f"{op} to computed sizes")
        out = (f[0] / Fraction(float(scales[2])), f[1] / Fraction(float(scales[3])))
        if scales[2] < 1 or scales[3] < 1:
            needs += [out[0].numerator, out[1].numerator]
        return out
    raise _Unknown(op)


def graph_size_multiple(model: str | os.PathLike[str] | Any) -> int | None:
    """The multiple H and W of the input of ``model`` (an ONNX file or ``onnx.ModelProto``) must have, read from
    the graph; None when the graph has no single image input or its spatial path holds an op this cannot read
    (see module doc), or when the ``onnx`` package is missing. Never runs the model."""
    try:
        import onnx
    except ImportError:
        return None
    proto = (
        model if isinstance(model, onnx.ModelProto) else onnx.load(os.fspath(model), load_external_data=False)
    )
    graph = proto.graph
    consts = _constants(graph)
    inputs = [i.name for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        return None
    factors: dict[str, Factor] = {inputs[0]: (Fraction(1), Fraction(1))}
    needs: list[int] = []
    try:
        for node in graph.node:
            spatial = [factors[i] for i in node.input if i in factors]
            if not spatial:
                continue  # weights, constants and shape arithmetic
            out = _step(node, spatial[0], consts, needs)
            if out is not None:
                factors.update((o, out) for o in node.output if o)
    except _Unknown:
        return None
    return math.lcm(1, *needs)


__all__ = ["graph_size_multiple"]
