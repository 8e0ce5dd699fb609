"""Degradation building blocks: kernels, filters, noise, codecs, sharpening, warps, colour ops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from paragonsr.degrade import geometry, ops
from paragonsr.degrade.kernels import (
    bessel_j1,
    gaussian_kernel,
    generalized_gaussian_kernel,
    lens_kernel,
    motion_kernel,
    plateau_kernel,
    random_mixed_kernel,
    sample_beta,
    sinc_kernel,
)
from paragonsr.ops import filters
from paragonsr.ops.filters import gaussian_1d


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def _torch_correlate(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Reference: BasicSR's filter2D (reflect pad + dense conv2d)."""
    t = torch.from_numpy(img).permute(2, 0, 1)[:, None].double()
    p = k.shape[0] // 2
    out = F.conv2d(F.pad(t, (p, p, p, p), mode="reflect"), torch.from_numpy(k).double()[None, None])
    return out[:, 0].permute(1, 2, 0).numpy()


# ------------------------------------------------------------------ kernels
def test_kernels_sum_to_one_and_have_the_requested_sigma() -> None:
    rng = np.random.default_rng(0)
    for k in (
        gaussian_kernel(21, 2.0, 1.0, 0.3),
        generalized_gaussian_kernel(21, 1.5, 2.5, 1.0, 0.7),
        plateau_kernel(21, 1.5, 1.5, 0.0, 1.5),
        sinc_kernel(21, math.pi / 3),
        lens_kernel(2.5),
        motion_kernel(rng, 7.0),
    ):
        assert k.dtype == np.float32 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert abs(float(k.sum()) - 1.0) < 1e-5
    # second moment of an isotropic Gaussian along x is σ² (the kernel is wide enough not to truncate it)
    k = gaussian_kernel(31, 2.5).astype(np.float64)
    x = np.arange(31) - 15
    assert abs(float((k.sum(0) * x**2).sum()) - 2.5**2) < 1e-3
    # anisotropic, rotated by 90°: σx and σy swap
    k = gaussian_kernel(31, 3.0, 1.0, math.pi / 2).astype(np.float64)
    assert (
        abs(float((k.sum(1) * x**2).sum()) - 9.0) < 1e-3 and abs(float((k.sum(0) * x**2).sum()) - 1.0) < 1e-3
    )
    # OpenCV's automatic σ for the USM kernel of size 51 is 8.0 (and the taps are OpenCV's)
    import cv2

    np.testing.assert_allclose(gaussian_1d(51, 0), cv2.getGaussianKernel(51, 0)[:, 0], atol=1e-7)
    np.testing.assert_allclose(gaussian_1d(51, 0), gaussian_1d(51, 8.0), atol=1e-7)


def test_bessel_j1_and_sinc_lowpass() -> None:
    # reference values of J1 (Abramowitz & Stegun)
    np.testing.assert_allclose(
        bessel_j1(np.array([0.0, 1.0, 5.0, 10.0])), [0, 0.4400505857, -0.3275791376, 0.0434727462], atol=1e-9
    )
    k = sinc_kernel(21, math.pi / 4).astype(np.float64)
    spec = np.abs(np.fft.fft2(k, (256, 256)))
    f = np.fft.fftfreq(256) * 2 * math.pi
    assert abs(spec[0, 0] - 1) < 1e-6
    assert spec[0, np.abs(f - math.pi / 8).argmin()] > 0.85  # pass band (truncation ripple ~10 %)
    assert spec[0, np.abs(f - math.pi / 2).argmin()] < 0.1  # stop band


def test_beta_sampling_and_mixed_kernel() -> None:
    rng = np.random.default_rng(1)
    betas = np.array([sample_beta(rng, (0.5, 4.0)) for _ in range(2000)])
    assert betas.min() >= 0.5 and betas.max() <= 4.0
    assert 0.4 < (betas < 1).mean() < 0.6  # half from [lo, 1], half from [1, hi]
    k, info = random_mixed_kernel(rng, ["plateau_aniso"], [1], 15, (0.5, 2.0))
    assert info["kernel"] == "plateau_aniso" and 1.0 <= info["beta"] <= 2.0 and k.shape == (15, 15)
    _, info = random_mixed_kernel(rng, ["iso"], [1], 7, (0.5, 2.0))
    assert info["sigma_x"] == info["sigma_y"] and info["theta"] == 0.0


