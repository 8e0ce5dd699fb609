"""ParagonSR2: shapes, release folding parity, tracked kernels, calibration, gradients, export smoke."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from conftest import narrow
from paragonsr.archs import ARCH_REGISTRY, build_arch
from paragonsr.archs.paragonsr2 import VARIANTS, ParagonSR2, calibrate, count_params, paragonsr2_nano
from paragonsr.archs.paragonsr2_blocks import DynamicTransformer, LayerScale
from paragonsr.ops.resample import resize

SMALL = ("paragonsr2_nano", "paragonsr2_anime", "paragonsr2_tiny")
BIG = ("paragonsr2_s", "paragonsr2_m", "paragonsr2_l", "paragonsr2_xl")


M = TypeVar("M", bound=nn.Module)


def _randomise(model: M, seed: int = 0) -> M:
    """Make LayerScale γ and tracked kernels far from their init so folding errors cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LayerScale):
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) - 0.5)
            if isinstance(m, DynamicTransformer):
                m.tracked_kernel.copy_(0.2 * torch.randn(m.tracked_kernel.shape, generator=g))
    return model


def _img(photo_crop: np.ndarray, size: int, ch: int = 3) -> torch.Tensor:
    x = torch.from_numpy(photo_crop[:size, :size]).permute(2, 0, 1)[None]
    return x[:, :ch].contiguous() if ch <= 3 else x


