"""Batched torch path of the Real-ESRGAN degradation (BasicSR's ``feed_data`` semantics on any device).

Per sample: blur kernels, noise type/σ/scale/gray, JPEG quality, final sinc. Per batch: resize factor and mode of
each stage, the second-blur decision, the final order and its resize mode, and one crop window. Filters: the USM
Gaussian runs as two 1-D convolutions; the per-sample blur kernels as an FFT correlation (cost independent of the
kernel size, unlike BasicSR's dense 21×21 grouped conv). JPEG is a real libjpeg round trip on the CPU.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from paragonsr.degrade import ops
from paragonsr.degrade.kernels import pad_kernel
from paragonsr.ops.colour import BT601_LUMA
from paragonsr.ops.filters import gaussian_1d

_LUMA = BT601_LUMA


class RealESRGANSampler(Protocol):
    """What the batched path needs from a Real-ESRGAN degradation (``RealESRGANDegradation`` provides it): the
    validated options, the scale and the per-sample random draws."""

    opt: dict[str, Any]
    scale: int

    def sample_kernel(self, rng: np.random.Generator, stage: int) -> tuple[np.ndarray, dict]: ...

    def sample_final_sinc(self, rng: np.random.Generator) -> tuple[np.ndarray | None, dict]: ...

    def sample_resize(self, rng: np.random.Generator, stage: int) -> tuple[float, str]: ...

    def sample_noise(self, rng: np.random.Generator, stage: int) -> dict: ...


def reflect_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Reflect-101 padding of any width (repeated when ``p`` >= the side; replicate for 1-pixel sides)."""
    while p > 0:
        h, w = x.shape[-2:]
        if min(h, w) < 2:
            return F.pad(x, (p, p, p, p), mode="replicate")
        step = min(p, h - 1, w - 1)
        x = F.pad(x, (step, step, step, step), mode="reflect")
        p -= step
    return x


