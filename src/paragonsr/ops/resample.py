"""Magic Kernel (Costella), Magic Kernel Sharp 2013/2021 and the classic resamplers, as exact separable filters.

Every resampler here is linear and separable. For each axis we build the dense 1-D weight matrix
``W (out x in)`` once (float64, cached), then apply it as a banded gather on tensors, so any factor works —
integer, non-integer, anisotropic, up or down — with replicate (clamp) edges.

Coordinate convention (pixel centres, as Pillow/OpenCV): source = (out + 1/2) / k - 1/2 for factor k = out/in.

Magic Kernel Sharp is *not* a single kernel evaluated at the source position: it is the Magic Kernel resample
composed with a small sharpening filter that runs on the finer of the two grids (John Costella, 2021):

- upsizing:   sharpen on the input grid, then resample with the Magic Kernel m evaluated in input-pixel units;
- downsizing: resample with m widened by 1/k (evaluated in output units), then sharpen on the output grid.

Tensor functions take batch-first floating point tensors (``(..., H, W)``, typically ``(B, C, H, W)``) in any
range (the filters are linear); ``resize_np`` takes HW/HWC numpy images. The feature-space version used inside
networks is :class:`paragonsr.archs.mks_upsample.MagicKernelSharpUpsample` (built from
:func:`magic_phase_weights` and :func:`sharp_taps`).

Sources: J. Costella, "Magic Kernel Sharp" (johncostella.com/magic, 2013/2021); R. Keys, "Cubic convolution
interpolation for digital image processing", IEEE TASSP 1981 (bicubic, a = -0.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from paragonsr.errors import InputError

# ----------------------------------------------------------------------------------------------------------------
# Continuous kernels (numpy, float64)
# ----------------------------------------------------------------------------------------------------------------


def magic_kernel(x: np.ndarray) -> np.ndarray:
    """Costella's Magic Kernel: the quadratic B-spline, support +-1.5."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    return np.where(a <= 0.5, 0.75 - a * a, np.where(a <= 1.5, 0.5 * (a - 1.5) ** 2, 0.0))