@pytest.mark.parametrize("name", SMALL)
def test_small_variants_all_scales_and_channels(name: str) -> None:
    x1, x3 = torch.rand(1, 1, 8, 8), torch.rand(2, 3, 8, 7)
    for scale in (1, 2, 3, 4):
        for ch, x in ((1, x1), (3, x3)):
            model = build_arch(name, scale=scale, in_ch=ch, out_ch=ch).eval()
            assert (model.scale, model.in_ch, model.out_ch) == (scale, ch, ch)
            with torch.no_grad():
                y = model(x)
            assert y.shape == (x.shape[0], ch, x.shape[2] * scale, x.shape[3] * scale)
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", BIG)
def test_big_variants_shape(name: str) -> None:
    model = build_arch(name, scale=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_variant_table_and_overrides() -> None:
    expected = {
        "paragonsr2_nano": (24, 2, 2, 1),
        "paragonsr2_anime": (28, 2, 3, 2),
        "paragonsr2_tiny": (32, 3, 2, 2),
        "paragonsr2_s": (56, 5, 5, 2),
        "paragonsr2_m": (96, 8, 8, 2),
        "paragonsr2_l": (128, 10, 10, 3),
        "paragonsr2_xl": (160, 12, 12, 3),
    }
    for name, (c, g, b, hr) in expected.items():
        assert name in ARCH_REGISTRY
        v = VARIANTS[name]
        assert (v["num_feat"], v["num_groups"], v["num_blocks"], v["hr_blocks"]) == (c, g, b, hr)
        assert v["ffn_expansion"] == (1.5 if name in ("paragonsr2_nano", "paragonsr2_anime") else 2.0)
    m = narrow(ParagonSR2, build_arch("paragonsr2_nano", scale=3, upsampler_alpha=0.25, hr_blocks=3))
    assert m.upsampler.alpha == 0.25 and len(m.hr_head) == 3 and m.scale == 3
    assert m.arch_name == "paragonsr2_nano" and m.arch_kwargs == {
        "scale": 3,
        "upsampler_alpha": 0.25,
        "hr_blocks": 3,
    }
    assert narrow(ParagonSR2, build_arch("paragonsr2_tiny")).upsampler.alpha == 0.5  # the published default


def _expected_nano_params(scale_independent_ch: int = 3) -> int:
    """Hand count for nano (C=24, h=36, gc=3, k=11, generator hidden 8, 2x2 blocks, 1 hr block)."""
    c, h, gc, k, gh, ch = 24, 36, 3, 11, 8, scale_independent_ch
    conv3 = lambda i, o: i * o * 9 + o  # noqa: E731
    inception = (gc * 9 + gc) + 2 * (gc * k + gc)
    transformer = (c * h + h) + (h * 9 + h) + (h * c + c) + (h * gh + gh) + (gh * 9 * h + 9 * h)
    block = inception + transformer + 2 * c
    return conv3(ch, c) + 4 * block + conv3(c, c) + conv3(c, c) + 2 * conv3(c, c) + conv3(c, ch)


def test_param_counts_known_values() -> None:
    m = paragonsr2_nano(scale=2)
    assert count_params(m) == count_params(m, trainable_only=True) == _expected_nano_params()
    # generator (8·36+8 + 8·324+324 per block) and γ (2·24 per block) vanish; +15 pass-through scales per block
    gen, gamma = (8 * 36 + 8) + (8 * 324 + 324), 2 * 24
    assert count_params(copy.deepcopy(m).fuse_for_release()) == _expected_nano_params() - 4 * (
        gen + gamma - 15
    )
    # the upsamplers are fixed filters: parameter count is independent of scale
    assert count_params(paragonsr2_nano(scale=4)) == count_params(m)


@pytest.mark.parametrize("name", ["paragonsr2_nano", "paragonsr2_tiny"])
def test_fused_matches_unfused_eval(name: str, photo_crop: np.ndarray) -> None:
    torch.manual_seed(0)
    model = _randomise(narrow(ParagonSR2, build_arch(name, scale=2))).eval()
    x = torch.cat([_img(photo_crop, 24), torch.rand(1, 3, 24, 24)])
    with torch.no_grad():
        ref = model(x)
        fused = copy.deepcopy(model).fuse_for_release()
        out = fused(x)
    # the randomised γ/kernels make the blocks matter: a fold that dropped them would be far off
    assert (ref - _without_blocks(model, x)).abs().max() > 1e-2
    assert (out - ref).abs().max().item() <= 1e-4
    assert fused.fused and not fused.training
    assert count_params(fused) < count_params(model)
    keys = list(fused.state_dict())
    assert not [k for k in keys if "kernel_gen" in k or "tracked_kernel" in k or ".ls1." in k or ".ls2." in k]
    assert not any(isinstance(m, LayerScale) for m in fused.modules())
    assert not any(hasattr(m, "kernel_gen") or hasattr(m, "tracked_kernel") for m in fused.modules())


def _without_blocks(model: ParagonSR2, x: torch.Tensor) -> torch.Tensor:
    m = copy.deepcopy(model)
    m.body = nn.Sequential()
    with torch.no_grad():
        return m(x)


def test_fused_checkpoint_reloads_into_fresh_fused_model() -> None:
    torch.manual_seed(1)
    trained = _randomise(paragonsr2_nano(scale=2)).fuse_for_release()
    fresh = paragonsr2_nano(scale=2).fuse_for_release()
    s_t, s_f = trained.state_dict(), fresh.state_dict()
    assert list(s_t) == list(s_f) and all(s_t[k].shape == s_f[k].shape for k in s_t)
    fresh.load_state_dict(s_t, strict=True)
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert torch.equal(fresh(x), trained(x))
    assert trained.fuse_for_release() is trained  # idempotent


def test_training_step_updates_tracked_kernel_eval_does_not() -> None:
    torch.manual_seed(2)
    model = paragonsr2_nano(scale=2)
    dts = [m for m in model.modules() if isinstance(m, DynamicTransformer)]
    before = [d.tracked_kernel.clone() for d in dts]
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 12, 12))
    assert all(torch.equal(b, d.tracked_kernel) for b, d in zip(before, dts))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    lq, gt = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 24, 24)
    loss = (model(lq) - gt).abs().mean()
    loss.backward()
    opt.step()
    for b, d in zip(before, dts):
        # EMA with momentum 0.05 from zero: new = 0.05 · batch-mean dynamic kernel (non-zero generator init)
        assert not torch.equal(b, d.tracked_kernel)
        assert 0 < d.tracked_kernel.abs().max() < 0.05


