"""The sections of a training option file that name a registered implementation by ``type``: networks
(``network_g``/``network_d``), losses (``train.<name>_opt``, ``train.losses``), metrics (``val.metrics.<name>``)
and datasets (``datasets.<phase>``).

Each is a discriminated union of option models generated from the registered constructors
(:mod:`paragonsr.registry_options`): the keys a ``type`` takes are its constructor's arguments, with their types,
defaults and docstring descriptions, on top of the hand-written base below (keys of ours, such as a loss's
``loss_weight`` or a metric's ``better``). The network models live with the architectures
(:mod:`paragonsr.archs.options`), where checkpoint loading reads them too. Importing this module imports the
architectures, losses, metrics and datasets, which registers them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

import paragonsr.data.datasets
import paragonsr.losses
import paragonsr.metrics  # noqa: F401  (the imports above register every entry)
from paragonsr.archs.options import ARCH_OPTS, NetworkOpt, NetworkUnion
from paragonsr.data.options import INJECTED, PairedDatasetOpt
from paragonsr.registry import DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY
from paragonsr.registry_options import RegisteredOpt, registered_models, registered_union

__all__ = [
    "ARCH_OPTS", "DATASET_OPTS", "LOSS_OPTS", "METRIC_OPTS", "DatasetUnion", "LossOpt", "LossUnion", "MetricOpt",
    "MetricUnion", "NetworkOpt", "NetworkUnion", "RegisteredOpt",
]  # fmt: skip


class LossOpt(RegisteredOpt):
    """``type`` = a registered loss; ``loss_weight`` scales it; other keys go to its constructor."""

    loss_weight: float = Field(1.0, description="factor of this loss in the total")
    name: str | None = Field(None, description="label in logs (defaults to the option key, e.g. pixel_opt)")
    target: Literal["gt", "gt_usm"] | None = Field(
        None, description="which GT the loss sees (Real-ESRGAN usm; ~ = the loss's own choice)"
    )


class MetricOpt(RegisteredOpt):
    """``type`` = a registered metric; other keys go to the metric function."""

    crop_border: int = Field(0, ge=0, description="pixels cut from each border before measuring")
    test_y_channel: bool = Field(False, description="measure on the Y channel (BT.601) instead of RGB")
    better: Literal["higher", "lower"] | None = Field(
        None,
        description="which way is better for the best-model record (~: lower for lpips/dists/niqe/brisque)",
    )


LOSS_OPTS = registered_models(LOSS_REGISTRY, LossOpt, prefix="Loss", module=__name__)
METRIC_OPTS = registered_models(
    METRIC_REGISTRY, MetricOpt, prefix="Metric", module=__name__, skip=("img", "img2")
)
DATASET_OPTS = registered_models(
    DATASET_REGISTRY,
    PairedDatasetOpt,
    prefix="Dataset",
    module=__name__,
    skip=INJECTED,
    default="PairedImageDataset",
)
# the generated classes live here by name, so options pickle (spawned workers, torch.save of a state)
globals().update({m.__name__: m for opts in (LOSS_OPTS, METRIC_OPTS, DATASET_OPTS) for m in opts.values()})

if TYPE_CHECKING:  # the generated members are subclasses of these bases
    LossUnion = LossOpt
    MetricUnion = MetricOpt
    DatasetUnion = Any
else:
    LossUnion = registered_union(LOSS_REGISTRY, LOSS_OPTS)
    MetricUnion = registered_union(METRIC_REGISTRY, METRIC_OPTS)
    DatasetUnion = registered_union(DATASET_REGISTRY, DATASET_OPTS, default="PairedImageDataset")
