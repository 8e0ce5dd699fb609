"""ParagonSR (v1) family and RRDBNet: shapes, fusion parity, checkpoint layouts, ONNX parity, one training step."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from paragonsr.archs import ARCH_REGISTRY, build_arch
from paragonsr.archs.paragonsr_v1 import (
    VARIANTS,
    ParagonSR,
    ReparamDWConv,
    paragonsr_v1_kwargs_from_state_dict,
)
from paragonsr.archs.rrdbnet import RRDBNet, convert_esrgan_legacy_state_dict, rrdbnet_kwargs_from_state_dict

TINY_RRDB = dict(num_feat=8, num_block=2, num_grow_ch=4)


def _randomise_layerscale(model: torch.nn.Module, std: float = 0.5) -> None:
    """LayerScale starts at 1e-5, which would hide every block; give the blocks a real say for parity checks."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def _photo_batch(photo_crop: np.ndarray, size: int) -> torch.Tensor:
    return torch.from_numpy(photo_crop[:size, :size]).permute(2, 0, 1).unsqueeze(0).contiguous()


# ----------------------------------------------------------------------------------------- registry


def test_v1_variants_registered_with_aliases_and_table():
    for variant, (feat, groups, blocks, ffn) in VARIANTS.items():
        assert ARCH_REGISTRY.canonical(f"paragon_sr_{variant}") == f"paragonsr_{variant}"
        model = build_arch(f"paragonsr_{variant}", scale=2)
        assert isinstance(model, ParagonSR)
        assert model.conv_in.out_channels == feat
        assert len(model.body) == groups and all(len(g.blocks) == blocks for g in model.body)
        assert model.body[0].blocks[0].transformer.project_in_g.out_channels == int(feat * ffn)
        assert (model.scale, model.in_ch, model.out_ch) == (2, 3, 3)
        with torch.no_grad():  # every variant (xs..xl included) runs, at one scale
            assert model.eval()(torch.rand(1, 3, 6, 5)).shape == (1, 3, 12, 10)
    # alias spellings used in option files
    assert ARCH_REGISTRY.canonical("paragonsr") == "paragonsr_s"
    assert ARCH_REGISTRY.canonical("paragon_sr_s") == "paragonsr_s"
    assert ARCH_REGISTRY.canonical("RRDBNet") == "rrdbnet"
    assert ARCH_REGISTRY.canonical("esrgan") == "rrdbnet"


def test_v1_bad_arguments_are_rejected_clearly():
    with pytest.raises(TypeError, match="num_feats"):
        build_arch("paragonsr_nano", num_feats=32)  # typo must not be silently ignored
    with pytest.raises(ValueError, match="scale"):
        build_arch("paragonsr_nano", scale=0)
    with pytest.raises(ValueError, match="upsampler_alpha"):
        build_arch("paragonsr_nano", upsampler_alpha=1.5)
    with pytest.raises(ValueError, match="scale"):
        build_arch("rrdbnet", scale=3, **TINY_RRDB)


# ----------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("variant", ["nano", "anime", "tiny"])
def test_v1_small_variants_all_scales(variant: str):
    x = torch.rand(1, 3, 9, 12)
    for scale in (1, 2, 3, 4):
        model = build_arch(f"paragonsr_{variant}", scale=scale).eval()
        with torch.no_grad():
            y = model(x)
        assert y.shape == (1, 3, 9 * scale, 12 * scale)
        assert torch.isfinite(y).all()


def test_v1_other_channel_counts():
    gray = build_arch("paragonsr_nano", scale=2, in_ch=1, out_ch=1).eval()
    assert gray(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)


def test_v1_upsampler_is_magic_kernel_sharp_with_v1_alpha():
    model = build_arch("paragonsr_nano", scale=2)
    assert model.magic_upsampler.alpha == 1.0 and model.magic_upsampler.scale == 2
    assert build_arch("paragonsr_nano", scale=2, upsampler_alpha=0.5).magic_upsampler.alpha == 0.5
    # the upsampler holds no state: checkpoints carry no filter taps
    assert not any(k.startswith("magic_upsampler") for k in model.state_dict())


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


