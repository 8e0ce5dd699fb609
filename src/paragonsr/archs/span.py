"""SPAN: Swift Parameter-free Attention Network (Wan et al., "Swift Parameter-free Attention Network for Efficient
Super-Resolution", CVPR Workshops 2024; winner of the NTIRE 2024 efficient SR challenge).

    x → [(x − rgb_mean) · img_range when ``norm``] → conv_1 → 6 × SPAB → conv_2
      → conv_cat 1×1 over [conv_1 out, conv_2 out, block_1 out, block_6's first conv out] → 3×3 conv → PixelShuffle

A SPAB block is three ``Conv3XC`` convs (SiLU between them) whose output ``o`` gates itself and the block input
without any attention parameters: ``(o + x) · (sigmoid(o) − 0.5)``. There is no image skip and no de-normalisation
at the output: a ``norm`` model learns to map the 255-scaled, mean-centred input straight to [0, 1].

``Conv3XC`` is a reparameterisable 3×3 conv: trained as 1×1 (C_in → 2·C_in) → 3×3 (→ 2·C_out) → 1×1 (→ C_out) plus
a 1×1 skip, it folds exactly into the single 3×3 ``eval_conv``. Unfused models keep ``eval_conv`` in their state
dict (synchronised from the branches whenever it is saved) and compute the folded kernel on the fly in eval mode;
``fuse_for_release()`` drops the branches for good.

State-dict keys follow the official implementation / spandrel (``conv_1.sk``, ``conv_1.conv.{0,1,2}``,
``conv_1.eval_conv``, ``block_N.c{1,2,3}_r.*``, ``conv_cat``, ``upsampler.0``, and a ``no_norm`` buffer in models
built with ``norm=False``), so official and traiNNer-redux checkpoints load strictly, with or without the training
branches. Variant names and defaults follow traiNNer-redux: ``span`` (52 channels) and ``span_s`` (48 channels, the
width of the official release), both ``norm=False`` for training; detection from a file sets ``norm`` from the
presence of ``no_norm``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.archs.hparams import rebuilt_by
from paragonsr.registry import ARCH_REGISTRY

log = logging.getLogger(__name__)

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean the official models were trained with
NUM_BLOCKS = 6  # fixed by the layout (block_1 … block_6 and the 4·C conv_cat)


class Conv3XC(nn.Module):
    """Reparameterisable 3×3 conv (stride 1, zero padding 1). Input/output NCHW, same spatial size.

    Training: ``conv(pad(x)) + sk(x)`` with ``conv`` = 1×1 → 3×3 (valid) → 1×1 and ``sk`` a 1×1 conv. Padding the
    input before the first 1×1 makes the border behave exactly like the folded kernel on a zero-padded input.
    """

    def __init__(self, c_in: int, c_out: int, gain: int = 2) -> None:
        super().__init__()
        self.fused = False
        self.sk = nn.Conv2d(c_in, c_out, 1)
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, c_in * gain, 1),
            nn.Conv2d(c_in * gain, c_out * gain, 3),
            nn.Conv2d(c_out * gain, c_out, 1),
        )
        self.eval_conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.eval_conv.requires_grad_(False)  # derived from the branches, never trained itself
        self._sync_eval_conv()

    def folded(self) -> tuple[Tensor, Tensor]:
        """The single 3×3 kernel ``(C_out, C_in, 3, 3)`` and bias ``(C_out,)`` equal to the training branches."""
        c1, c2, c3 = (cast(nn.Conv2d, m) for m in self.conv)
        assert (
            c1.bias is not None and c2.bias is not None and c3.bias is not None and self.sk.bias is not None
        )
        w1, w3 = c1.weight[:, :, 0, 0], c3.weight[:, :, 0, 0]
        w = torch.einsum("omhw,mi->oihw", c2.weight, w1)
        b = c2.bias + torch.einsum("omhw,m->o", c2.weight, c1.bias)
        w = torch.einsum("po,oihw->pihw", w3, w) + F.pad(self.sk.weight, (1, 1, 1, 1))
        b = c3.bias + w3 @ b + self.sk.bias
        return w, b

    @torch.no_grad()
    def _sync_eval_conv(self) -> None:
        if not self.fused:
            w, b = self.folded()
            assert self.eval_conv.bias is not None  # built with bias=True
            self.eval_conv.weight.copy_(w)
            self.eval_conv.bias.copy_(b)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        # Saved files carry an eval_conv that matches the branches (what other tools run in eval mode).
        self._sync_eval_conv()
        return super().state_dict(*args, **kwargs)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the branches into ``eval_conv`` and delete them (in place, idempotent)."""
        if self.fused:
            return
        self._sync_eval_conv()
        del self.sk, self.conv
        self.fused = True

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.eval_conv(x)
        if self.training:
            return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
        w, b = self.folded()
        return F.conv2d(x, w.to(x.dtype), b.to(x.dtype), padding=1)


