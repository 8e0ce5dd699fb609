"""Training-time image ops on HWC float32 RGB arrays in [0, 1]: reading, padding, paired random crops,
flips/rotations (BasicSR's ``augment`` semantics) and conversion to CHW tensors. Every random choice takes
an explicit ``numpy.random.Generator`` so a sample is a pure function of its seed (exact resume)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from paragonsr.io.image_io import ImageInfo


def read_training_image(path: str | Path) -> tuple[np.ndarray, ImageInfo]:
    """:func:`paragonsr.io.image_io.read_image` for the training loaders: every failure is an ``OSError`` whose
    message is the reader's one line naming the file (e.g. ``PATH: empty file (0 bytes)``)."""
    from paragonsr.io.image_io import read_image

    try:
        return read_image(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise OSError(str(exc)) from None


def imread_rgb(path: str | Path) -> np.ndarray:
    """Read an image as float32 RGB HWC in [0, 1]. 16-bit is detected by dtype (not by max value); gray is
    expanded to 3 channels; alpha is dropped (composited on black would bias colours, the RGB is kept). Decoded
    by :func:`paragonsr.io.image_io.read_image`, so EXIF orientation is applied exactly as ``paragonsr degrade``
    / ``upscale`` apply it (an LQ made by them stays aligned with its GT read here). Raises ``OSError`` naming
    the file (:func:`read_training_image`)."""
    from paragonsr.io.image_io import to_rgb

    img, _ = read_training_image(path)
    return np.ascontiguousarray(np.clip(to_rgb(img), 0.0, 1.0), dtype=np.float32)


def pad_to(img: np.ndarray, min_h: int, min_w: int) -> np.ndarray:
    """Reflect-pad bottom/right so the image is at least ``min_h`` x ``min_w``."""
    h, w = img.shape[:2]
    ph, pw = max(0, min_h - h), max(0, min_w - w)
    if ph == 0 and pw == 0:
        return img
    mode: Literal["reflect", "edge"] = "reflect" if ph < h and pw < w else "edge"
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def ensure_size(img: np.ndarray, size: int, policy: str, name: str) -> np.ndarray | None:
    """Handle an image smaller than the crop: ``pad`` (reflect) or ``skip`` (None); warns either way."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return img
    if policy == "skip":
        warnings.warn(f"{name}: {w}x{h} is smaller than the {size}px crop; skipped", stacklevel=2)
        return None
    warnings.warn(f"{name}: {w}x{h} is smaller than the {size}px crop; reflect-padded", stacklevel=2)
    return pad_to(img, size, size)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return img[top : top + size, left : left + size]


def texture_score(crop: np.ndarray) -> float:
    """Mean absolute horizontal + vertical difference of the mean of the first three channels of an (H, W, C)
    crop, C >= 1 (any sample type, in the crop's own units; an alpha channel is ignored). Flat sky scores near 0,
    edges and texture high; a crop holding NaN scores NaN."""
    g = crop[..., :3].astype(np.float32).mean(axis=-1)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def textured_crop(img: np.ndarray, size: int, rng: np.random.Generator, candidates: int = 1) -> np.ndarray:
    """A ``size`` × ``size`` crop that favours edges and texture: ``candidates`` uniform random crops are drawn
    and the one with the highest :func:`texture_score` is kept (ties: the first). ``candidates=1`` is
    :func:`random_crop`, with the same random draws, so existing seeds give the same crops.

    Raises ValueError for ``candidates < 1``."""
    if candidates < 1:
        raise ValueError(f"crop candidates must be >= 1, got {candidates}")
    if candidates == 1:
        return random_crop(img, size, rng)
    crops = [random_crop(img, size, rng) for _ in range(candidates)]
    return crops[int(np.argmax([texture_score(c) for c in crops]))]


def check_pair_scale(gt: np.ndarray, lq: np.ndarray, scale: int, name: str = "image") -> None:
    """GT must be LQ × scale, up to the < scale remainder a floor-rounded downscale leaves (as BasicSR checks)."""
    h, w = lq.shape[:2]
    gh, gw = gt.shape[:2]
    if not (h * scale <= gh < (h + 1) * scale and w * scale <= gw < (w + 1) * scale):
        raise ValueError(
            f"{name}: GT {gw}x{gh} is not x{scale} of LQ {w}x{h} (expected {w * scale}x{h * scale}); "
            "wrong scale or pair?"
        )


def paired_random_crop(
    gt: np.ndarray, lq: np.ndarray, gt_size: int, scale: int, rng: np.random.Generator, name: str = "image"
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops: LQ ``gt_size // scale`` at (top, left), GT ``gt_size`` at (top*scale, left*scale)."""
    if gt_size % scale:
        raise ValueError(f"gt_size {gt_size} must be a multiple of scale {scale}")
    lq_size = gt_size // scale
    h, w = lq.shape[:2]
    check_pair_scale(gt, lq, scale, name)
    if h < lq_size or w < lq_size:
        raise ValueError(f"{name}: LQ {w}x{h} is smaller than the {lq_size}px LQ crop")
    top = int(rng.integers(0, h - lq_size + 1))
    left = int(rng.integers(0, w - lq_size + 1))
    lq = lq[top : top + lq_size, left : left + lq_size]
    gt = gt[top * scale : top * scale + gt_size, left * scale : left * scale + gt_size]
    return gt, lq


def augment(
    imgs: list[np.ndarray], rng: np.random.Generator, hflip: bool = True, rot: bool = True
) -> list[np.ndarray]:
    """Same random horizontal flip, vertical flip and transpose for every image (the 8 dihedral views)."""
    do_h = hflip and rng.random() < 0.5
    do_v = rot and rng.random() < 0.5
    do_t = rot and rng.random() < 0.5
    out = []
    for img in imgs:
        if do_h:
            img = img[:, ::-1]
        if do_v:
            img = img[::-1]
        if do_t:
            img = img.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(img))
    return out


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC float32 -> CHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


def to_image_u8(t: torch.Tensor) -> np.ndarray:
    """CHW/1CHW float tensor in [0, 1] -> HWC uint8 RGB (rounded like BasicSR's tensor2img)."""
    if t.dim() == 4:
        t = t[0]
    arr = t.detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
    return (arr * 255.0).round().astype(np.uint8)


def imwrite_rgb(path: str | Path, img_u8: np.ndarray) -> None:
    """Atomic write of an RGB, RGBA or gray (HW1) uint8 image (format from the extension), creating the parent
    folder: :func:`paragonsr.io.files.write_image_native`. Raises ``OSError`` naming the file when it cannot be
    encoded."""
    from paragonsr.io.files import write_image_native

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_image_native(path, img_u8)
    except ValueError as exc:
        raise OSError(f"cannot encode {path}: {exc}") from None
