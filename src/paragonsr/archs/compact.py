"""SRVGGNetCompact (Real-ESRGAN's "compact" / realesr-animevideov3 / realesr-general-x4v3 family).

The module layout reproduces Real-ESRGAN's state-dict keys exactly (``body.0`` first conv, ``body.1`` its
activation, then (conv, act) pairs, last conv to out_ch * scale^2), so its checkpoints load strictly here and ours
load there (and in spandrel). Output = PixelShuffle(body(x)) + nearest-upsampled input.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.registry import ARCH_REGISTRY

_ACTS = ("prelu", "relu", "leakyrelu")


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1, inplace=True)
    raise ValueError(f"SRVGGNetCompact act_type must be one of {_ACTS}, got {act_type!r}")


@ARCH_REGISTRY.register("srvggnetcompact", aliases=("compact", "SRVGGNetCompact"))
class SRVGGNetCompact(nn.Module):
    """Plain VGG-style conv stack in LR space + PixelShuffle, with a nearest-neighbour image skip.

    Args:
        num_in_ch, num_out_ch: image channels (1 for grayscale, 3 for RGB).
        num_feat: width of every conv.
        num_conv: 3×3 convs between the first conv and the upsampler conv.
        upscale: integer upscale factor ≥ 1 (the last conv has ``num_out_ch · upscale²`` outputs).
        act_type: activation after each conv: ``prelu``, ``relu`` or ``leakyrelu`` (slope 0.1).

    Raises:
        ValueError: ``upscale`` < 1 or an unknown ``act_type``.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        if upscale < 1:
            raise ValueError(f"SRVGGNetCompact upscale must be >= 1, got {upscale}")
        self.num_in_ch, self.num_out_ch = num_in_ch, num_out_ch
        self.num_feat, self.num_conv, self.upscale, self.act_type = num_feat, num_conv, upscale, act_type
        self.scale, self.in_ch, self.out_ch = upscale, num_in_ch, num_out_ch

        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        base = F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        if self.num_in_ch != self.num_out_ch:
            # Real-ESRGAN adds the skip only channel-wise compatible; repeat/trim keeps grayscale<->RGB usable
            base = base.mean(dim=1, keepdim=True).expand(-1, self.num_out_ch, -1, -1)
        return out + base


def compact_kwargs_from_state_dict(state: dict) -> dict:
    """Infer SRVGGNetCompact hyperparameters from a Real-ESRGAN-layout state dict (for flag-free loading)."""
    convs = sorted(
        int(parts[1])
        for k in state
        if len(parts := k.split(".")) == 3 and parts[0] == "body" and parts[1].isdigit() and parts[2] == "weight"
        and getattr(state[k], "dim", lambda: 0)() == 4
    )  # fmt: skip
    if not convs or convs[0] != 0:
        sample = ", ".join(list(state)[:3]) or "no tensors"
        raise KeyError(
            f"not an SRVGGNetCompact state dict (Real-ESRGAN Compact layout): no 'body.0.weight' conv (keys: {sample}, ...)"
        )
    first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    num_feat, num_in_ch = first.shape[0], first.shape[1]
    act_keys = [k for k in state if k.startswith("body.1.")]
    act_type = (
        "prelu" if act_keys else "leakyrelu"
    )  # relu/leakyrelu store nothing; leakyrelu is the safer guess
    out_total = last.shape[0]
    num_conv = len(convs) - 2
    for num_out_ch in (3, 1, 4):
        s2 = out_total / num_out_ch
        s = round(s2**0.5)
        if s * s * num_out_ch == out_total:
            break
    else:
        raise KeyError(f"cannot infer upscale from last conv with {out_total} output channels")
    return {
        "num_in_ch": num_in_ch,
        "num_out_ch": num_out_ch,
        "num_feat": num_feat,
        "num_conv": num_conv,
        "upscale": s,
        "act_type": act_type,
    }
