"""Verification gate: exported artifacts must match PyTorch before they are released.

- FP32 ONNX vs the PyTorch eval model on several sizes (odd ones included): max abs diff <= 1e-4.
- FP16 ONNX vs FP32 ONNX: PSNR >= 45 dB on the verification images.
- INT8 ONNX: PSNR vs ground truth (LR made by downscaling the images) within 0.3 dB of FP32, and >= 40 dB
  against the FP32 output; for a perceptual (GAN) model also LPIPS vs ground truth up by <= 0.003 (when the LPIPS
  weights are available).
Images are float32 RGB (or gray) HWC in [0, 1]; models take NCHW.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FP32_MAX_ABS = 1e-4
FP16_MIN_PSNR = 45.0
INT8_MAX_DROP_DB = 0.3
INT8_MIN_PSNR_VS_FP32 = 40.0
INT8_MAX_LPIPS_INCREASE = 0.003  # perceptual (GAN) models: PSNR alone misjudges them
PSNR_CAP = 100.0  # identical outputs; keeps JSON finite
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((24, 20), (33, 17), (48, 64))

Runner = Callable[[np.ndarray], np.ndarray]  # NCHW float32 -> NCHW float32


@dataclass
class GateResult:
    name: str
    passed: bool
    value: float
    threshold: float
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"] = self.value if math.isfinite(self.value) else None  # JSON has no inf
        return d

    def __str__(self) -> str:
        return f"{self.name}: {'PASS' if self.passed else 'FAIL'} — {self.detail}"


# ------------------------------------------------------------------------------------------------ images


def load_image(path: str | Path) -> np.ndarray:
    """Float32 HWC RGB in [0, 1] (8/16-bit, gray repeated, alpha dropped) through
    :func:`paragonsr.io.image_io.read_image` (EXIF orientation and ICC -> sRGB applied). Raises
    ``FileNotFoundError`` / ``ImageReadError`` naming the file."""
    from paragonsr.io.image_io import read_image, to_rgb

    img, _ = read_image(path)
    return np.ascontiguousarray(to_rgb(img), dtype=np.float32)


def synthetic_image(size: int = 256, seed: int = 0) -> np.ndarray:
    """A deterministic test card (gradients, edges, rings, fine noise) for runs without --calib images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    base = np.stack([xx, yy, 0.5 + 0.5 * np.cos(40 * r * r)], axis=2)
    base[(xx * 8).astype(int) % 2 == (yy * 8).astype(int) % 2] *= 0.7
    base += rng.normal(0, 0.03, base.shape).astype(np.float32)
    return np.clip(base, 0, 1).astype(np.float32)


