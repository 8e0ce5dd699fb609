"""Frozen feature backbones for perceptual losses, defined locally (no torchvision) with torchvision's
state-dict key layout, so the official ``vgg19-dcbb9e9d.pth`` / ``convnext_tiny-983f1562.pth`` files load as-is.

- VGG16/19: ``features.N.weight`` / ``features.N.bias``; layers addressed by BasicSR names (``conv1_2``,
  ``relu3_4``, ``pool4``, ...). Only the layers up to the deepest requested one are built, so a loss using
  ``conv3_4`` never pays for (or needs weights of) conv4/conv5.
- ConvNeXt-T: ``features.0`` stem (conv 4×4/4 + LayerNorm2d), ``features.1/3/5/7`` stages of CNBlocks
  (``layer_scale``, ``block.0`` dw 7×7, ``block.2`` LayerNorm, ``block.3``/``block.5`` Linear), ``features.2/4/6``
  downsamplers. Layers addressed as ``stage1``..``stage4`` (outputs of features 1/3/5/7).

Inputs are RGB in [0, 1] (or [-1, 1] with ``range_norm=True``), normalised with ImageNet mean/std when
``use_input_norm`` (the backbones were trained that way).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.losses.pixel import check_pair
from paragonsr.weights import WeightSource, load_weight_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_VGG_CFG = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
_VGG_WIDTHS = (64, 128, 256, 512, 512)


def vgg_layer_names(vgg_type: str) -> list[str]:
    """BasicSR names of ``features`` in order (index = torchvision index)."""
    if vgg_type not in _VGG_CFG:
        raise ValueError(f"vgg_type must be one of {sorted(_VGG_CFG)}, got {vgg_type!r}")
    names = []
    for b, n in enumerate(_VGG_CFG[vgg_type], start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


def make_vgg_layers(names: list[str]) -> list[nn.Module]:
    """Modules for a prefix of :func:`vgg_layer_names` (same indices as torchvision's ``features``)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for n in names:
        if n.startswith("conv"):
            width = _VGG_WIDTHS[int(n[4]) - 1]
            layers.append(nn.Conv2d(in_ch, width, 3, padding=1))
            in_ch = width
        elif n.startswith("relu"):
            layers.append(nn.ReLU(inplace=False))  # not in place: conv outputs may be requested too
        else:
            layers.append(nn.MaxPool2d(2, 2))
    return layers


class FrozenNet(nn.Module):
    """Base of the pretrained networks used as fixed measures (backbones, LPIPS, DISTS): always in eval mode
    (``train()`` cannot switch it back: a parent model's ``.train()`` must not touch a loss network) and, after
    :meth:`freeze`, no gradients to its own weights (gradients still flow to the input)."""

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenNet:
        return super().train(False)


def load_backbone_weights(
    module: nn.Module, name: str, weights: WeightSource | None = None, prefix: str = "features."
) -> None:
    """Resolve ``name`` from ``weights`` (default :class:`WeightSource`) and load the ``prefix`` keys this (possibly
    truncated) module has; extra keys in the file (classifier, deeper layers) are ignored, missing or mis-shaped
    ones are errors (``KeyError`` / ``ValueError`` naming the file; ``WeightsError`` when the file is missing)."""
    path = (weights or WeightSource()).resolve(name)
    state = load_weight_file(path)
    own = {k: v for k, v in module.state_dict().items() if k.startswith(prefix)}
    missing = [k for k in own if k not in state]
    if missing:
        raise KeyError(f"{path} lacks {len(missing)} keys the '{name}' backbone needs, e.g. {missing[:3]}")
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"{path}: shape of {k} is {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k])  # state_dict() tensors share storage with the parameters


def load_or_warn_random(
    module: nn.Module, name: str, pretrained: bool, weights: WeightSource | None, what: str
) -> None:
    """:func:`load_backbone_weights` when ``pretrained``, else keep the random init and say so loudly."""
    if pretrained:
        load_backbone_weights(module, name, weights)
    else:
        warnings.warn(
            f"{what}: no pretrained weights, RANDOM {name} backbone (tests/debug only)", stacklevel=3
        )


class _InputNorm(nn.Module):
    mean: Tensor
    std: Tensor

    def __init__(self, use_input_norm: bool, range_norm: bool) -> None:
        super().__init__()
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        return x


class VGGFeatureExtractor(FrozenNet):
    """VGG16/19 features by BasicSR layer name: ``forward(x) -> {name: feature}``; ``weights`` says where the
    ``vgg_type`` file is resolved from (default :class:`~paragonsr.weights.WeightSource`)."""

    def __init__(
        self,
        layer_name_list: list[str],
        vgg_type: str = "vgg19",
        use_input_norm: bool = True,
        range_norm: bool = False,
        pretrained: bool = True,
        weights: WeightSource | None = None,
    ) -> None:
        super().__init__()
        names = vgg_layer_names(vgg_type)
        unknown = [n for n in layer_name_list if n not in names]
        if unknown:
            raise ValueError(f"unknown {vgg_type} layer(s) {unknown}; valid names: {', '.join(names)}")
        if not layer_name_list:
            raise ValueError("VGGFeatureExtractor needs at least one layer name")
        self.layer_name_list = list(layer_name_list)
        last = max(names.index(n) for n in layer_name_list)
        self.names = names[: last + 1]
        self.features = nn.Sequential(*make_vgg_layers(self.names))
        self.norm = _InputNorm(use_input_norm, range_norm)
        load_or_warn_random(self, vgg_type, pretrained, weights, "VGGFeatureExtractor")
        self.freeze()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.norm(x)
        out: dict[str, Tensor] = {}
        for name, layer in zip(self.names, self.features):
            x = layer(x)
            if name in self.layer_name_list:
                out[name] = x
        return out


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor (torchvision's ConvNeXt LayerNorm2d, same keys)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class _Permute(nn.Module):
    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)


class CNBlock(nn.Module):
    """ConvNeXt block with torchvision keys: ``layer_scale`` and ``block.{0,2,3,5}`` (no stochastic depth: frozen)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),
            _Permute((0, 2, 3, 1)),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            _Permute((0, 3, 1, 2)),
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layer_scale * self.block(x)


_CONVNEXT_T = ((96, 3), (192, 3), (384, 9), (768, 3))


class ConvNeXtFeatureExtractor(FrozenNet):
    """ConvNeXt-Tiny features ``stage1``..``stage4``: ``forward(x) -> {name: feature}``; built up to the deepest
    requested stage; ``weights`` says where ``convnext_tiny`` is resolved from."""

    STAGES = ("stage1", "stage2", "stage3", "stage4")

    def __init__(
        self,
        layer_name_list: list[str],
        use_input_norm: bool = True,
        range_norm: bool = False,
        pretrained: bool = True,
        weights: WeightSource | None = None,
    ) -> None:
        super().__init__()
        unknown = [n for n in layer_name_list if n not in self.STAGES]
        if unknown or not layer_name_list:
            raise ValueError(f"ConvNeXt layers must be among {self.STAGES}, got {layer_name_list}")
        self.layer_name_list = list(layer_name_list)
        depth = max(self.STAGES.index(n) for n in layer_name_list) + 1
        mods: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 96, 4, 4), LayerNorm2d(96, eps=1e-6))]
        for i in range(depth):
            dim, n = _CONVNEXT_T[i]
            if i > 0:
                prev = _CONVNEXT_T[i - 1][0]
                mods.append(nn.Sequential(LayerNorm2d(prev, eps=1e-6), nn.Conv2d(prev, dim, 2, 2)))
            mods.append(nn.Sequential(*[CNBlock(dim) for _ in range(n)]))
        self.features = nn.Sequential(*mods)
        self.norm = _InputNorm(use_input_norm, range_norm)
        load_or_warn_random(self, "convnext_tiny", pretrained, weights, "ConvNeXtFeatureExtractor")
        self.freeze()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.norm(x)
        out: dict[str, Tensor] = {}
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx % 2 == 1:  # features 1/3/5/7 are the stages
                name = self.STAGES[idx // 2]
                if name in self.layer_name_list:
                    out[name] = x
        return out


class DistanceNetLoss(nn.Module):
    """``loss_weight * mean net(pred, target)`` for a full-reference distance network (LPIPS, DISTS) whose
    constructor takes ``(pretrained, pretrained_backbone, weights)`` (``weights``: a
    :class:`~paragonsr.weights.WeightSource` built from this loss's ``weights_dir``, ``allow_download``, ``manifest``).

    Args:
        loss_weight: factor of this loss in the total.
        pretrained: load the distance network's own weight file (False: random weights, for tests).
        pretrained_backbone: load the backbone's weights (default: as ``pretrained``).
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        allow_download: fetch a missing weight file (checked against its SHA-256).
        manifest: weight manifest to resolve names with (default: the bundled one).
    """

    net_cls: type[nn.Module]
    gt_usm_group: ClassVar[str] = "percep"  # compares against the USM-sharpened GT when percep_gt_usm is set

    def __init__(
        self,
        loss_weight: float = 1.0,
        pretrained: bool = True,
        pretrained_backbone: bool | None = None,
        weights_dir: str | Path | None = None,
        allow_download: bool = False,
        manifest: Any = None,
    ) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        weights = WeightSource(weights_dir, allow_download, manifest)
        self.net = self.net_cls(pretrained, pretrained_backbone, weights, **getattr(self, "net_kwargs", {}))

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        check_pair(pred, target, type(self).__name__)
        return self.loss_weight * self.net(pred, target.detach()).mean()


def loss_weight_names(loss_type: str, kwargs: dict[str, Any] | None = None) -> set[str]:
    """Manifest entries (pretrained networks) the loss ``loss_type`` built with ``kwargs`` reads: its class's
    ``weight_names(**kwargs)``, empty for losses without pretrained networks or with ``pretrained: false``.
    KeyError for an unknown loss type."""
    import paragonsr.losses  # noqa: F401  registers the losses
    from paragonsr.registry import LOSS_REGISTRY

    kwargs = dict(kwargs or {})
    if kwargs.get("pretrained", True) is False:
        return set()
    fn = getattr(LOSS_REGISTRY.get(loss_type), "weight_names", None)
    return set(fn(**kwargs)) if fn is not None else set()
