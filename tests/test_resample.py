"""Magic Kernel family and classic resamplers: known taps, DC gain, edges, agreement with Pillow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from paragonsr.archs.mks_upsample import MagicKernelSharpUpsample
from paragonsr.ops.resample import (
    KERNEL_NAMES,
    canonical_kernel,
    frequency_response,
    magic_kernel,
    magic_kernel_sharp,
    magic_phase_weights,
    resize,
    resize_np,
    sharp_taps,
    sharpen,
    weight_matrix,
)

FACTORS = [(10, 20), (20, 10), (7, 13), (13, 7), (9, 9), (5, 17), (17, 5), (12, 36), (40, 11)]


def test_magic_kernel_values() -> None:
    # m(x) = 3/4 - x^2 (|x| <= 1/2), 1/2 (|x| - 3/2)^2 (1/2 <= |x| <= 3/2), 0 beyond
    assert magic_kernel(np.array([0.0]))[0] == pytest.approx(0.75)
    assert magic_kernel(np.array([0.5, -0.5]))[0] == pytest.approx(0.5)
    assert magic_kernel(np.array([1.0]))[0] == pytest.approx(0.125)
    assert magic_kernel(np.array([1.5, 2.0, -3.0])).tolist() == [0.0, 0.0, 0.0]
    # partition of unity: integer shifts sum to 1 everywhere
    xs = np.linspace(-0.5, 0.5, 11)
    total = sum(magic_kernel(xs - t) for t in range(-3, 4))
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_mks2021_taps_and_combined_kernel() -> None:
    np.testing.assert_allclose(sharp_taps("2021") * 144, [-1, 6, -35, 204, -35, 6, -1], atol=1e-12)
    np.testing.assert_allclose(sharp_taps("2013") * 4, [-1, 6, -1], atol=1e-12)
    # 2021 = 2013 convolved with [1/36, 0, 17/18, 0, 1/36]
    np.testing.assert_allclose(
        np.convolve(sharp_taps("2013"), [1 / 36, 0, 17 / 18, 0, 1 / 36]), sharp_taps("2021")
    )
    # Costella: centre of the combined MKS2021 kernel is 577/576 - (239/144) x^2, support +-4.5
    x = np.array([0.0, 0.1, 0.25, 0.4])
    np.testing.assert_allclose(magic_kernel_sharp(x), 577 / 576 - 239 / 144 * x**2, atol=1e-12)
    assert magic_kernel_sharp(np.array([4.5, 5.0, -4.6])).tolist() == [0.0, 0.0, 0.0]
    assert magic_kernel_sharp(np.array([4.4]))[0] != 0.0


def test_alpha_blend_taps() -> None:
    np.testing.assert_allclose(sharp_taps("2021", 0.0), [0, 0, 0, 1, 0, 0, 0])
    half = sharp_taps("2021", 0.5)
    np.testing.assert_allclose(half, 0.5 * (sharp_taps("2021", 1.0) + sharp_taps("2021", 0.0)))


def test_sharpening_filter_frequency_response() -> None:
    taps = sharp_taps("2021")
    assert frequency_response(taps, 0.0)[0] == pytest.approx(1.0)  # DC gain 1
    assert frequency_response(taps, np.pi)[0] == pytest.approx(2.0)  # 288/144: it sharpens
    assert frequency_response(taps, np.pi)[0] > 1.0
    # MKS2021 is designed flatter than MKS2013 through the passband's lower part
    w = np.linspace(0.05, 0.5, 10)
    mk = (np.cos(w) + 3) / 4  # Magic Kernel's response at factor 1 ([1/8, 3/4, 1/8])
    err21 = np.abs(mk * frequency_response(taps, w) - 1).max()
    err13 = np.abs(mk * frequency_response(sharp_taps("2013"), w) - 1).max()
    assert err21 < err13


def test_magic_2x_phase_weights() -> None:
    np.testing.assert_allclose(magic_phase_weights(2) * 32, [[9, 22, 1], [1, 22, 9]], atol=1e-12)
    # the same weights come out of the generic weight matrix (interior rows)
    w = weight_matrix(10, 20, "magic")
    np.testing.assert_allclose(w[8, 3:6] * 32, [9, 22, 1], atol=1e-12)
    np.testing.assert_allclose(w[9, 3:6] * 32, [1, 22, 9], atol=1e-12)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_dc_gain_one_for_every_kernel_and_factor(kernel: str) -> None:
    for n_in, n_out in FACTORS:
        for aa in (True, False):
            np.testing.assert_allclose(weight_matrix(n_in, n_out, kernel, aa).sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_constant_image_stays_constant_including_borders(kernel: str) -> None:
    img = torch.full((1, 3, 11, 14), 0.37, dtype=torch.float64)
    for size in [(23, 29), (5, 6), (11, 31), (40, 3)]:
        out = resize(img, size=size, kernel=kernel)
        assert out.shape == (1, 3, *size)
        assert (out - 0.37).abs().max().item() < 1e-12


def test_anisotropic_non_integer_sizes() -> None:
    x = torch.rand(2, 1, 13, 17)
    out = resize(x, scale=(1.5, 0.6))
    assert out.shape == (2, 1, 20, 10)
    out = resize(x, size=(31, 7), kernel="lanczos3")
    assert out.shape == (2, 1, 31, 7)


def _pil_resize(img: np.ndarray, size: tuple[int, int], flt) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), flt), dtype=np.float64)


def _two_pass_u8(img: np.ndarray, size: tuple[int, int], kernel: str) -> np.ndarray:
    """Our resize done as Pillow does it: horizontal pass, round half up to uint8, vertical pass, round again."""

    def r8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(x + 0.5), 0, 255)

    h = r8(resize_np(img.astype(np.float64), size=(img.shape[0], size[1]), kernel=kernel))
    return r8(resize_np(h, size=size, kernel=kernel))


def _textured_u8(photo_paths, size: int) -> np.ndarray:
    """A textured photo crop squeezed into [32, 223]: Pillow clips its 8-bit intermediate pass, so avoid overshoot."""
    from conftest import load_photo_crop

    path = next(p for p in photo_paths if "picosdeeuropa" in p.name)  # grass: fine texture everywhere
    crop = load_photo_crop(path, size, 128, 128)[..., 1]
    return np.round(32 + crop * 191).astype(np.uint8)


@pytest.mark.parametrize(
    ("kernel", "flt"),
    [
        ("bicubic", Image.Resampling.BICUBIC),
        ("lanczos3", Image.Resampling.LANCZOS),
        ("bilinear", Image.Resampling.BILINEAR),
        ("box", Image.Resampling.BOX),
    ],
)
def test_downscale_matches_pillow(photo_paths, kernel: str, flt) -> None:
    img = _textured_u8(photo_paths, 128)
    for size in [(64, 64), (45, 50), (30, 97)]:
        ours = np.clip(resize_np(img.astype(np.float64), size=size, kernel=kernel), 0, 255)
        ref = _pil_resize(img, size, flt)
        # Pillow truncates the kernel at the border where we replicate: compare the interior tightly, everything
        # loosely. Pillow rounds to uint8 (half up) after each of its two passes: up to ~1 LSB apart, and biased
        # (box at exactly 1/2 is +0.5 LSB on average on any textured image), so the loose whole-image check runs
        # our resize with the same two roundings.
        m = 6
        assert np.abs(ours[m:-m, m:-m] - ref[m:-m, m:-m]).max() <= 1.25
        assert np.abs(_two_pass_u8(img, size, kernel) - ref).mean() < 0.3


def test_upscale_bicubic_matches_pillow_interior(photo_paths) -> None:
    img = _textured_u8(photo_paths, 40)
    ours = np.clip(resize_np(img.astype(np.float64), size=(100, 70), kernel="bicubic"), 0, 255)
    ref = _pil_resize(img, (100, 70), Image.Resampling.BICUBIC)
    assert np.abs(ours[6:-6, 6:-6] - ref[6:-6, 6:-6]).max() <= 1.25


def test_resize_np_keeps_dtype_and_range() -> None:
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    out = resize_np(u8, scale=2)
    assert out.dtype == np.uint8 and out.shape == (18, 14, 3)
    u16 = rng.integers(0, 65536, (9, 7), dtype=np.uint16)
    out16 = resize_np(u16, scale=2.5, kernel="lanczos3")
    assert out16.dtype == np.uint16 and out16.shape == (23, 18)
    # sharp kernels overshoot: clipped, not wrapped around
    assert out16.max() <= 65535


def test_nearest_matches_pillow() -> None:
    img = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    for size in [(11, 13), (3, 4), (5, 7)]:
        ours = resize_np(img, size=size, kernel="nearest")
        ref = _pil_resize(img, size, Image.Resampling.NEAREST)
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_feature_upsampler_equals_resize(scale: int, alpha: float) -> None:
    torch.manual_seed(scale)
    x = torch.rand(2, 4, 9, 12, dtype=torch.float64)
    up = MagicKernelSharpUpsample(4, scale, alpha).double()
    got = up(x)
    assert got.shape == (2, 4, 9 * scale, 12 * scale)
    # reference: x + alpha (sharp(x) - x) on the input grid, then the Magic Kernel resample
    ref = resize(sharpen(x, "2021", alpha), scale=scale, kernel="magic")
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    if alpha == 1.0:
        torch.testing.assert_close(got, resize(x, scale=scale, kernel="magic_sharp_2021"), atol=1e-6, rtol=0)


def test_feature_upsampler_properties() -> None:
    up = MagicKernelSharpUpsample(3, 2, 0.5)
    assert sum(p.numel() for p in up.parameters()) == 0
    assert up.state_dict() == {}  # fixed filters never land in checkpoints
    const = torch.full((1, 3, 5, 6), 2.0)
    torch.testing.assert_close(up(const), torch.full((1, 3, 10, 12), 2.0))
    assert MagicKernelSharpUpsample(3, 1)(const) is const
    with pytest.raises(ValueError, match="alpha"):
        MagicKernelSharpUpsample(3, 2, alpha=1.5)
    with pytest.raises(ValueError, match="integer scale"):
        MagicKernelSharpUpsample(3, 1.5)  # type: ignore[arg-type]


def test_feature_upsampler_traces_with_dynamic_shapes() -> None:
    up = MagicKernelSharpUpsample(2, 3, 0.5).eval()
    traced = torch.jit.trace(up, torch.rand(1, 2, 8, 8))
    x = torch.rand(1, 2, 5, 11)
    torch.testing.assert_close(traced(x), up(x))


def test_kernel_names_and_errors() -> None:
    assert canonical_kernel("MKS2021") == "magic_sharp_2021"
    assert canonical_kernel("magic-sharp-2021") == "magic_sharp_2021"
    assert canonical_kernel("area") == "box"
    with pytest.raises(ValueError, match="unknown resampling kernel 'spline'"):
        canonical_kernel("spline")
    with pytest.raises(TypeError, match="floating point"):
        resize(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), scale=2)
    with pytest.raises(ValueError, match="size"):
        resize(torch.zeros(1, 1, 4, 4))


def test_feature_upsampler_runs_fp32_on_cpu_under_bf16() -> None:
    up = MagicKernelSharpUpsample(3, 2, 1.0)
    x = torch.rand(1, 3, 8, 8)
    ref = up(x)
    out_bf16 = up(x.bfloat16())
    assert out_bf16.dtype == torch.bfloat16
    # computed in fp32 and rounded once at the end: within bf16's half-ULP of the fp32 result
    assert (out_bf16.float() - ref).abs().max().item() <= ref.abs().max().item() * 2**-8
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_auto = up(x)
    assert out_auto.dtype == torch.float32
    torch.testing.assert_close(out_auto, ref)
