"""INT8 keep-float: the architecture declares its fixed-function parts, quantisation leaves exactly those float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from paragonsr.archs import build_arch
from paragonsr.deploy.onnx_export import export_onnx
from paragonsr.deploy.quantize import keep_float_scopes, quantize_int8


def _tiny_paragonsr2(**kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_arch(
        "paragonsr2", scale=2, num_feat=8, num_groups=0, num_blocks=0, hr_blocks=0, **kwargs
    ).eval()


def test_keep_float_scopes_come_from_the_architecture() -> None:
    assert keep_float_scopes(_tiny_paragonsr2()) == ("/base_upsampler/",)
    # without the image residual the submodule is None: nothing to keep
    assert keep_float_scopes(_tiny_paragonsr2(image_residual=False)) == ()
    assert keep_float_scopes(build_arch("compact", num_feat=8, num_conv=1, upscale=2)) == ()

    class Nested(torch.nn.Module):
        int8_keep_float = ("head.resample", "missing")

        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Module()
            self.head.resample = torch.nn.Conv2d(1, 1, 1)

    assert keep_float_scopes(Nested()) == ("/head/resample/",)


def test_declared_parts_keep_float_weights_and_the_rest_is_quantised(tmp_path: Path) -> None:
    model = _tiny_paragonsr2()
    fp32 = export_onnx(model, tmp_path / "m_fp32.onnx")
    calib = [np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)]
    int8 = quantize_int8(fp32, tmp_path / "m_int8.onnx", calib, keep_float=keep_float_scopes(model))
    convs = [n for n in onnx.load(str(int8)).graph.node if n.op_type in ("Conv", "ConvTranspose")]
    kept = [n.name for n in convs if not n.input[1].endswith("_DequantizeLinear_Output")]
    quantised = [n.name for n in convs if n.input[1].endswith("_DequantizeLinear_Output")]
    assert kept and all(name.startswith("/base_upsampler/") for name in kept)
    assert quantised and not any(name.startswith("/base_upsampler/") for name in quantised)
