"""The op table YAML workflow sequences draw from: name -> function, parameter defaults, where it applies.

A parameter value in YAML is a fixed value, ``[lo, hi]`` (uniform; integers when the default is an int), a list of
strings (one is picked), or ``{choice: [...]}`` (one of any values). Every step also takes ``prob`` (chance the step
runs, default 1) and ``on``: ``scene`` ops change the scene itself and run on the GT before the LQ is derived (the
warps, so pairs stay aligned, and the colour/user filters, so the model is not taught to undo someone's edit);
``lq`` ops are the degradations. Override ``on`` per step if you want otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paragonsr.degrade import geometry, ops
from paragonsr.degrade.kernels import KERNEL_TYPES, lens_kernel, motion_kernel, random_mixed_kernel
from paragonsr.ops import filters


@dataclass
class Ctx:
    """What an op may need besides its parameters."""

    rng: np.random.Generator
    target: tuple[int, int]  # the LQ size the pipeline must end at
    rec: list | None = None


@dataclass(frozen=True)
class OpSpec:
    fn: Callable[..., np.ndarray]
    params: dict[str, Any]
    on: str = "lq"
    raw: frozenset[str] = field(
        default_factory=frozenset
    )  # ranges handed to fn unsampled (fn samples per use)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # allowed strings per parameter


def _gray(ctx: Ctx, p: float) -> bool:
    return bool(p > 0 and ctx.rng.uniform() < p)


def _rng2(v: Any) -> tuple[float, float]:
    return (float(v[0]), float(v[1])) if isinstance(v, list) else (float(v), float(v))


def _blur(img: np.ndarray, ctx: Ctx, kind: str, sigma: Any, size: int, betag: Any, betap: Any) -> np.ndarray:
    """One Real-ESRGAN-family kernel; σ (both axes and rotation for aniso kinds) and β drawn per use."""
    k, info = random_mixed_kernel(ctx.rng, [kind], [1.0], size, _rng2(sigma), _rng2(betag), _rng2(betap))
    if ctx.rec is not None:
        ctx.rec[-1].update({k_: round(v, 4) if isinstance(v, float) else v for k_, v in info.items()})
    return filters.filter2d(img, k)


_REUPLOAD = {"cycles": [1, 3], "scale": [0.7, 1.0], "quality": [60, 85], "format": ["jpeg", "webp"],
             "kernel": ["bilinear", "bicubic", "area"], "sharpen": [1.0, 1.2]}  # fmt: skip


def _reupload(
    img: np.ndarray, ctx: Ctx, cycles: int, scale: Any, quality: Any, format: Any, kernel: Any, sharpen: Any
) -> np.ndarray:
    """Re-upload cycles: each one resizes to (target × factor), platform-sharpens and recompresses, with its own
    draws of every parameter."""
    rng = ctx.rng
    th, tw = ctx.target
    for i in range(cycles):
        f = float(sample_value(scale, _REUPLOAD["scale"], rng))
        k = str(sample_value(kernel, _REUPLOAD["kernel"], rng))
        fmt = str(sample_value(format, _REUPLOAD["format"], rng))
        q = int(sample_value(quality, _REUPLOAD["quality"], rng))
        a = float(sample_value(sharpen, _REUPLOAD["sharpen"], rng))
        img = ops.resize(img, (max(1, round(th * f)), max(1, round(tw * f))), k)
        img = ops.sharpen(img, a)
        img = ops.codec(img, fmt, q)
        if ctx.rec is not None:
            ctx.rec.append({"op": "reupload_cycle", "cycle": i, "scale": round(f, 4), "kernel": k, "format": fmt,
                            "quality": q, "sharpen": round(a, 4)})  # fmt: skip
    return img


_KERNELS = ops.RESIZE_KERNELS
OPS: dict[str, OpSpec] = {
    # blur
    "gaussian_blur": OpSpec(lambda img, ctx, sigma: filters.gaussian_blur(img, sigma), {"sigma": [0.2, 1.0]}),
    "blur": OpSpec(
        _blur,
        {"kind": "iso", "sigma": [0.2, 2.0], "size": 21, "betag": [0.5, 4.0], "betap": [1.0, 2.0]},
        raw=frozenset({"sigma", "betag", "betap"}),
        choices={"kind": KERNEL_TYPES},
    ),
    "motion_blur": OpSpec(
        lambda img, ctx, length, curvature: filters.filter2d(img, motion_kernel(ctx.rng, length, curvature)),
        {"length": [1.0, 6.0], "curvature": 0.6},
    ),
    "lens_blur": OpSpec(
        lambda img, ctx, radius: filters.filter2d(img, lens_kernel(radius)), {"radius": [0.5, 2.0]}
    ),
    # resampling
    "downscale": OpSpec(
        lambda img, ctx, kernel: ops.resize(img, ctx.target, kernel),
        {"kernel": ["bicubic", "lanczos3", "magic_sharp_2021", "area"]},
        choices={"kernel": _KERNELS},
    ),
    "resize": OpSpec(
        lambda img, ctx, scale, kernel: ops.resize(
            img, (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale))), kernel
        ),
        {"scale": [0.5, 1.0], "kernel": ["bicubic", "bilinear", "area"]},
        choices={"kernel": _KERNELS},
    ),
    # noise
    "gaussian_noise": OpSpec(
        lambda img, ctx, sigma, gray_prob: ops.gaussian_noise(img, ctx.rng, sigma, _gray(ctx, gray_prob)),
        {"sigma": [1.0, 10.0], "gray_prob": 0.0},
    ),
    "poisson_noise": OpSpec(
        lambda img, ctx, scale, gray_prob: ops.poisson_noise(img, ctx.rng, scale, _gray(ctx, gray_prob)),
        {"scale": [0.05, 1.0], "gray_prob": 0.0},
    ),
    "sensor_noise": OpSpec(
        lambda img, ctx, sigma, shot_ratio, gray_prob: ops.sensor_noise(
            img, ctx.rng, sigma, shot_ratio, _gray(ctx, gray_prob)
        ),
        {"sigma": [0.5, 2.0], "shot_ratio": 0.5, "gray_prob": 0.0},
    ),
    # codecs
    "jpeg": OpSpec(
        lambda img, ctx, quality, subsampling: ops.codec(img, "jpeg", quality, subsampling),
        {"quality": [70, 95], "subsampling": "420"},
        choices={"subsampling": ("420", "422", "444")},
    ),
    "webp": OpSpec(lambda img, ctx, quality: ops.codec(img, "webp", quality), {"quality": [60, 85]}),
    "avif": OpSpec(lambda img, ctx, quality: ops.codec(img, "avif", quality), {"quality": [40, 70]}),
    "compress": OpSpec(
        lambda img, ctx, format, quality: ops.codec(img, format, quality),
        {"format": ["jpeg", "webp"], "quality": [60, 85]},
        choices={"format": ops.CODECS},
    ),
    "reupload": OpSpec(
        _reupload,
        _REUPLOAD,
        raw=frozenset({"scale", "quality", "format", "kernel", "sharpen"}),
        choices={"format": ops.CODECS, "kernel": _KERNELS},
    ),
    # sharpening
    "sharpen": OpSpec(
        lambda img, ctx, amount, sigma: ops.sharpen(img, amount, sigma), {"amount": [1.02, 1.1], "sigma": 1.0}
    ),
    "usm": OpSpec(
        lambda img, ctx, weight, radius, threshold: filters.usm_sharpen(img, weight, radius, threshold),
        {"weight": 0.5, "radius": 50, "threshold": 10.0},
    ),
    # scene: geometry / optics
    "lens_distortion": OpSpec(
        lambda img, ctx, k1, k2: geometry.lens_distortion(img, k1, k2),
        {"k1": [-0.05, 0.05], "k2": 0.0},
        on="scene",
    ),
    "chromatic_aberration": OpSpec(
        lambda img, ctx, shift: geometry.chromatic_aberration(img, shift),
        {"shift": [0.001, 0.003]},
        on="scene",
    ),
    "rolling_shutter": OpSpec(
        lambda img, ctx, shift, wobble, frequency, phase: geometry.rolling_shutter(
            img, shift, wobble, frequency, phase
        ),
        {"shift": [-0.02, 0.02], "wobble": 0.0, "frequency": 1.0, "phase": [0.0, 2 * math.pi]},
        on="scene",
    ),
    # scene: colour / user filters
    "contrast": OpSpec(
        lambda img, ctx, factor: ops.contrast(img, factor), {"factor": [0.9, 1.1]}, on="scene"
    ),
    "saturation": OpSpec(
        lambda img, ctx, factor: ops.saturation(img, factor), {"factor": [0.9, 1.2]}, on="scene"
    ),
    "temperature": OpSpec(
        lambda img, ctx, shift: ops.temperature(img, shift), {"shift": [-0.05, 0.05]}, on="scene"
    ),
    "gamma": OpSpec(lambda img, ctx, value: ops.gamma(img, value), {"value": [0.9, 1.1]}, on="scene"),
}
STEP_KEYS = ("op", "prob", "on")


def check_value(value: Any, default: Any, choices: tuple[str, ...] | None, where: str) -> None:
    """Validate one parameter value against its spec (raises ValueError naming ``where``)."""
    if isinstance(value, dict):
        if set(value) != {"choice"} or not isinstance(value["choice"], list) or not value["choice"]:
            raise ValueError(f"{where}: a dict value must be {{choice: [v1, v2, ...]}}, got {value}")
        vals = value["choice"]
    elif isinstance(value, list):
        if all(isinstance(v, str) for v in value) and value:
            vals = value
        elif len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            if value[0] > value[1]:
                raise ValueError(f"{where}: range {value} has lo > hi")
            vals = []
        else:
            raise ValueError(
                f"{where}: expected a number, [lo, hi], a list of names or {{choice: [...]}}; got {value}"
            )
    else:
        vals = [value]
    if choices is not None:
        bad = [v for v in vals if str(v) not in choices]
        if bad:
            raise ValueError(f"{where}: invalid value(s) {bad}; valid: {', '.join(map(str, choices))}")


def sample_value(value: Any, default: Any, rng: np.random.Generator) -> Any:
    if isinstance(value, dict):
        return value["choice"][int(rng.integers(len(value["choice"])))]
    if isinstance(value, list):
        if isinstance(value[0], str):
            return value[int(rng.integers(len(value)))]
        lo, hi = value
        is_int = isinstance(default, int) or (
            isinstance(default, list) and all(isinstance(d, int) for d in default)
        )
        if is_int and not isinstance(default, bool) and isinstance(lo, int) and isinstance(hi, int):
            return int(rng.integers(lo, hi + 1))
        return float(rng.uniform(lo, hi))
    return value
