"""Real-ESRGAN's second-order degradation with every key of its option files.

Order (Wang et al. 2021, ``RealESRGANModel.feed_data``): USM-sharpen the GT → blur 1 → random resize (up / down /
keep by ``resize_prob``, factor from ``resize_range``, mode area / bilinear / bicubic) → Gaussian (σ in 0-255
units, ``gaussian_noise_prob``) or Poisson noise, gray with ``gray_noise_prob`` → JPEG (``jpeg_range``) → blur 2
with ``second_blur_prob`` → resize to (H/scale·s) → noise 2 → 50/50 [resize to H/scale → sinc → JPEG] or
[JPEG → resize → sinc] → round to 8 bit → paired random crop of ``gt_size``. The LQ is made from the USM'd GT.

``blur_kernel_size`` (ignored by BasicSR, which always draws sizes 7-21) is the *largest* kernel size here:
sizes are drawn uniformly from the odd numbers 7..blur_kernel_size (default 21 = BasicSR's behaviour; a value
below 7 fixes the size). Extra keys of ours: ``usm_weight`` / ``usm_radius`` / ``usm_threshold`` (0.5 / 50 / 10).
Every key (default, bounds, description) is declared in :mod:`paragonsr.degrade.realesrgan_opts`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from paragonsr.degrade import ops
from paragonsr.degrade.base import Degradation, Record, check_keys, crop_to_multiple, note
from paragonsr.degrade.kernels import random_mixed_kernel, sinc_kernel
from paragonsr.degrade.realesrgan_opts import ALIASES, DEFAULTS, validate_realesrgan_opt
from paragonsr.ops import filters
from paragonsr.registry import DEGRADATION_REGISTRY

# Dataset / loader keys a BasicSR option section carries that are not degradation settings (flips and rotations
# are the dataset's job).
IGNORED = {
    "name", "type", "phase", "scale", "dataroot_gt", "dataroot_lq", "meta_info", "io_backend", "filename_tmpl",
    "use_shuffle", "num_worker_per_gpu", "batch_size_per_gpu", "dataset_enlarge_ratio", "prefetch_mode",
    "use_hflip", "use_rot",
}  # fmt: skip
MODES = ("area", "bilinear", "bicubic")


def collect_realesrgan_opt(opt: dict[str, Any]) -> dict[str, Any]:
    """Gather the degradation keys of a whole BasicSR/traiNNer option dict (top level + ``datasets.train``)."""
    known = {*DEFAULTS, *ALIASES}
    out = {k: v for k, v in opt.items() if k in known}
    train = (opt.get("datasets") or {}).get("train") or {}
    out.update({k: v for k, v in train.items() if k in known})
    return out


def _odd_sizes(max_size: int) -> list[int]:
    return list(range(7, max_size + 1, 2)) if max_size >= 7 else [max_size]


@DEGRADATION_REGISTRY.register("realesrgan", aliases=("real_esrgan", "realesrgan_second_order"))
class RealESRGANDegradation(Degradation):
    name = "realesrgan"

    def __init__(self, opt: dict[str, Any] | None = None, scale: int = 4) -> None:
        super().__init__(scale)
        opt = dict(opt or {})
        check_keys(opt, [*DEFAULTS, *ALIASES], "realesrgan options", IGNORED)
        self.opt = o = validate_realesrgan_opt({k: v for k, v in opt.items() if k not in IGNORED})
        self.sizes1 = _odd_sizes(o["blur_kernel_size"])
        self.sizes2 = _odd_sizes(o["blur_kernel_size2"])
        for lk, pk in (("kernel_list", "kernel_prob"), ("kernel_list2", "kernel_prob2")):
            if len(o[lk]) != len(o[pk]):
                raise ValueError(f"realesrgan: {pk} needs one non-negative weight per entry of {lk}")
        gs = o["gt_size"]
        if gs is not None and (int(gs) != gs or gs < self.scale or gs % self.scale):
            raise ValueError(f"realesrgan: gt_size {gs} must be a positive multiple of scale {self.scale}")
        self.gt_usm_for = {
            "l1": bool(o["l1_gt_usm"]),
            "percep": bool(o["percep_gt_usm"]),
            "gan": bool(o["gan_gt_usm"]),
        }
        self.queue_size = int(o["queue_size"] or 0)

    # ------------------------------------------------------------ random draws shared by both paths
    def sample_kernel(self, rng: np.random.Generator, stage: int) -> tuple[np.ndarray, dict]:
        sfx = "" if stage == 1 else "2"
        o = self.opt
        size = int(rng.choice(self.sizes1 if stage == 1 else self.sizes2))
        if rng.uniform() < o["sinc_prob" + sfx]:
            cutoff = rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi)
            return sinc_kernel(size, cutoff), {"kernel": "sinc", "size": size, "cutoff": cutoff}
        return random_mixed_kernel(
            rng, o["kernel_list" + sfx], o["kernel_prob" + sfx], size, tuple(o["blur_sigma" + sfx]),
            tuple(o["betag_range" + sfx]), tuple(o["betap_range" + sfx]),
        )  # fmt: skip

    def sample_final_sinc(self, rng: np.random.Generator) -> tuple[np.ndarray | None, dict]:
        if rng.uniform() < self.opt["final_sinc_prob"]:
            size = int(rng.choice(self.sizes1))
            cutoff = rng.uniform(math.pi / 3, math.pi)
            return sinc_kernel(size, cutoff), {"size": size, "cutoff": cutoff}
        return None, {"size": 0}

    def sample_resize(self, rng: np.random.Generator, stage: int) -> tuple[float, str]:
        sfx = "" if stage == 1 else "2"
        p = np.asarray(self.opt["resize_prob" + sfx], np.float64)
        updown = int(rng.choice(3, p=p / p.sum()))
        lo, hi = self.opt["resize_range" + sfx]
        s = float(rng.uniform(1, hi)) if updown == 0 else float(rng.uniform(lo, 1)) if updown == 1 else 1.0
        return s, MODES[int(rng.integers(3))]

    def sample_noise(self, rng: np.random.Generator, stage: int) -> dict:
        sfx = "" if stage == 1 else "2"
        o = self.opt
        if rng.uniform() < o["gaussian_noise_prob" + sfx]:
            d = {"kind": "gaussian", "sigma": float(rng.uniform(*o["noise_range" + sfx]))}
        else:
            d = {"kind": "poisson", "scale": float(rng.uniform(*o["poisson_scale_range" + sfx]))}
        d["gray"] = bool(rng.uniform() < o["gray_noise_prob" + sfx])
        return d

    # ------------------------------------------------------------ per-sample numpy path
    def _noise(self, img: np.ndarray, rng: np.random.Generator, stage: int, rec: Record | None) -> np.ndarray:
        d = self.sample_noise(rng, stage)
        note(rec, f"noise{stage}", **d)
        if d["kind"] == "gaussian":
            return ops.gaussian_noise(img, rng, d["sigma"], d["gray"])
        return ops.poisson_noise(img, rng, d["scale"], d["gray"])

    def _jpeg(self, img: np.ndarray, rng: np.random.Generator, key: str, rec: Record | None) -> np.ndarray:
        q = round(rng.uniform(*self.opt[key]))
        note(rec, "jpeg" if key == "jpeg_range" else "jpeg2", quality=q)
        return ops.jpeg(img, q)

    def _run(self, gt: np.ndarray, rng: np.random.Generator, rec: Record | None, index: int | None) -> dict:
        o, scale = self.opt, self.scale
        gt = crop_to_multiple(gt, scale)
        h, w = gt.shape[:2]
        gt_usm = filters.usm_sharpen(gt, o["usm_weight"], o["usm_radius"], o["usm_threshold"])
        # ---- first degradation
        k1, info = self.sample_kernel(rng, 1)
        note(rec, "blur1", **info)
        out = filters.filter2d(gt_usm, k1)
        s, mode = self.sample_resize(rng, 1)
        note(rec, "resize1", scale=s, mode=mode)
        if s != 1.0:
            out = ops.interpolate(out, (int(h * s), int(w * s)), mode)
        out = self._noise(out, rng, 1, rec)
        out = self._jpeg(out, rng, "jpeg_range", rec)
        # ---- second degradation
        if rng.uniform() < o["second_blur_prob"]:
            k2, info = self.sample_kernel(rng, 2)
            note(rec, "blur2", **info)
            out = filters.filter2d(out, k2)
        s, mode = self.sample_resize(rng, 2)
        note(rec, "resize2", scale=s, mode=mode)
        out = ops.interpolate(out, (int(h / scale * s), int(w / scale * s)), mode)
        out = self._noise(out, rng, 2, rec)
        # ---- final: resize back + sinc, JPEG in either order
        sinc, info = self.sample_final_sinc(rng)
        jpeg_first = bool(rng.uniform() >= 0.5)
        mode = MODES[int(rng.integers(3))]
        note(
            rec, "final", order="jpeg_resize_sinc" if jpeg_first else "resize_sinc_jpeg", mode=mode, sinc=info
        )
        if jpeg_first:
            out = self._jpeg(out, rng, "jpeg_range2", rec)
        out = ops.interpolate(out, (h // scale, w // scale), mode)
        if sinc is not None:
            out = filters.filter2d(out, sinc)
        if not jpeg_first:
            out = self._jpeg(out, rng, "jpeg_range2", rec)
        lq = ops.round8(out)
        gs = o["gt_size"]
        if gs is not None and h >= gs and w >= gs:
            ls = gs // scale
            top, left = int(rng.integers(0, h // scale - ls + 1)), int(rng.integers(0, w // scale - ls + 1))
            note(rec, "crop", top=top * scale, left=left * scale, size=gs)
            lq = lq[top : top + ls, left : left + ls]
            sl = (slice(top * scale, top * scale + gs), slice(left * scale, left * scale + gs))
            gt, gt_usm = gt[sl], gt_usm[sl]
        return {"lq": lq, "gt": gt, "gt_usm": gt_usm}

    # ------------------------------------------------------------ batched torch path
    def degrade_batch(
        self, gt: torch.Tensor, generator: np.random.Generator | int = 0
    ) -> dict[str, torch.Tensor]:
        """Real-ESRGAN's batch semantics on ``gt``'s device; see ``realesrgan_torch.degrade_batch``."""
        from paragonsr.degrade.realesrgan_torch import degrade_batch

        return degrade_batch(self, gt, generator)


class PairPool:
    """Real-ESRGAN's training-pair queue (``queue_size``): batches are mixed with earlier ones so one batch does
    not carry one image's degradations only. While filling, the incoming batch is stored and returned as is;
    once full, ``b`` random pool entries are handed out and replaced by the incoming samples (same distribution
    as BasicSR's shuffle-then-swap, without requiring ``queue_size % b == 0``)."""

    def __init__(self, size: int, generator: torch.Generator | None = None) -> None:
        if size < 1:
            raise ValueError(f"PairPool size must be >= 1, got {size}")
        self.size, self.count = int(size), 0
        self.generator = generator
        self.pool: dict[str, torch.Tensor] = {}

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = next(iter(batch.values())).shape[0]
        if b > self.size:
            raise ValueError(f"PairPool: batch size {b} exceeds queue_size {self.size}")
        if not self.pool:
            self.pool = {k: v.new_empty((self.size, *v.shape[1:])) for k, v in batch.items()}
        elif set(batch) != set(self.pool):
            raise KeyError(f"PairPool: batch keys {sorted(batch)} differ from the pool's {sorted(self.pool)}")
        if self.count < self.size:
            n = min(b, self.size - self.count)
            for k, v in batch.items():
                self.pool[k][self.count : self.count + n] = v[:n].detach()
            self.count += n
            return batch
        idx = torch.randperm(self.size, generator=self.generator)[:b].to(
            next(iter(self.pool.values())).device
        )
        out = {}
        for k, v in batch.items():
            out[k] = self.pool[k][idx].clone()
            self.pool[k][idx] = v.detach()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "pool": {k: v[: self.count].cpu() for k, v in self.pool.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.pool = {}
        for k, v in state["pool"].items():
            self.pool[k] = v.new_empty((self.size, *v.shape[1:]))
            self.pool[k][: self.count] = v
