"""On-device figures: weight bytes, peak activation liveness, tile counts and the QNN operator check, on graphs
whose answers are known by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import conv_stack
from paragonsr.archs import build_arch
from paragonsr.deploy.on_device import (
    QNN_EP_ONNX_OPS,
    device_figures,
    peak_activation_elements,
    qnn_op_check,
    tile_count,
    weight_bytes,
)

pytest.importorskip("onnx", reason="the ONNX graph analysis needs onnx")


def test_weight_bytes_by_storage():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.Conv2d(4, 2, 1, bias=False))
    n = 3 * 4 * 9 + 4 + 4 + 4 * 2  # conv1 weights + bias, PReLU slopes, conv2 weights
    got = weight_bytes(net)
    assert got["fp32"] == 4 * n and got["fp16"] == 2 * n
    # int8: 1 B per conv weight, fp32 scale + int32 bias per output channel, PReLU slopes kept fp32
    assert got["int8"] == (108 + 4 * 4 + 4 * 4) + 4 * 4 + (8 + 4 * 2)


def test_peak_activation_liveness_of_a_conv_stack():
    # input 3, conv 8, relu 8, conv 8, relu 8, conv 12, pixel shuffle 3x(2h)x(2w): on 10x10 the largest live set
    # is the last conv's output (1200) together with the shuffled output (1200).
    assert peak_activation_elements(conv_stack(scale=2), (10, 10)) == 2400


def test_tile_count_and_compact_figures():
    assert tile_count((540, 960), 128, 32) == 5 * 8
    torch.manual_seed(0)
    fig = device_figures(
        build_arch("compact", num_feat=8, num_conv=2, upscale=2), frame_out=(64, 96), tile=16
    )
    # 3x3 convs 3->8, 8->8, 8->8, 8->12 per LR pixel, four output pixels each
    assert fig.macs_per_output_px == pytest.approx((3 * 8 + 8 * 8 * 2 + 8 * 12) * 9 / 4)
    assert fig.params == (3 * 8 * 9 + 8) + 2 * (8 * 8 * 9 + 8) + (8 * 12 * 9 + 12) + 3 * 8
    assert fig.tiles_for_frame == 2 * 3
    assert fig.peak_activation_bytes["fp32"] == 4 * fig.peak_activation_bytes["int8"]


def test_qnn_op_check_names_what_is_missing(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Erf", ["r"], ["y"])]
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
    got = qnn_op_check(path)
    assert got == {"ops": ["Erf", "Relu"], "not_in_qnn_list": ["Erf"], "ok": False}
    assert {
        "Conv",
        "ConvTranspose",
        "DepthToSpace",
        "PRelu",
        "QuantizeLinear",
        "DequantizeLinear",
    } <= QNN_EP_ONNX_OPS
