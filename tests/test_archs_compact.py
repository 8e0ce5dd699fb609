"""SRVGGNetCompact: Real-ESRGAN key layout, shapes, inference of hyperparameters from a state dict."""

from __future__ import annotations

import pytest
import torch

from conftest import attr_dict
from paragonsr.archs import ARCH_REGISTRY, build_arch
from paragonsr.archs.compact import SRVGGNetCompact, compact_kwargs_from_state_dict
from paragonsr.cli import main


def test_key_layout_matches_realesrgan() -> None:
    m = SRVGGNetCompact(num_feat=32, num_conv=32, upscale=2, act_type="prelu")
    keys = list(m.state_dict())
    # body.0 conv_first, body.1 PReLU, ..., body.65 PReLU, body.66 last conv (Real-ESRGAN realesr-animevideov3 style)
    assert keys[:3] == ["body.0.weight", "body.0.bias", "body.1.weight"]
    assert keys[-2:] == ["body.66.weight", "body.66.bias"]
    assert m.state_dict()["body.66.weight"].shape == (3 * 4, 32, 3, 3)
    # the compressed x2 Compact (32 feat / 32 conv) has about 0.30M parameters
    n = sum(p.numel() for p in m.parameters())
    assert 0.28e6 < n < 0.32e6


@pytest.mark.parametrize("act", ["prelu", "relu", "leakyrelu"])
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_shapes_and_act_types(act: str, scale: int) -> None:
    m = build_arch("compact", num_feat=8, num_conv=2, upscale=scale, act_type=act)
    y = m(torch.rand(2, 3, 7, 9))
    assert y.shape == (2, 3, 7 * scale, 9 * scale)
    assert m.scale == scale and m.in_ch == 3 and m.out_ch == 3
    assert m.arch_name == "srvggnetcompact" and attr_dict(m, "arch_kwargs")["upscale"] == scale


def test_gray_to_rgb_and_infer_kwargs_roundtrip() -> None:
    m = SRVGGNetCompact(num_in_ch=1, num_out_ch=3, num_feat=8, num_conv=3, upscale=3, act_type="prelu")
    assert m(torch.rand(1, 1, 5, 5)).shape == (1, 3, 15, 15)
    kw = compact_kwargs_from_state_dict(m.state_dict())
    assert kw == {
        "num_in_ch": 1,
        "num_out_ch": 3,
        "num_feat": 8,
        "num_conv": 3,
        "upscale": 3,
        "act_type": "prelu",
    }
    m2 = SRVGGNetCompact(**kw)
    m2.load_state_dict(m.state_dict(), strict=True)
    x = torch.rand(1, 1, 6, 4)
    torch.testing.assert_close(m2(x), m(x))


def test_zero_body_is_nearest_upscale() -> None:
    m = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2)
    for p in m.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 4, 5)
    torch.testing.assert_close(m(x), x.repeat_interleave(2, -1).repeat_interleave(2, -2))


def test_registry_errors_and_aliases() -> None:
    assert ARCH_REGISTRY.canonical("SRVGGNetCompact") == "srvggnetcompact"
    with pytest.raises(KeyError, match="Did you mean 'srvggnetcompact'"):
        ARCH_REGISTRY.get("srvggnetcompakt")
    with pytest.raises(ValueError, match="act_type"):
        SRVGGNetCompact(act_type="gelu")


def test_cli_archs_lists_compact(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["archs", "--no-count"]) == 0
    assert "srvggnetcompact" in capsys.readouterr().out