def test_dynamic_kernels_are_per_sample() -> None:
    torch.manual_seed(3)
    dt = DynamicTransformer(16, 1.5).train()
    x = torch.rand(3, 16, 9, 11)
    with torch.no_grad():
        together = dt(x)
        alone = torch.cat([dt(x[i : i + 1]) for i in range(3)])
        # reference: sample 1's own kernel applied with a plain depthwise conv
        h = dt.fc1(x[1:2])
        w = dt.dwconv.weight + dt.dynamic_kernels(h)[0]
        h = torch.nn.functional.conv2d(h, w, dt.dwconv.bias, padding=1, groups=dt.hidden)
        ref1 = dt.fc2(dt.act(h))
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    # EMA: 4 train forwards from zero, each pulls the buffer 5 % toward that batch's mean kernel
    m, expected = dt.momentum, torch.zeros_like(dt.tracked_kernel)
    for batch in (x, *(x[i : i + 1] for i in range(3))):
        with torch.no_grad():
            expected = (1 - m) * expected + m * dt.dynamic_kernels(dt.fc1(batch)).mean(0)
    torch.testing.assert_close(dt.tracked_kernel, expected, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(together[1:2], ref1, atol=1e-5, rtol=1e-5)
    # samples differ in content, so their kernels (and outputs vs the static path) differ
    k = dt.dynamic_kernels(dt.fc1(x))
    assert (k[0] - k[1]).abs().max() > 1e-4


@pytest.mark.parametrize("name", list(VARIANTS))
def test_training_step_gradients_finite(name: str) -> None:
    torch.manual_seed(4)
    model = narrow(ParagonSR2, build_arch(name, scale=2)).train()
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    loss = (model(lq) - gt).abs().mean()
    loss.backward()
    assert torch.isfinite(loss)
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
    first = narrow(DynamicTransformer, model.get_submodule("body.0.blocks.0.transformer"))
    grads = [model.conv_in.weight.grad, narrow(nn.Conv2d, first.kernel_gen[1]).weight.grad]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_calibrate_settles_kernels_and_restores_mode(photo_crop: np.ndarray) -> None:
    torch.manual_seed(5)
    model = paragonsr2_nano(scale=2).eval()
    batches = [_img(photo_crop, 32), {"lq": torch.rand(2, 3, 16, 16)}, (torch.rand(1, 3, 16, 16), None)]
    first = narrow(DynamicTransformer, model.get_submodule("body.0.blocks.0.transformer"))
    k0 = first.tracked_kernel.clone()
    params0 = {n: p.clone() for n, p in model.named_parameters()}
    assert calibrate(model, batches) is model
    assert not model.training
    assert not torch.equal(k0, first.tracked_kernel)
    assert all(torch.equal(p, params0[n]) for n, p in model.named_parameters())  # no weight update
    model.train()
    calibrate(model, batches[:1])
    assert model.training
    with pytest.raises(ValueError, match="already fused"):
        calibrate(copy.deepcopy(model).fuse_for_release(), batches)
    with pytest.raises(TypeError, match="'lq'"):
        calibrate(model, [{"gt": torch.rand(1, 3, 8, 8)}])


def test_image_residual_is_mks2021_upscale() -> None:
    torch.manual_seed(6)
    x = torch.rand(1, 3, 12, 10)
    for scale in (2, 3):
        m = paragonsr2_nano(scale=scale, image_residual=True).eval()
        nn.init.zeros_(m.conv_out.weight)
        with torch.no_grad():
            out = m(x)
        torch.testing.assert_close(out, resize(x, scale=scale, kernel="magic_sharp_2021"), atol=1e-5, rtol=0)
    m = paragonsr2_nano(scale=2, image_residual=False).eval()
    nn.init.zeros_(m.conv_out.weight)
    with torch.no_grad():
        assert m(x).abs().max() == 0
    # rule: channel-changing models have no image skip
    gray_to_rgb = paragonsr2_nano(scale=2, in_ch=1, out_ch=3, image_residual=True)
    assert gray_to_rgb.image_residual is False and gray_to_rgb.base_upsampler is None
    assert gray_to_rgb(torch.rand(1, 1, 8, 8)).shape == (1, 3, 16, 16)


def test_bad_hyperparameters_and_inputs() -> None:
    with pytest.raises(ValueError, match="scale must be an integer 1-4"):
        paragonsr2_nano(scale=5)
    with pytest.raises(ValueError, match="num_feat"):
        ParagonSR2(num_feat=4)
    with pytest.raises(ValueError, match="band_kernel_size"):
        paragonsr2_nano(band_kernel_size=10)
    with pytest.raises(ValueError, match=r"expects a \(B, 3, H, W\) tensor, got shape \(1, 1, 8, 8\)"):
        paragonsr2_nano()(torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError):
        paragonsr2_nano(not_a_param=1)


def test_fused_nano_exports_to_onnx_with_dynamic_size(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(7)
    model = _randomise(paragonsr2_nano(scale=2)).fuse_for_release()
    path = tmp_path / "nano.onnx"
    torch.onnx.export(
        model,
        (torch.rand(1, 3, 16, 16),),
        path,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}, "output": {0: "b", 2: "h2", 3: "w2"}},
        opset_version=17,
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 13, 21)
    (y,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(y, model(x).numpy(), atol=1e-4, rtol=0)


def test_bf16_autocast_keeps_image_residual_fp32() -> None:
    torch.manual_seed(8)
    x = torch.rand(1, 3, 12, 12)
    m = paragonsr2_nano(scale=2).eval()
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        nn.init.zeros_(m.conv_out.weight)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            base = m(x)
    assert out.dtype == torch.float32 and (out - ref).abs().max() < 0.05
    # the fixed MKS image skip is computed in fp32 (bf16 would be off by ~1 grey level of 8-bit)
    torch.testing.assert_close(base, resize(x, scale=2, kernel="magic_sharp_2021"), atol=1e-5, rtol=0)
