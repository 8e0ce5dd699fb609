"""Building blocks of ParagonSR2 and their release folding.

Training graph (per ParagonBlockV2):
    x = x + γ1 ⊙ InceptionDWConv2d(x)
    x = x + γ2 ⊙ DynamicTransformer(x)

Fused (release) graph, exactly equal in fp32 up to rounding:
    x = ResidualInception(x)        # identity + γ1 folded into the depthwise weights, pass-through channels scaled
    x = x + FFN(x)                  # tracked kernel merged into the depthwise weight, γ2 folded into fc2

The dynamic kernel is a *parallel* branch of the static depthwise conv inside the transformer's FFN:
``dw(h) + dyn_b(h) = (w + k_b) * h`` (same padding, no bias in the dynamic branch). That is what makes the
dynamic -> static path exact: at eval time the tracked kernel is simply added to the learned depthwise weight.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerScale(nn.Module):
    """Per-channel residual gain γ (CaiT); small init keeps deep norm-free stacks stable early in training."""

    def __init__(self, channels: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.view(1, -1, 1, 1)


class InceptionDWConv2d(nn.Module):
    """InceptionNeXt token mixer: gc = int(ratio·C) channels each get a depthwise 3×3, 1×k and k×1 conv.

    The remaining C − 3·gc channels pass through untouched. Channel order: [identity, square, band-w, band-h].
    """

    def __init__(
        self,
        channels: int,
        band_kernel_size: int = 11,
        square_kernel_size: int = 3,
        branch_ratio: float = 0.125,
    ) -> None:
        super().__init__()
        gc = int(channels * branch_ratio)
        if gc < 1:
            raise ValueError(
                f"InceptionDWConv2d needs int({branch_ratio}·channels) >= 1, got channels={channels}; use num_feat >= 8"
            )
        if band_kernel_size < 1 or band_kernel_size % 2 == 0:
            raise ValueError(f"band_kernel_size must be a positive odd number, got {band_kernel_size}")
        k, q = band_kernel_size, square_kernel_size
        self.split_sizes = [channels - 3 * gc, gc, gc, gc]
        self.dwconv_hw = nn.Conv2d(gc, gc, q, padding=q // 2, groups=gc)
        self.dwconv_w = nn.Conv2d(gc, gc, (1, k), padding=(0, k // 2), groups=gc)
        self.dwconv_h = nn.Conv2d(gc, gc, (k, 1), padding=(k // 2, 0), groups=gc)

    def forward(self, x: Tensor) -> Tensor:
        x_id, x_hw, x_w, x_h = torch.split(x, self.split_sizes, dim=1)
        return torch.cat((x_id, self.dwconv_hw(x_hw), self.dwconv_w(x_w), self.dwconv_h(x_h)), dim=1)


class ResidualInception(nn.Module):
    """Fused ``x + γ ⊙ InceptionDWConv2d(x)``: one scale for the pass-through slice, three depthwise convs."""

    def __init__(self, src: InceptionDWConv2d) -> None:
        super().__init__()
        self.split_sizes = src.split_sizes
        ref = src.dwconv_hw.weight  # fold on whatever device/dtype the model lives on
        self.id_scale = nn.Parameter(torch.ones(src.split_sizes[0], device=ref.device, dtype=ref.dtype))
        # Fresh copies with the same shapes, so a fused checkpoint loads into a freshly fused model.
        self.dwconv_hw = _clone_conv(src.dwconv_hw)
        self.dwconv_w = _clone_conv(src.dwconv_w)
        self.dwconv_h = _clone_conv(src.dwconv_h)

    @torch.no_grad()
    def fold(self, gamma: Tensor) -> None:
        """Fold identity + γ into the weights: w' = γ·w + δ_centre, b' = γ·b, pass-through scale 1 + γ."""
        n_id, gc = self.split_sizes[0], self.split_sizes[1]
        self.id_scale.copy_(1.0 + gamma[:n_id])
        for i, conv in enumerate((self.dwconv_hw, self.dwconv_w, self.dwconv_h)):
            g = gamma[n_id + i * gc : n_id + (i + 1) * gc]
            conv.weight.mul_(g.view(-1, 1, 1, 1))
            kh, kw = conv.weight.shape[-2:]
            conv.weight[:, 0, kh // 2, kw // 2] += 1.0
            assert conv.bias is not None  # the source convs have biases
            conv.bias.mul_(g)

    def forward(self, x: Tensor) -> Tensor:
        x_id, x_hw, x_w, x_h = torch.split(x, self.split_sizes, dim=1)
        x_id = x_id * self.id_scale.view(1, -1, 1, 1)
        return torch.cat((x_id, self.dwconv_hw(x_hw), self.dwconv_w(x_w), self.dwconv_h(x_h)), dim=1)


def _clone_conv(conv: nn.Conv2d) -> nn.Conv2d:
    new = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        cast("tuple[int, int]", conv.kernel_size),
        stride=cast("tuple[int, int]", conv.stride),
        padding=cast("str | tuple[int, int]", conv.padding),
        groups=conv.groups,
        bias=conv.bias is not None,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    new.load_state_dict(conv.state_dict())
    return new


def _is_channels_last(t: Tensor) -> bool:
    """True for a 4-D tensor laid out NHWC in memory (and not also NCHW-contiguous, as 1×1 or C=1 maps are)."""
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


class GlobalAvgPool2d(nn.Module):
    """``AdaptiveAvgPool2d(1)``: (B, C, H, W) → (B, C, 1, 1) spatial means, same values.

    A channels_last input is reduced as its NHWC view, so the backward hands back a channels_last gradient (the
    plain reduction's backward comes out NCHW, and adding it to the channels_last gradient of the other branch
    costs more than the reduction itself)."""

    def forward(self, x: Tensor) -> Tensor:
        if _is_channels_last(x):
            return x.permute(0, 2, 3, 1).mean(dim=(1, 2))[:, :, None, None]
        return x.mean(dim=(2, 3), keepdim=True)


def per_sample_depthwise(h: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """Depthwise k×k conv (same padding) with each sample's own kernels: ``h`` (B, C, H, W), ``w`` (B, C, 1, k, k),
    ``bias`` (C,) shared. Returns (B, C, H, W): on the CPU in ``h``'s memory format, elsewhere NCHW.

    Two exact forms of the same sums: a channels_last CPU tensor runs B depthwise convs on its batch slices (each
    slice is already channels_last, so nothing is permuted in the forward or the backward, and the following
    LeakyReLU / 1×1 conv keep their fast layout); anything else runs one grouped conv over (1, B·C) channels,
    which needs (B, C) adjacent in memory, i.e. NCHW.
    """
    b, c, hh, ww = h.shape
    pad = w.shape[-1] // 2
    if h.device.type == "cpu" and b > 1 and _is_channels_last(h):
        # split (not unbind): its backward is one cat along the batch, which stays channels_last
        return torch.cat([F.conv2d(hs, w[i], bias, padding=pad, groups=c) for i, hs in enumerate(h.split(1))])
    bias_bc = None if bias is None else bias.expand(b, c).reshape(b * c)
    out = F.conv2d(h.reshape(1, b * c, hh, ww), w.reshape(b * c, 1, *w.shape[-2:]), bias_bc, padding=pad,
                   groups=b * c)  # fmt: skip
    return out.view(b, c, hh, ww)


class DynamicTransformer(nn.Module):
    """Gated-free conv FFN with a content-adaptive depthwise kernel.

    1×1 C→h, depthwise k×k (learned weight + per-sample dynamic kernel), LeakyReLU 0.1, 1×1 h→C.
    The kernel generator (GAP → 1×1 → ReLU → 1×1 to k²·h) sees the hidden features. In training mode the buffer
    ``tracked_kernel`` follows the batch-mean dynamic kernel by EMA (``momentum``); eval and export use it as a
    static kernel, so the eval graph has no data-dependent weights.
    """

    tracked_kernel: Tensor

    def __init__(
        self,
        channels: int,
        ffn_expansion: float = 2.0,
        kernel_size: int = 3,
        momentum: float = 0.05,
        gen_reduction: int = 4,
    ) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"kernel momentum must be in (0, 1], got {momentum}")
        hidden = max(1, round(channels * ffn_expansion))
        self.hidden, self.kernel_size, self.momentum = hidden, kernel_size, float(momentum)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.act = nn.LeakyReLU(0.1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        gen_hidden = max(8, channels // gen_reduction)
        self.kernel_gen = nn.Sequential(
            GlobalAvgPool2d(),
            nn.Conv2d(hidden, gen_hidden, 1),
            nn.ReLU(),
            nn.Conv2d(gen_hidden, hidden * kernel_size * kernel_size, 1),
        )
        # Small, non-zero start: the dynamic branch begins as a gentle perturbation of the learned kernel, and
        # the EMA sees a real signal from the first step.
        gen_out = cast(nn.Conv2d, self.kernel_gen[-1])
        nn.init.trunc_normal_(gen_out.weight, std=0.02)
        nn.init.zeros_(cast(Tensor, gen_out.bias))
        self.register_buffer("tracked_kernel", torch.zeros(hidden, 1, kernel_size, kernel_size))
        self.fused = False

    def dynamic_kernels(self, h: Tensor) -> Tensor:
        """Per-sample depthwise kernels, shape (B, hidden, 1, k, k)."""
        k = self.kernel_size
        return self.kernel_gen(h).view(h.shape[0], self.hidden, 1, k, k)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.fused:
            h = self.dwconv(h)
        elif self.training:
            dyn = self.dynamic_kernels(h)
            with torch.no_grad():
                batch_mean = dyn.detach().mean(0).to(self.tracked_kernel.dtype)
                self.tracked_kernel.lerp_(batch_mean, self.momentum)
            h = per_sample_depthwise(h, self.dwconv.weight.unsqueeze(0) + dyn, self.dwconv.bias)
        else:
            w = self.dwconv.weight + self.tracked_kernel.to(self.dwconv.weight.dtype)
            h = F.conv2d(h, w, self.dwconv.bias, padding=self.kernel_size // 2, groups=self.hidden)
        return self.fc2(self.act(h))

    @torch.no_grad()
    def fuse(self, gamma: Tensor | None = None) -> None:
        """Tracked kernel into the depthwise weight, generator removed, LayerScale γ into fc2."""
        if self.fused:
            return
        self.dwconv.weight.add_(self.tracked_kernel.to(self.dwconv.weight.dtype))
        if gamma is not None:
            self.fc2.weight.mul_(gamma.view(-1, 1, 1, 1))
            assert self.fc2.bias is not None
            self.fc2.bias.mul_(gamma)
        del self.kernel_gen
        del self.tracked_kernel
        self.fused = True


class ParagonBlockV2(nn.Module):
    """x + γ1·Inception(x), then + γ2·DynamicTransformer(x). No normalisation layers."""

    def __init__(
        self,
        channels: int,
        ffn_expansion: float = 2.0,
        band_kernel_size: int = 11,
        layer_scale_init: float = 1e-5,
        kernel_momentum: float = 0.05,
    ) -> None:
        super().__init__()
        self.inception: nn.Module = InceptionDWConv2d(channels, band_kernel_size)
        self.ls1 = LayerScale(channels, layer_scale_init)
        self.transformer = DynamicTransformer(channels, ffn_expansion, momentum=kernel_momentum)
        self.ls2 = LayerScale(channels, layer_scale_init)
        self.fused = False

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            x = self.inception(x)
            return x + self.transformer(x)
        x = x + self.ls1(self.inception(x))
        return x + self.ls2(self.transformer(x))

    @torch.no_grad()
    def fuse(self) -> None:
        if self.fused:
            return
        fused_inc = ResidualInception(cast(InceptionDWConv2d, self.inception))
        fused_inc.fold(self.ls1.gamma)
        self.inception = fused_inc
        self.transformer.fuse(self.ls2.gamma)
        del self.ls1
        del self.ls2
        self.fused = True


class ResidualGroupV2(nn.Module):
    """``num_blocks`` ParagonBlockV2 with a group-level skip."""

    def __init__(self, channels: int, num_blocks: int, **block_kwargs: Any) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ParagonBlockV2(channels, **block_kwargs) for _ in range(num_blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.blocks(x)


class ResidualBlock(nn.Module):
    """HR refinement block: conv3×3 → LeakyReLU 0.1 → conv3×3, + skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))