def gaussian_blur_sep(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Correlation of every channel with the separable kernel taps ⊗ taps: two 1-D convs on CUDA, one FFT
    correlation on the CPU (where a 1×51 conv2d is ~10× slower than the FFT)."""
    b, c, h, w = x.shape
    if x.device.type == "cpu":
        return filter2d_batch(x, torch.outer(taps, taps).expand(b, -1, -1))
    p = taps.numel() // 2
    y = reflect_pad(x.reshape(b * c, 1, h, w), p)
    y = F.conv2d(y, taps.view(1, 1, 1, -1))
    y = F.conv2d(y, taps.view(1, 1, -1, 1))
    return y.view(b, c, h, w)


def usm_sharpen_t(
    x: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10
) -> torch.Tensor:
    """Batched Real-ESRGAN USM (same maths as :func:`paragonsr.ops.filters.usm_sharpen`)."""
    size = radius + 1 if radius % 2 == 0 else radius
    taps = torch.from_numpy(gaussian_1d(size, 0)).to(x)
    blur = gaussian_blur_sep(x, taps)
    residual = x - blur
    mask = (residual.abs() * 255 > threshold).to(x.dtype)
    soft = gaussian_blur_sep(mask, taps)
    sharp = (x + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * x


def filter2d_batch(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate sample i (all channels) with ``kernels[i]`` (odd K×K), reflect borders, via FFT."""
    b, _c, h, w = x.shape
    k = kernels.shape[-1]
    p = k // 2
    xp = reflect_pad(x, p)
    hp, wp = xp.shape[-2:]
    canvas = x.new_zeros((b, hp, wp))
    canvas[:, :k, :k] = kernels.to(x)
    canvas = torch.roll(canvas, shifts=(-p, -p), dims=(-2, -1))  # tap u at index u mod N
    spec = torch.fft.rfft2(xp) * torch.conj(torch.fft.rfft2(canvas))[:, None]
    out = torch.fft.irfft2(spec, s=(hp, wp))
    return out[..., p : p + h, p : p + w].contiguous()


def _interp(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return (
        F.interpolate(x, size=size, mode=mode)
        if mode == "area"
        else F.interpolate(x, size=size, mode=mode, align_corners=False)
    )


def _poisson_counts(lam: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Exact Poisson draws for λ < 64, rounded N(λ, λ) above (as ``ops.poisson_noise``)."""
    counts = torch.round(
        lam + torch.randn(lam.shape, generator=gen, device=lam.device, dtype=lam.dtype) * lam.sqrt()
    )
    small = lam < 64
    if bool(small.any()):
        counts[small] = torch.poisson(lam[small], generator=gen)
    return counts


def _noise_t(
    deg: RealESRGANSampler, x: torch.Tensor, rng: np.random.Generator, gen: torch.Generator, stage: int
) -> torch.Tensor:
    """Per-sample Gaussian or Poisson noise (each sample's own σ / scale / gray draw), as BasicSR."""
    out = torch.empty_like(x)
    luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(3, 1, 1)
    for i in range(x.shape[0]):
        d = deg.sample_noise(rng, stage)
        xi = x[i]
        shape = (1, *xi.shape[-2:]) if d["gray"] else xi.shape
        if d["kind"] == "gaussian":
            noise = torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype) * (d["sigma"] / 255.0)
        else:
            base = (xi * luma).sum(0, keepdim=True) if d["gray"] and xi.shape[0] == 3 else xi
            q = (base * 255).round().clamp(0, 255)
            distinct = int((torch.bincount(q.flatten().long(), minlength=256) > 0).sum())
            vals = 2.0 ** math.ceil(math.log2(max(distinct, 1)))
            q = q / 255
            noise = (_poisson_counts(q * vals, gen) / vals - q) * d["scale"]
        out[i] = (xi + noise).clamp(0, 1)
    return out


def _jpeg_t(x: torch.Tensor, rng: np.random.Generator, jrange: list[float]) -> torch.Tensor:
    arr = x.clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
    out = [ops.jpeg(a, round(rng.uniform(jrange[0], jrange[1]))) for a in arr]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x)


def _kernels(deg: RealESRGANSampler, rng: np.random.Generator, b: int, stage: int) -> torch.Tensor:
    ks = [deg.sample_kernel(rng, stage)[0] for _ in range(b)]
    k = max(kk.shape[0] for kk in ks)
    return torch.from_numpy(np.stack([pad_kernel(kk, k) for kk in ks]))


def degrade_batch(
    deg: RealESRGANSampler, gt: torch.Tensor, generator: np.random.Generator | int = 0
) -> dict[str, torch.Tensor]:
    """``gt``: float [B, C, H, W] in [0, 1]. Returns ``lq`` [B, C, H/scale, W/scale] (8-bit values), ``gt`` and
    ``gt_usm`` cropped to ``gt_size`` (same window for the whole batch, as BasicSR's ``paired_random_crop``)."""
    if gt.ndim != 4:
        raise ValueError(f"degrade_batch expects a [B, C, H, W] tensor, got shape {tuple(gt.shape)}")
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    gen = torch.Generator(device=gt.device).manual_seed(int(rng.integers(2**62)))
    o, scale = deg.opt, deg.scale
    b = gt.shape[0]
    h, w = gt.shape[-2:]
    gt = gt[..., : h - h % scale, : w - w % scale].float().clamp(0, 1)
    h, w = gt.shape[-2:]
    gt_usm = usm_sharpen_t(gt, o["usm_weight"], o["usm_radius"], o["usm_threshold"])
    out = filter2d_batch(gt_usm, _kernels(deg, rng, b, 1))
    s, mode = deg.sample_resize(rng, 1)
    out = _interp(out, (int(h * s), int(w * s)), mode)
    out = _noise_t(deg, out, rng, gen, 1)
    out = _jpeg_t(out, rng, o["jpeg_range"])
    if rng.uniform() < o["second_blur_prob"]:
        out = filter2d_batch(out, _kernels(deg, rng, b, 2))
    s, mode = deg.sample_resize(rng, 2)
    out = _interp(out, (int(h / scale * s), int(w / scale * s)), mode)
    out = _noise_t(deg, out, rng, gen, 2)
    sincs = [deg.sample_final_sinc(rng)[0] for _ in range(b)]
    k = max([1] + [s_.shape[0] for s_ in sincs if s_ is not None])
    pulse = np.ones((1, 1), np.float32)
    sinc = torch.from_numpy(np.stack([pad_kernel(pulse if s_ is None else s_, k) for s_ in sincs]))
    jpeg_first = bool(rng.uniform() >= 0.5)
    mode = ("area", "bilinear", "bicubic")[int(rng.integers(3))]
    if jpeg_first:
        out = _jpeg_t(out, rng, o["jpeg_range2"])
    out = filter2d_batch(_interp(out, (h // scale, w // scale), mode), sinc)
    if not jpeg_first:
        out = _jpeg_t(out, rng, o["jpeg_range2"])
    lq = (out * 255).round().clamp(0, 255) / 255
    gs = o["gt_size"]
    if gs is not None and h >= gs and w >= gs:
        ls = gs // scale
        top, left = int(rng.integers(0, h // scale - ls + 1)), int(rng.integers(0, w // scale - ls + 1))
        lq = lq[..., top : top + ls, left : left + ls]
        gt = gt[..., top * scale : top * scale + gs, left * scale : left * scale + gs]
        gt_usm = gt_usm[..., top * scale : top * scale + gs, left * scale : left * scale + gs]
    return {"lq": lq.contiguous(), "gt": gt.contiguous(), "gt_usm": gt_usm.contiguous()}