def box_kernel(x: np.ndarray) -> np.ndarray:
    """Box (nearest-neighbour / area) kernel: 1 on [-0.5, 0.5), 0 elsewhere; float64, shape of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def triangle_kernel(x: np.ndarray) -> np.ndarray:
    """Triangle (bilinear) kernel max(0, 1 - |x|), support +-1; float64, shape of ``x``."""
    return np.maximum(0.0, 1.0 - np.abs(np.asarray(x, dtype=np.float64)))


def cubic_kernel(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys cubic convolution; a = -0.5 is the bicubic of Pillow / MATLAB (OpenCV uses -0.75)."""
    t = np.abs(np.asarray(x, dtype=np.float64))
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def lanczos3_kernel(x: np.ndarray) -> np.ndarray:
    """Lanczos-3 kernel sinc(x) sinc(x / 3) for |x| < 3, else 0 (as Pillow's LANCZOS); float64, shape of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


# Sharpening post-filters of Magic Kernel Sharp, on the pixel grid (centre tap in the middle).
SHARP_TAPS: dict[str, np.ndarray] = {
    "2013": np.array([-1, 6, -1], dtype=np.float64) / 4,
    # 2013 convolved with [1/36, 0, 17/18, 0, 1/36]
    "2021": np.array([-1, 6, -35, 204, -35, 6, -1], dtype=np.float64) / 144,
}


def sharp_taps(version: str = "2021", alpha: float = 1.0) -> np.ndarray:
    """Sharpening taps blended with identity: delta + alpha * (sharp - delta). alpha 0 = no sharpening."""
    if version not in SHARP_TAPS:
        raise ValueError(
            f"unknown Magic Kernel Sharp version {version!r}; choose one of {sorted(SHARP_TAPS)}"
        )
    taps = SHARP_TAPS[version]
    delta = np.zeros_like(taps)
    delta[len(taps) // 2] = 1.0
    return delta + float(alpha) * (taps - delta)


def magic_kernel_sharp(x: np.ndarray, version: str = "2021") -> np.ndarray:
    """The combined continuous kernel m * sharp (support +-2.5 for 2013, +-4.5 for 2021), for plots/analysis."""
    taps = SHARP_TAPS[version]
    half = len(taps) // 2
    x = np.asarray(x, dtype=np.float64)
    return sum(t * magic_kernel(x - (i - half)) for i, t in enumerate(taps))


def frequency_response(taps: np.ndarray, omega: float | np.ndarray) -> np.ndarray:
    """Magnitude response of symmetric FIR taps at angular frequency omega (radians/sample)."""
    n = np.arange(len(taps)) - len(taps) // 2
    return np.abs(np.sum(taps[None, :] * np.cos(np.outer(np.atleast_1d(omega), n)), axis=1))


# name -> (kernel function, support radius)
_BASE_KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "box": (box_kernel, 0.5),
    "bilinear": (triangle_kernel, 1.0),
    "bicubic": (cubic_kernel, 2.0),
    "lanczos3": (lanczos3_kernel, 3.0),
    "magic": (magic_kernel, 1.5),
}
_SHARP_KERNELS = {"magic_sharp_2013": "2013", "magic_sharp_2021": "2021"}
_ALIASES = {
    "area": "box",
    "triangle": "bilinear",
    "linear": "bilinear",
    "cubic": "bicubic",
    "lanczos": "lanczos3",
    "magic_kernel": "magic",
    "mks2013": "magic_sharp_2013",
    "mks2021": "magic_sharp_2021",
    "mks": "magic_sharp_2021",
}
KERNEL_NAMES: tuple[str, ...] = ("nearest", *_BASE_KERNELS, *_SHARP_KERNELS)
_INTERPOLATING = frozenset({"nearest", "box", "bilinear", "bicubic", "lanczos3"})


def canonical_kernel(name: str) -> str:
    """The canonical name (one of :data:`KERNEL_NAMES`) of a kernel name or alias (case-insensitive, '-' = '_').
    Raises ``InputError`` naming the valid kernels and aliases, with a did-you-mean."""
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in KERNEL_NAMES:
        import difflib

        close = difflib.get_close_matches(key, [*KERNEL_NAMES, *_ALIASES], n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise InputError(
            f"unknown resampling kernel {name!r}; {hint}choose one of {', '.join(KERNEL_NAMES)} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
    return key


# ----------------------------------------------------------------------------------------------------------------
# 1-D weight matrices
# ----------------------------------------------------------------------------------------------------------------


def _sampling_matrix(
    n_in: int, n_out: int, fn: Callable[[np.ndarray], np.ndarray], support: float, stretch: float
) -> np.ndarray:
    """Rows = output pixels; kernel evaluated at (j - centre) / stretch, edges clamped, rows sum to 1."""
    ratio = n_out / n_in
    centres = (np.arange(n_out) + 0.5) / ratio - 0.5
    half = support * stretch
    taps = math.ceil(2 * half) + 2
    js = np.floor(centres - half).astype(np.int64)[:, None] + np.arange(taps)[None, :]
    w = fn((js - centres[:, None]) / stretch)
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.broadcast_to(np.arange(n_out)[:, None], js.shape)
    np.add.at(mat, (rows, np.clip(js, 0, n_in - 1)), w)
    sums = mat.sum(axis=1, keepdims=True)
    if np.any(sums == 0):  # cannot happen for supported kernels; guard against silent black rows
        raise RuntimeError(f"resampling {n_in}->{n_out}: empty kernel row")
    return mat / sums


def _nearest_matrix(n_in: int, n_out: int) -> np.ndarray:
    src = np.clip(np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), 0, n_in - 1)
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    mat[np.arange(n_out), src] = 1.0
    return mat


def sharpen_matrix(n: int, version: str = "2021", alpha: float = 1.0) -> np.ndarray:
    """The sharpening filter on an n-pixel grid with replicate edges, as an n x n matrix."""
    taps = sharp_taps(version, alpha)
    half = len(taps) // 2
    mat = np.zeros((n, n), dtype=np.float64)
    rows = np.arange(n)
    for i, t in enumerate(taps):
        np.add.at(mat, (rows, np.clip(rows + i - half, 0, n - 1)), t)
    return mat


@lru_cache(maxsize=256)
def weight_matrix(
    n_in: int, n_out: int, kernel: str = "magic_sharp_2021", antialias: bool = True
) -> np.ndarray:
    """Dense (n_out x n_in) float64 resampling matrix for one axis. Every row sums to 1."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"resample sizes must be >= 1, got {n_in} -> {n_out}")
    kernel = canonical_kernel(kernel)
    if kernel == "nearest":
        return _nearest_matrix(n_in, n_out)
    ratio = n_out / n_in
    stretch = max(1.0, 1.0 / ratio) if antialias else 1.0
    if kernel in _BASE_KERNELS:
        fn, support = _BASE_KERNELS[kernel]
        return _sampling_matrix(n_in, n_out, fn, support, stretch)
    version = _SHARP_KERNELS[kernel]
    magic = _sampling_matrix(n_in, n_out, magic_kernel, 1.5, stretch)
    if ratio >= 1:
        return magic @ sharpen_matrix(n_in, version)
    return sharpen_matrix(n_out, version) @ magic