class SPAB(nn.Module):
    """Swift parameter-free attention block: three Conv3XC (SiLU between), output ``(o + x)·(sigmoid(o) − 0.5)``.
    Returns ``(output, first conv's output)``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(ch, ch)
        self.c2_r = Conv3XC(ch, ch)
        self.c3_r = Conv3XC(ch, ch)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        act1 = F.silu(self.c1_r(x))
        out3 = self.c3_r(F.silu(self.c2_r(act1)))
        return (out3 + x) * (torch.sigmoid(out3) - 0.5), act1


@rebuilt_by("span")
class SPAN(nn.Module):
    """SPAN generator. Input NCHW in [0, 1] with ``num_in_ch`` channels; output ``(N, num_out_ch, H·s, W·s)``.

    Args:
        num_in_ch, num_out_ch: image channels.
        feature_channels: width C of every Conv3XC.
        scale: integer upscale factor ≥ 1 (the upsampler conv has ``num_out_ch · scale²`` outputs).
        bias: accepted for traiNNer-redux option files; the layout always has biases (as in the reference code).
        norm: subtract ``rgb_mean`` and multiply by ``img_range`` first (official models); ``False`` stores a
            ``no_norm`` buffer, as traiNNer-redux/spandrel do, so a file tells which way it was trained.
        img_range, rgb_mean: the normalisation; a ``rgb_mean`` whose length is not ``num_in_ch`` is averaged.
    Raises:
        ValueError: non-positive ``feature_channels``/``scale``/channels.
    """

    mean: Tensor
    block_1: SPAB  # block_1 … block_6 are registered by name in __init__

    # Export parity gates feed image-like inputs: on white noise scaled by 255 the multiplicative gates amplify
    # fp32 rounding to ~1e-3 of the output (PyTorch fp32 vs fp64 alike), which says nothing about the export.
    parity_inputs = "image"

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        feature_channels: int = 48,
        scale: int = 4,
        bias: bool = True,
        norm: bool = True,
        img_range: float = 255.0,
        rgb_mean: Sequence[float] = RGB_MEAN,
    ) -> None:
        super().__init__()
        if min(num_in_ch, num_out_ch, feature_channels, scale) < 1:
            raise ValueError(
                f"SPAN needs positive channels and scale, got num_in_ch={num_in_ch}, num_out_ch={num_out_ch}, "
                f"feature_channels={feature_channels}, scale={scale}"
            )
        if not bias:
            log.warning("SPAN: bias=False has no effect (the SPAN layout always has biases)")
        self.scale, self.in_ch, self.out_ch = int(scale), int(num_in_ch), int(num_out_ch)
        self.norm, self.img_range, self.fused = bool(norm), float(img_range), False
        mean = [float(v) for v in rgb_mean]
        if len(mean) != num_in_ch:
            mean = [sum(mean) / len(mean)] * num_in_ch
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        if not self.norm:
            self.register_buffer("no_norm", torch.zeros(1))
        c = feature_channels
        self.conv_1 = Conv3XC(num_in_ch, c)
        for i in range(1, NUM_BLOCKS + 1):
            self.add_module(f"block_{i}", SPAB(c))
        self.conv_cat = nn.Conv2d(4 * c, c, 1)
        self.conv_2 = Conv3XC(c, c)
        self.upsampler = nn.Sequential(
            nn.Conv2d(c, num_out_ch * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.norm:
            x = (x - self.mean.to(x.dtype)) * self.img_range
        first = self.conv_1(x)
        out_b1, _ = self.block_1(first)
        out, inner = out_b1, out_b1
        for i in range(2, NUM_BLOCKS + 1):
            out, inner = getattr(self, f"block_{i}")(out)
        # ``inner`` is block_6's first conv output (the official code's out_b5_2)
        cat = torch.cat([first, self.conv_2(out), out_b1, inner], dim=1)
        return self.upsampler(self.conv_cat(cat))

    @torch.no_grad()
    def fuse_for_release(self) -> SPAN:
        """Fold every Conv3XC into its ``eval_conv`` and drop the training branches, in place; returns self (eval).

        Works on a freshly built model too (same keys as a fused trained one), so files holding only the
        ``eval_conv`` weights load into ``build_arch(...).fuse_for_release()``. Output equals the unfused eval model.
        """
        for m in self.modules():
            if isinstance(m, Conv3XC):
                m.fuse()
        self.fused = True
        return self.eval()


@ARCH_REGISTRY.register("span", aliases=("SPAN",))
def span(
    num_in_ch: int = 3,
    num_out_ch: int = 3,
    feature_channels: int = 52,
    scale: int = 4,
    bias: bool = True,
    norm: bool = False,
    img_range: float = 255.0,
    rgb_mean: Sequence[float] = RGB_MEAN,
) -> SPAN:
    """SPAN with traiNNer-redux's ``span`` defaults (52 channels, no input normalisation)."""
    return SPAN(num_in_ch, num_out_ch, feature_channels, scale, bias, norm, img_range, rgb_mean)


