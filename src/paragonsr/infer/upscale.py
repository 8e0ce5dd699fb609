"""Upscale one image array with any backend: channels, alpha, tiling and ``outscale`` handled here.

- Grayscale into a 3-channel model: replicated to RGB, the output folded back to one channel (BT.601 luma).
- RGB into a 1-channel model: ``gray_mode="per_channel"`` (each channel through the model) or ``"y"`` (luma through
  the model, chroma by Magic Kernel Sharp 2021). A 1 -> 3 model gets the luma and its RGB output is kept.
- RGBA: alpha is upscaled by Magic Kernel Sharp 2021, not by the model (a model trained on photos has never seen
  an alpha matte and would hallucinate texture into it; MKS2021 is sharp and has no such risk). Colours of
  (almost) fully transparent pixels are undefined in straight-alpha files - often black - so before the model sees
  the RGB they are filled from the nearby visible colours (alpha-weighted push-pull). The model therefore never
  sees the black that would otherwise bleed into edge pixels (no dark fringes), with no un-premultiply division
  amplifying its errors where alpha is small.
- ``outscale`` resamples the model result to ``outscale`` × the input size with MKS2021 (Real-ESRGAN's
  ``--outscale``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from paragonsr.infer.backends import Backend
from paragonsr.io.animation import ANIMATED_FORMATS, encode_animation, read_animation
from paragonsr.io.image_io import (
    ImageInfo,
    output_format,
    read_image,
    to_dtype,
    write_image,
    written_depth,
)
from paragonsr.ops.colour import BT601_LUMA
from paragonsr.tiling import DEFAULT_OVERLAP, Tiler, needs_of
from paragonsr.tiling.stitch import INT_PEAKS, IntImage, quantize_rows
from paragonsr.utils.atomic import atomic_write_bytes
from paragonsr.utils.finite import array_non_finite
from paragonsr.utils.malloc import trim_heap

LUMA = BT601_LUMA  # BT.601, as in BasicSR's rgb2ycbcr / MATLAB
ALPHA_EMPTY = 1.0 / 512.0  # alpha below half an 8-bit step counts as fully transparent
MIN_SIDE = 2


def _resize(x: Tensor, size: tuple[int, int], kernel: str = "magic_sharp_2021") -> Tensor:
    from paragonsr.ops.resample import resize

    return resize(x, size=size, kernel=kernel)


def fill_transparent(rgb: Tensor, alpha: Tensor, threshold: float = ALPHA_EMPTY) -> Tensor:
    """Replace the colour of pixels with ``alpha < threshold`` by an alpha-weighted average of the visible colours
    around them (push-pull pyramid). ``rgb`` B×3×H×W, ``alpha`` B×1×H×W; visible pixels are left untouched."""
    empty = alpha < threshold
    if not bool(empty.any()) or bool(empty.all()):
        return rgb
    w = alpha.clamp(min=0.0) * (~empty)
    levels: list[tuple[Tensor, Tensor]] = []
    num, den = rgb * w, w
    while True:
        levels.append((num, den))
        if min(num.shape[-2:]) <= 1 or bool((den > 0).all()):
            break
        num = F.avg_pool2d(num, 2, ceil_mode=True)
        den = F.avg_pool2d(den, 2, ceil_mode=True)
    # Pull: walk back up, filling holes of each level from the (already filled) coarser one.
    filled = levels[-1][0] / levels[-1][1].clamp(min=1e-12)
    for num, den in reversed(levels[:-1]):
        up = F.interpolate(filled, size=num.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.where(den > 0, num / den.clamp(min=1e-12), up)
    return torch.where(empty, filled, rgb)


class Upscaler:
    """Holds the backend and its :class:`~paragonsr.tiling.Tiler` (an auto tile size learnt on one image is reused
    on the next). ``tile``: ``0`` = whole image, ``"auto"`` or LR px (:func:`~paragonsr.tiling.parse_tile`);
    ``budget_bytes`` overrides the CPU activation budget of ``auto``; a backend with ``tile_rates`` (measured by
    ``--backend auto``, :mod:`paragonsr.infer.calibrate`) gets ``auto`` tiles chosen for throughput too.

    Raises:
        InputError: a bad tile size; ValueError: a bad overlap, blend or ``gray_mode``.
    """

    def __init__(
        self,
        backend: Backend,
        tile: object = 0,
        overlap: int = DEFAULT_OVERLAP,
        blend: float = 0.5,
        gray_mode: str = "per_channel",
        budget_bytes: int | None = None,
    ) -> None:
        if gray_mode not in ("per_channel", "y"):
            raise ValueError(f"gray_mode must be 'per_channel' or 'y', got {gray_mode!r}")
        self.backend, self.gray_mode = backend, gray_mode
        rates = getattr(backend, "tile_rates", None)
        self.tiler = Tiler(tile, overlap, blend, budget_bytes=budget_bytes, rates=rates)

    def run_model(self, x: Tensor, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """Backend over B×C×h×w (C = backend.in_ch) through the tiler, which pads to the backend's size needs;
        resamplers are cheap and never tiled."""
        scale = self.backend.scale
        if self.backend.in_ch is None or not float(scale).is_integer():
            return self.backend(x)
        y = self.tiler(self.backend, x, needs_of(self.backend), progress)
        self._release()
        return y

    def _release(self) -> None:
        """The image's tiles are done: a backend that holds a memory arena (ONNX Runtime) hands it back now, and so
        does the heap (:func:`~paragonsr.utils.malloc.trim_heap`), so neither is held while the result is encoded
        (:meth:`OnnxBackend.release_memory`)."""
        release = getattr(self.backend, "release_memory", None)
        if callable(release):
            release()
        trim_heap()  # the CLI keeps freed buffers in its heap (paragonsr.utils.malloc): a torch model's too

    def _color(self, x: Tensor, progress: Callable[[int, int], None] | None) -> Tensor:
        """1 or 3 colour channels through the backend, returning the same number of channels."""
        c, in_ch = x.shape[1], self.backend.in_ch
        if in_ch is None or in_ch == c:
            y = self.run_model(x, progress)
        elif c == 1 and in_ch == 3:
            y = self.run_model(x.expand(-1, 3, -1, -1).contiguous(), progress)
        elif c == 3 and in_ch == 1 and self.backend.out_ch not in (None, 1):
            # A 1 -> 3 model makes its own colour from one channel: feed it the luma (per-channel runs would
            # stack three RGB outputs into a 9-channel image).
            lw = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
            y = self.run_model((x * lw).sum(dim=1, keepdim=True), progress)
        elif c == 3 and in_ch == 1 and self.gray_mode == "per_channel":
            y = torch.cat([self.run_model(x[:, i : i + 1], progress) for i in range(3)], dim=1)
        elif c == 3 and in_ch == 1:
            return self._y_only(x, progress)
        else:
            raise ValueError(f"cannot feed a {c}-channel image to a model with {in_ch} input channels")
        out_ch = y.shape[1]
        if c == 1 and out_ch == 3:
            lw = torch.tensor(LUMA, dtype=y.dtype).view(1, 3, 1, 1)
            y = (y * lw).sum(dim=1, keepdim=True)
        elif c == 3 and out_ch == 1:
            y = y.expand(-1, 3, -1, -1)
        return y

    def _y_only(self, x: Tensor, progress: Callable[[int, int], None] | None) -> Tensor:
        lw = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        luma = (x * lw).sum(dim=1, keepdim=True)
        chroma = x - luma  # R-Y, G-Y, B-Y: linear, so resizing it commutes with the colour transform
        y = self.run_model(luma, progress)
        return y + _resize(chroma, (y.shape[-2], y.shape[-1]))

    def __call__(
        self,
        img: np.ndarray,
        info: ImageInfo | None = None,
        outscale: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        bit_depth: int | None = None,
    ) -> tuple[np.ndarray, ImageInfo]:
        """HWC image (C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) -> the upscaled HWC image and the updated info.

        float32 in [0, 1] gives float32 in [0, 1]. 8/16-bit samples (uint8/uint16, as
        ``read_image(..., integer=True)`` gives) give samples of ``bit_depth`` bits (8 or 16; default: the
        input's), written tile by tile straight into the integer result (:meth:`_integer`: no full-size float
        image, values identical to the float path's rounded output) when the model and image allow it; otherwise
        they go through the float path (``v / peak``, as the decoder would) and a float32 result comes back.

        Raises:
            ValueError: a bad shape, an image under 2 px, non-finite model output (nothing is returned then).
        """
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"expected an HxWxC image with C in (1, 2, 3, 4), got shape {img.shape}")
        h, w, c = img.shape
        if min(h, w) < MIN_SIDE:
            raise ValueError(
                f"image is too small to upscale ({w}x{h} px; need at least {MIN_SIDE}x{MIN_SIDE})"
            )
        if img.dtype in INT_PEAKS:
            done = self._integer(img, info, outscale, progress, bit_depth)
            if done is not None:
                return done
            peak = INT_PEAKS[img.dtype]
            img = img.astype(np.float32)
            img /= np.float32(peak)  # the decoder's own formula: the float path sees what read_image gives
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
        color, alpha = (x[:, :-1], x[:, -1:]) if c in (2, 4) else (x, None)
        if alpha is not None:
            color = fill_transparent(color, alpha)
        s = outscale if outscale is not None else self.backend.scale
        target = (max(1, round(h * s)), max(1, round(w * s)))
        # A resampler backend resizes straight to the target with its own kernel (one resampling, not two),
        # and its kernel also does the alpha (nearest stays nearest for pixel art).
        kernel = getattr(self.backend, "kernel", None) if self.backend.in_ch is None else None
        if kernel is not None:
            y = _resize(color, target, kernel)
        else:
            y = self._color(color, progress)
            if tuple(y.shape[-2:]) != target:
                y = _resize(y, target)
        if alpha is not None:
            y = torch.cat([y, _resize(alpha, target, kernel or "magic_sharp_2021")], dim=1)
        bad = array_non_finite(y)
        if bad is not None:  # clamping would turn it into a black/white image that looks like a result
            raise ValueError(f"the model output holds {bad} values; no image written ({self.backend!r})")
        out = y[0]
        # Clamp in place when y is our own buffer (not a view of the input, not an expanded gray): no second
        # full-size copy. The tiled output is channels_last, so the HWC view below is contiguous too.
        own = 0 not in out.stride() and out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
        with torch.inference_mode():  # the untiled forward returns an inference tensor: in-place only in here
            arr = (out.clamp_(0.0, 1.0) if own else out.clamp(0.0, 1.0)).permute(1, 2, 0).numpy()
        base = info or ImageInfo(channels=c, height=h, width=w)
        return np.ascontiguousarray(arr, dtype=np.float32), base.with_size(*target)

    def _integer(
        self,
        img: np.ndarray,
        info: ImageInfo | None,
        outscale: float | None,
        progress: Callable[[int, int], None] | None,
        bit_depth: int | None,
    ) -> tuple[np.ndarray, ImageInfo] | None:
        """8/16-bit HWC samples through the model with finished rows rounded straight into the integer result
        (:meth:`~paragonsr.tiling.Tiler.rows`); None when this image needs the float path: a resampler, alpha,
        an ``outscale`` other than the model's scale, channels the model cannot take as they are (except gray
        into an RGB model), a depth other than 8/16. Float memory: one tile's input and one band of output rows."""
        h, w, c = img.shape
        be = self.backend
        depth = bit_depth or (8 if img.dtype == np.uint8 else 16)
        if be.in_ch is None or not float(be.scale).is_integer() or c not in (1, 3) or depth not in (8, 16):
            return None
        s = int(be.scale)
        if outscale is not None and (max(1, round(h * outscale)), max(1, round(w * outscale))) != (
            h * s,
            w * s,
        ):
            return None
        gray_into_rgb = c == 1 and be.in_ch == 3
        if not (be.in_ch == c or gray_into_rgb):
            return None
        out = np.empty((h * s, w * s, c), np.uint8 if depth == 8 else np.uint16)
        peak = 255.0 if depth == 8 else 65535.0
        lw = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)

        def sink(rows: Tensor, r0: int) -> None:
            y = rows
            if c == 1 and y.shape[1] == 3:
                y = (y * lw.to(y.dtype)).sum(dim=1, keepdim=True)  # an RGB result folds back to gray
            elif c == 3 and y.shape[1] == 1:
                y = y.expand(-1, 3, -1, -1)
            elif y.shape[1] != c:
                raise ValueError(f"the model returned {y.shape[1]} channels for a {c}-channel image ({be!r})")
            arr = y[0].permute(1, 2, 0).to("cpu").numpy()
            bad = array_non_finite(arr)
            if bad is not None:  # clamping would turn it into a black/white image that looks like a result
                raise ValueError(f"the model output holds {bad} values; no image written ({be!r})")
            quantize_rows(arr, out[r0 : r0 + arr.shape[0]], peak)

        x = IntImage(img, channels=3 if gray_into_rgb else None)
        whole = self.tiler.rows(be, x, sink, needs_of(be), progress)
        self._release()
        if whole is not None:
            sink(whole, 0)
        base = info or ImageInfo(channels=c, height=h, width=w, bit_depth=8 if img.dtype == np.uint8 else 16)
        return out, base.with_size(h * s, w * s)