@lru_cache(maxsize=256)
def _banded(n_in: int, n_out: int, kernel: str, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight) arrays of shape (n_out, taps): the non-zero band of the weight matrix."""
    mat = weight_matrix(n_in, n_out, kernel, antialias)
    nz = mat != 0
    lo = nz.argmax(axis=1)
    hi = n_in - 1 - nz[:, ::-1].argmax(axis=1)
    taps = int((hi - lo).max()) + 1
    raw = lo[:, None] + np.arange(taps)[None, :]
    idx = np.minimum(raw, n_in - 1)
    w = np.where(raw < n_in, mat[np.arange(n_out)[:, None], idx], 0.0)
    return idx, w


def _apply_axis(x: Tensor, n_out: int, dim: int, kernel: str, antialias: bool) -> Tensor:
    n_in = x.shape[dim]
    if n_in == n_out and kernel in _INTERPOLATING:
        return x  # interpolating kernels are the identity at factor 1 (the Magic Kernel family is not)
    idx_np, w_np = _banded(n_in, n_out, kernel, antialias)
    idx = torch.from_numpy(idx_np).to(x.device)
    w = torch.from_numpy(w_np).to(device=x.device, dtype=x.dtype)
    shape = [1] * x.dim()
    shape[dim] = n_out
    out: Tensor | None = None
    for k in range(idx.shape[1]):
        term = x.index_select(dim, idx[:, k]) * w[:, k].view(shape)
        out = term if out is None else out + term
    assert out is not None  # every band has at least one tap
    return out


def _out_size(size: tuple[int, int] | None, scale, h: int, w: int) -> tuple[int, int]:
    if size is not None:
        return int(size[0]), int(size[1])
    if scale is None:
        raise ValueError("resize needs either size=(h, w) or scale")
    sh, sw = (scale, scale) if isinstance(scale, (int, float)) else scale
    if sh <= 0 or sw <= 0:
        raise ValueError(f"resize scale must be positive, got {scale}")
    return max(1, math.floor(h * sh + 0.5)), max(1, math.floor(w * sw + 0.5))


def resize(
    x: Tensor,
    size: tuple[int, int] | None = None,
    scale: float | tuple[float, float] | None = None,
    kernel: str = "magic_sharp_2021",
    antialias: bool = True,
) -> Tensor:
    """Resize the last two dims of ``x`` (e.g. B,C,H,W) to ``size`` or by ``scale`` with a separable kernel.

    ``antialias`` widens the kernel by 1/k when downscaling (Pillow behaviour; Magic Kernel Sharp's definition).
    Integer tensors are rejected: convert to float first (``resize_np`` handles uint8/uint16 images).
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"resize expects a floating point tensor, got {x.dtype}")
    kernel = canonical_kernel(kernel)
    h, w = x.shape[-2:]
    oh, ow = _out_size(size, scale, h, w)
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = _apply_axis(work, oh, work.dim() - 2, kernel, antialias)
    out = _apply_axis(out, ow, work.dim() - 1, kernel, antialias)
    return out.to(x.dtype)


def resize_np(
    img: np.ndarray,
    size: tuple[int, int] | None = None,
    scale: float | tuple[float, float] | None = None,
    kernel: str = "magic_sharp_2021",
    antialias: bool = True,
) -> np.ndarray:
    """Resize an HW or HWC numpy image; the dtype is kept (integers are rounded and clipped to their range)."""
    if img.ndim not in (2, 3):
        raise ValueError(f"resize_np expects an HW or HWC image, got shape {img.shape}")
    work_dtype = torch.float64 if img.dtype == np.float64 else torch.float32
    t = torch.from_numpy(np.ascontiguousarray(img)).to(work_dtype)
    t = t.unsqueeze(0) if img.ndim == 2 else t.permute(2, 0, 1)
    out = resize(t, size=size, scale=scale, kernel=kernel, antialias=antialias)
    out = out[0] if img.ndim == 2 else out.permute(1, 2, 0)
    arr = out.numpy()
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        arr = np.clip(np.rint(arr), info.min, info.max)
    return np.ascontiguousarray(arr.astype(img.dtype, copy=False))


def sharpen(x: Tensor, version: str = "2021", alpha: float = 1.0) -> Tensor:
    """Magic Kernel Sharp post-filter on the pixel grid (both axes, replicate edges): x + alpha*(sharp(x) - x)."""
    taps = torch.as_tensor(sharp_taps(version, alpha), dtype=x.dtype, device=x.device)
    half = taps.numel() // 2
    shape = x.shape
    y = x.reshape(-1, 1, *shape[-2:])
    y = F.conv2d(F.pad(y, (half, half, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, half, half), mode="replicate"), taps.view(1, 1, -1, 1))
    return y.reshape(shape)


def magic_phase_weights(scale: int) -> np.ndarray:
    """Polyphase Magic Kernel weights for an integer factor: array (scale, 3) for input offsets -1, 0, +1.

    Output pixel s*i + p sits at source position i + d_p with d_p = (p + 1/2)/s - 1/2, so its taps are
    m(t - d_p) for t in {-1, 0, 1} (m's support 1.5 never reaches t = +-2 because |d_p| < 1/2).
    """
    p = np.arange(scale)
    d = (p + 0.5) / scale - 0.5
    return magic_kernel(np.arange(-1, 2)[None, :] - d[:, None])
