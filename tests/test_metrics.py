"""PSNR/SSIM against BasicSR's MATLAB-style definitions, recomputed here by a different code path (cv2 filters,
explicit per-channel luma) and against closed-form values."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from paragonsr.metrics import (
    METRIC_REGISTRY,
    calculate_metric,
    calculate_psnr,
    calculate_psnr_pt,
    calculate_ssim,
    calculate_ssim_pt,
)


def _ref_y(img_rgb255: np.ndarray) -> np.ndarray:
    r, g, b = (img_rgb255[..., i].astype(np.float64) / 255.0 for i in range(3))
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def _ref_ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    # BasicSR's own recipe: cv2.filter2D with the outer Gaussian, then drop 5 px of each border ('valid').
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    w = np.outer(k, k.transpose())
    mu1 = cv2.filter2D(a, -1, w)[5:-5, 5:-5]
    mu2 = cv2.filter2D(b, -1, w)[5:-5, 5:-5]
    s1 = cv2.filter2D(a**2, -1, w)[5:-5, 5:-5] - mu1**2
    s2 = cv2.filter2D(b**2, -1, w)[5:-5, 5:-5] - mu2**2
    s12 = cv2.filter2D(a * b, -1, w)[5:-5, 5:-5] - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return float(m.mean())


@pytest.fixture(scope="module")
def pair(photo_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.round(photo_crop[:64, :64] * 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    noisy = np.clip(gt.astype(np.float64) + rng.normal(0, 8, gt.shape), 0, 255).round().astype(np.uint8)
    return gt, noisy


def test_psnr_constant_offset_known_values(pair):
    gt = pair[0].astype(np.float64).clip(0, 254)
    assert calculate_psnr(gt, gt + 1, 0) == pytest.approx(20 * math.log10(255), abs=1e-9)  # 48.1308 dB
    # Y of a +1 offset in every channel moves by (65.481 + 128.553 + 24.966) / 255 = 219/255
    assert calculate_psnr(gt, gt + 1, 0, test_y_channel=True) == pytest.approx(
        20 * math.log10(255 / (219 / 255)), abs=1e-9
    )
    assert calculate_psnr(gt, gt, 0) == float("inf")


def test_psnr_matches_reference(pair):
    gt, noisy = pair
    for border, y in ((0, False), (4, False), (4, True)):
        a, b = (
            gt[border : 64 - border, border : 64 - border],
            noisy[border : 64 - border, border : 64 - border],
        )
        if y:
            a, b = _ref_y(a), _ref_y(b)
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
        ref = 10 * np.log10(255**2 / mse)
        assert calculate_psnr(gt, noisy, border, test_y_channel=y) == pytest.approx(ref, abs=1e-10)
    # BGR arrays (BasicSR/cv2 convention) give the same Y-PSNR with color_order="bgr"
    got = calculate_psnr(gt[..., ::-1], noisy[..., ::-1], 4, test_y_channel=True, color_order="bgr")
    assert got == pytest.approx(calculate_psnr(gt, noisy, 4, test_y_channel=True), abs=1e-10)
    chw = calculate_psnr(gt.transpose(2, 0, 1), noisy.transpose(2, 0, 1), 4, input_order="CHW")
    assert chw == pytest.approx(calculate_psnr(gt, noisy, 4), abs=1e-12)


def test_ssim_matches_basicsr_recipe(pair):
    gt, noisy = pair
    ref_rgb = np.mean(
        [_ref_ssim_channel(gt[..., c].astype(np.float64), noisy[..., c].astype(np.float64)) for c in range(3)]
    )
    assert calculate_ssim(gt, noisy, 0) == pytest.approx(ref_rgb, abs=1e-10)
    a, b = _ref_y(gt[3:-3, 3:-3]), _ref_y(noisy[3:-3, 3:-3])
    assert calculate_ssim(gt, noisy, 3, test_y_channel=True) == pytest.approx(
        _ref_ssim_channel(a, b), abs=1e-10
    )
    assert calculate_ssim(gt, gt, 0) == pytest.approx(1.0, abs=1e-12)
    assert 0.3 < calculate_ssim(gt, noisy, 0) < 0.99


def test_torch_versions_match_numpy(pair):
    gt, noisy = pair
    t = lambda a: torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]  # noqa: E731
    batch_gt, batch_n = torch.cat([t(gt), t(gt)]), torch.cat([t(noisy), t(gt)])
    for y in (False, True):
        p = calculate_psnr_pt(batch_n, batch_gt, crop_border=4, test_y_channel=y)
        s = calculate_ssim_pt(batch_n, batch_gt, crop_border=4, test_y_channel=y)
        assert p.shape == (2,) and s.shape == (2,)
        # float32 inputs of k/255 are not exactly k/255: agree to ~1e-5 dB
        assert float(p[0]) == pytest.approx(calculate_psnr(noisy, gt, 4, test_y_channel=y), abs=1e-4)
        assert float(s[0]) == pytest.approx(calculate_ssim(noisy, gt, 4, test_y_channel=y), abs=1e-6)
        assert math.isinf(float(p[1])) and float(s[1]) == pytest.approx(1.0, abs=1e-9)


def test_registry_names_and_errors(pair):
    gt, noisy = pair
    for name in (
        "calculate_psnr",
        "psnr",
        "calculate_ssim",
        "ssim",
        "calculate_psnr_pt",
        "calculate_ssim_pt",
    ):
        assert name in METRIC_REGISTRY
    val = calculate_metric({"img": noisy, "img2": gt}, {"type": "calculate_psnr", "crop_border": 2})
    assert val == pytest.approx(calculate_psnr(noisy, gt, 2))
    with pytest.raises(ValueError, match="shapes differ"):
        calculate_psnr(gt, gt[:10], 0)
    with pytest.raises(ValueError, match="at least 11x11"):
        calculate_ssim(gt[:20, :20], gt[:20, :20], 5)
    with pytest.raises(KeyError, match="Did you mean"):
        calculate_metric({"img": gt, "img2": gt}, {"type": "calculate_psnrr"})


@pytest.mark.parametrize("kind", ["dists", "lpips"])
def test_deep_metrics(kind, pair, tmp_path, monkeypatch):
    import warnings

    import paragonsr.metrics.perceptual as pm
    from paragonsr.losses.lpips import LPIPSNet
    from paragonsr.losses.perceptual import DISTSNet
    from paragonsr.weights import WeightsError

    with pytest.raises(WeightsError, match="--allow-download"):
        calculate_metric({"img": pair[1], "img2": pair[0]}, {"type": kind, "weights_dir": str(tmp_path)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        net = (DISTSNet if kind == "dists" else LPIPSNet)(pretrained=False)
    monkeypatch.setattr(pm, "_net", lambda k, weights_dir, device: net)
    fn = pm.calculate_dists if kind == "dists" else pm.calculate_lpips
    gt, noisy = pair
    assert fn(gt, gt, 4) == pytest.approx(0.0, abs=1e-5)
    ref = float(net(torch.from_numpy(noisy[4:-4, 4:-4] / 255.0).permute(2, 0, 1)[None].float(),
                    torch.from_numpy(gt[4:-4, 4:-4] / 255.0).permute(2, 0, 1)[None].float()))  # fmt: skip
    assert fn(noisy, gt, 4) == pytest.approx(ref, rel=1e-4) and ref > 0
    assert fn(noisy.transpose(2, 0, 1), gt.transpose(2, 0, 1), 4, input_order="CHW") == pytest.approx(
        ref, rel=1e-4
    )
    with pytest.raises(ValueError, match="shapes differ"):
        fn(noisy, gt[:-1])
    with pytest.raises(ValueError, match=f"{kind}(_alex)? needs RGB images"):
        fn(gt[..., 0], gt[..., 0])
