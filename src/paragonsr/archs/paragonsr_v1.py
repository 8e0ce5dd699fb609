"""ParagonSR (v1): GroupNorm ParagonBlocks + Magic Kernel Sharp feature upsampling + a simple conv tail.

The predecessor of ParagonSR2. Layout, with the state-dict names
the public implementation uses so its checkpoints map onto ours:

    conv_in 3×3 → body: num_groups × ResidualGroup(num_blocks × ParagonBlock, + skip) → conv_fuse 3×3 + shallow skip
    → magic_upsampler (MKS2021, no learned params) → upsampler.0 3×3 → conv_out 3×3

ParagonBlock: x + ls1 · InceptionDWConv2d(GroupNorm(x)); then x + ls2 · GatedFFN(GroupNorm(x)).
GatedFFN: gate g = 1×1(x) → reparameterisable depthwise spatial mixer (3×3 ‖ 1×1 ‖ identity) → Mish; value
i = 1×1(x); out = 1×1(Mish(g) · i). ``fuse_for_release()`` merges each mixer into one depthwise 3×3 conv whose
state-dict keys are ``…spatial_mixer.weight/bias`` (the same names the public fuse script produces).

Notes worth knowing:
- GroupNorm(1, C) normalises over the whole feature map, so the output of a tile depends on the tile's
  statistics: tiled inference of v1 is not exactly equal to whole-image inference (ParagonSR2 dropped the norm).
- The public implementation's mixer had a second depthwise 3×3 branch instead of the identity; on load such
  checkpoints are converted exactly (two parallel depthwise 3×3 convs are one 3×3 conv; the identity is
  subtracted from its centre tap) and the fork's upsampler weights (fixed, not learned) are dropped. The fork's
  "MagicKernelSharp2021Upsample" is not Costella's kernel (its "sharp" taps [-1, 0, 9, 16, 9, 0, -1]/32 are a
  low-pass filter, applied before a nearest resize), so such weights need a short fine-tune with this upsampler before their outputs are as good as they were.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.archs.hparams import rebuilt_by
from paragonsr.archs.mks_upsample import MagicKernelSharpUpsample

# Same modules (and state-dict keys) as ParagonSR2's: v2 kept v1's token mixer and residual gains.
from paragonsr.archs.paragonsr2_blocks import InceptionDWConv2d, LayerScale
from paragonsr.registry import ARCH_REGISTRY


class ReparamDWConv(nn.Module):
    """Depthwise spatial mixer with parallel 3×3, 1×1 and identity branches; fuses into one depthwise 3×3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv3x3 = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)
        self.conv1x1 = nn.Conv2d(channels, channels, 1, 1, 0, groups=channels)
        self.register_load_state_dict_pre_hook(_mixer_pre_hook)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3x3(x) + self.conv1x1(x) + x

    @torch.no_grad()
    def fused_weight_bias(self) -> tuple[Tensor, Tensor]:
        """The single depthwise 3×3 kernel and bias equal to the sum of the three branches."""
        w = self.conv3x3.weight.detach().clone()
        w += F.pad(self.conv1x1.weight.detach(), [1, 1, 1, 1])
        w[:, 0, 1, 1] += 1.0  # identity = a centred unit tap per channel
        assert self.conv3x3.bias is not None and self.conv1x1.bias is not None
        b = self.conv3x3.bias.detach() + self.conv1x1.bias.detach()
        return w, b

    def fuse(self) -> nn.Conv2d:
        w, b = self.fused_weight_bias()
        conv = nn.Conv2d(self.channels, self.channels, 3, 1, 1, groups=self.channels)
        conv.to(device=w.device, dtype=w.dtype)
        conv.weight.data.copy_(w)
        conv.bias.data.copy_(b)  # type: ignore[union-attr]  # bias=True above
        return conv

    @staticmethod
    def _convert_public_layout(state: dict[str, Any], prefix: str, *args: Any) -> None:
        # Public ParagonSR: conv3x3 + conv1x1 + dw_conv3x3 (no identity). Fold dw_conv3x3 into conv3x3 and
        # cancel our identity branch so the converted block computes exactly the same function.
        dw_w, dw_b = (
            state.pop(prefix + "dw_conv3x3.weight", None),
            state.pop(prefix + "dw_conv3x3.bias", None),
        )
        if dw_w is None or prefix + "conv3x3.weight" not in state:
            return
        w = state[prefix + "conv3x3.weight"] + dw_w
        w[:, 0, 1, 1] -= 1.0
        state[prefix + "conv3x3.weight"] = w
        if dw_b is not None and prefix + "conv3x3.bias" in state:
            state[prefix + "conv3x3.bias"] = state[prefix + "conv3x3.bias"] + dw_b


