"""ST-LPIPS (shift-tolerant LPIPS, alex / vgg) as validation / eval metrics (lower is better), registered with
:func:`~paragonsr.metrics.perceptual.register_perceptual_metric`::

    val.metrics.stlpips: {type: calculate_stlpips, crop_border: 4}          # ST-LPIPS-alex
    val.metrics.stlpips_vgg: {type: calculate_stlpips_vgg, crop_border: 4}

Inputs as the other numpy metrics: RGB images in [0, 255], HWC (or ``input_order="CHW"``). Needs the
``stlpips_alex`` / ``stlpips_vgg`` weight files (``paragonsr weights fetch``); a missing file is the usual one-line
error and nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from paragonsr.metrics.perceptual import MetricInfo, full_reference_metric


@lru_cache(maxsize=4)
def _net(net: str, weights_dir: str | None, device: str) -> torch.nn.Module:
    from paragonsr.losses.stlpips import STLPIPSNet
    from paragonsr.weights import WeightSource

    return STLPIPSNet(net, weights=WeightSource(weights_dir)).to(device)


calculate_stlpips = full_reference_metric(
    "calculate_stlpips",
    MetricInfo("stlpips_alex", "ST-LPIPS-alex", ("stlpips_alex",), rank=3, min_size=32),
    "ST-LPIPS-alex (shift-tolerant LPIPS, Ghildyal & Liu 2022)",
    lambda wd, device: _net("alex", wd, device),
    aliases=("stlpips", "stlpips_alex", "calculate_stlpips_alex"),
)
calculate_stlpips_vgg = full_reference_metric(
    "calculate_stlpips_vgg",
    # not in `paragonsr eval` by default: stride-1 VGG16 costs ~4x LPIPS-vgg on a CPU; val.metrics reach it
    MetricInfo("stlpips_vgg", "ST-LPIPS-vgg", ("stlpips_vgg",), in_eval=False, rank=4, min_size=32),
    "ST-LPIPS-vgg (shift-tolerant LPIPS on VGG16)",
    lambda wd, device: _net("vgg", wd, device),
    aliases=("stlpips_vgg",),
)
