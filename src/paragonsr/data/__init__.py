"""Data: training/validation datasets (registered in ``DATASET_REGISTRY``), transforms, and the dataset tools
(``meta_info``, ``subset``, ``tiles``, ``filter``) used by ``paragonsr data``."""

from __future__ import annotations

from paragonsr.data.datasets import OTFDataset, PairedImageDataset, ResumableSampler, gt_paths, scan_images
from paragonsr.registry import DATASET_REGISTRY

__all__ = [
    "DATASET_REGISTRY",
    "OTFDataset",
    "PairedImageDataset",
    "ResumableSampler",
    "gt_paths",
    "scan_images",
]
