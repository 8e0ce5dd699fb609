"""Perceptual metrics on pretrained networks (lower is better): LPIPS-alex (the field's default), LPIPS-vgg, DISTS.

One registry for every metric: :data:`~paragonsr.registry.METRIC_REGISTRY`. A perceptual metric is a metric
function registered with :func:`register_perceptual_metric`, which also attaches a :class:`MetricInfo`
(``fn.metric_info``: report label, the manifest weight entries it needs, direction, full- or no-reference).
``paragonsr eval`` (and ``--benchmark``) scores every registered perceptual metric whose weights are present and
verified, and ``val.metrics`` reaches the same functions by ``type``::

    val.metrics.lpips: {type: calculate_lpips, crop_border: 4}        # LPIPS-alex
    val.metrics.lpips_vgg: {type: calculate_lpips_vgg, crop_border: 4}
    val.metrics.dists: {type: calculate_dists, crop_border: 4}

Function contract: ``fn(img, img2, crop_border=0, input_order="HWC", weights_dir=None, device="cpu", **_)
-> float`` on RGB images in [0, 255] (HWC, or CHW with ``input_order``); a no-reference metric ignores ``img2``.
Weights come from the weights folder (``paragonsr weights fetch``); a missing file is the usual one-line
:class:`~paragonsr.weights.WeightsError` and nothing is downloaded unless ``paragonsr train --allow-download``.
``test_y_channel`` does not apply (RGB metrics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paragonsr.metrics.psnr_ssim import prepare_pair
from paragonsr.registry import METRIC_REGISTRY


@dataclass(frozen=True)
class MetricInfo:
    """What ``paragonsr eval`` needs to know about a registered perceptual metric.

    Attributes:
        key: short column key (``lpips_alex``); the report column and the ``per_image.csv`` header.
        label: how reports name it (``LPIPS-alex``).
        weights: manifest entries it reads (all must be present and verified for eval to use it); also what marks
            it when a training loss of the scored model reads one of them.
        lower_is_better: direction (the report's arrow).
        full_reference: compares with the GT (False: no-reference, ``img2`` ignored).
        in_eval: scored by ``paragonsr eval`` by default when its weights are there.
        rank: column order in reports (lower first; ties by key).
        min_size: smallest height/width (after the border crop) the network accepts; ``paragonsr eval`` leaves
            smaller images out of this metric's mean (``nan`` in ``per_image.csv``).
    """

    key: str
    label: str
    weights: tuple[str, ...]
    lower_is_better: bool = True
    full_reference: bool = True
    in_eval: bool = True
    rank: int = 100
    min_size: int = 1


MetricFn = Callable[..., float]


def register_perceptual_metric(
    name: str, info: MetricInfo, aliases: tuple[str, ...] = ()
) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register ``fn`` in ``METRIC_REGISTRY`` as ``name`` (+ ``aliases``) and attach ``info``."""

    def deco(fn: MetricFn) -> MetricFn:
        fn.metric_info = info  # type: ignore[attr-defined]
        return METRIC_REGISTRY.register(name, aliases=aliases)(fn)

    return deco


def perceptual_metrics() -> dict[str, tuple[MetricFn, MetricInfo]]:
    """``{info.key: (fn, info)}`` of every registered perceptual metric, in report order (``rank``, key)."""
    import paragonsr.metrics  # noqa: F401  registers the built-in metrics (and those imported there)

    out: dict[str, tuple[MetricFn, MetricInfo]] = {}
    for name in METRIC_REGISTRY.names():
        fn = METRIC_REGISTRY.get(name)
        info = getattr(fn, "metric_info", None)
        if isinstance(info, MetricInfo):
            out[info.key] = (fn, info)
    return dict(sorted(out.items(), key=lambda kv: (kv[1][1].rank, kv[0])))


# smallest side the networks accept (AlexNet: conv 11/4 then two 3/2 max pools; VGG16: four 2/2 max pools)
_MIN_SIZE = {"lpips_alex": 32, "lpips_vgg": 16}


@lru_cache(maxsize=6)
def _net(kind: str, weights_dir: str | None, device: str) -> torch.nn.Module:
    from paragonsr.weights import WeightSource

    weights = WeightSource(weights_dir)
    if kind == "dists":
        from paragonsr.losses.perceptual import DISTSNet

        return DISTSNet(pretrained=True, weights=weights).to(device)
    from paragonsr.losses.lpips import LPIPSNet

    return LPIPSNet(pretrained=True, weights=weights, net=kind.removeprefix("lpips_")).to(device)


def to_tensor01(img: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """HWC RGB in [0, 255] -> (1, 3, H, W) float32 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1) / 255.0, dtype=np.float32))
    return t[None].to(device)


def paired_distance(
    name: str,
    make_net: Callable[[str | None], torch.nn.Module],
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int,
    input_order: str,
    weights_dir: Any,
    device: str,
    min_size: int = 1,
) -> float:
    """Mean distance of a full-reference network ``make_net(weights_dir)`` between two RGB images in [0, 255]:
    the same shape checks, HWC/CHW handling and border crop as PSNR/SSIM, no Y channel. Raises ``ValueError``
    naming ``name`` for non-RGB images or images under ``min_size`` px after the crop (before any weights load)."""
    a, b = prepare_pair(img, img2, crop_border, input_order, test_y=False, color_order="rgb")
    if a.shape[2] != 3:
        raise ValueError(f"{name} needs RGB images (3 channels), got shape {np.shape(img)}")
    if min(a.shape[:2]) < min_size:
        raise ValueError(
            f"{name} needs images of at least {min_size}x{min_size} px after the border crop, "
            f"got {a.shape[1]}x{a.shape[0]}"
        )
    net = make_net(None if weights_dir is None else str(weights_dir))
    with torch.no_grad():
        return float(net(to_tensor01(a, device), to_tensor01(b, device)).mean())


_DOC = """{summary} of two RGB images; 0 = identical.

    Args:
        img, img2: the two images (RGB, [0, 255]), (H, W, 3) or (3, H, W) per ``input_order``{size}.
        crop_border: pixels cut from each border before measuring.
        input_order: ``HWC`` or ``CHW``.
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        device: torch device the network runs on (``cpu``, ``cuda``).

    Raises:
        WeightsError: a weight file is missing (``paragonsr weights fetch``) or fails its sha256.
        ValueError: images of different shapes, not RGB, or smaller than the network accepts.
    """


def full_reference_metric(
    name: str,
    info: MetricInfo,
    summary: str,
    make_net: Callable[[str | None, str], torch.nn.Module],
    aliases: tuple[str, ...] = (),
) -> MetricFn:
    """Build and register a full-reference network metric ``name(img, img2, crop_border=0, input_order="HWC",
    weights_dir=None, device="cpu") -> float`` (the module's function contract) from ``make_net(weights_dir,
    device)``, a module mapping two (N, 3, H, W) [0, 1] batches to per-image distances. The docstring is the shared
    one, headed by ``summary``; errors name ``info.key``."""

    def metric(
        img: np.ndarray,
        img2: np.ndarray,
        crop_border: int = 0,
        input_order: str = "HWC",
        weights_dir: str | None = None,
        device: str = "cpu",
        **_: Any,
    ) -> float:
        return paired_distance(
            info.key, lambda wd: make_net(wd, device), img, img2, crop_border, input_order, weights_dir, device,
            info.min_size,
        )  # fmt: skip

    metric.__name__ = metric.__qualname__ = name
    size = f"; at least {info.min_size} px a side" if info.min_size > 1 else ""
    metric.__doc__ = _DOC.format(summary=summary, size=size)
    return register_perceptual_metric(name, info, aliases)(metric)


calculate_lpips = full_reference_metric(
    "calculate_lpips",
    MetricInfo(
        "lpips_alex", "LPIPS-alex", ("alexnet", "lpips_alex"), rank=0, min_size=_MIN_SIZE["lpips_alex"]
    ),
    "LPIPS v0.1, AlexNet variant (the field's LPIPS; Zhang et al. 2018),",
    lambda wd, device: _net("lpips_alex", wd, device),
    aliases=("lpips", "lpips_alex", "calculate_lpips_alex"),
)
calculate_lpips_vgg = full_reference_metric(
    "calculate_lpips_vgg",
    MetricInfo("lpips_vgg", "LPIPS-vgg", ("vgg16", "lpips_vgg"), rank=1, min_size=_MIN_SIZE["lpips_vgg"]),
    "LPIPS v0.1, VGG16 variant,",
    lambda wd, device: _net("lpips_vgg", wd, device),
    aliases=("lpips_vgg",),
)
calculate_dists = full_reference_metric(
    "calculate_dists",
    MetricInfo("dists", "DISTS", ("vgg16", "dists"), rank=2),
    "DISTS (Ding et al. 2020)",
    lambda wd, device: _net("dists", wd, device),
    aliases=("dists",),
)


def _loss_specs_from_options(opt: Any) -> list[dict[str, Any]]:
    train = opt.get("train") if isinstance(opt, dict) else None
    if not isinstance(train, dict):
        return []
    specs = [s for s in train.get("losses") or [] if isinstance(s, dict)]
    specs += [v for k, v in train.items() if k.endswith("_opt") and isinstance(v, dict)]  # BasicSR style
    return specs


def training_loss_specs(path: str | Path) -> list[dict[str, Any]] | None:
    """The training losses (``{type, **kwargs}``) recorded for a checkpoint, or None when nothing is recorded.

    Looked up in order: the ``train_losses`` list in a ``.safetensors`` header's ``extra`` metadata (release
    files may record it), then the run's ``options.yml`` when the checkpoint sits in ``<run>/models/`` (what
    ``paragonsr train`` writes). Unreadable records count as not recorded."""
    import json

    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                extra = json.loads((f.metadata() or {}).get("extra") or "{}")
            if isinstance(extra, dict) and isinstance(extra.get("train_losses"), list):
                return [s for s in extra["train_losses"] if isinstance(s, dict)]
        except Exception:  # a damaged header: the model loader reports it; nothing recorded here
            pass
    options = path.parent.parent / "options.yml"
    if path.parent.name == "models" and options.is_file():
        import yaml

        try:
            return _loss_specs_from_options(yaml.safe_load(options.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError):
            return None
    return None


def training_weight_names(specs: list[dict[str, Any]] | None) -> frozenset[str] | None:
    """Manifest entries read by the losses ``specs`` (:func:`training_loss_specs`); None stays None (unknown)."""
    if specs is None:
        return None
    from paragonsr.losses.backbones import loss_weight_names

    names: set[str] = set()
    for spec in specs:
        kw = {k: v for k, v in spec.items() if k != "type"}
        try:
            names |= loss_weight_names(str(spec.get("type", "")), kw)
        except (KeyError, ValueError, TypeError):  # a loss this install does not know: it cannot share a net
            continue
    return frozenset(names)