def upscale_image(
    img: np.ndarray,
    info: ImageInfo | None,
    backend: Backend,
    tile: object = 0,
    overlap: int = DEFAULT_OVERLAP,
    outscale: float | None = None,
    gray_mode: str = "per_channel",
    blend: float = 0.5,
) -> tuple[np.ndarray, ImageInfo]:
    """One-shot convenience around :class:`Upscaler` (see the module doc for channel and alpha handling)."""
    return Upscaler(backend, tile, overlap, blend, gray_mode)(img, info, outscale)


def upscale_samples(
    upscaler: Callable[..., tuple[np.ndarray, ImageInfo]],
    img: np.ndarray,
    info: ImageInfo,
    fmt: str,
    outscale: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, ImageInfo]:
    """``upscaler`` over an image read with ``read_image(..., integer=True)`` for a ``fmt`` output file: an
    :class:`Upscaler` is asked for samples at the depth that file will hold (so a 16-bit input written as JPEG is
    rounded once, to 8 bits); any other ``Upscaler``-like callable is called as ``(img, info, outscale,
    progress=...)``."""
    if isinstance(upscaler, Upscaler) and img.dtype in INT_PEAKS:
        depth = written_depth(fmt, info.bit_depth)
        return upscaler(img, info, outscale, progress, bit_depth=depth if depth in (8, 16) else None)
    return upscaler(img, info, outscale, progress=progress)