@ARCH_REGISTRY.register("span_s")
def span_s(
    num_in_ch: int = 3,
    num_out_ch: int = 3,
    feature_channels: int = 48,
    scale: int = 4,
    bias: bool = True,
    norm: bool = False,
    img_range: float = 255.0,
    rgb_mean: Sequence[float] = RGB_MEAN,
) -> SPAN:
    """SPAN with traiNNer-redux's ``span_s`` defaults (48 channels, the official release width; no normalisation)."""
    return SPAN(num_in_ch, num_out_ch, feature_channels, scale, bias, norm, img_range, rgb_mean)


# Keys every SPAN file has, fused (eval_conv only) or not.
SPAN_KEYS = frozenset(
    {
        "conv_1.eval_conv.weight",
        "block_1.c1_r.eval_conv.weight",
        "block_6.c3_r.eval_conv.weight",
        "conv_cat.weight",
    }
    | {"conv_2.eval_conv.weight", "upsampler.0.weight"}
)


def span_kwargs_from_state_dict(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """SPAN hyperparameters from a state dict: width and input channels from ``conv_1.eval_conv``, scale and output
    channels from the upsampler conv (``num_out_ch · scale²`` outputs, ``num_out_ch`` tried as in, 3, 1, 4),
    ``norm`` from the ``no_norm`` buffer. Raises ``KeyError`` for another layout."""
    missing = sorted(SPAN_KEYS - set(state))
    if missing:
        raise KeyError(f"not a SPAN state dict: missing {', '.join(missing)}")
    feat, in_ch = (int(v) for v in state["conv_1.eval_conv.weight"].shape[:2])
    up = state["upsampler.0.weight"]
    if up.ndim != 4 or int(up.shape[1]) != feat or state["conv_cat.weight"].shape[:2] != (feat, 4 * feat):
        raise KeyError("not a SPAN state dict: conv_cat/upsampler widths do not match conv_1")
    total = int(up.shape[0])
    for out_ch in dict.fromkeys((in_ch, 3, 1, 4)):
        s = round((total / out_ch) ** 0.5)
        if s >= 1 and s * s * out_ch == total:
            break
    else:
        raise KeyError(f"cannot infer the SPAN scale from an upsampler conv with {total} outputs")
    return {
        "num_in_ch": in_ch,
        "num_out_ch": out_ch,
        "feature_channels": feat,
        "scale": s,
        "norm": "no_norm" not in state,
    }


__all__ = ["SPAB", "SPAN", "SPAN_KEYS", "Conv3XC", "span", "span_kwargs_from_state_dict", "span_s"]
