"""MUNet: a spectral-normalised U-Net discriminator that upsamples with the Magic Kernel Sharp upsampler.

Layout: ``in_conv`` 3×3 3→64 → four SN 4×4 stride-2 downs (64, 128, 256, 512) → two SN 3×3
bottleneck convs → four up blocks (Magic ×2 upsample, SN 3×3 conv, concatenate the skip of the same resolution,
SN 3×3 conv, LeakyReLU 0.2) → SN 3×3 to one channel: per-pixel real/fake logits at the input resolution.

Any input ≥ 16×16 works, odd sizes included: a 4×4/2 conv maps n to ⌊n/2⌋, so the ×2 upsample of an odd level
is one pixel short of its skip; we replicate-pad the missing last row/column (geometrically that row is just past
the border the conv never centred on). Spectral norm uses ``torch.nn.utils.parametrizations.spectral_norm``,
which supports the double backward that R1/R2 penalties need (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from paragonsr.archs.mks_upsample import MagicKernelSharpUpsample
from paragonsr.registry import ARCH_REGISTRY

MIN_SIZE = 16


def _sn_conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, stride, padding=1))


def match_size(x: Tensor, ref: Tensor) -> Tensor:
    """Crop or replicate-pad ``x`` at the bottom/right to ``ref``'s spatial size."""
    dh, dw = ref.shape[-2] - x.shape[-2], ref.shape[-1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    if dh < 0 or dw < 0:
        x = x[..., : ref.shape[-2], : ref.shape[-1]]
        dh, dw = max(dh, 0), max(dw, 0)
    return F.pad(x, (0, dw, 0, dh), mode="replicate") if dh or dw else x


class MUNetUpBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int, alpha: float) -> None:
        super().__init__()
        self.up = MagicKernelSharpUpsample(cin, 2, alpha=alpha)
        self.conv1 = _sn_conv(cin, cout, 3)
        self.conv2 = _sn_conv(cout + cskip, cout, 3)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = match_size(self.up(x), skip)
        x = F.leaky_relu(self.conv1(x), 0.2)
        return F.leaky_relu(self.conv2(torch.cat([x, skip], dim=1)), 0.2)


@ARCH_REGISTRY.register("munet", aliases=("MUNet",))
class MUNet(nn.Module):
    """U-Net discriminator with Magic Kernel Sharp upsampling; returns (N, 1, H, W) logits.

    Args:
        num_in_ch: channels of the images judged (the generator's output channels).
        num_feat: width of the first level; level i has ``num_feat · ch_mult[i]`` channels.
        ch_mult: width factors of the four down levels.
        upsampler_alpha: sharpening of the decoder's upsampler, 0 = Magic Kernel … 1 = full MKS2021.

    Raises:
        ValueError: a ``ch_mult`` that does not have four entries.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_feat: int = 64,
        ch_mult: tuple[int, ...] = (1, 2, 4, 8),
        upsampler_alpha: float = 0.5,
    ) -> None:
        super().__init__()
        if len(ch_mult) != 4:
            raise ValueError(f"MUNet needs four down levels (ch_mult of length 4), got {ch_mult}")
        self.in_ch, self.out_ch, self.scale = num_in_ch, 1, 1
        chs = [num_feat * m for m in ch_mult]
        self.in_conv = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        ins = [num_feat, *chs[:-1]]
        self.downs = nn.ModuleList([_sn_conv(ci, co, 4, 2) for ci, co in zip(ins, chs)])
        self.bottleneck = nn.ModuleList([_sn_conv(chs[-1], chs[-1], 3), _sn_conv(chs[-1], chs[-1], 3)])
        # up i goes from level i+1 to level i; skips are the down outputs (and in_conv for the last one)
        skips = [num_feat, *chs[:-1]]  # channels at levels 0 (full res) .. 3
        ups, cur = [], chs[-1]
        for lvl in (3, 2, 1, 0):
            ups.append(MUNetUpBlock(cur, skips[lvl], skips[lvl], upsampler_alpha))
            cur = skips[lvl]
        self.ups = nn.ModuleList(ups)
        self.out_conv = _sn_conv(cur, 1, 3)

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(
                f"MUNet needs inputs of at least {MIN_SIZE}x{MIN_SIZE}, got {tuple(x.shape[-2:])}"
            )
        feats = [F.leaky_relu(self.in_conv(x), 0.2)]
        for down in self.downs:
            feats.append(F.leaky_relu(down(feats[-1]), 0.2))
        h = feats.pop()
        for conv in self.bottleneck:
            h = F.leaky_relu(conv(h), 0.2)
        for up in self.ups:
            h = up(h, feats.pop())
        return self.out_conv(h)
