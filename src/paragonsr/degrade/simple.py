"""The plain pipelines: ``resize`` (any resampler, optional pre-blur) and ``bicubic`` (the classic ×N benchmark LR)."""

from __future__ import annotations

from typing import Any

import numpy as np

from paragonsr.degrade import ops
from paragonsr.degrade.base import Degradation, Record, check_keys, crop_to_multiple, note
from paragonsr.ops import filters
from paragonsr.registry import DEGRADATION_REGISTRY


@DEGRADATION_REGISTRY.register("resize", aliases=("downscale",))
class ResizeDegradation(Degradation):
    """LQ = resize(blur_σ(GT), H/scale) with one fixed kernel. Options: ``kernel`` (default bicubic),
    ``antialias`` (True), ``blur_sigma`` (0 = none), ``round8`` (quantise the LQ to 8 bit, True)."""

    name = "resize"
    DEFAULTS: dict[str, Any] = {"kernel": "bicubic", "antialias": True, "blur_sigma": 0.0, "round8": True}

    def __init__(self, opt: dict[str, Any] | None = None, scale: int = 4) -> None:
        super().__init__(scale)
        opt = dict(opt or {})
        check_keys(opt, ResizeDegradation.DEFAULTS, f"{self.name} options")
        self.opt = {**ResizeDegradation.DEFAULTS, **opt}
        ops.resize(
            np.zeros((8, 8, 1), np.float32), (4, 4), self.opt["kernel"]
        )  # validate the kernel name now

    def _run(self, gt: np.ndarray, rng: np.random.Generator, rec: Record | None, index: int | None) -> dict:
        gt = crop_to_multiple(gt, self.scale)
        h, w = gt.shape[:2]
        img = gt
        if self.opt["blur_sigma"] > 0:
            img = filters.gaussian_blur(img, float(self.opt["blur_sigma"]))
            note(rec, "gaussian_blur", sigma=self.opt["blur_sigma"])
        lq = ops.resize(img, (h // self.scale, w // self.scale), self.opt["kernel"], self.opt["antialias"])
        note(rec, "resize", kernel=self.opt["kernel"], size=[h // self.scale, w // self.scale])
        return {"lq": ops.round8(lq) if self.opt["round8"] else lq, "gt": gt}


@DEGRADATION_REGISTRY.register("bicubic")
class BicubicDegradation(ResizeDegradation):
    """Antialiased bicubic (Keys a = −0.5, MATLAB ``imresize``-like) downscale, the classic benchmark LR."""

    name = "bicubic"
    DEFAULTS: dict[str, Any] = {"antialias": True, "blur_sigma": 0.0, "round8": True}

    def __init__(self, opt: dict[str, Any] | None = None, scale: int = 4) -> None:
        opt = dict(opt or {})
        check_keys(opt, self.DEFAULTS, "bicubic options")
        super().__init__({**opt, "kernel": "bicubic"}, scale)