# ----------------------------------------------------------------------------------------- fusion


def test_reparam_mixer_fuses_into_one_depthwise_conv():
    torch.manual_seed(0)
    mixer = ReparamDWConv(6)
    x = torch.randn(2, 6, 7, 9)
    expect = mixer.conv3x3(x) + mixer.conv1x1(x) + x
    fused = mixer.fuse()
    assert fused.weight.shape == (6, 1, 3, 3) and fused.groups == 6
    torch.testing.assert_close(fused(x), expect, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixer(x), expect, atol=0, rtol=0)


def test_v1_fusion_parity_and_layout(photo_crop: np.ndarray):
    torch.manual_seed(0)
    model = build_arch("paragonsr_nano", scale=2)
    _randomise_layerscale(model)
    model.eval()
    x = _photo_batch(photo_crop, 32)
    with torch.no_grad():
        ref = model(x)
        fused = model.fuse_for_release()
        assert fused is model and model.fused
        out = model(x)
    assert (out - ref).abs().max().item() <= 1e-4
    assert (ref - F.interpolate(x, scale_factor=2)).abs().mean() > 0.05  # the blocks really contributed
    keys = model.state_dict()
    assert not any(".spatial_mixer.conv" in k for k in keys)
    assert keys["body.0.blocks.0.transformer.spatial_mixer.weight"].shape == (36, 1, 3, 3)
    fresh = build_arch("paragonsr_nano", scale=2).fuse_for_release().state_dict()
    assert {k: tuple(v.shape) for k, v in fresh.items()} == {k: tuple(v.shape) for k, v in keys.items()}
    model.fuse_for_release()  # idempotent
    torch.testing.assert_close(model(x), out)


def test_v1_loads_public_layout_exactly():
    """Public ParagonSR mixers are conv3x3 + conv1x1 + dw_conv3x3 and its upsampler stored frozen taps."""
    torch.manual_seed(0)
    ours = build_arch("paragonsr_nano", scale=2)
    _randomise_layerscale(ours)
    public = {}
    for k, v in ours.state_dict().items():
        if k.endswith("spatial_mixer.conv3x3.weight"):
            dw = torch.randn_like(v) * 0.1
            identity = torch.zeros_like(v)
            identity[:, 0, 1, 1] = 1.0
            public[k] = v + identity - dw  # public conv3x3 + dw_conv3x3 == ours conv3x3 + identity
            public[k.replace("conv3x3", "dw_conv3x3")] = dw
        elif k.endswith("spatial_mixer.conv3x3.bias"):
            public[k] = v - 0.25
            public[k.replace("conv3x3", "dw_conv3x3")] = torch.full_like(v, 0.25)
        else:
            public[k] = v
    public["magic_upsampler.sharpen.conv_h.weight"] = torch.ones(24, 1, 1, 7)
    from paragonsr.checkpoint import load_weights

    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ref = ours.eval()(x)
    loaded = build_arch("paragonsr_nano", scale=2)
    loaded.load_state_dict(public, strict=True)  # plain torch loading (pre-hooks)
    via_project = build_arch("paragonsr_nano", scale=2)
    load_weights(via_project, public, strict=True)  # the project's loader (convert_state_dict)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(via_project.eval()(x), ref, atol=1e-5, rtol=0)
    assert paragonsr_v1_kwargs_from_state_dict(public) == ("paragonsr_nano", {}, False)