def test_identity_kernels_at_zero_strength() -> None:
    lk = lens_kernel(0.0)
    assert lk[lk.shape[0] // 2, lk.shape[1] // 2] == 1.0 and lk.sum() == 1.0
    mk = motion_kernel(np.random.default_rng(0), 0.0)
    assert abs(mk[mk.shape[0] // 2, mk.shape[1] // 2] - 1.0) < 1e-6


# ------------------------------------------------------------------ filters
def test_filter2d_matches_basicsr_reference(photo_crop: np.ndarray) -> None:
    img = photo_crop[:48, :40]
    for k in (
        gaussian_kernel(21, 1.8),
        gaussian_kernel(13, 2.0, 0.6, 0.4),
        sinc_kernel(11, 1.2),
        motion_kernel(np.random.default_rng(3), 5),
    ):
        np.testing.assert_allclose(filters.filter2d(img, k), _torch_correlate(img, k), atol=2e-5)
    # trimming the zero rings of a narrow kernel padded to 21 changes nothing measurable
    assert filters.trim_kernel(gaussian_kernel(21, 0.4)).shape[0] < 9


def test_usm_matches_dense_reference_and_sharpens(photo_crop: np.ndarray) -> None:
    img = photo_crop[:64, :64]
    out = filters.usm_sharpen(img)
    k = np.outer(gaussian_1d(51, 0), gaussian_1d(51, 0)).astype(np.float64)
    blur = _torch_correlate(img, k)
    res = img - blur
    soft = _torch_correlate((np.abs(res) * 255 > 10).astype(np.float32), k)
    ref = soft * np.clip(img + 0.5 * res, 0, 1) + (1 - soft) * img
    np.testing.assert_allclose(out, ref, atol=2e-5)
    assert out.dtype == np.float32 and np.abs(out - img).max() > 0.01
    assert np.array_equal(ops.sharpen(img, 1.0), img)
    hi = lambda a: float(np.abs(np.diff(a, axis=1)).mean())  # noqa: E731
    assert hi(ops.sharpen(img, 1.5)) > hi(ops.sharpen(img, 1.1)) > hi(img)


# ------------------------------------------------------------------ resize
def test_interpolate_matches_torch_and_resize_any_kernel(photo_crop: np.ndarray) -> None:
    img = photo_crop[:40, :36]
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    for mode in ("bilinear", "bicubic"):
        ref = F.interpolate(t, size=(60, 54), mode=mode, align_corners=False)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(ops.interpolate(img, (60, 54), mode), ref, atol=2e-3)
    for kernel in ops.RESIZE_KERNELS:
        out = ops.resize(img, (13, 17), kernel)
        assert out.shape == (13, 17, 3) and out.dtype == np.float32
    gray = img[:, :, :1]
    assert ops.resize(gray, (20, 18), "magic_sharp_2021").shape == (20, 18, 1)
    with pytest.raises(ValueError, match="lanczos3"):
        ops.resize(img, (10, 10), "lanczoz")


# ------------------------------------------------------------------ noise
def test_noise_statistics_and_determinism() -> None:
    flat = np.full((128, 128, 3), 0.5, np.float32)
    g = ops.gaussian_noise(flat, np.random.default_rng(0), 10.0)
    assert abs(float((g - 0.5).std()) * 255 - 10.0) < 0.3
    assert np.array_equal(g, ops.gaussian_noise(flat, np.random.default_rng(0), 10.0))
    gray = ops.gaussian_noise(flat, np.random.default_rng(0), 10.0, gray=True)
    assert np.array_equal(gray[..., 0], gray[..., 2])
    assert np.array_equal(ops.gaussian_noise(flat, np.random.default_rng(0), 0.0), flat)
    # Poisson (Real-ESRGAN): v = 2^ceil(log2(#distinct 8-bit values)); one row holding all 256 values -> v = 256,
    # so on the flat rest of the image the noise variance is x / 256: linear in the intensity
    for level in (0.1, 0.4, 0.8):
        img = np.full((200, 200, 3), level, np.float32)
        img[0, :, :] = (np.arange(200) % 256 / 255.0)[:, None]
        img[1, :56, :] = (np.arange(200, 256) / 255.0)[:, None]
        x = round(level * 255) / 255
        var = float((ops.poisson_noise(img, np.random.default_rng(1), 1.0)[2:] - img[2:]).var())
        assert abs(var / (x / 256) - 1) < 0.05, (level, var)
    img = np.full((64, 64, 3), 0.3, np.float32)
    assert np.array_equal(
        ops.poisson_noise(img, np.random.default_rng(5), 0.5),
        ops.poisson_noise(img, np.random.default_rng(5), 0.5),
    )
    # sensor noise: σ at mid grey, signal dependent when shot_ratio = 1
    s = ops.sensor_noise(flat, np.random.default_rng(2), 4.0, shot_ratio=1.0)
    assert abs(float((s - 0.5).std()) * 255 - 4.0) < 0.2
    dark = np.full((128, 128, 3), 0.125, np.float32)
    sd = ops.sensor_noise(dark, np.random.default_rng(2), 4.0, shot_ratio=1.0)
    assert abs(float((sd - 0.125).std()) * 255 - 2.0) < 0.15  # var ∝ x: a quarter of the signal, half the σ


# ------------------------------------------------------------------ codecs
def test_codecs_quality_and_gray(photo_crop: np.ndarray) -> None:
    img = photo_crop[:64, :64]
    q100 = ops.jpeg(img, 100, "444")
    q10 = ops.jpeg(img, 10)
    assert q100.shape == img.shape and q100.dtype == np.float32
    assert _psnr(q100, img) > 45 and _psnr(q10, img) < 32
    assert _psnr(ops.codec(img, "webp", 90), img) > _psnr(ops.codec(img, "webp", 20), img)
    assert ops.codec(img, "avif", 60).shape == img.shape
    g = ops.jpeg(img[:, :, :1], 50)
    assert g.shape == (64, 64, 1)
    # the codec works in RGB order: a pure red patch stays red
    red = np.zeros((16, 16, 3), np.float32)
    red[..., 0] = 1.0
    assert ops.jpeg(red, 90)[..., 0].mean() > 0.9 and ops.jpeg(red, 90)[..., 2].mean() < 0.1
    with pytest.raises(ValueError, match="444"):
        ops.jpeg(img, 50, "411")


def test_codec_names_a_buffer_opencv_cannot_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: None)  # what OpenCV returns for bytes it rejects
    with pytest.raises(RuntimeError, match=r"^OpenCV could not decode its own webp output \(quality 50\)$"):
        ops.codec(np.zeros((8, 8, 3), np.float32), "webp", 50)


# ------------------------------------------------------------------ geometry
def test_warps_are_identity_at_zero_and_move_pixels_otherwise(photo_crop: np.ndarray) -> None:
    img = photo_crop[:64, :80]
    assert np.array_equal(geometry.lens_distortion(img, 0.0, 0.0), img)
    assert np.array_equal(geometry.rolling_shutter(img, 0.0), img)
    assert np.array_equal(geometry.chromatic_aberration(img, 0.0), img)
    # barrel k1: on the centre row, column x shows the source column cx + dx·(1 + k1·dx²/r_max²)
    ramp: np.ndarray = np.tile(np.arange(80, dtype=np.float32) / 79, (65, 1))[:, :, None]
    barrel = geometry.lens_distortion(ramp, 0.1)
    cx, rmax2 = 39.5, 39.5**2 + 32**2
    for x in (10, 39, 70):
        dx = x - cx
        assert abs(float(barrel[32, x, 0]) * 79 - (cx + dx * (1 + 0.1 * dx * dx / rmax2))) < 0.02
    # rolling shutter: middle row fixed, top and bottom shifted in opposite directions by shift*W/2
    ramp = np.tile(np.linspace(0, 1, 80, dtype=np.float32), (65, 1))[:, :, None]
    rs = geometry.rolling_shutter(ramp, 0.1)
    step = 1 / 79
    assert abs(float(rs[32, 40, 0] - ramp[32, 40, 0])) < 1e-5
    assert abs(float(rs[0, 40, 0] - ramp[0, 40, 0]) + 4 * step) < 1e-4
    assert abs(float(rs[64, 40, 0] - ramp[64, 40, 0]) - 4 * step) < 1e-4
    ca = geometry.chromatic_aberration(img, 0.01)
    assert np.array_equal(ca[..., 1], img[..., 1]) and np.abs(ca[..., 0] - img[..., 0]).max() > 0


# ------------------------------------------------------------------ colour
def test_colour_ops_identity_and_direction(photo_crop: np.ndarray) -> None:
    img = photo_crop[:32, :32]
    for out in (
        ops.contrast(img, 1.0),
        ops.saturation(img, 1.0),
        ops.temperature(img, 0.0),
        ops.gamma(img, 1.0),
    ):
        np.testing.assert_allclose(out, img, atol=1e-6)
    assert ops.contrast(img, 1.5).std() > img.std()
    assert np.allclose(ops.saturation(img, 0.0)[..., 0], ops.saturation(img, 0.0)[..., 1], atol=1e-6)
    warm = ops.temperature(img, 0.1)
    assert warm[..., 0].mean() > img[..., 0].mean() and warm[..., 2].mean() < img[..., 2].mean()
    assert ops.gamma(img, 2.0).mean() < img.mean()
