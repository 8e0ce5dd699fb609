"""ST-LPIPS: shift-tolerant LPIPS (Ghildyal & Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022),
AlexNet and VGG16 variants, defined locally.

Same maths as LPIPS v0.1 (scaling layer on [-1, 1] inputs, channel-unit-normalised feature differences squared,
1×1 ``lin{k}`` heads, spatial mean, sum over five taps) on backbones rebuilt to be tolerant to small shifts
(the published "shift_tolerant" variant = anti-aliased, reflect-padded blur pools, stride-1 first conv, blur after):

- every stride-2 step becomes a stride-1 op followed by :class:`BlurDown`, a depthwise [1,2,1]⊗[1,2,1]/16 blur with
  stride 2 on a reflect padding of 2 pixels per side;
- AlexNet: conv1 11×11 stride 1 (pad 2) → blur-down → ReLU; each 3×3 max pool has stride 1 and a blur-down after it;
- VGG16: each 2×2 max pool has stride 1 and a blur-down after it.

Module indices follow the published networks (``net.slice{1..5}.{i}``), so the converted state dicts of the
``stlpips-pytorch`` 0.0.2 package (``weights/vST0.0/{alex,vgg}_shift_tolerant.pth``, BSD-2-Clause) load as they
are; the blur is written here from its definition (the package's own pooling source is under a non-commercial
licence and is not used). Manifest entries ``stlpips_alex`` / ``stlpips_vgg`` (see :mod:`paragonsr.weights`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.losses.backbones import DistanceNetLoss, FrozenNet
from paragonsr.losses.lpips import LinHead, lpips_distance
from paragonsr.registry import LOSS_REGISTRY
from paragonsr.weights import WeightsError, WeightSource, load_weight_file
from paragonsr.weights.converters import register_converter

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
_BLUR_1D = (1.0, 2.0, 1.0)


def blur_kernel() -> Tensor:
    """The (3, 3) binomial kernel [1,2,1]ᵀ[1,2,1] / 16."""
    a = torch.tensor(_BLUR_1D)
    k = a[:, None] * a[None, :]
    return k / k.sum()


class BlurDown(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect padding of 2 px per side, depthwise 3×3 binomial blur,
    stride 2. ``(N, C, H, W) -> (N, C, H // 2 + 1, W // 2 + 1)``. No parameters (the kernel is a fixed buffer)."""

    filt: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", blur_kernel().expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=self.channels)


