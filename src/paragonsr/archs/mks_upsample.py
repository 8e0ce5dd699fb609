"""``MagicKernelSharpUpsample``: the Magic Kernel Sharp resampler of :mod:`paragonsr.ops.resample` as a network
layer for feature maps.

Integer factor, fixed depthwise convs (a 1x7 / 7x1 sharpen, then a polyphase transposed conv for the Magic
Kernel), no data-dependent control flow, so it exports to ONNX with dynamic height/width. Equal to
``paragonsr.ops.resample.resize(x, scale=s, kernel="magic_sharp_2021")`` with replicate edges (tested).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.ops.resample import magic_phase_weights, sharp_taps


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
        """The same linear map as the filter path, as one matrix per axis: ``M_hᵀ · x · M_w``.

        Training on CPU: batched matmuls (and the same in the backward) are ~3x faster than the depthwise/transposed
        convs (whose strided-H transposed conv has no fast CPU kernel) on crop-sized inputs. A channels_last input
        is contracted in its own memory order (W axis on ``(B·H, W, C)`` blocks, then H on ``(B, H, W'·C)``
        blocks), so neither the forward nor the backward permutes a tensor; with few channels (an image) the B·H
        small matmuls cost more than the two layout copies of the NCHW form, which those keep. Equal to the filter
        path up to fp32 rounding (tested)."""
        key = (self.scale, self.alpha, self.version)
        b, c, h, w = x.shape
        mh = axis_matrix(h, *key).to(device=x.device, dtype=x.dtype)
        mw = mh if w == h else axis_matrix(w, *key).to(device=x.device, dtype=x.dtype)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if not channels_last or c < CL_MATMUL_MIN_CHANNELS:
            y = torch.matmul(mh.t(), torch.matmul(x, mw))
            return y.contiguous(memory_format=torch.channels_last) if channels_last else y
        s = self.scale
        xl = x.permute(0, 2, 3, 1)  # (B, H, W, C), a contiguous view
        t = torch.bmm(mw.t().expand(b * h, -1, -1), xl.reshape(b * h, w, c))  # (B·H, sW, C)
        y = torch.bmm(mh.t().expand(b, -1, -1), t.view(b, h, s * w * c))  # (B, sH, sW·C)
        return y.view(b, s * h, s * w, c).permute(0, 3, 1, 2)  # channels_last (B, C, sH, sW)


CL_MATMUL_MIN_CHANNELS = 12  # measured crossover of the channels_last form against NCHW + two layout copies
MATRIX_PATH_MAX = (
    128  # largest side that takes the matrix path (its cost grows with the side, the filters' not)
)


@lru_cache(maxsize=32)
def axis_matrix(n: int, scale: int, alpha: float, version: str) -> Tensor:
    """(n, scale·n) float32 matrix of :class:`MagicKernelSharpUpsample` along one axis, replicate edges included:
    the filter path applied in float64 to the rows of the identity (a 1-row image, so the other axis is a no-op:
    its taps sum to 1). Built outside inference mode whoever asks first: the cached matrix is saved for backward
    by later training steps, which an inference tensor cannot be."""
    with torch.inference_mode(False), torch.no_grad():
        m = MagicKernelSharpUpsample(1, scale, alpha, version).double().eval()
        rows = m._upsample(torch.eye(n, dtype=torch.float64).view(n, 1, 1, n))  # (n, 1, scale, scale·n)
        return rows[:, 0, 0, :].float().contiguous()
