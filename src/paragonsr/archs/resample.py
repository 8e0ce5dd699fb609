"""Magic Kernel (Costella), Magic Kernel Sharp 2013/2021 and the classic resamplers, as exact separable filters.

Every resampler here is linear and separable. For each axis we build the dense 1-D weight matrix
``W (out x in)`` once (float64, cached), then apply it as a banded gather on tensors, so any factor works —
integer, non-integer, anisotropic, up or down — with replicate (clamp) edges.

Coordinate convention (pixel centres, as Pillow/OpenCV): source = (out + 1/2) / k - 1/2 for factor k = out/in.

Magic Kernel Sharp is *not* a single kernel evaluated at the source position: it is the Magic Kernel resample
composed with a small sharpening filter that runs on the finer of the two grids (John Costella, 2021):

- upsizing:   sharpen on the input grid, then resample with the Magic Kernel m evaluated in input-pixel units;
- downsizing: resample with m widened by 1/k (evaluated in output units), then sharpen on the output grid.

``MagicKernelSharpUpsample`` is the feature-space version used inside networks: integer factor, fixed depthwise
convs (a 1x7 / 7x1 sharpen, then a polyphase transposed conv for the Magic Kernel), no data-dependent control
flow, so it exports to ONNX with dynamic height/width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.errors import InputError

# ----------------------------------------------------------------------------------------------------------------
# Continuous kernels (numpy, float64)
# ----------------------------------------------------------------------------------------------------------------


def magic_kernel(x: np.ndarray) -> np.ndarray:
    """Costella's Magic Kernel: the quadratic B-spline, support +-1.5."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    return np.where(a <= 0.5, 0.75 - a * a, np.where(a <= 1.5, 0.5 * (a - 1.5) ** 2, 0.0))


