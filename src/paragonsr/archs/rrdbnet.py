"""RRDBNet: the ESRGAN / Real-ESRGAN (x4plus) generator, with BasicSR's exact state-dict layout.

Keys: ``conv_first``, ``body.N.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``
(``conv_up3`` for ×8), ``conv_hr``, ``conv_last``, so BasicSR / Real-ESRGAN checkpoints load with strict keys.
Scales 1 and 2 pixel-unshuffle the input (by 4 and 2) and reuse the ×4 trunk, exactly as BasicSR does; the
original-ESRGAN key layout (``model.0``, ``model.1.sub.N.RDB1.conv1.0``…) is converted on load. Original-ESRGAN
×1/×2 files have no unshuffle but 0/1 upsampling convs instead: ``num_upconv`` builds that layout (the scale is
read back from the number of upconvs, :func:`rrdbnet_kwargs_from_state_dict`).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.archs.hparams import rebuilt_by
from paragonsr.registry import ARCH_REGISTRY

_SUPPORTED_SCALES = (1, 2, 4, 8)


def _scaled_kaiming_(module: nn.Module, scale: float) -> None:
    """BasicSR's ``default_init_weights``: Kaiming-normal convs scaled down, zero bias (stabilises deep RRDB)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            m.weight.data.mul_(scale)
            if m.bias is not None:
                m.bias.data.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs; the last projects back to ``num_feat`` and is added with scale 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32, res_scale: float = 0.2) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        _scaled_kaiming_(self, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * self.res_scale + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs in series, outer residual also scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32, res_scale: float = 0.2) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch, res_scale)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch, res_scale)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch, res_scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * self.res_scale + x


def convert_esrgan_legacy_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map the original ESRGAN layout (``model.0``, ``model.1.sub.N.RDBk.convj.0``, ``model.3``…) to BasicSR's.

    The legacy trunk is a flat ``nn.Sequential``; its indices depend on the number of upsampling stages, so the
    tail convs are assigned in order of appearance: [conv_up1, conv_up2, (conv_up3,) conv_hr, conv_last].
    """
    out: dict[str, Tensor] = {}
    rdb = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
    trunk_conv = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
    top = re.compile(r"^model\.(\d+)\.(weight|bias)$")
    tail_idx: list[int] = []
    for key, value in state.items():
        if m := rdb.match(key):
            out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif m := trunk_conv.match(key):
            out[f"conv_body.{m[2]}"] = value
        elif m := top.match(key):
            idx = int(m[1])
            if idx == 0:
                out[f"conv_first.{m[2]}"] = value
            elif idx not in tail_idx:
                tail_idx.append(idx)
        else:
            raise KeyError(f"unrecognised key {key!r} in a legacy ESRGAN checkpoint")
    tail_idx.sort()
    names = [f"conv_up{i + 1}" for i in range(len(tail_idx) - 2)] + ["conv_hr", "conv_last"]
    for idx, name in zip(tail_idx, names):
        for kind in ("weight", "bias"):
            if f"model.{idx}.{kind}" in state:
                out[f"{name}.{kind}"] = state[f"model.{idx}.{kind}"]
    return out


def rrdbnet_kwargs_from_state_dict(state: dict[str, Tensor]) -> dict[str, Any]:
    """Hyperparameters of a BasicSR/Real-ESRGAN (or legacy ESRGAN) RRDBNet state dict, for files without metadata.

    The unshuffle factor is read from ``conv_first``'s input channels assuming ``num_in_ch == num_out_ch`` (true
    for every released RRDBNet) and the upsampling from the number of ``conv_upN``: scale = 2**upconvs / unshuffle
    (BasicSR ×1/×2 unshuffle by 4/2 with two upconvs; original ESRGAN ×1/×2 have 0/1 upconvs, ×8 has three).
    Raises ``KeyError``/``ValueError`` for layouts that are not RRDBNet.
    """
    if any(k.startswith("model.") for k in state):
        state = convert_esrgan_legacy_state_dict(state)
    try:
        first, last = state["conv_first.weight"], state["conv_last.weight"]
        grow = state["body.0.rdb1.conv1.weight"].shape[0]
    except KeyError as exc:
        raise KeyError(f"not an RRDBNet state dict: missing {exc.args[0]!r}") from None
    num_out_ch = int(last.shape[0])
    ratio = first.shape[1] // num_out_ch
    if first.shape[1] % num_out_ch or ratio not in (1, 4, 16):
        raise ValueError(f"conv_first has {first.shape[1]} input channels for {num_out_ch} output channels")
    ups = 0
    while f"conv_up{ups + 1}.weight" in state:
        ups += 1
    unshuffle = {1: 1, 4: 2, 16: 4}[ratio]
    if (2**ups) % unshuffle or (2**ups) // unshuffle < 1:
        raise ValueError(f"{ups} upsampling convs do not fit a {unshuffle}x pixel-unshuffled input")
    scale = 2**ups // unshuffle
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
    kwargs: dict[str, Any] = dict(
        num_in_ch=num_out_ch,
        num_out_ch=num_out_ch,
        scale=scale,
        num_feat=int(first.shape[0]),
        num_block=max(blocks) + 1,
        num_grow_ch=int(grow),
    )
    if ups != _default_upconvs(scale):  # original ESRGAN x1/x2: no unshuffle, fewer upconvs
        kwargs["num_upconv"] = ups
    return kwargs


def _default_upconvs(scale: int) -> int:
    """BasicSR's convention: x1/x2 unshuffle to reuse the x4 trunk (2 upconvs); x8 has 3."""
    return 3 if scale == 8 else 2


