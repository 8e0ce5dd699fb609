"""``lrgen``: a clean-to-mildly-realistic LR generator.

Training mode: with ``clean_prob`` the plain benchmark LR (antialiased bicubic, no blur, no chain); otherwise slight
Gaussian blur (``blur_prob``, σ from ``blur_sigma``), then a downscale with a kernel drawn
from ``kernels``/``kernel_prob`` (bicubic, bilinear, lanczos, box, nearest, Magic Kernel Sharp), and with
``chain_prob`` a multi-step chain instead: ``chain_steps`` resizes through random intermediate sizes (between the
LR and 1.25× the HR size), each with its own kernel, ending exactly at H/scale.

Validation mode (``validation: true``): deterministic: fixed blur ``val_blur_sigma`` and the kernel
``val_kernels[index % len]`` (index = the image's position; derived from its pixels when not given), no chains.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from paragonsr.degrade import ops
from paragonsr.degrade.base import Degradation, Record, check_keys, crop_to_multiple, note
from paragonsr.ops import filters
from paragonsr.registry import DEGRADATION_REGISTRY

DEFAULTS: dict[str, Any] = {
    "clean_prob": 0.0,
    "blur_prob": 0.7,
    "blur_sigma": [0.1, 0.8],
    "kernels": ["bicubic", "bilinear", "lanczos3", "box", "nearest", "magic_sharp_2021"],
    "kernel_prob": [0.25, 0.15, 0.2, 0.1, 0.05, 0.25],
    "chain_prob": 0.15,
    "chain_steps": [2, 3],
    "antialias": True,
    "validation": False,
    "val_kernels": ["magic_sharp_2021", "bicubic", "lanczos3", "bilinear"],
    "val_blur_sigma": 0.4,
    "round8": True,
}


@DEGRADATION_REGISTRY.register("lrgen", aliases=("lr_generator",))
class LRGenDegradation(Degradation):
    name = "lrgen"

    def __init__(self, opt: dict[str, Any] | None = None, scale: int = 2) -> None:
        super().__init__(scale)
        opt = dict(opt or {})
        check_keys(opt, DEFAULTS, "lrgen options")
        self.opt = o = {**DEFAULTS, **opt}
        if (
            len(o["kernels"]) != len(o["kernel_prob"])
            or min(o["kernel_prob"]) < 0
            or sum(o["kernel_prob"]) <= 0
        ):
            raise ValueError("lrgen: kernel_prob needs one non-negative weight per entry of kernels")
        for k in [*o["kernels"], *o["val_kernels"]]:
            ops.resize(
                np.zeros((8, 8, 1), np.float32), (4, 4), k
            )  # unknown kernel -> error listing valid ones
        if not 0.0 <= float(o["clean_prob"]) <= 1.0:
            raise ValueError(f"lrgen: clean_prob must be in [0, 1], got {o['clean_prob']!r}")
        if not o["val_kernels"]:
            raise ValueError("lrgen: val_kernels must not be empty")
        lo, hi = o["chain_steps"]
        if not 2 <= lo <= hi:
            raise ValueError(
                f"lrgen: chain_steps must be [lo, hi] with 2 <= lo <= hi, got {o['chain_steps']}"
            )
        p = np.asarray(o["kernel_prob"], np.float64)
        self._p = p / p.sum()

    def _kernel(self, rng: np.random.Generator) -> str:
        return str(self.opt["kernels"][int(rng.choice(len(self._p), p=self._p))])

    def _run(self, gt: np.ndarray, rng: np.random.Generator, rec: Record | None, index: int | None) -> dict:
        o, scale = self.opt, self.scale
        gt = crop_to_multiple(gt, scale)
        h, w = gt.shape[:2]
        target = (h // scale, w // scale)
        img = gt
        if o["validation"]:
            if index is None:
                index = int(
                    hashlib.blake2b(np.ascontiguousarray(gt[::7, ::7]).tobytes(), digest_size=4).hexdigest(),
                    16,
                )
            kernel = str(o["val_kernels"][index % len(o["val_kernels"])])
            if o["val_blur_sigma"] > 0:
                img = filters.gaussian_blur(img, float(o["val_blur_sigma"]))
            note(rec, "lrgen_val", index=index, kernel=kernel, blur_sigma=o["val_blur_sigma"])
            lq = ops.resize(img, target, kernel, o["antialias"])
        elif o["clean_prob"] > 0 and rng.uniform() < o["clean_prob"]:  # no draw at 0: same stream as before
            lq = ops.resize(img, target, "bicubic", True)
            note(rec, "resize", kernel="bicubic", size=list(target), clean=True)
        else:
            if rng.uniform() < o["blur_prob"]:
                sigma = float(rng.uniform(*o["blur_sigma"]))
                img = filters.gaussian_blur(img, sigma)
                note(rec, "gaussian_blur", sigma=sigma)
            if rng.uniform() < o["chain_prob"]:
                steps = int(rng.integers(o["chain_steps"][0], o["chain_steps"][1] + 1))
                for i in range(steps):
                    if i == steps - 1:
                        size = target
                    else:
                        f = rng.uniform(1.0 / scale, 1.25)
                        size = (max(1, round(h * f)), max(1, round(w * f)))
                    kernel = self._kernel(rng)
                    img = ops.resize(img, size, kernel, o["antialias"])
                    note(rec, "resize", kernel=kernel, size=list(size), chain_step=i)
                lq = img
            else:
                kernel = self._kernel(rng)
                lq = ops.resize(img, target, kernel, o["antialias"])
                note(rec, "resize", kernel=kernel, size=list(target))
        return {"lq": ops.round8(lq) if o["round8"] else lq, "gt": gt}
