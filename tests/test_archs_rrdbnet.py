"""RRDBNet (ESRGAN / Real-ESRGAN): scales and pixel-unshuffle, public layouts, legacy ESRGAN checkpoints,
hyperparameters from weights, ONNX parity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from arch_helpers import TINY_RRDB, onnx_parity
from paragonsr.archs import build_arch
from paragonsr.archs.rrdbnet import RRDBNet, convert_esrgan_legacy_state_dict, rrdbnet_kwargs_from_state_dict


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_rrdbnet_scales_and_unshuffle(scale: int):
    model = RRDBNet(scale=scale, **TINY_RRDB).eval()
    assert model.conv_first.in_channels == 3 * {1: 16, 2: 4}.get(scale, 1)
    for h, w in ((8, 12), (7, 5)):  # 7x5 exercises the pad-then-crop path for x1/x2
        with torch.no_grad():
            y = model(torch.rand(1, 3, h, w))
        assert y.shape == (1, 3, h * scale, w * scale)


def test_rrdbnet_default_is_realesrgan_x4plus_layout():
    model = build_arch("rrdbnet")
    sd = model.state_dict()
    # 1792 (conv_first) + 23 * 3 * 239808 (RDBs) + 4 * 36928 (body/up1/up2/hr) + 1731 (conv_last)
    assert sum(v.numel() for v in sd.values()) == 16_697_987
    pattern = re.compile(
        r"^(conv_first|conv_body|conv_up1|conv_up2|conv_hr|conv_last|body\.(\d+)\.rdb[123]\.conv[1-5])\.(weight|bias)$"
    )
    assert all(pattern.match(k) for k in sd), [k for k in sd if not pattern.match(k)]
    assert len(sd) == 6 * 2 + 23 * 3 * 5 * 2
    assert sd["body.22.rdb3.conv5.weight"].shape == (64, 64 + 4 * 32, 3, 3)


# ----------------------------------------------------------------------------------------- checkpoints


def test_rrdbnet_strict_load_basicsr_params_ema_pth(tmp_path: Path):
    from paragonsr.checkpoint import CheckpointError, load_model, load_weights

    torch.manual_seed(0)
    ema, raw = RRDBNet(scale=2, **TINY_RRDB), RRDBNet(scale=2, **TINY_RRDB)
    path = tmp_path / "net_g_1000.pth"
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, path)  # BasicSR's layout
    model = load_model(path, arch="RRDBNet", scale=2, **TINY_RRDB)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ema.eval()(x))  # EMA weights win, as BasicSR recommends
        assert not torch.allclose(model(x), raw.eval()(x))
    fresh = RRDBNet(scale=2, **TINY_RRDB)
    assert load_weights(fresh, path, strict=True).loaded == len(ema.state_dict())
    with pytest.raises(CheckpointError, match=r"body\.2\.rdb1"):
        load_weights(RRDBNet(scale=2, num_feat=8, num_block=3, num_grow_ch=4), path, strict=True)


def test_rrdbnet_loads_legacy_esrgan_layout(tmp_path: Path):
    torch.manual_seed(0)
    model = RRDBNet(scale=4, **TINY_RRDB)
    legacy = {}
    tail = {"conv_up1": 3, "conv_up2": 6, "conv_hr": 8, "conv_last": 10}  # original ESRGAN Sequential indices
    for k, v in model.state_dict().items():
        name, kind = k.rsplit(".", 1)
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)", name):
            legacy[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{kind}"] = v
        elif name == "conv_first":
            legacy[f"model.0.{kind}"] = v
        elif name == "conv_body":
            legacy[f"model.1.sub.{TINY_RRDB['num_block']}.{kind}"] = v
        else:
            legacy[f"model.{tail[name]}.{kind}"] = v
    assert set(convert_esrgan_legacy_state_dict(legacy)) == set(model.state_dict())
    assert rrdbnet_kwargs_from_state_dict(legacy) == dict(num_in_ch=3, num_out_ch=3, scale=4, **TINY_RRDB)
    loaded = RRDBNet(scale=4, **TINY_RRDB)
    loaded.load_state_dict(legacy, strict=True)
    from paragonsr.checkpoint import load_weights

    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(legacy, path)
    via_project = RRDBNet(scale=4, **TINY_RRDB)
    load_weights(via_project, path, strict=True)
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x), atol=0, rtol=0)
        torch.testing.assert_close(via_project.eval()(x), model.eval()(x), atol=0, rtol=0)


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_rrdbnet_hyperparameters_inferred_from_weights(scale: int):
    kwargs = dict(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=8, num_block=3, num_grow_ch=4)
    assert rrdbnet_kwargs_from_state_dict(RRDBNet(**kwargs).state_dict()) == kwargs


def test_onnx_parity_tiny_rrdbnet(tmp_path: Path):
    torch.manual_seed(0)
    assert (
        onnx_parity(RRDBNet(scale=2, **TINY_RRDB), tmp_path / "rrdb.onnx", [(8, 8), (9, 14), (11, 7)]) <= 1e-4
    )


def _esrgan_legacy(model: RRDBNet) -> dict[str, torch.Tensor]:
    """The original ESRGAN ``model.N`` layout of an RRDBNet without unshuffle: its flat Sequential is
    [conv_first, shortcut(body, conv_body), (upsample, conv, lrelu) x n, conv_hr, lrelu, conv_last]."""
    n = len(model.up_names)
    tail = {f"conv_up{i + 1}": 3 * (i + 1) for i in range(n)} | {"conv_hr": 3 * n + 2, "conv_last": 3 * n + 4}
    out = {}
    for k, v in model.state_dict().items():
        name, kind = k.rsplit(".", 1)
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)", name):
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{kind}"] = v
        elif name == "conv_first":
            out[f"model.0.{kind}"] = v
        elif name == "conv_body":
            out[f"model.1.sub.{len(model.body)}.{kind}"] = v
        else:
            out[f"model.{tail[name]}.{kind}"] = v
    return out


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("layout", ["esrgan", "basicsr"])
def test_rrdbnet_scale_from_upconv_count_old_and_new_layouts(tmp_path: Path, scale: int, layout: str):
    from paragonsr.checkpoint import load_model

    torch.manual_seed(0)
    if layout == "esrgan":  # original ESRGAN: no unshuffle, log2(scale) upconvs (x1: none, x2: one)
        ups = {1: 0, 2: 1, 4: 2, 8: 3}[scale]
        model = RRDBNet(scale=scale, num_upconv=ups, **TINY_RRDB)
        state = _esrgan_legacy(model)
        assert model.unshuffle == 1 and len(model.up_names) == ups
        assert sum(k.startswith("model.") and k.count(".") == 2 for k in state) == 2 * (ups + 3)
    else:  # BasicSR: x1/x2 unshuffle by 4/2 and keep two upconvs
        model = RRDBNet(scale=scale, **TINY_RRDB)
        state = model.state_dict()
        assert model.unshuffle == {1: 4, 2: 2}.get(scale, 1)
    path = tmp_path / f"{layout}_x{scale}.pth"
    torch.save(state, path)
    loaded = load_model(path)  # no metadata: arch and scale from the key layout alone
    assert type(loaded) is RRDBNet and loaded.scale == scale
    assert loaded.up_names == model.up_names and loaded.unshuffle == model.unshuffle
    x = torch.rand(1, 3, 6, 10)
    with torch.no_grad():
        y = loaded(x)
        assert y.shape == (1, 3, 6 * scale, 10 * scale)
        torch.testing.assert_close(y, model.eval()(x), atol=0, rtol=0)


def test_rrdbnet_upconv_count_must_fit_scale():
    with pytest.raises(ValueError, match=r"x2 cannot have 0 upsampling convs"):
        RRDBNet(scale=2, num_upconv=0, **TINY_RRDB)
    with pytest.raises(ValueError, match=r"x8 cannot have 2 upsampling convs"):
        RRDBNet(scale=8, num_upconv=2, **TINY_RRDB)