def _mixer_pre_hook(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    ReparamDWConv._convert_public_layout(state, prefix)


class GatedFFN(nn.Module):
    """Gated feed-forward: project_out(Mish(spatial_mixer(project_in_g(x))) · project_in_i(x))."""

    def __init__(self, channels: int, expansion_ratio: float = 2.0) -> None:
        super().__init__()
        hidden = int(channels * expansion_ratio)
        self.project_in_g = nn.Conv2d(channels, hidden, 1)
        self.project_in_i = nn.Conv2d(channels, hidden, 1)
        self.spatial_mixer: nn.Module = ReparamDWConv(hidden)
        self.act = nn.Mish()
        self.project_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        g = self.act(self.spatial_mixer(self.project_in_g(x)))
        return self.project_out(g * self.project_in_i(x))


class ParagonBlock(nn.Module):
    def __init__(
        self,
        channels: int,
        ffn_expansion: float = 2.0,
        band_kernel_size: int = 11,
        branch_ratio: float = 0.125,
        layer_scale_init: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, channels)
        self.context = InceptionDWConv2d(
            channels, band_kernel_size=band_kernel_size, branch_ratio=branch_ratio
        )
        self.norm2 = nn.GroupNorm(1, channels)
        self.transformer = GatedFFN(channels, ffn_expansion)
        self.ls1 = LayerScale(channels, layer_scale_init)
        self.ls2 = LayerScale(channels, layer_scale_init)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.context(self.norm1(x)))
        return x + self.ls2(self.transformer(self.norm2(x)))


class ResidualGroup(nn.Module):
    def __init__(self, channels: int, num_blocks: int, **block_kwargs: Any) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ParagonBlock(channels, **block_kwargs) for _ in range(num_blocks)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x) + x


