"""Upscale pipeline: alpha without dark fringes, grayscale, 1-channel models, outscale, precision, backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paragonsr.infer.backends import ResamplerBackend, TorchBackend, resolve_precision
from paragonsr.infer.upscale import Upscaler, fill_transparent, upscale_image
from paragonsr.ops.resample import resize


class Nearest(nn.Module):
    """A 'model' with a known answer: nearest-neighbour ×s, optionally with a conv so autocast has work."""

    def __init__(self, scale: int = 2, ch: int = 3) -> None:
        super().__init__()
        self.scale, self.in_ch, self.out_ch = scale, ch, ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


def _square_rgba(size: int = 32, lo: int = 10, hi: int = 22) -> np.ndarray:
    img = np.zeros((size, size, 4), np.float32)  # transparent black around
    img[lo:hi, lo:hi] = 1.0  # opaque white square
    return img


@pytest.mark.parametrize(
    "backend",
    [
        ResamplerBackend("magic_sharp_2021", 2),
        ResamplerBackend("bicubic", 3),
        TorchBackend(Nearest(2), "cpu", "fp32"),
    ],
    ids=["mks2021", "bicubic", "torch"],
)
def test_rgba_no_dark_fringe(backend) -> None:
    out, info = upscale_image(_square_rgba(), None, backend)
    s = backend.scale
    assert out.shape == (32 * s, 32 * s, 4) and info.channels == 4
    alpha = out[..., 3]
    edge = (alpha > 0.02) & (alpha < 0.98)
    assert edge.sum() > 0 or isinstance(backend, TorchBackend)
    assert float(out[..., :3][alpha > 0.02].min()) > 0.98  # colour under any visible alpha stays white
    assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
    assert abs(float(alpha[0, 0])) < 1e-6 and abs(float(alpha[16 * s, 16 * s]) - 1.0) < 1e-6


def test_naive_rgb_resize_would_fringe() -> None:
    """Control for the test above: resizing the stored RGB directly darkens the semi-transparent edge."""
    img = torch.from_numpy(_square_rgba()).permute(2, 0, 1)[None]
    up = resize(img, scale=2, kernel="magic_sharp_2021").clamp(0, 1)[0].permute(1, 2, 0).numpy()
    edge = (up[..., 3] > 0.02) & (up[..., 3] < 0.98)
    assert float(up[..., :3][edge].min()) < 0.9


def test_fill_transparent_keeps_visible_pixels() -> None:
    rgb = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    alpha = torch.ones(1, 1, 9, 11)
    alpha[..., :, :4] = 0.0
    alpha[..., 0, 5] = 0.5
    rgb[..., :, :4] = 0.0
    filled = fill_transparent(rgb, alpha)
    visible = (alpha > 0).expand_as(rgb)
    assert torch.equal(filled[visible], rgb[visible])
    # Holes take the alpha-weighted colour of their neighbourhood: within the visible colour range, not black.
    lo, hi = rgb[visible].view(-1).min(), rgb[visible].view(-1).max()
    assert (
        float(filled[..., :4].min()) >= float(lo) - 1e-6 and float(filled[..., :4].max()) <= float(hi) + 1e-6
    )


def test_gray_image_stays_gray_through_rgb_model() -> None:
    gray = np.random.default_rng(0).random((10, 7, 1), dtype=np.float32)
    out, info = upscale_image(gray, None, TorchBackend(Nearest(2), "cpu", "fp32"))
    assert out.shape == (20, 14, 1) and info.channels == 1
    np.testing.assert_allclose(out[..., 0], np.kron(gray[..., 0], np.ones((2, 2))), atol=1e-6)


def test_rgb_through_one_channel_model() -> None:
    rgb = np.random.default_rng(1).random((8, 9, 3), dtype=np.float32)
    backend = TorchBackend(Nearest(2, ch=1), "cpu", "fp32")
    per_ch, _ = upscale_image(rgb, None, backend, gray_mode="per_channel")
    np.testing.assert_allclose(per_ch, np.kron(rgb, np.ones((2, 2, 1))), atol=1e-6)
    grey_rgb = np.repeat(rgb[..., :1], 3, axis=2)  # no chroma: Y mode must equal the model on luma alone
    y_mode, _ = upscale_image(grey_rgb, None, backend, gray_mode="y")
    np.testing.assert_allclose(y_mode, np.kron(grey_rgb, np.ones((2, 2, 1))), atol=1e-5)
    y_col, _ = upscale_image(rgb, None, backend, gray_mode="y")
    assert y_col.shape == (16, 18, 3) and not np.allclose(y_col, per_ch, atol=1e-3)


def test_outscale_resamples_model_output() -> None:
    img = np.random.default_rng(2).random((12, 10, 3), dtype=np.float32)
    out, info = upscale_image(img, None, TorchBackend(Nearest(4), "cpu", "fp32"), outscale=1.5)
    assert out.shape == (18, 15, 3) and (info.height, info.width) == (18, 15)
    model_out = torch.from_numpy(np.kron(img, np.ones((4, 4, 1)))).permute(2, 0, 1)[None].float()
    ref = resize(model_out, size=(18, 15), kernel="magic_sharp_2021").clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_tiled_upscaler_matches_untiled() -> None:
    from paragonsr.archs import build_arch

    torch.manual_seed(0)
    model = build_arch("compact", num_feat=8, num_conv=2, upscale=2)
    img = np.random.default_rng(3).random((70, 45, 3), dtype=np.float32)
    backend = TorchBackend(model, "cpu", "fp32")
    whole, _ = Upscaler(backend, tile=None)(img)
    tiled, _ = Upscaler(backend, tile=32, overlap=16)(img)  # radius 4 <= margin 16/4
    assert float(np.abs(whole - tiled).max()) <= 1e-4


def test_too_small_image_rejected() -> None:
    with pytest.raises(ValueError, match=r"too small to upscale \(1x1 px"):
        upscale_image(np.zeros((1, 1, 3), np.float32), None, ResamplerBackend("bicubic", 2))


def test_precision_policy() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")  # never fp16 on a CPU by default
    # fp16 on a CPU (no fast kernels) is downgraded with a warning, never refused (paragonsr.precision)
    with pytest.warns(
        UserWarning, match="asked fp16 autocast, running (bf16|fp32): fp16 autocast on the CPU"
    ):
        assert resolve_precision("fp16", cpu) in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", cpu)


def test_bf16_close_to_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    from paragonsr.archs import build_arch

    monkeypatch.setenv("PARAGONSR_CPU_BF16", "1")  # bf16 even where it is only emulated (slow, same values)

    torch.manual_seed(0)
    model = build_arch("compact", num_feat=8, num_conv=2, upscale=2)
    x = torch.rand(1, 3, 16, 16)
    fp32 = TorchBackend(model, "cpu", "fp32")(x)
    bf16 = TorchBackend(model, "cpu", "bf16")
    assert bf16.channels_last and bf16.precision == "bf16"
    y = bf16(x)
    assert y.dtype == torch.float32 and y.shape == (1, 3, 32, 32)
    assert float((y - fp32).abs().max()) < 0.05


class _BreaksInLowPrecision(Nearest):
    def __init__(self) -> None:
        super().__init__(2)
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.dtype != torch.float32:  # e.g. fp16 overflow on a GPU
            y = y * float("inf")
        return super().forward(y)


def test_non_finite_reduced_precision_falls_back_to_fp32() -> None:
    backend = TorchBackend(_BreaksInLowPrecision(), "cpu", "bf16")
    with pytest.warns(UserWarning, match="non-finite values; switching this model to fp32"):
        y = backend(torch.rand(1, 3, 8, 8))
    assert bool(torch.isfinite(y).all()) and backend.precision == "fp32"


def test_resampler_outscale_is_one_resize_and_alpha_follows_kernel() -> None:
    img = np.random.default_rng(4).random((10, 12, 4), dtype=np.float32)
    img[..., 3] = (img[..., 3] > 0.5).astype(np.float32)
    out, _ = upscale_image(img, None, ResamplerBackend("nearest", 2), outscale=3)
    assert out.shape == (30, 36, 4)
    np.testing.assert_array_equal(
        out[..., 3], np.kron(img[..., 3], np.ones((3, 3)))
    )  # alpha stays hard-edged
    rgb, _ = upscale_image(img[..., :3], None, ResamplerBackend("bicubic", 2), outscale=1.5)
    t = torch.from_numpy(img[..., :3]).permute(2, 0, 1)[None]
    ref = resize(t, size=(15, 18), kernel="bicubic").clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(rgb, ref, atol=1e-6)


@pytest.mark.parametrize("gray_mode", ["per_channel", "y"])
def test_rgb_into_one_to_three_channel_model(gray_mode: str) -> None:
    """RGB(A) into a 1 -> 3 model used to stack three 3-channel outputs (9/10 channels: unwritable)."""
    import torch
    import torch.nn.functional as F

    from paragonsr.infer.backends import TorchBackend
    from paragonsr.infer.upscale import LUMA, upscale_image

    class Colourise(torch.nn.Module):  # known answer: nearest x2 of the luma, times (1, 0.5, 0.25)
        scale, in_ch, out_ch = 2, 1, 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            up = F.interpolate(x, scale_factor=2, mode="nearest")
            return up * torch.tensor([1.0, 0.5, 0.25]).view(1, 3, 1, 1)

    rgba = np.random.default_rng(0).random((6, 5, 4), dtype=np.float32)
    rgba[..., 3] = 1.0
    out, info = upscale_image(rgba, None, TorchBackend(Colourise(), "cpu", "fp32"), gray_mode=gray_mode)
    assert out.shape == (12, 10, 4) and info.channels == 4
    luma = np.kron(rgba[..., :3] @ np.array(LUMA, np.float32), np.ones((2, 2), np.float32))
    np.testing.assert_allclose(out[..., :3], luma[..., None] * np.array([1.0, 0.5, 0.25]), atol=1e-5)
