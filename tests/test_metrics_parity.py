"""The helpers that used to be written out in several modules now delegate to one definition; these tests pin
the delegating versions to the formulas they replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paragonsr.deploy.verify import PSNR_CAP
from paragonsr.deploy.verify import psnr as verify_psnr
from paragonsr.transfer import psnr as transfer_psnr


def _old_verify_psnr(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    a, b = np.clip(a.astype(np.float64), 0, 1), np.clip(b.astype(np.float64), 0, 1)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    mse = float(np.mean((a - b) ** 2))
    if not math.isfinite(mse):
        return 0.0
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else 10 * math.log10(1.0 / mse)


@pytest.mark.parametrize("shape", [(9, 7, 3), (9, 7, 1), (9, 7)])
@pytest.mark.parametrize("shave", [0, 2])
def test_verify_psnr_matches_its_former_formula(shape: tuple[int, ...], shave: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(-0.1, 1.1, shape).astype(np.float32)  # out-of-range values are clipped by both
    b = (a + rng.normal(0, 0.05, shape)).astype(np.float32)
    assert verify_psnr(a, b, shave) == pytest.approx(_old_verify_psnr(a, b, shave), abs=1e-9)
    assert verify_psnr(a, a, shave) == _old_verify_psnr(a, a, shave) == PSNR_CAP
    nan = b.copy()
    nan[4, 3] = np.nan
    assert verify_psnr(a, nan, shave) == _old_verify_psnr(a, nan, shave) == 0.0


def test_transfer_psnr_matches_its_former_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 8, 9, generator=gen) * 1.2 - 0.1
    b = a + 0.03 * torch.randn(a.shape, generator=gen)
    old = 10 * math.log10(1.0 / torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).item())  # float32 mean
    assert transfer_psnr(a, b) == pytest.approx(old, abs=1e-4)
    assert transfer_psnr(a[0].permute(1, 2, 0), b[0].permute(1, 2, 0)) > 0  # any layout (HWC too)
    assert transfer_psnr(a, a) == math.inf


@pytest.mark.parametrize(("size", "sigma"), [(11, 1.5), (7, 0.8), (17, 4.0), (51, 8.0)])
def test_one_gaussian_window_matches_the_former_copies(size: int, sigma: float) -> None:
    from paragonsr.degrade.realesrgan_torch import gaussian_1d as degrade_taps
    from paragonsr.losses.ssim import gaussian_1d as loss_taps
    from paragonsr.ops.filters import gaussian_1d

    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    old = np.exp(-(x**2) / (2 * sigma**2))  # the metric's and the SSIM loss's former formula
    old /= old.sum()
    np.testing.assert_allclose(gaussian_1d(size, sigma, np.float64), old, rtol=1e-14, atol=0)
    got = loss_taps(size, sigma, dtype=torch.float64).numpy()
    np.testing.assert_allclose(got, old, rtol=1e-14, atol=0)
    assert degrade_taps is gaussian_1d and degrade_taps(size, sigma).dtype == np.float32


def test_one_bt601_definition_and_matlab_y_row_unchanged() -> None:
    from paragonsr.data.channels import LUMA as data_luma
    from paragonsr.infer.upscale import LUMA as upscale_luma
    from paragonsr.ops.colour import BT601_LUMA
    from paragonsr.ops.colour import LUMA_F32 as degrade_luma
    from paragonsr.ops.colour import MATLAB_Y_WEIGHTS as _Y_WEIGHTS_RGB

    assert BT601_LUMA == (0.299, 0.587, 0.114)
    assert _Y_WEIGHTS_RGB == (65.481, 128.553, 24.966)  # bit-exact: the metric's values are unchanged
    assert upscale_luma is BT601_LUMA
    for arr in (data_luma, degrade_luma):
        assert (
            arr.dtype == np.float32 and arr.tolist() == np.array([0.299, 0.587, 0.114], np.float32).tolist()
        )


def test_ssim_metric_matches_its_former_2d_window_implementation() -> None:
    import torch.nn.functional as F

    from paragonsr.metrics import calculate_ssim, calculate_ssim_pt
    from paragonsr.ops.filters import gaussian_1d

    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 24, 19, generator=gen, dtype=torch.float64)
    out = (gt + 0.05 * torch.randn(gt.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    a, b = out * 255.0, gt * 255.0
    g = torch.from_numpy(gaussian_1d(11, 1.5, np.float64))
    win = torch.outer(g, g).view(1, 1, 11, 11).repeat(3, 1, 1, 1)  # the former dense 11x11 window

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, win, groups=3)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = filt(a), filt(b)
    s11, s22, s12 = filt(a * a) - mu1**2, filt(b * b) - mu2**2, filt(a * b) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    old = ssim_map.mean(dim=(2, 3)).mean(dim=1)
    torch.testing.assert_close(calculate_ssim_pt(out, gt), old, rtol=0, atol=1e-12)
    out_hwc, gt_hwc = (x[0].permute(1, 2, 0).numpy() * 255.0 for x in (out, gt))
    assert calculate_ssim(out_hwc, gt_hwc) == pytest.approx(float(old[0]), abs=1e-12)
    with pytest.raises(ValueError, match="at least 11x11"):
        calculate_ssim_pt(out[..., :10], gt[..., :10])
