"""LPIPS (Zhang et al. 2018, v0.1, VGG16 variant) as a loss, defined locally (the ``lpips`` package imports
torchvision). Same maths and key layout as the reference: ImageNet-free scaling layer on [-1, 1] inputs, VGG16
``features`` (torchvision keys) tapped at relu1_2 … relu5_3, channel-unit-normalised feature differences squared,
1×1 ``lin{k}.model.1.weight`` layers, spatial mean, sum over layers. Weights: ``vgg16`` + ``lpips_vgg`` manifest
entries (see :mod:`paragonsr.weights`).
"""

from __future__ import annotations

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
_CHANNELS = (64, 128, 256, 512, 512)


class _Lin(nn.Module):
    """``lin{k}.model.1.weight`` like the reference (model.0 is a Dropout, identity in eval)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPSNet(FrozenNet):
    """``forward(x, y) -> (N,)`` LPIPS distances for RGB inputs in [0, 1] (0 = identical); the ``vgg16`` and
    ``lpips_vgg`` files are resolved from ``weights`` (default :class:`~paragonsr.weights.WeightSource`)."""

    shift: Tensor
    scale: Tensor

    def __init__(
        self,
        pretrained: bool = True,
        pretrained_backbone: bool | None = None,
        weights: WeightSource | None = None,
    ) -> None:
        super().__init__()
        names = vgg_layer_names("vgg16")
        self.names = names[: names.index("relu5_3") + 1]
        self.features = nn.Sequential(*make_vgg_layers(self.names))
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        for k, ch in enumerate(_CHANNELS):
            self.add_module(f"lin{k}", _Lin(ch))
        pretrained_backbone = pretrained if pretrained_backbone is None else pretrained_backbone
        weights = weights or WeightSource()
        load_or_warn_random(self, "vgg16", pretrained_backbone, weights, "LPIPS")
        if pretrained:
            path = weights.resolve("lpips_vgg")
            state = load_weight_file(path)
            for k, ch in enumerate(_CHANNELS):
                key = f"lin{k}.model.1.weight"
                if key not in state or tuple(state[key].shape) != (1, ch, 1, 1):
                    raise KeyError(
                        f"{path}: LPIPS weights need '{key}' of shape (1, {ch}, 1, 1); keys: {sorted(state)}"
                    )
                getattr(self, f"lin{k}").model[1].weight.data.copy_(state[key])
        else:
            for k in range(
                len(_CHANNELS)
            ):  # the reference's untrained lin layers are non-negative; keep that
                nn.init.uniform_(getattr(self, f"lin{k}").model[1].weight, 0.0, 0.1)
        self.freeze()

    def taps(self, x: Tensor) -> list[Tensor]:
        h, out = (2 * x - 1 - self.shift) / self.scale, []
        for name, layer in zip(self.names, self.features):
            h = layer(h)
            if name in _TAPS:
                out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = x.new_zeros(x.shape[0])
        for k, (a, b) in enumerate(zip(self.taps(x), self.taps(y))):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}")((a - b) ** 2).mean((1, 2, 3))
        return total


@LOSS_REGISTRY.register("LPIPSLoss", aliases=("lpips",))
class LPIPSLoss(DistanceNetLoss):
    """``loss_weight * mean LPIPS(pred, target)`` (inputs in [0, 1])."""

    net_cls = LPIPSNet