def to_model_channels(img: np.ndarray, in_ch: int) -> np.ndarray:
    """HWC image with 1 or 3 channels -> ``in_ch`` channels (BT.601 luma for 3 -> 1, repeat for 1 -> 3)."""
    if img.shape[2] == in_ch:
        return img
    if in_ch == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if in_ch == 1 and img.shape[2] == 3:
        from paragonsr.ops.colour import LUMA_F32

        return (img @ LUMA_F32)[:, :, None]
    raise ValueError(f"verification supports 1- or 3-channel models, this one takes {in_ch} channels")


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """HR HWC -> LR HWC by antialiased bicubic (the usual bicubic-degradation benchmark convention)."""
    if scale == 1:
        return hr.copy()
    from paragonsr.ops.resample import resize

    t = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None]
    lr = resize(t, size=(hr.shape[0] // scale, hr.shape[1] // scale), kernel="bicubic", antialias=True)
    return np.clip(lr[0].numpy().transpose(1, 2, 0), 0, 1).astype(np.float32)


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    from paragonsr.ops.resample import resize

    t = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None]
    up = resize(t, scale=float(scale), kernel="bicubic")
    return np.clip(up[0].numpy().transpose(1, 2, 0), 0, 1).astype(np.float32)


@dataclass
class VerifySet:
    """Ground-truth HR crops and their LR inputs (same order)."""

    hr: list[np.ndarray]
    lr: list[np.ndarray]
    names: list[str]


def make_verify_set(
    images: Sequence[tuple[str, np.ndarray]],
    scale: int,
    in_ch: int,
    lr_size: int = 48,
    out_ch: int | None = None,
) -> VerifySet:
    """Centre crops (HR side lr_size*scale) of each image and their downscaled LR versions; ``lr_size`` 0 keeps
    whole images (cut to a multiple of ``scale``).

    LR crops have the model's ``in_ch`` channels, HR (ground truth) crops its ``out_ch`` (default ``in_ch``),
    so 1 -> 3 and 3 -> 1 models are compared with a ground truth of their own output's kind."""
    hr_size = lr_size * scale
    out = VerifySet([], [], [])
    for name, img in images:
        h, w = img.shape[:2]
        if lr_size == 0:
            crop = np.ascontiguousarray(img[: h - h % scale, : w - w % scale])
            out.hr.append(to_model_channels(crop, out_ch or in_ch))
            out.lr.append(downscale(to_model_channels(crop, in_ch), scale))
            out.names.append(name)
            continue
        if h < hr_size or w < hr_size:
            raise ValueError(f"{name}: {w}x{h} is smaller than the {hr_size}x{hr_size} verification crop")
        top, left = (h - hr_size) // 2, (w - hr_size) // 2
        crop = np.ascontiguousarray(img[top : top + hr_size, left : left + hr_size])
        out.hr.append(to_model_channels(crop, out_ch or in_ch))
        out.lr.append(downscale(to_model_channels(crop, in_ch), scale))
        out.names.append(name)
    return out


def make_calib_inputs(
    images: Iterable[np.ndarray], scale: int, in_ch: int, lr_size: int = 48, per_image: int = 2, seed: int = 0
) -> list[np.ndarray]:
    """LR calibration batches (1xCxhxw each) from random crops (not the verification centre crops)."""
    rng = np.random.default_rng(seed)
    hr_size = lr_size * scale
    batches = []
    for img in images:
        img = to_model_channels(img, in_ch)
        h, w = img.shape[:2]
        for _ in range(per_image):
            top = int(rng.integers(0, max(1, h - hr_size + 1)))
            left = int(rng.integers(0, max(1, w - hr_size + 1)))
            hr = img[top : top + hr_size, left : left + hr_size]
            batches.append(downscale(np.ascontiguousarray(hr), scale).transpose(2, 0, 1)[None].copy())
    return batches


# ------------------------------------------------------------------------------------------------ runners


def torch_runner(model: nn.Module) -> Runner:
    model = model.eval()
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run


def onnx_runner(path: str | Path, provider: str | None = "cpu") -> Runner:
    from paragonsr.infer.onnx_backend import OnnxBackend

    return OnnxBackend(path, provider=provider).run_numpy


def psnr(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """PSNR in dB of two HWC (or HW) images in [0, 1] (clipped first), ``shave`` border pixels ignored:
    :func:`paragonsr.metrics.calculate_psnr` on all channels, capped at ``PSNR_CAP`` (identical images) and 0 for
    NaN (an fp16 overflow must fail every gate, and JSON has no NaN). Raises ValueError for unequal shapes."""
    from paragonsr.metrics.psnr_ssim import calculate_psnr

    if a.shape != b.shape:
        raise ValueError(f"PSNR needs equal shapes, got {a.shape} and {b.shape}")
    a = np.clip(a.astype(np.float64), 0, 1) * 255.0
    b = np.clip(b.astype(np.float64), 0, 1) * 255.0
    value = calculate_psnr(a, b, crop_border=shave)
    return 0.0 if math.isnan(value) else min(value, PSNR_CAP)


def _chw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def run_all(runner: Runner, lrs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [runner(_chw(lr))[0] for lr in lrs]


# ------------------------------------------------------------------------------------------------ gates


def parity_inputs(
    rng: np.random.Generator, shape: tuple[int, int, int, int], kind: str = "uniform"
) -> np.ndarray:
    """Random NCHW float32 inputs in [0, 1] for the parity gates.

    ``uniform``: white noise. ``image``: a smooth random field (bilinear from 1/4 resolution) plus ±0.05 pixel
    noise, for models that are ill-conditioned on white noise (SPAN scales its input by 255 and gates it
    multiplicatively: on uniform noise its own fp32 output is ~1e-3 relative away from fp64, on images ~1e-7).
    """
    if kind == "uniform":
        return rng.random(shape, dtype=np.float32)
    if kind != "image":
        raise ValueError(f"parity inputs must be 'uniform' or 'image', got {kind!r}")
    n, c, h, w = shape
    coarse = torch.from_numpy(rng.random((n, c, max(2, h // 4), max(2, w // 4)), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(
        coarse, size=(h, w), mode="bilinear", align_corners=False
    ).numpy()
    noise = 0.1 * (rng.random(shape, dtype=np.float32) - 0.5)
    return np.clip(smooth + noise, 0.0, 1.0).astype(np.float32)


def check_parity(
    reference: Runner,
    candidate: Runner,
    in_ch: int,
    scale: int,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    tol: float = FP32_MAX_ABS,
    name: str = "fp32_parity",
    seed: int = 0,
    inputs: str = "uniform",
) -> GateResult:
    """Max abs diff between two runners on random inputs of each (h, w); a batch of 2 checks the batch axis.
    ``inputs`` picks the random inputs (:func:`parity_inputs`; a model's ``parity_inputs`` attribute names its kind).

    The limit is ``tol`` for outputs in image range (|y| <= 1: an absolute 1e-4 gate) and scales with the
    output's magnitude beyond that, so a model with large raw outputs (a random-init XL reaches |y| ~ 50, where
    fp32 itself rounds at ~1e-4) is held to the same relative precision instead of failing on fp32 rounding.
    """
    rng = np.random.default_rng(seed)
    worst, worst_ratio, magnitude, per_size = 0.0, 0.0, 1.0, {}
    for h, w in sizes:
        x = parity_inputs(rng, (2, in_ch, h, w), inputs)
        ref, cand = reference(x), candidate(x)
        if cand.shape != ref.shape or cand.shape[2:] != (h * scale, w * scale):
            return GateResult(
                name,
                False,
                math.inf,
                tol,
                f"shape mismatch at {h}x{w}: {cand.shape} vs reference {ref.shape}",
            )
        diff = float(np.max(np.abs(ref - cand)))
        if not math.isfinite(diff):  # NaN/inf in either output (e.g. an overflow) is a failure, never a pass
            diff = math.inf
        per_size[f"{h}x{w}"] = diff
        peak = max(1.0, float(np.max(np.abs(ref))))
        magnitude = max(magnitude, peak)
        worst, worst_ratio = max(worst, diff), max(worst_ratio, diff / peak)
    sizes_txt = ", ".join(f"{h}x{w}" for h, w in sizes) + (
        "" if inputs == "uniform" else f" ({inputs}-like inputs)"
    )
    limit = f"limit {tol:.0e}" if magnitude == 1.0 else f"limit {tol:.0e} x max|y| {magnitude:.3g}"
    return GateResult(
        name,
        worst_ratio <= tol,
        worst,
        tol * magnitude,
        f"max abs diff {worst:.2e} ({limit}) over sizes {sizes_txt}",
        {"per_size": per_size, "output_magnitude": magnitude},
    )


def check_fp16(
    fp32: Sequence[np.ndarray], fp16: Sequence[np.ndarray], min_psnr: float = FP16_MIN_PSNR
) -> GateResult:
    vals = [psnr(a, b) for a, b in zip(fp32, fp16)]
    worst = min(vals)
    return GateResult(
        "fp16_vs_fp32",
        worst >= min_psnr,
        worst,
        min_psnr,
        f"PSNR vs FP32 min {worst:.2f} dB / mean {np.mean(vals):.2f} dB over {len(vals)} images (need >= {min_psnr} dB)",
        {"per_image_db": vals},
    )


def lpips_metric() -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, str]:
    """(LPIPS of two HWC RGB images in [0, 1], "") through :func:`paragonsr.metrics.perceptual.calculate_lpips`,
    or (None, reason) when the metric or its weights are not available here."""
    try:
        from paragonsr.metrics.perceptual import calculate_lpips

        probe = np.zeros((64, 64, 3), np.float32)  # AlexNet needs >= 32 px a side
        calculate_lpips(probe, probe)
    except Exception as exc:  # missing weights / optional package: the gate says so instead of failing
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    def run(a: np.ndarray, b: np.ndarray) -> float:
        return float(calculate_lpips(np.clip(a, 0, 1) * 255.0, np.clip(b, 0, 1) * 255.0))

    return run, ""


def check_int8(
    hr: Sequence[np.ndarray],
    fp32: Sequence[np.ndarray],
    int8: Sequence[np.ndarray],
    scale: int,
    max_drop: float = INT8_MAX_DROP_DB,
    min_vs_fp32: float = INT8_MIN_PSNR_VS_FP32,
    lpips: Callable[[np.ndarray, np.ndarray], float] | None = None,
    max_lpips_increase: float = INT8_MAX_LPIPS_INCREASE,
) -> GateResult:
    """INT8 gate: quality vs ground truth may drop by <= max_drop dB, and the output must stay close to FP32.

    ``hr``: HWC ground truth; ``fp32`` / ``int8``: CHW outputs, same order. ``lpips`` (HWC, HWC in [0, 1] -> float,
    see :func:`lpips_metric`), for perceptual models: the mean LPIPS vs ground truth may rise by at most
    ``max_lpips_increase``."""
    shave = scale
    gt_fp32 = float(np.mean([psnr(o.transpose(1, 2, 0), g, shave) for o, g in zip(fp32, hr)]))
    gt_int8 = float(np.mean([psnr(o.transpose(1, 2, 0), g, shave) for o, g in zip(int8, hr)]))
    vs_fp32 = float(min(psnr(a, b) for a, b in zip(fp32, int8)))
    drop = gt_fp32 - gt_int8
    reasons = []
    if drop > max_drop:
        reasons.append(f"PSNR vs ground truth drops {drop:.2f} dB (limit {max_drop} dB)")
    if vs_fp32 < min_vs_fp32:
        reasons.append(f"PSNR vs FP32 output is {vs_fp32:.2f} dB (need >= {min_vs_fp32} dB)")
    detail = f"GT PSNR fp32 {gt_fp32:.2f} dB, int8 {gt_int8:.2f} dB (drop {drop:+.2f} dB); int8 vs fp32 {vs_fp32:.2f} dB"
    extra: dict[str, Any] = {}
    if lpips is not None:
        lp32 = float(np.mean([lpips(o.transpose(1, 2, 0), g) for o, g in zip(fp32, hr)]))
        lp8 = float(np.mean([lpips(o.transpose(1, 2, 0), g) for o, g in zip(int8, hr)]))
        extra = {"lpips_gt_fp32": lp32, "lpips_gt_int8": lp8, "lpips_increase": lp8 - lp32}
        detail += f"; LPIPS fp32 {lp32:.4f}, int8 {lp8:.4f} ({lp8 - lp32:+.4f})"
        if lp8 - lp32 > max_lpips_increase:
            reasons.append(f"LPIPS vs ground truth rises {lp8 - lp32:.4f} (limit {max_lpips_increase})")
    if reasons:
        detail += " — refused: " + "; ".join(reasons)
    return GateResult(
        "int8",
        not reasons,
        drop,
        max_drop,
        detail,
        {
            "psnr_gt_fp32_db": gt_fp32,
            "psnr_gt_int8_db": gt_int8,
            "psnr_vs_fp32_db": vs_fp32,
            "drop_db": drop,
            **extra,
        },
    )
