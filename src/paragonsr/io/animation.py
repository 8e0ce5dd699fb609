"""Animated GIF / WebP / APNG: read every frame and write an animation back with its timing
(:func:`paragonsr.infer.upscale.upscale_file` upscales each frame between the two).

- Frames are decoded by Pillow as full canvases (the source's disposal and blending already applied), so each
  frame is a complete picture: upscaled like a still image (same model, tiling, alpha handling), the result
  plays exactly as the source does. Transparency is kept (GIF's is on/off: alpha >= 0.5 stays visible).
- Per-frame durations (ms) and the loop count are kept (GIF stores 10 ms units). A GIF without a loop
  extension plays once; written as APNG/WebP it gets a play count of 1.
- Output containers: GIF (palette per frame: exact when a frame has at most 256 colours (255 with
  transparency), otherwise median-cut with Floyd-Steinberg dithering), APNG (lossless, 8-bit), animated WebP
  (lossy at ``quality`` < 100, lossless at 100). Animations are 8-bit; an ICC profile is applied as for stills.
- Memory: the source frames (8-bit) and the upscaled frames (8-bit) are held until the file is written; one
  float frame at a time.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from paragonsr.io.image_io import (
    ImageInfo,
    ImageReadError,
)

ANIMATED_FORMATS = {"gif": "GIF", "png": "PNG", "webp": "WEBP"}


@dataclass
class Animation:
    """``frames``: uint8 HxWx3 (RGB) or HxWx4 (RGBA) full canvases as stored (see :meth:`frame` for the float
    sRGB one); ``durations`` in ms per frame; ``loop``: 0 = forever, N plays/loops as the container counts them,
    None = no loop extension (GIF); ``icc``: the embedded profile, applied by :meth:`frame`."""

    frames: list[np.ndarray]
    durations: list[int]
    loop: int | None
    info: ImageInfo
    icc: bytes | None = None

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as float32 HxWxC in [0, 1], sRGB (the embedded profile applied)."""
        img = self.frames[i].astype(np.float32) / 255.0
        if self.icc:
            from paragonsr.io.color import file_to_srgb

            img = file_to_srgb(img, self.icc, str(self.info.path))[0]
        return img


def read_animation(path: str | os.PathLike[str]) -> Animation | None:
    """All frames of an animated GIF/WebP/PNG, or None when the file is not animated (one frame, or a format
    without animation). Raises ``ImageReadError`` naming the file when the frames cannot be decoded."""
    from PIL import Image

    p = Path(path)
    try:
        im = Image.open(p)
        animated = im.format in ("GIF", "PNG", "WEBP") and getattr(im, "n_frames", 1) > 1
    except Exception:  # not for Pillow, missing, damaged header...: the still-image reader reports it
        return None
    if not animated:
        im.close()
        return None
    try:
        with im:
            fmt, loop, icc = str(im.format).lower(), im.info.get("loop"), im.info.get("icc_profile")
            canvases, durations = [], []
            for i in range(cast(Any, im).n_frames):  # animated files have n_frames
                im.seek(i)
                canvases.append(np.asarray(im.convert("RGBA")))  # (WebP sets the duration when decoding)
                durations.append(round(float(im.info.get("duration") or 0)))
    except Exception as exc:  # truncated data, decompression-bomb guard, ...
        raise ImageReadError(f"{p}: cannot decode the animation ({type(exc).__name__}: {exc})") from None
    alpha = any(bool((c[..., 3] < 255).any()) for c in canvases)
    frames = [np.ascontiguousarray(c[..., : 4 if alpha else 3]) for c in canvases]
    h, w, c = frames[0].shape
    anim = Animation(
        frames, durations, None if loop is None else int(loop), ImageInfo(str(p), fmt, 8, c, h, w)
    )
    if icc:
        from paragonsr.io.color import file_to_srgb

        anim.icc = icc
        profile = file_to_srgb(frames[0][:1, :1].astype(np.float32) / 255.0, icc, str(p))[1]
        anim.info = replace(anim.info, color_profile=profile)
    return anim


def _palette_frame(rgba: np.ndarray) -> Any:
    """uint8 HxWx4 -> Pillow 'P' image; index 255 is transparent when any pixel has alpha < 128."""
    from PIL import Image

    visible = rgba[..., 3] >= 128
    has_clear = not bool(visible.all())
    n = 255 if has_clear else 256
    rgb = np.ascontiguousarray(rgba[..., :3])
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) <= n:  # exact
        index, palette = inverse.reshape(visible.shape).astype(np.uint8), colours
    else:
        q = Image.fromarray(rgb).quantize(n, Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
        index = np.array(q, dtype=np.uint8)
        q_palette = q.getpalette()
        assert q_palette is not None  # quantize() returns a "P" image
        palette = np.array(q_palette[: 3 * n], dtype=np.uint8).reshape(-1, 3)
    if has_clear:
        index[~visible] = 255
    full = np.zeros((256, 3), np.uint8)
    full[: len(palette)] = palette
    frame = Image.fromarray(index, "P")
    frame.putpalette(full.ravel().tolist())
    if has_clear:
        frame.info["transparency"] = 255
    return frame


def encode_animation(
    frames: Sequence[np.ndarray], durations: Sequence[int], loop: int | None, fmt: str, quality: int = 95
) -> bytes:
    """uint8 HxWxC frames (C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA; one frame is fine) -> GIF/APNG/WebP bytes.
    ``fmt`` is "gif", "png" or "webp"; raises ``ValueError`` for other formats."""
    from PIL import Image

    if fmt not in ANIMATED_FORMATS:
        raise ValueError(f"cannot write an animation as {fmt}; use gif, png (APNG) or webp")
    rgba = []
    for f in frames:
        f = f[..., None] if f.ndim == 2 else f
        if f.shape[2] in (1, 2):  # gray (+ alpha) -> RGB(A)
            f = f[..., [0, 0, 0, *range(1, f.shape[2])]]
        if f.shape[2] == 3:
            f = np.concatenate([f, np.full((*f.shape[:2], 1), 255, np.uint8)], axis=2)
        rgba.append(np.ascontiguousarray(f, dtype=np.uint8))
    alpha = any(bool((f[..., 3] < 255).any()) for f in rgba)
    opts: dict[str, Any] = {"save_all": len(rgba) > 1, "duration": list(durations)}
    if fmt == "gif":
        images = [_palette_frame(f) for f in rgba]
        opts.update(optimize=False, disposal=2 if alpha else 1)
        if alpha:
            opts["transparency"] = 255
        if loop is not None:
            opts["loop"] = loop
    else:
        images = [Image.fromarray(f if alpha else f[..., :3]) for f in rgba]
        opts["loop"] = 1 if loop is None else loop
        if fmt == "png":
            opts.update(disposal=0, blend=0)  # frames are full canvases: each one replaces the last
        else:
            q = int(np.clip(quality, 1, 100))
            opts.update(lossless=q >= 100, quality=q, method=4)
    if len(images) == 1:
        opts.pop("duration")
    buf = io.BytesIO()
    images[0].save(buf, ANIMATED_FORMATS[fmt], append_images=images[1:], **opts)
    return buf.getvalue()


__all__ = ["ANIMATED_FORMATS", "Animation", "encode_animation", "read_animation"]