@rebuilt_by("rrdbnet")
class RRDBNet(nn.Module):
    """ESRGAN generator. ``scale`` ∈ {1, 2, 4, 8}; 1 and 2 pixel-unshuffle the input like BasicSR, unless
    ``num_upconv`` asks for the original ESRGAN layout (``scale == 2**num_upconv``, no unshuffle).

    Inputs whose size is not a multiple of the unshuffle factor are replicate-padded and the output cropped, so any
    image size works (BasicSR would raise inside ``pixel_unshuffle``).

    Args:
        num_in_ch, num_out_ch: image channels (1 for grayscale, 3 for RGB).
        scale: upscale factor, 1, 2, 4 or 8.
        num_feat: trunk width.
        num_block: RRDB blocks of the trunk.
        num_grow_ch: growth channels of each dense block.
        num_upconv: 0-3 nearest-x2 upsampling convs without unshuffle (original ESRGAN files); None: BasicSR's rule.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        num_upconv: int | None = None,
    ) -> None:
        super().__init__()
        if scale not in _SUPPORTED_SCALES:
            raise ValueError(f"RRDBNet supports scale {_SUPPORTED_SCALES}, got {scale}")
        for name, v in (("num_feat", num_feat), ("num_block", num_block), ("num_grow_ch", num_grow_ch)):
            if int(v) < 1:
                raise ValueError(f"RRDBNet {name} must be >= 1, got {v}")
        ups = _default_upconvs(scale) if num_upconv is None else int(num_upconv)
        if not 0 <= ups <= 3 or (2**ups) % scale or (2**ups) // scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet x{scale} cannot have {num_upconv} upsampling convs")
        self.scale = scale
        self.in_ch = num_in_ch
        self.out_ch = num_out_ch
        # BasicSR: ×1 and ×2 fold space into channels so the trunk always upsamples ×4. Original ESRGAN ×1/×2
        # (num_upconv 0/1) do not unshuffle.
        self.unshuffle = 2**ups // scale
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.up_names = tuple(f"conv_up{i + 1}" for i in range(ups))
        for name in self.up_names:
            setattr(self, name, nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.register_load_state_dict_pre_hook(_legacy_pre_hook)

    @staticmethod
    def convert_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A copy of ``state`` in BasicSR's layout (legacy ESRGAN files converted; BasicSR ones unchanged)."""
        if any(k.startswith("model.") for k in state):
            return convert_esrgan_legacy_state_dict(dict(state))
        return dict(state)

    def _upsample(self, conv: nn.Conv2d, feat: Tensor) -> Tensor:
        return self.lrelu(conv(F.interpolate(feat, scale_factor=2.0, mode="nearest")))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        r = self.unshuffle
        if r > 1:
            # Always pad (often by 0): a traced/exported graph then handles every input size, not only the
            # parity of the example it was traced with. Replicate works for any size (reflect needs pad < size).
            x = F.pad(x, (0, (-w) % r, 0, (-h) % r), mode="replicate")
            x = F.pixel_unshuffle(x, r)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for name in self.up_names:
            feat = self._upsample(getattr(self, name), feat)
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        if r > 1:
            out = out[..., : h * self.scale, : w * self.scale]
        return out


def _legacy_pre_hook(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` of a legacy ESRGAN file: rename its keys in place (plain torch loading works too)."""
    keys = [k for k in state if k.startswith(prefix)]
    if not any(k.startswith(prefix + "model.") for k in keys):
        return
    legacy = {k[len(prefix) :]: state.pop(k) for k in keys}
    state.update({prefix + k: v for k, v in convert_esrgan_legacy_state_dict(legacy).items()})


@ARCH_REGISTRY.register("rrdbnet", aliases=("esrgan",))
def rrdbnet(
    num_in_ch: int = 3,
    num_out_ch: int = 3,
    scale: int = 4,
    num_feat: int = 64,
    num_block: int = 23,
    num_grow_ch: int = 32,
    num_upconv: int | None = None,
) -> RRDBNet:
    """RRDBNet with BasicSR defaults (64 feat, 23 blocks, grow 32) = Real-ESRGAN x4plus / ESRGAN.
    ``num_upconv`` (0-3) overrides BasicSR's upsampling convention for original-ESRGAN x1/x2 files."""
    return RRDBNet(num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch, num_upconv)


__all__ = [
    "RRDB",
    "RRDBNet",
    "ResidualDenseBlock",
    "convert_esrgan_legacy_state_dict",
    "rrdbnet",
    "rrdbnet_kwargs_from_state_dict",
]
