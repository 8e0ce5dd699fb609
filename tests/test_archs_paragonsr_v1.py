"""ParagonSR (v1) family: registry, shapes, fusion parity, checkpoint layouts, ONNX parity, training steps (with
RRDBNet for the training check)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arch_helpers import TINY_RRDB, onnx_parity, photo_batch
from conftest import attr_dict, narrow
from paragonsr.archs import ARCH_REGISTRY, build_arch
from paragonsr.archs.paragonsr_v1 import (
    VARIANTS,
    ParagonSR,
    ReparamDWConv,
    ResidualGroup,
    paragonsr_v1_kwargs_from_state_dict,
)
from paragonsr.archs.rrdbnet import RRDBNet


def _randomise_layerscale(model: torch.nn.Module, std: float = 0.5) -> None:
    """LayerScale starts at 1e-5, which would hide every block; give the blocks a real say for parity checks."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(torch.randn(p.shape, generator=g) * std)


# ----------------------------------------------------------------------------------------- registry


def test_v1_variants_registered_with_aliases_and_table():
    for variant, (feat, groups, blocks, ffn) in VARIANTS.items():
        assert ARCH_REGISTRY.canonical(f"paragon_sr_{variant}") == f"paragonsr_{variant}"
        model = build_arch(f"paragonsr_{variant}", scale=2)
        assert isinstance(model, ParagonSR)
        assert model.conv_in.out_channels == feat
        assert len(model.body) == groups
        assert all(len(narrow(ResidualGroup, g).blocks) == blocks for g in model.body)
        project_in_g = model.get_submodule("body.0.blocks.0.transformer.project_in_g")
        assert narrow(torch.nn.Conv2d, project_in_g).out_channels == int(feat * ffn)
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
    gray = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2, in_ch=1, out_ch=1)).eval()
    assert gray(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)


def test_v1_upsampler_is_magic_kernel_sharp_with_v1_alpha():
    model = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2))
    assert model.magic_upsampler.alpha == 1.0 and model.magic_upsampler.scale == 2
    assert (
        narrow(ParagonSR, build_arch("paragonsr_nano", scale=2, upsampler_alpha=0.5)).magic_upsampler.alpha
        == 0.5
    )
    # the upsampler holds no state: checkpoints carry no filter taps
    assert not any(k.startswith("magic_upsampler") for k in model.state_dict())


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
    model = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2))
    _randomise_layerscale(model)
    model.eval()
    x = photo_batch(photo_crop, 32)
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
    fresh = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2)).fuse_for_release().state_dict()
    assert {k: tuple(v.shape) for k, v in fresh.items()} == {k: tuple(v.shape) for k, v in keys.items()}
    model.fuse_for_release()  # idempotent
    torch.testing.assert_close(model(x), out)


def test_v1_loads_public_layout_exactly():
    """Public ParagonSR mixers are conv3x3 + conv1x1 + dw_conv3x3 and its upsampler stored frozen taps."""
    torch.manual_seed(0)
    ours = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2))
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
    loaded = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2))
    loaded.load_state_dict(public, strict=True)  # plain torch loading (pre-hooks)
    via_project = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2))
    load_weights(via_project, public, strict=True)  # the project's loader (convert_state_dict)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(via_project.eval()(x), ref, atol=1e-5, rtol=0)
    assert paragonsr_v1_kwargs_from_state_dict(public) == ("paragonsr_nano", {}, False)


def test_v1_hyperparameters_inferred_from_weights():
    fused = narrow(ParagonSR, build_arch("paragonsr_tiny", scale=3)).fuse_for_release().state_dict()
    assert paragonsr_v1_kwargs_from_state_dict(fused) == ("paragonsr_tiny", {}, True)
    custom = dict(num_feat=16, num_groups=1, num_blocks=2, ffn_expansion=1.25, in_ch=1, out_ch=1)
    name, kwargs, is_fused = paragonsr_v1_kwargs_from_state_dict(
        build_arch("paragonsr_xs", **custom).state_dict()
    )
    assert (name, is_fused) == ("paragonsr_s", False)
    assert kwargs == custom
    with pytest.raises(KeyError, match="conv_in"):
        paragonsr_v1_kwargs_from_state_dict(RRDBNet(**TINY_RRDB).state_dict())


@pytest.mark.parametrize("fuse", [False, True])
def test_v1_checkpoint_round_trip(tmp_path: Path, photo_crop: np.ndarray, fuse: bool):
    from paragonsr.checkpoint import load_model, save_model

    torch.manual_seed(0)
    model = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2))
    _randomise_layerscale(model)
    model.eval()
    if fuse:
        model.fuse_for_release()
    path = tmp_path / "nano.safetensors"
    save_model(path, model)
    loaded = load_model(path)
    assert type(loaded) is ParagonSR and loaded.scale == 2 and loaded.fused is fuse
    x = photo_batch(photo_crop, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_v1_public_fused_pth_loads_through_load_model(tmp_path: Path):
    """A file from the public fuse script: fused mixers, frozen upsampler taps, BasicSR ``params_ema`` wrapper."""
    from paragonsr.checkpoint import load_model

    torch.manual_seed(0)
    ref = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2))
    _randomise_layerscale(ref)
    ref.eval().fuse_for_release()
    state = dict(ref.state_dict())
    state["magic_upsampler.resample_conv.conv_h.weight"] = torch.ones(24, 1, 1, 5)
    path = tmp_path / "4x_paragonsr_nano_fused.pth"
    torch.save({"params_ema": state}, path)
    model = load_model(path, arch="paragon_sr_nano", scale=2)
    assert model.fused and attr_dict(model, "checkpoint_meta")["fused"]
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=0, rtol=0)


# ----------------------------------------------------------------------------------------- ONNX


def test_onnx_parity_fused_paragonsr_nano(tmp_path: Path):
    torch.manual_seed(0)
    model = narrow(ParagonSR, build_arch("paragonsr_nano", scale=2))
    _randomise_layerscale(model)
    model.fuse_for_release()
    assert onnx_parity(model, tmp_path / "nano.onnx", [(16, 16), (12, 20)]) <= 1e-4


# ----------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("name,kwargs", [("paragonsr_nano", {}), ("rrdbnet", TINY_RRDB)])
def test_training_steps_reduce_l1(photo_crop: np.ndarray, name: str, kwargs: dict):
    torch.manual_seed(0)
    model = build_arch(name, scale=2, **kwargs).train()
    gt = photo_batch(photo_crop, 32)
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