@rebuilt_by("paragonsr_s")
class ParagonSR(nn.Module):
    """ParagonSR v1 generator (see module docstring). ``scale`` is any integer ≥ 1 (1 = restoration).

    Args:
        scale: integer upscale factor ≥ 1.
        in_ch, out_ch: image channels (1 for grayscale, 3 for RGB).
        num_feat: feature width C (≥ 8).
        num_groups: residual groups of the body (≥ 1).
        num_blocks: ParagonBlocks per group (≥ 1).
        ffn_expansion: hidden width of the GatedFFN (h = round(ffn·C)).
        band_kernel_size: k of the 1×k / k×1 inception band convs (odd).
        branch_ratio: share of the channels each inception branch (square, horizontal, vertical) mixes.
        layer_scale_init: initial LayerScale γ of both block residuals.
        upsampler_alpha: feature upsampler sharpening, 0 = Magic Kernel … 1 = full MKS2021.

    Raises:
        ValueError: a non-integer scale, too few groups/blocks/features, alpha outside [0, 1].
    """

    def __init__(
        self,
        scale: int = 4,
        in_ch: int = 3,
        out_ch: int = 3,
        num_feat: int = 64,
        num_groups: int = 6,
        num_blocks: int = 6,
        ffn_expansion: float = 2.0,
        band_kernel_size: int = 11,
        branch_ratio: float = 0.125,
        layer_scale_init: float = 1e-5,
        upsampler_alpha: float = 1.0,
    ) -> None:
        super().__init__()
        if int(scale) != scale or scale < 1:
            raise ValueError(f"ParagonSR scale must be an integer >= 1, got {scale!r}")
        if num_groups < 1 or num_blocks < 1 or num_feat < 8:
            raise ValueError(
                f"ParagonSR needs num_groups >= 1, num_blocks >= 1, num_feat >= 8; got {num_groups}, {num_blocks}, "
                f"{num_feat}"
            )
        if not 0.0 <= upsampler_alpha <= 1.0:
            raise ValueError(f"upsampler_alpha must lie in [0, 1], got {upsampler_alpha}")
        self.scale = int(scale)
        self.in_ch = in_ch
        self.out_ch = out_ch
        self.fused = False
        block_kwargs = dict(
            ffn_expansion=ffn_expansion,
            band_kernel_size=band_kernel_size,
            branch_ratio=branch_ratio,
            layer_scale_init=layer_scale_init,
        )
        self.conv_in = nn.Conv2d(in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(
            *[ResidualGroup(num_feat, num_blocks, **block_kwargs) for _ in range(num_groups)]
        )
        self.conv_fuse = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        # v1 predates ParagonSR2's alpha knob: it used the full MKS2021 sharpening, hence alpha 1.0 by default.
        self.magic_upsampler = MagicKernelSharpUpsample(num_feat, self.scale, alpha=upsampler_alpha)
        self.upsampler = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_out = nn.Conv2d(num_feat, out_ch, 3, 1, 1)
        self.register_load_state_dict_pre_hook(_model_pre_hook)

    @staticmethod
    def _drop_fork_upsampler(state: dict[str, Any], prefix: str, *args: Any) -> None:
        # The fork's upsampler stored its fixed filters as (frozen) conv weights; ours are not state.
        for k in [k for k in state if k.startswith(prefix + "magic_upsampler.")]:
            del state[k]

    @staticmethod
    def convert_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A copy of ``state`` with the public implementation's layout mapped onto ours (no-op for ours)."""
        state = dict(state)
        ParagonSR._drop_fork_upsampler(state, "")
        for key in [k for k in state if k.endswith("spatial_mixer.dw_conv3x3.weight")]:
            ReparamDWConv._convert_public_layout(state, key[: -len("dw_conv3x3.weight")])
        return state

    def forward(self, x: Tensor) -> Tensor:
        shallow = self.conv_in(x)
        feat = self.conv_fuse(self.body(shallow)) + shallow
        return self.conv_out(self.upsampler(self.magic_upsampler(feat)))

    @torch.no_grad()
    def fuse_for_release(self) -> ParagonSR:
        """Merge every reparameterisable mixer into one depthwise 3×3 conv, in place. Idempotent."""
        for module in self.modules():
            if isinstance(module, GatedFFN) and isinstance(module.spatial_mixer, ReparamDWConv):
                module.spatial_mixer = module.spatial_mixer.fuse()
        self.fused = True
        return self


def _model_pre_hook(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    ParagonSR._drop_fork_upsampler(state, prefix)


# Variants as the public implementation names them: (num_feat, num_groups, num_blocks, ffn_expansion).
VARIANTS: dict[str, tuple[int, int, int, float]] = {
    "anime": (28, 2, 3, 1.5),
    "nano": (24, 3, 2, 1.5),
    "tiny": (32, 3, 2, 2.0),
    "xs": (48, 4, 4, 2.0),
    "s": (64, 6, 6, 2.0),
    "m": (96, 8, 8, 2.0),
    "l": (128, 10, 10, 2.0),
    "xl": (160, 12, 12, 2.0),
}


def _variant(name: str, scale: int, overrides: dict[str, Any]) -> ParagonSR:
    num_feat, num_groups, num_blocks, ffn = VARIANTS[name]
    kwargs: dict[str, Any] = dict(
        num_feat=num_feat, num_groups=num_groups, num_blocks=num_blocks, ffn_expansion=ffn
    )
    kwargs.update(overrides)  # unknown names raise TypeError in ParagonSR.__init__ (no silent ignoring)
    return ParagonSR(scale=scale, **kwargs)


def paragonsr_v1_kwargs_from_state_dict(state: dict[str, Tensor]) -> tuple[str, dict[str, Any], bool]:
    """``(arch_name, kwargs, fused)`` for a ParagonSR v1 state dict (ours or the public layout) without metadata.

    The scale is not stored in the weights (the upsampler has none): callers pass it. A known variant shape
    gives its factory with no overrides; anything else is ``paragonsr_s`` with explicit overrides.
    """
    try:
        conv_in = state["conv_in.weight"]
        hidden = state["body.0.blocks.0.transformer.project_in_g.weight"].shape[0]
        out_ch = int(state["conv_out.weight"].shape[0])
    except KeyError as exc:
        raise KeyError(f"not a ParagonSR v1 state dict: missing {exc.args[0]!r}") from None
    feat, in_ch = int(conv_in.shape[0]), int(conv_in.shape[1])
    groups = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
    blocks = {int(k.split(".")[3]) for k in state if k.startswith("body.0.blocks.")}
    num_groups, num_blocks = max(groups) + 1, max(blocks) + 1
    fused = any(k.endswith("spatial_mixer.weight") for k in state)
    kwargs: dict[str, Any] = {} if (in_ch, out_ch) == (3, 3) else dict(in_ch=in_ch, out_ch=out_ch)
    for name, (f, g, b, ffn) in VARIANTS.items():
        if (f, g, b, int(f * ffn)) == (feat, num_groups, num_blocks, hidden):
            return f"paragonsr_{name}", kwargs, fused
    ffn = hidden / feat if int(feat * (hidden / feat)) == hidden else (hidden + 0.5) / feat
    kwargs.update(num_feat=feat, num_groups=num_groups, num_blocks=num_blocks, ffn_expansion=ffn)
    return "paragonsr_s", kwargs, fused


@ARCH_REGISTRY.register("paragonsr_anime", aliases=("paragon_sr_anime",))
def paragonsr_anime(scale: int = 4, **overrides: Any) -> ParagonSR:
    """28 feat, 2×3 blocks, ffn 1.5: clean lines and flat colours, real-time video."""
    return _variant("anime", scale, overrides)


@ARCH_REGISTRY.register("paragonsr_nano", aliases=("paragon_sr_nano",))
def paragonsr_nano(scale: int = 4, **overrides: Any) -> ParagonSR:
    """24 feat, 3×2 blocks, ffn 1.5: the lightest; CPU and low-end GPUs."""
    return _variant("nano", scale, overrides)


@ARCH_REGISTRY.register("paragonsr_tiny", aliases=("paragon_sr_tiny",))
def paragonsr_tiny(scale: int = 4, **overrides: Any) -> ParagonSR:
    """32 feat, 3×2 blocks, ffn 2."""
    return _variant("tiny", scale, overrides)


@ARCH_REGISTRY.register("paragonsr_xs", aliases=("paragon_sr_xs",))
def paragonsr_xs(scale: int = 4, **overrides: Any) -> ParagonSR:
    """48 feat, 4×4 blocks, ffn 2."""
    return _variant("xs", scale, overrides)


@ARCH_REGISTRY.register("paragonsr_s", aliases=("paragon_sr_s", "paragonsr", "paragon_sr"))
def paragonsr_s(scale: int = 4, **overrides: Any) -> ParagonSR:
    """64 feat, 6×6 blocks, ffn 2: the flagship."""
    return _variant("s", scale, overrides)


@ARCH_REGISTRY.register("paragonsr_m", aliases=("paragon_sr_m",))
def paragonsr_m(scale: int = 4, **overrides: Any) -> ParagonSR:
    """96 feat, 8×8 blocks, ffn 2."""
    return _variant("m", scale, overrides)


@ARCH_REGISTRY.register("paragonsr_l", aliases=("paragon_sr_l",))
def paragonsr_l(scale: int = 4, **overrides: Any) -> ParagonSR:
    """128 feat, 10×10 blocks, ffn 2."""
    return _variant("l", scale, overrides)


@ARCH_REGISTRY.register("paragonsr_xl", aliases=("paragon_sr_xl",))
def paragonsr_xl(scale: int = 4, **overrides: Any) -> ParagonSR:
    """160 feat, 12×12 blocks, ffn 2."""
    return _variant("xl", scale, overrides)


# what each factory fixes (generated option models and docs show these as the variant's defaults)
for _name, (_feat, _groups, _blocks, _ffn) in VARIANTS.items():
    ARCH_REGISTRY.get(f"paragonsr_{_name}").variant_kwargs = dict(
        num_feat=_feat, num_groups=_groups, num_blocks=_blocks, ffn_expansion=_ffn
    )

__all__ = [
    "VARIANTS",
    "GatedFFN",
    "InceptionDWConv2d",
    "LayerScale",
    "ParagonBlock",
    "ParagonSR",
    "ReparamDWConv",
    "ResidualGroup",
    "paragonsr_anime",
    "paragonsr_l",
    "paragonsr_m",
    "paragonsr_nano",
    "paragonsr_s",
    "paragonsr_tiny",
    "paragonsr_v1_kwargs_from_state_dict",
    "paragonsr_xl",
    "paragonsr_xs",
]