def _slice(mods: dict[int, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((str(i), m) for i, m in mods.items()))


def _alex_slices() -> list[nn.Sequential]:
    relu = nn.ReLU
    return [
        _slice({0: nn.Conv2d(3, 64, 11, stride=1, padding=2), 1: BlurDown(64), 2: relu()}),
        _slice({3: nn.MaxPool2d(3, 1), 4: BlurDown(64), 5: nn.Conv2d(64, 192, 5, padding=2), 6: relu()}),
        _slice({7: nn.MaxPool2d(3, 1), 8: BlurDown(192), 9: nn.Conv2d(192, 384, 3, padding=1), 10: relu()}),
        _slice({11: nn.Conv2d(384, 256, 3, padding=1), 12: relu()}),
        _slice({13: nn.Conv2d(256, 256, 3, padding=1), 14: relu()}),
    ]


def _vgg_slices() -> list[nn.Sequential]:
    cfg = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
    slices, idx, in_ch = [], 0, 3
    for b, (width, n) in enumerate(cfg):
        mods: dict[int, nn.Module] = {}
        if b > 0:  # the pool of the previous block opens this slice: 2×2 max, stride 1, then blur-down
            mods[idx], mods[idx + 1] = nn.MaxPool2d(2, 1), BlurDown(in_ch)
            idx += 2
        for _ in range(n):
            mods[idx], mods[idx + 1] = nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU()
            idx, in_ch = idx + 2, width
        slices.append(_slice(mods))
    return slices


_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


class _Trunk(nn.Module):
    def __init__(self, net: str) -> None:
        super().__init__()
        for k, s in enumerate(_alex_slices() if net == "alex" else _vgg_slices(), start=1):
            self.add_module(f"slice{k}", s)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            out.append(x)
        return out


class STLPIPSNet(FrozenNet):
    """``forward(x, y) -> (N,)`` ST-LPIPS distances of RGB images in [0, 1] (0 = identical; any H, W ≥ 32).

    Args:
        net: ``"alex"`` or ``"vgg"``.
        pretrained: load the ``stlpips_{net}`` weight file (False: random trunk and heads, tests only).
        pretrained_backbone: unused (the published file holds trunk and heads together); kept for the
            :class:`~paragonsr.losses.backbones.DistanceNetLoss` signature.
        weights: where the file is resolved from (default :class:`~paragonsr.weights.WeightSource`).

    Raises:
        WeightsError: the weight file is missing or fails its manifest hash.
        KeyError: the file lacks a key or a shape differs (names the file and the key).
    """

    shift: Tensor
    scale: Tensor

    def __init__(
        self,
        net: str = "alex",
        pretrained: bool = True,
        pretrained_backbone: bool | None = None,
        weights: WeightSource | None = None,
    ) -> None:
        super().__init__()
        if net not in _CHANNELS:
            raise ValueError(f"ST-LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.kind = net
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.net = _Trunk(net)
        for k, ch in enumerate(_CHANNELS[net]):
            self.add_module(f"lin{k}", LinHead(ch))
        if pretrained:
            path = (weights or WeightSource()).resolve(f"stlpips_{net}")
            self._load(load_weight_file(path), path)
        else:
            for k in range(5):  # the reference's heads are non-negative; keep that for random tests
                nn.init.uniform_(getattr(self, f"lin{k}").model[1].weight, 0.0, 0.1)
        self.freeze()

    def _load(self, state: dict[str, Any], path: Path) -> None:
        own = self.state_dict()
        for key, value in own.items():
            if key not in state:
                raise KeyError(f"{path}: ST-LPIPS-{self.kind} weights lack '{key}'")
            if tuple(state[key].shape) != tuple(value.shape):
                raise KeyError(
                    f"{path}: '{key}' has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
                )
        self.load_state_dict({k: state[k] for k in own})

    def taps(self, x: Tensor) -> list[Tensor]:
        """The five ReLU outputs of the trunk for ``x`` in [0, 1]."""
        return self.net((2 * x - 1 - self.shift) / self.scale)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return lpips_distance(self.taps(x), self.taps(y), self)


@register_converter("stlpips")
def convert_stlpips(member_path: Path) -> dict[str, Tensor]:
    """State dict of a published ``{alex,vgg}_shift_tolerant.pth`` (saved on CUDA; loaded on the CPU with
    ``weights_only=True``) with the fixed parts checked and dropped: the scaling layer must hold LPIPS' constants and
    every blur kernel must be the [1,2,1]⊗[1,2,1]/16 this module computes itself. Returns the conv weights/biases
    (``net.slice*``) and heads (``lin*``), float32 and contiguous. Raises :class:`WeightsError` naming the file."""
    try:
        state = torch.load(member_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read ST-LPIPS weights {member_path}: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{member_path} does not hold a state dict (got {type(state).__name__})")
    fixed = {
        "scaling_layer.shift": torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1),
        "scaling_layer.scale": torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1),
    }
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        value = value.detach().float()
        if key in fixed:
            if not torch.allclose(value, fixed[key]):
                raise WeightsError(
                    f"{member_path}: '{key}' is {value.flatten().tolist()}, not LPIPS' constants"
                )
        elif key.endswith(".filt"):
            if not torch.allclose(value, blur_kernel().expand_as(value)):
                raise WeightsError(f"{member_path}: '{key}' is not the [1,2,1] binomial blur")
        elif key.startswith(("net.slice", "lin")):
            out[key] = value.contiguous()
        else:
            raise WeightsError(f"{member_path}: unexpected key '{key}' in an ST-LPIPS state dict")
    return out


class STLPIPSAlexNet(STLPIPSNet):
    """:class:`STLPIPSNet` with ``net="alex"`` (the constructor signature :class:`DistanceNetLoss` expects)."""

    def __init__(
        self,
        pretrained: bool = True,
        pretrained_backbone: bool | None = None,
        weights: WeightSource | None = None,
    ) -> None:
        super().__init__("alex", pretrained, pretrained_backbone, weights)


class STLPIPSVGGNet(STLPIPSNet):
    """:class:`STLPIPSNet` with ``net="vgg"``."""

    def __init__(
        self,
        pretrained: bool = True,
        pretrained_backbone: bool | None = None,
        weights: WeightSource | None = None,
    ) -> None:
        super().__init__("vgg", pretrained, pretrained_backbone, weights)


@LOSS_REGISTRY.register("STLPIPSLoss", aliases=("stlpips", "stlpips_alex"))
class STLPIPSLoss(DistanceNetLoss):
    """``loss_weight * mean ST-LPIPS-alex(pred, target)`` (inputs in [0, 1]); options as ``LPIPSLoss``
    (``loss_weight``, ``pretrained``, ``weights_dir``, ``allow_download``, ``manifest``)."""

    net_cls = STLPIPSAlexNet

    @staticmethod
    def weight_names(**_: Any) -> set[str]:
        """Manifest entries this loss reads (for marking metrics that share its network)."""
        return {"stlpips_alex"}


@LOSS_REGISTRY.register("STLPIPSVGGLoss", aliases=("stlpips_vgg",))
class STLPIPSVGGLoss(DistanceNetLoss):
    """``loss_weight * mean ST-LPIPS-vgg(pred, target)`` (inputs in [0, 1]); options as :class:`STLPIPSLoss`."""

    net_cls = STLPIPSVGGNet

    @staticmethod
    def weight_names(**_: Any) -> set[str]:
        """Manifest entries this loss reads (for marking metrics that share its network)."""
        return {"stlpips_vgg"}
