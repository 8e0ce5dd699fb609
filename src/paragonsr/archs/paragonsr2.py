"""ParagonSR2: LR backbone of dynamic depthwise blocks → Magic Kernel Sharp feature upsampling → small HR head.

    conv_in 3×3 → num_groups × ResidualGroupV2 → conv_body 3×3 (+ shallow skip)
    → MagicKernelSharpUpsample(features, α = upsampler_alpha) → hr_conv_in 3×3 → hr_blocks × ResidualBlock
    → conv_out 3×3  (+ MKS2021-upscaled input image when ``image_residual``)

Variants are registered factory functions (timm style): ``paragonsr2_nano`` … ``paragonsr2_xl``; every
hyperparameter can be overridden by keyword. ``fuse_for_release()`` folds the training graph into a plain static
conv net (tracked kernels, LayerScale, identity branches) in place; ``calibrate()`` settles the tracked kernels.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from paragonsr.archs.mks_upsample import MagicKernelSharpUpsample
from paragonsr.archs.paragonsr2_blocks import (
    DynamicTransformer,
    InceptionDWConv2d,
    LayerScale,
    ParagonBlockV2,
    ResidualBlock,
    ResidualGroupV2,
)
from paragonsr.registry import ARCH_REGISTRY
from paragonsr.utils.params import count_params  # re-exported: the ParagonSR2 tables use it


@ARCH_REGISTRY.register("paragonsr2", aliases=("ParagonSR2",))
class ParagonSR2(nn.Module):
    """ParagonSR2 generator. All hyperparameters are explicit keywords.

    Args:
        scale: integer upscale factor 1–4.
        in_ch, out_ch: image channels (1 for grayscale/infrared, 3 for RGB).
        num_feat: feature width C; num_groups × num_blocks ParagonBlockV2 in LR space.
        num_groups: residual groups of the LR-space body.
        num_blocks: ParagonBlockV2 per group.
        ffn_expansion: hidden width of the DynamicTransformer FFN (h = round(ffn·C)).
        band_kernel_size: k of the 1×k / k×1 inception band convs (odd).
        hr_blocks: ResidualBlocks of the HR refinement head.
        upsampler_alpha: feature upsampler sharpening, 0 = Magic Kernel … 1 = full MKS2021.
        image_residual: add the MKS2021 (α = 1) upscaled input image to the output, so the network learns only
            the detail. Rule: applied only when ``in_ch == out_ch`` (a 1→3 or 3→1 model has no natural image
            skip); ``self.image_residual`` holds the effective value.
        layer_scale_init: initial LayerScale γ.
        kernel_momentum: EMA momentum of the tracked static kernels in training mode.
    """

    # The image residual (MKS2021 upscale of the input) is fixed-function: int8 taps break its unit DC gain and
    # the error lands directly in the output. Measured on nano x2 (3 photos): quantising it costs 1.13 dB vs
    # ground truth (40.4 dB vs FP32); keeping it in float costs 0.08 dB (53.6 dB vs FP32). A cheap depthwise op.
    int8_keep_float: tuple[str, ...] = ("base_upsampler",)

    def __init__(
        self,
        scale: int = 4,
        in_ch: int = 3,
        out_ch: int = 3,
        num_feat: int = 32,
        num_groups: int = 3,
        num_blocks: int = 2,
        ffn_expansion: float = 2.0,
        band_kernel_size: int = 11,
        hr_blocks: int = 2,
        upsampler_alpha: float = 0.5,
        image_residual: bool = True,
        layer_scale_init: float = 1e-5,
        kernel_momentum: float = 0.05,
    ) -> None:
        super().__init__()
        if int(scale) != scale or not 1 <= scale <= 4:
            raise ValueError(f"ParagonSR2 scale must be an integer 1-4, got {scale!r}")
        for name, val, lo in (
            ("in_ch", in_ch, 1),
            ("out_ch", out_ch, 1),
            ("num_feat", num_feat, 8),
            ("num_groups", num_groups, 0),
            ("num_blocks", num_blocks, 0),
            ("hr_blocks", hr_blocks, 0),
        ):
            if int(val) != val or val < lo:
                raise ValueError(f"ParagonSR2 {name} must be an integer >= {lo}, got {val!r}")
        if ffn_expansion <= 0:
            raise ValueError(f"ParagonSR2 ffn_expansion must be > 0, got {ffn_expansion!r}")
        self.scale, self.in_ch, self.out_ch = int(scale), int(in_ch), int(out_ch)
        self.num_feat = int(num_feat)
        self.image_residual = bool(image_residual) and in_ch == out_ch
        self.fused = False

        block_kwargs = {
            "ffn_expansion": ffn_expansion,
            "band_kernel_size": band_kernel_size,
            "layer_scale_init": layer_scale_init,
            "kernel_momentum": kernel_momentum,
        }
        self.conv_in = nn.Conv2d(in_ch, num_feat, 3, padding=1)
        self.body = nn.Sequential(
            *(ResidualGroupV2(num_feat, num_blocks, **block_kwargs) for _ in range(num_groups))
        )
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.upsampler = MagicKernelSharpUpsample(num_feat, self.scale, alpha=upsampler_alpha)
        self.hr_conv_in = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.hr_head = nn.Sequential(*(ResidualBlock(num_feat) for _ in range(hr_blocks)))
        self.conv_out = nn.Conv2d(num_feat, out_ch, 3, padding=1)
        # A quiet start: the output begins near 0 (or near the MKS upscale with image_residual), not near noise.
        with torch.no_grad():
            self.conv_out.weight.mul_(0.1)
            self.conv_out.bias.zero_()  # type: ignore[union-attr]  # bias=True above
        self.base_upsampler = (
            MagicKernelSharpUpsample(in_ch, self.scale, alpha=1.0) if self.image_residual else None
        )

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_tracing() and (x.dim() != 4 or x.shape[1] != self.in_ch):
            raise ValueError(
                f"ParagonSR2 expects a (B, {self.in_ch}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        feat = self.conv_in(x)
        feat = self.conv_body(self.body(feat)) + feat
        out = self.hr_conv_in(self.upsampler(feat))
        out = self.conv_out(self.hr_head(out))
        if self.base_upsampler is not None:
            out = out + self.base_upsampler(x)
        return out

    def calibrate_for_eval(
        self, batches: Iterable[Any], device: torch.device | str | None = None
    ) -> ParagonSR2:
        """The optional architecture hook behind validation and release: settle the tracked kernels on
        ``batches`` (see :func:`calibrate`; ValueError on a fused model). A model built without blocks has
        nothing to settle and is returned unchanged. Returns self."""
        if any(isinstance(m, DynamicTransformer) for m in self.modules()):
            calibrate(self, batches, device=device)
        return self

    @torch.no_grad()
    def fuse_for_release(self) -> ParagonSR2:
        """Fold for deployment, in place: tracked kernels → static depthwise weights (generators removed),
        LayerScale γ → preceding conv, identity branches → depthwise centres. Idempotent; returns self.

        Works on a freshly built model too (same parameter names/shapes as a trained + fused one), so fused
        checkpoints load into ``build_arch(...).fuse_for_release()``. Eval output matches the unfused eval model.
        """
        if self.fused:
            return self
        for m in self.modules():
            if isinstance(m, ParagonBlockV2):
                m.fuse()
        self.fused = True
        return self.eval()


def _factory(
    num_feat: int, num_groups: int, num_blocks: int, hr_blocks: int, ffn_expansion: float
) -> dict[str, Any]:
    return {
        "num_feat": num_feat,
        "num_groups": num_groups,
        "num_blocks": num_blocks,
        "hr_blocks": hr_blocks,
        "ffn_expansion": ffn_expansion,
    }


# The published variant matrix (num_feat, groups, blocks, hr_blocks); ffn 1.5 for nano/anime, 2.0 for the rest.
VARIANTS: dict[str, dict[str, Any]] = {
    "paragonsr2_nano": _factory(24, 2, 2, 1, 1.5),
    "paragonsr2_anime": _factory(28, 2, 3, 2, 1.5),
    "paragonsr2_tiny": _factory(32, 3, 2, 2, 2.0),
    "paragonsr2_s": _factory(56, 5, 5, 2, 2.0),
    "paragonsr2_m": _factory(96, 8, 8, 2, 2.0),
    "paragonsr2_l": _factory(128, 10, 10, 3, 2.0),
    "paragonsr2_xl": _factory(160, 12, 12, 3, 2.0),
}


def _variant(name: str, scale: int, overrides: dict[str, Any]) -> ParagonSR2:
    return ParagonSR2(scale=scale, **{**VARIANTS[name], **overrides})


@ARCH_REGISTRY.register("paragonsr2_nano")
def paragonsr2_nano(scale: int = 4, **overrides: Any) -> ParagonSR2:
    """C 24, 2×2 blocks, hr_blocks 1, ffn 1.5."""
    return _variant("paragonsr2_nano", scale, overrides)


@ARCH_REGISTRY.register("paragonsr2_anime")
def paragonsr2_anime(scale: int = 4, **overrides: Any) -> ParagonSR2:
    """C 28, 2×3 blocks, hr_blocks 2, ffn 1.5."""
    return _variant("paragonsr2_anime", scale, overrides)


@ARCH_REGISTRY.register("paragonsr2_tiny")
def paragonsr2_tiny(scale: int = 4, **overrides: Any) -> ParagonSR2:
    """C 32, 3×2 blocks, hr_blocks 2, ffn 2.0."""
    return _variant("paragonsr2_tiny", scale, overrides)


@ARCH_REGISTRY.register("paragonsr2_s")
def paragonsr2_s(scale: int = 4, **overrides: Any) -> ParagonSR2:
    """C 56, 5×5 blocks, hr_blocks 2, ffn 2.0."""
    return _variant("paragonsr2_s", scale, overrides)


@ARCH_REGISTRY.register("paragonsr2_m")
def paragonsr2_m(scale: int = 4, **overrides: Any) -> ParagonSR2:
    """C 96, 8×8 blocks, hr_blocks 2, ffn 2.0."""
    return _variant("paragonsr2_m", scale, overrides)


@ARCH_REGISTRY.register("paragonsr2_l")
def paragonsr2_l(scale: int = 4, **overrides: Any) -> ParagonSR2:
    """C 128, 10×10 blocks, hr_blocks 3, ffn 2.0."""
    return _variant("paragonsr2_l", scale, overrides)


@ARCH_REGISTRY.register("paragonsr2_xl")
def paragonsr2_xl(scale: int = 4, **overrides: Any) -> ParagonSR2:
    """C 160, 12×12 blocks, hr_blocks 3, ffn 2.0."""
    return _variant("paragonsr2_xl", scale, overrides)


# what each factory fixes (generated option models and docs show these as the variant's defaults)
for _name, _fixed in VARIANTS.items():
    ARCH_REGISTRY.get(_name).variant_kwargs = dict(_fixed)


def _batch_tensor(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, dict) and "lq" in batch:
        return batch["lq"]
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(
        f"calibrate expects tensors, (lq, gt) pairs or dicts with an 'lq' key; got {type(batch).__name__}"
    )


def calibrate(
    model: nn.Module, batches: Iterable[Any], device: torch.device | str | None = None
) -> nn.Module:
    """Settle the tracked static kernels: forward ``batches`` in training mode under no_grad (no weight update).

    Batches may be LQ tensors, ``(lq, gt)`` pairs or BasicSR-style dicts with ``"lq"``. The previous
    train/eval mode is restored. Returns the model.
    """
    if getattr(model, "fused", False):
        raise ValueError(
            "calibrate: the model is already fused; calibrate the unfused model before fuse_for_release()"
        )
    if not any(isinstance(m, DynamicTransformer) for m in model.modules()):
        raise ValueError(
            f"calibrate: {type(model).__name__} has no DynamicTransformer tracked kernels to calibrate"
        )
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            for batch in batches:
                model(_batch_tensor(batch).to(device))
    finally:
        model.train(was_training)
    return model


__all__ = [
    "VARIANTS",
    "DynamicTransformer",
    "InceptionDWConv2d",
    "LayerScale",
    "ParagonBlockV2",
    "ParagonSR2",
    "ResidualBlock",
    "ResidualGroupV2",
    "calibrate",
    "count_params",
    "paragonsr2_anime",
    "paragonsr2_l",
    "paragonsr2_m",
    "paragonsr2_nano",
    "paragonsr2_s",
    "paragonsr2_tiny",
    "paragonsr2_xl",
]