def upscale_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upscaler: Callable[..., tuple[np.ndarray, ImageInfo]],
    outscale: float | None = None,
    quality: int = 95,
    first_frame: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Upscale one file (still or animation) and write ``dst`` atomically; the number of frames written.

    ``first_frame`` treats animations as still images (their first frame). An animation into a format that
    holds one image (JPEG, TIFF, BMP) raises ``ValueError`` naming the file."""
    fmt = output_format(dst)
    anim = None if first_frame else read_animation(src)
    if anim is None:
        img, info = read_image(src, integer=True)
        result, out_info = upscale_samples(upscaler, img, info, fmt, outscale, progress)
        del img  # the input is not needed while the output is encoded (peak memory)
        write_image(dst, result, out_info, quality=quality, consume=True)
        return 1
    if fmt not in ANIMATED_FORMATS:
        raise ValueError(
            f"{src}: is an animation ({len(anim.frames)} frames) but {Path(dst).suffix} files hold one image; "
            f"write .gif, .png (APNG) or .webp, or pass --first-frame"
        )
    out = [
        to_dtype(upscaler(anim.frame(i), anim.info, outscale, progress=progress)[0], 8)
        for i in range(len(anim.frames))
    ]
    atomic_write_bytes(dst, encode_animation(out, anim.durations, anim.loop, fmt, quality))
    return len(out)


__all__ = ["LUMA", "Upscaler", "fill_transparent", "upscale_file", "upscale_image", "upscale_samples"]