def test_v1_hyperparameters_inferred_from_weights():
    fused = build_arch("paragonsr_tiny", scale=3).fuse_for_release().state_dict()
    assert paragonsr_v1_kwargs_from_state_dict(fused) == ("paragonsr_tiny", {}, True)
    custom = dict(num_feat=16, num_groups=1, num_blocks=2, ffn_expansion=1.25, in_ch=1, out_ch=1)
    name, kwargs, is_fused = paragonsr_v1_kwargs_from_state_dict(
        build_arch("paragonsr_xs", **custom).state_dict()
    )
    assert (name, is_fused) == ("paragonsr_s", False)
    assert kwargs == custom
    with pytest.raises(KeyError, match="conv_in"):
        paragonsr_v1_kwargs_from_state_dict(RRDBNet(**TINY_RRDB).state_dict())


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


@pytest.mark.parametrize("fuse", [False, True])
def test_v1_checkpoint_round_trip(tmp_path: Path, photo_crop: np.ndarray, fuse: bool):
    from paragonsr.checkpoint import load_model, save_model

    torch.manual_seed(0)
    model = build_arch("paragonsr_nano", scale=2)
    _randomise_layerscale(model)
    model.eval()
    if fuse:
        model.fuse_for_release()
    path = tmp_path / "nano.safetensors"
    save_model(path, model)
    loaded = load_model(path)
    assert type(loaded) is ParagonSR and loaded.scale == 2 and loaded.fused is fuse
    x = _photo_batch(photo_crop, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_v1_public_fused_pth_loads_through_load_model(tmp_path: Path):
    """A file from the public fuse script: fused mixers, frozen upsampler taps, BasicSR ``params_ema`` wrapper."""
    from paragonsr.checkpoint import load_model

    torch.manual_seed(0)
    ref = build_arch("paragonsr_nano", scale=2)
    _randomise_layerscale(ref)
    ref.eval().fuse_for_release()
    state = dict(ref.state_dict())
    state["magic_upsampler.resample_conv.conv_h.weight"] = torch.ones(24, 1, 1, 5)
    path = tmp_path / "4x_paragonsr_nano_fused.pth"
    torch.save({"params_ema": state}, path)
    model = load_model(path, arch="paragon_sr_nano", scale=2)
    assert model.fused and model.checkpoint_meta["fused"]
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=0, rtol=0)


# ----------------------------------------------------------------------------------------- ONNX


def _onnx_parity(model: torch.nn.Module, path: Path, sizes: list[tuple[int, int]]) -> float:
    """Export through the project's exporter (dynamic H/W, traced at an odd size) and compare with torch."""
    ort = pytest.importorskip("onnxruntime")
    from paragonsr.deploy.onnx_export import export_onnx

    model.eval()
    export_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        assert got.shape == ref.shape
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def test_onnx_parity_fused_paragonsr_nano(tmp_path: Path):
    torch.manual_seed(0)
    model = build_arch("paragonsr_nano", scale=2)
    _randomise_layerscale(model)
    model.fuse_for_release()
    assert _onnx_parity(model, tmp_path / "nano.onnx", [(16, 16), (12, 20)]) <= 1e-4


def test_onnx_parity_tiny_rrdbnet(tmp_path: Path):
    torch.manual_seed(0)
    assert (
        _onnx_parity(RRDBNet(scale=2, **TINY_RRDB), tmp_path / "rrdb.onnx", [(8, 8), (9, 14), (11, 7)])
        <= 1e-4
    )


# ----------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("name,kwargs", [("paragonsr_nano", {}), ("rrdbnet", TINY_RRDB)])
def test_training_steps_reduce_l1(photo_crop: np.ndarray, name: str, kwargs: dict):
    torch.manual_seed(0)
    model = build_arch(name, scale=2, **kwargs).train()
    gt = _photo_batch(photo_crop, 32)
    lq = F.avg_pool2d(gt, 2)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    losses = []
    for _ in range(4):
        loss = F.l1_loss(model(lq), gt)
        opt.zero_grad()
        loss.backward()
        for k, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), k
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    changed = [k for k, p in model.named_parameters() if not torch.equal(p, before[k])]
    assert len(changed) == len(before)  # every parameter (LayerScale, every mixer branch) is trained


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
