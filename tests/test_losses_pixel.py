"""Pixel, SSIM/MS-SSIM and frequency losses: known values, identity, monotonic growth with distortion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paragonsr.losses import LOSS_REGISTRY, build_loss
from paragonsr.losses.ssim import MSSSIM_WEIGHTS, ms_ssim, msssim_levels, ssim_components
from paragonsr.metrics import calculate_ssim_pt

WEIGHT_FREE = [
    "L1Loss", "MSELoss", "CharbonnierLoss", "SSIMLoss", "MSSSIMLoss", "FFTLoss", "FocalFrequencyLoss",
    "HSLuvLoss", "ConsistencyLoss",
]  # fmt: skip


@pytest.fixture(scope="module")
def gt(photo_crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(photo_crop[:48, :48]).permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_scalar_zero_on_identity_grows_with_distortion(name, gt):
    loss = build_loss({"type": name, "loss_weight": 2.0})
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(gt.shape, generator=g)
    vals = []
    for sigma in (0.02, 0.05, 0.15):
        pred = (gt + sigma * noise).clamp(0, 1).requires_grad_()
        v = loss(pred, gt)
        assert v.ndim == 0 and torch.isfinite(v)
        v.backward()
        assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
        vals.append(float(v.detach()))
    assert vals[0] < vals[1] < vals[2], vals
    same = float(loss(gt, gt))
    tol = 2.0 * math.sqrt(1e-12) + 1e-6  # Charbonnier's floor is sqrt(eps)
    assert abs(same) <= tol, same
    # the trainer feeds channels_last batches and may run under bf16 autocast
    pred = (gt + 0.05 * noise).clamp(0, 1)
    cl = loss(
        pred.contiguous(memory_format=torch.channels_last), gt.contiguous(memory_format=torch.channels_last)
    )
    assert float(cl) == pytest.approx(float(loss(pred, gt)), rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(loss(pred, gt))
    half = build_loss({"type": name, "loss_weight": 1.0})
    pred = (gt + 0.05 * noise).clamp(0, 1)
    assert float(loss(pred, gt)) == pytest.approx(2 * float(half(pred, gt)), rel=1e-5)


def test_pixel_known_values(gt):
    pred = gt + 0.1
    assert float(build_loss({"type": "L1Loss"})(pred, gt)) == pytest.approx(0.1, abs=1e-6)
    assert float(build_loss({"type": "l1", "reduction": "sum"})(pred, gt)) == pytest.approx(
        0.1 * gt.numel(), rel=1e-5
    )
    assert float(build_loss({"type": "MSELoss", "loss_weight": 3})(pred, gt)) == pytest.approx(0.03, abs=1e-6)
    ch = build_loss({"type": "CharbonnierLoss", "eps": 1e-4})
    assert float(ch(pred, gt)) == pytest.approx(math.sqrt(0.01 + 1e-4), abs=1e-6)
    assert float(ch(gt, gt)) == pytest.approx(1e-2, abs=1e-7)  # sqrt(eps)
    # per-pixel weight: only the left half counts, 'mean' divides by the weight sum (BasicSR)
    w = torch.zeros(1, 1, 48, 48)
    w[..., :24] = 1
    off = gt.clone()
    off[..., :24] += 0.2
    assert float(build_loss({"type": "L1Loss"})(off, gt, weight=w)) == pytest.approx(0.2, abs=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        build_loss({"type": "L1Loss"})(gt, gt[..., :10])
    with pytest.raises(ValueError, match="reduction"):
        build_loss({"type": "L1Loss", "reduction": "avg"})


def test_tv_of_a_ramp():
    ramp = torch.arange(32, dtype=torch.float32).mul(0.01).expand(2, 3, 16, 32)
    tv = build_loss({"type": "TVLoss", "loss_weight": 2.0})
    assert float(tv(ramp, None)) == pytest.approx(2 * 0.01, abs=1e-7)
    assert float(tv(ramp.transpose(-1, -2))) == pytest.approx(0.02, abs=1e-7)  # vertical ramp: same TV
    assert float(tv(torch.full((1, 3, 8, 8), 0.3))) == 0.0


def test_ssim_loss_matches_metric_definition(gt):
    pred = (gt + 0.05 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    loss = float(build_loss({"type": "SSIMLoss"})(pred, gt))
    ref = float(calculate_ssim_pt(pred.double(), gt.double()).mean())  # metric: 2-D window, 0-255 constants
    assert loss == pytest.approx(1 - ref, abs=1e-5)


def test_msssim_levels_and_small_crops(gt):
    assert [msssim_levels(s) for s in (8, 21, 22, 44, 88, 160, 176, 1000)] == [1, 1, 2, 3, 4, 4, 5, 5]
    assert sum(MSSSIM_WEIGHTS) == pytest.approx(1.0001, abs=1e-9)
    # a 48 px crop uses 3 scales with renormalised weights: recompute that product by hand
    pred = (gt + 0.05 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    w = torch.tensor(MSSSIM_WEIGHTS[:3], dtype=torch.float64)
    w = w / w.sum()
    x, y, terms = pred.double(), gt.double(), []
    for k in range(3):
        s, cs = ssim_components(x, y)
        terms.append(s if k == 2 else cs)
        x, y = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2)
    ref = torch.stack([t ** w[i] for i, t in enumerate(terms)]).prod(0).mean()
    assert float(ms_ssim(pred.double(), gt.double())) == pytest.approx(float(ref), abs=1e-10)
    # the full 5-scale pyramid (>= 176 px) uses the published weights unchanged
    big = torch.rand(1, 1, 176, 176, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    big2 = (
        big + 0.1 * torch.rand(big.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ) / 1.1
    x, y, ref5 = big, big2, torch.ones((), dtype=torch.float64)
    for k in range(5):
        s, cs = ssim_components(x, y)
        ref5 = ref5 * (s if k == 4 else cs).clamp_min(1e-6).squeeze() ** MSSSIM_WEIGHTS[k]
        x, y = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2)
    assert float(ms_ssim(big, big2)) == pytest.approx(float(ref5), abs=1e-10)
    tiny = build_loss({"type": "MSSSIMLoss"})
    for size in (5, 8, 12):  # below one window: shrunken window, still finite, still 0 on identity
        a = gt[..., :size, :size]
        assert float(tiny(a, a)) == pytest.approx(0.0, abs=1e-6)
        assert torch.isfinite(tiny((a + 0.1).clamp(0, 1), a))
    # bf16 autocast does not degrade it (computed in fp32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = tiny(pred, gt)
    assert v.dtype == torch.float32 and float(v) == pytest.approx(float(tiny(pred, gt)), rel=1e-5)


def test_fft_and_focal_frequency_known_values(gt):
    c, h, w = 0.1, gt.shape[-2], gt.shape[-1]
    # a constant offset only moves the DC bin of the orthonormal FFT, by c*sqrt(HW) (real part)
    fft = float(build_loss({"type": "FFTLoss"})(gt + c, gt))
    assert fft == pytest.approx(c * math.sqrt(h * w) / (h * w * 2), rel=1e-4)
    # FFL: the DC bin is the only error, its focal weight is 1 after normalisation -> mean = c² HW / HW = c²
    ffl = float(build_loss({"type": "FocalFrequencyLoss"})(gt + c, gt))
    assert ffl == pytest.approx(c**2, rel=1e-4)
    patches = build_loss({"type": "FocalFrequencyLoss", "patch_factor": 2})
    assert float(patches(gt + c, gt)) == pytest.approx(c**2, rel=1e-4)
    with pytest.raises(ValueError, match="patch_factor"):
        build_loss({"type": "FocalFrequencyLoss", "patch_factor": 5})(gt, gt)


def test_registry_names():
    for n in ("L1Loss", "MSELoss", "CharbonnierLoss", "MSSSIMLoss", "FFTLoss", "FocalFrequencyLoss", "TVLoss",
              "HSLuvLoss", "ConsistencyLoss", "PerceptualLoss", "ConvNeXtPerceptualLoss", "DISTSLoss",
              "ContrastiveLoss", "LPIPSLoss", "GANLoss", "R3GANLoss", "RaHingeGANLoss"):  # fmt: skip
        assert n in LOSS_REGISTRY
    with pytest.raises(KeyError, match="Did you mean"):
        build_loss({"type": "L1Los"})