def box_kernel(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def triangle_kernel(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(np.asarray(x, dtype=np.float64)))


def cubic_kernel(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys cubic convolution; a = -0.5 is the bicubic of Pillow / MATLAB (OpenCV uses -0.75)."""
    t = np.abs(np.asarray(x, dtype=np.float64))
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def lanczos3_kernel(x: np.ndarray) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------------------------
# Feature-space upsampler for networks
# ----------------------------------------------------------------------------------------------------------------


def magic_phase_weights(scale: int) -> np.ndarray:
    """Polyphase Magic Kernel weights for an integer factor: array (scale, 3) for input offsets -1, 0, +1.

    Output pixel s*i + p sits at source position i + d_p with d_p = (p + 1/2)/s - 1/2, so its taps are
    m(t - d_p) for t in {-1, 0, 1} (m's support 1.5 never reaches t = +-2 because |d_p| < 1/2).
    """
    p = np.arange(scale)
    d = (p + 0.5) / scale - 0.5
    return magic_kernel(np.arange(-1, 2)[None, :] - d[:, None])


class MagicKernelSharpUpsample(nn.Module):
    """Integer-factor Magic Kernel Sharp upsampling of a C-channel feature map with fixed depthwise convs.

    ``alpha`` blends the sharpening: 0 = plain Magic Kernel (smooth), 1 = full Magic Kernel Sharp (2021 or 2013).
    Equals ``resize(x, scale=s, kernel=...)`` with replicate edges (tested). No learned parameters; the filters are
    non-persistent buffers, so they never appear in checkpoints and follow ``.to(device/dtype)``.
    """

    sharp_w: Tensor
    sharp_h: Tensor
    up_w: Tensor
    up_h: Tensor

    def __init__(self, channels: int, scale: int, alpha: float = 0.5, version: str = "2021") -> None:
        super().__init__()
        if int(scale) != scale or scale < 1:
            raise ValueError(f"MagicKernelSharpUpsample needs an integer scale >= 1, got {scale}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"upsampler alpha must be in [0, 1], got {alpha}")
        self.channels, self.scale, self.alpha, self.version = int(channels), int(scale), float(alpha), version
        taps = torch.tensor(sharp_taps(version, alpha), dtype=torch.float32)
        self.sharp_pad = taps.numel() // 2
        self.register_buffer("sharp_w", taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("sharp_h", taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), persistent=False)
        # transposed-conv kernel: w[p + s*(1 - t)] = m(t - d_p), so out[s*i + p] = sum_t x[i + t] m(t - d_p)
        s = self.scale
        phases = magic_phase_weights(s)
        k = np.zeros(3 * s)
        for p in range(s):
            for ti, t in enumerate((-1, 0, 1)):
                k[p + s * (1 - t)] = phases[p, ti]
        kt = torch.tensor(k, dtype=torch.float32)
        self.register_buffer("up_w", kt.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("up_h", kt.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, scale={self.scale}, alpha={self.alpha}, version={self.version!r}"

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1:
            return x
        if x.device.type == "cpu" and (x.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu")):
            # Fixed filters run in fp32 on CPU: oneDNN's bf16 depthwise transposed conv is ~5x slower than fp32
            # there, and a bf16 image path is off by about one 8-bit grey level. Same maths; no effect on fp32,
            # CUDA or ONNX export.
            with torch.autocast("cpu", enabled=False):
                y = self._upsample(x.float())
            return y if x.dtype == torch.float32 else y.to(x.dtype)
        return self._upsample(x)

    def _upsample(self, x: Tensor) -> Tensor:
        if self.training and x.device.type == "cpu" and max(x.shape[-2:]) <= MATRIX_PATH_MAX:
            return self._upsample_matrix(x)
        c, s = self.channels, self.scale
        if self.alpha != 0.0:
            p = self.sharp_pad
            x = F.conv2d(F.pad(x, (p, p, 0, 0), mode="replicate"), self.sharp_w.to(x.dtype), groups=c)
            x = F.conv2d(F.pad(x, (0, 0, p, p), mode="replicate"), self.sharp_h.to(x.dtype), groups=c)
        x = F.conv_transpose2d(
            F.pad(x, (1, 1, 0, 0), mode="replicate"), self.up_w.to(x.dtype), stride=(1, s), groups=c
        )
        x = x[..., 2 * s : -2 * s]
        x = F.conv_transpose2d(
            F.pad(x, (0, 0, 1, 1), mode="replicate"), self.up_h.to(x.dtype), stride=(s, 1), groups=c
        )
        return x[..., 2 * s : -2 * s, :]

    def _upsample_matrix(self, x: Tensor) -> Tensor:
        """The same linear map as the filter path, as one matrix per axis: ``M_h · x · M_wᵀ``.

        Training on CPU: two matmuls (and two in the backward) are ~3x faster than the depthwise/transposed
        convs (whose strided-H transposed conv has no fast CPU kernel) on crop-sized inputs. Equal to the filter
        path up to fp32 rounding (tested)."""
        key = (self.scale, self.alpha, self.version)
        h, w = x.shape[-2:]
        mh = axis_matrix(h, *key).to(device=x.device, dtype=x.dtype)
        mw = mh if w == h else axis_matrix(w, *key).to(device=x.device, dtype=x.dtype)
        y = torch.matmul(mh.t(), torch.matmul(x, mw))
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = y.contiguous(memory_format=torch.channels_last)
        return y


MATRIX_PATH_MAX = (
    128  # largest side that takes the matrix path (its cost grows with the side, the filters' not)
)


@lru_cache(maxsize=32)
def axis_matrix(n: int, scale: int, alpha: float, version: str) -> Tensor:
    """(n, scale·n) float32 matrix of :class:`MagicKernelSharpUpsample` along one axis, replicate edges included:
    the filter path applied in float64 to the rows of the identity (a 1-row image, so the other axis is a no-op:
    its taps sum to 1)."""
    m = MagicKernelSharpUpsample(1, scale, alpha, version).double().eval()
    with torch.no_grad():
        rows = m._upsample(torch.eye(n, dtype=torch.float64).view(n, 1, 1, n))  # (n, 1, scale, scale·n)
    return rows[:, 0, 0, :].float().contiguous()
