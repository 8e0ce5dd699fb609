"""Datasets and the training loader from validated training options (``datasets.<phase>`` sections).

The dataset class comes from ``DATASET_REGISTRY`` by the section's ``type``; on-the-fly (OTF) datasets get their
degradation pipeline from ``DEGRADATION_REGISTRY`` with the Real-ESRGAN keys of the option file.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Mapping
from typing import Any, Protocol, cast

import torch
from torch.utils.data import DataLoader

from paragonsr.data.datasets import OTFDataset, PairedImageDataset, ResumableSampler, seed_worker
from paragonsr.data.options import OTFDatasetOpt
from paragonsr.registry import DATASET_REGISTRY
from paragonsr.utils.procs import torch_worker_init

__all__ = [
    "DataOptions", "build_dataset", "build_degradation_for", "build_pair_pool", "build_train_loader",
    "build_val_loaders", "network_channels",
]  # fmt: skip

log = logging.getLogger("paragonsr.train")


class _Network(Protocol):
    def kwargs(self) -> dict[str, Any]: ...


class DataOptions(Protocol):
    """What the builders here read of the validated training options; the training layer's ``Options`` has all
    of it (``datasets.<phase>`` sections, the top-level ``scale``/``gt_size``/``queue_size``/``*_gt_usm`` and
    Real-ESRGAN keys, ``network_g``'s channel arguments)."""

    @property
    def scale(self) -> int: ...
    @property
    def gt_size(self) -> int | None: ...
    @property
    def queue_size(self) -> int: ...
    @property
    def l1_gt_usm(self) -> bool: ...
    @property
    def percep_gt_usm(self) -> bool: ...
    @property
    def gan_gt_usm(self) -> bool: ...
    @property
    def datasets(self) -> Mapping[str, Any]: ...
    @property
    def network_g(self) -> _Network: ...
    def degradation_opt(self) -> dict[str, Any]:
        """The top-level Real-ESRGAN keys that were set."""
        ...

    def val_datasets(self) -> Mapping[str, Any]:
        """The ``datasets`` sections other than ``train``."""
        ...


def build_degradation_for(opt: DataOptions, ds: OTFDatasetOpt) -> Any:
    """The degradation pipeline of an OTF dataset section: ``realesrgan`` takes the top-level and dataset
    Real-ESRGAN keys plus ``l1/percep/gan_gt_usm``; ``workflows`` takes ``p_clean``/``predefined_sequences``;
    ``degradation_opt`` overrides last. Raises what ``build_degradation`` raises on bad keys/values."""
    from paragonsr.degrade import build_degradation
    from paragonsr.registry import DEGRADATION_REGISTRY

    name = DEGRADATION_REGISTRY.canonical(ds.degradation)
    dopt: dict[str, Any] = {}
    if name == "realesrgan":
        from paragonsr.degrade.realesrgan_opts import DATASET_KEYS, set_values

        dopt.update(opt.degradation_opt())
        dopt.update(set_values(ds, DATASET_KEYS))
        dopt.update(
            {"l1_gt_usm": opt.l1_gt_usm, "percep_gt_usm": opt.percep_gt_usm, "gan_gt_usm": opt.gan_gt_usm}
        )
    elif name == "workflows":
        if ds.p_clean is not None:
            dopt["p_clean"] = ds.p_clean
        if ds.predefined_sequences is not None:
            dopt["predefined_sequences"] = ds.predefined_sequences
    dopt.update(ds.degradation_opt)
    return build_degradation(ds.degradation, dopt, opt.scale)


def network_channels(opt: DataOptions) -> tuple[int, int]:
    """(LQ, GT) channels of ``network_g``: ``num_in_ch``/``in_ch`` and ``num_out_ch``/``out_ch`` (every arch
    defaults to 3)."""
    kw = opt.network_g.kwargs()
    return int(kw.get("num_in_ch", kw.get("in_ch", 3))), int(kw.get("num_out_ch", kw.get("out_ch", 3)))


def build_dataset(opt: DataOptions, phase: str, seed: int) -> PairedImageDataset | OTFDataset:
    """The dataset of ``datasets.<phase>``: training crops/augments (``gt_size``, or ``lq_size * scale``, or the
    top-level ``gt_size``); validation phases read whole images without augmentation."""
    ds = opt.datasets[phase]
    train = phase == "train"
    gt_size = (
        (ds.gt_size or (ds.lq_size * opt.scale if ds.lq_size else None) or opt.gt_size) if train else None
    )
    common: dict[str, Any] = dict(scale=opt.scale, gt_size=gt_size, meta_info=ds.meta_info, phase="train" if train else "val",
                  use_hflip=ds.use_hflip and train, use_rot=ds.use_rot and train, seed=seed,
                  small_image=ds.small_image, channels=network_channels(opt), cache_images=ds.cache_images,
                  cache_max_mb=ds.cache_max_mb)  # fmt: skip
    cls = DATASET_REGISTRY.get(ds.type)
    if cls is OTFDataset:
        otf = cast(OTFDatasetOpt, ds)  # the registry resolved its type to the OTF dataset
        return OTFDataset(
            otf.dataroot_gt,
            degrade=build_degradation_for(opt, otf),
            crop_candidates=otf.crop_candidates,
            **common,
        )
    return cls(ds.dataroot_gt, ds.dataroot_lq, filename_tmpl=ds.filename_tmpl, **common)


def build_train_loader(
    opt: DataOptions, dataset: Any, seed: int, rank: int = 0, world: int = 1
) -> tuple[DataLoader, ResumableSampler]:
    """The training loader of ``datasets.train`` for process ``rank`` of ``world``, with its resumable sampler.

    Raises ValueError when one process gets fewer samples than ``batch_size_per_gpu``. With worker processes
    forked from here, the image cache is filled first so the workers share the decoded pages."""
    ds = opt.datasets["train"]
    sampler = ResumableSampler(len(dataset), world, rank, ds.use_shuffle, seed, ds.dataset_enlarge_ratio)
    if sampler.num_samples < ds.batch_size_per_gpu:
        raise ValueError(
            f"datasets.train: {len(dataset)} images x enlarge {ds.dataset_enlarge_ratio} give {sampler.num_samples} "
            f"samples per process, fewer than batch_size_per_gpu {ds.batch_size_per_gpu}; raise "
            "dataset_enlarge_ratio or lower the batch size"
        )
    if ds.num_worker_per_gpu > 0 and dataset.cache.max_bytes > 0 and _forks_workers():
        # Decode once here: forked workers share these pages instead of each decoding (and holding) its own copy.
        t0 = time.perf_counter()
        n = dataset.fill_cache()
        log.info(f"image cache: {n} images, {dataset.cache.nbytes / 2**20:.0f} MiB decoded in "
                 f"{time.perf_counter() - t0:.1f} s (budget {ds.cache_max_mb:g} MiB per process)")  # fmt: skip
    loader = DataLoader(
        dataset, batch_size=ds.batch_size_per_gpu, sampler=sampler, num_workers=ds.num_worker_per_gpu,
        drop_last=True, pin_memory=ds.pin_memory and torch.cuda.is_available(), worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed + rank),
        persistent_workers=ds.persistent_workers and ds.num_worker_per_gpu > 0,
    )  # fmt: skip
    return loader, sampler


def build_val_loaders(opt: DataOptions, seed: int) -> dict[str, DataLoader]:
    """One batch-1 loader per validation section, keyed by its ``name`` (or the section key when unnamed)."""
    return {
        v.name if v.name != "dataset" else k: DataLoader(
            build_dataset(opt, k, seed),
            batch_size=1,
            num_workers=v.num_worker_per_gpu,
            worker_init_fn=torch_worker_init,  # quiet on Ctrl-C, gone with the training process
        )
        for k, v in opt.val_datasets().items()
    }


def build_pair_pool(opt: DataOptions) -> Any:
    """Real-ESRGAN's training-pair queue (``queue_size``, mixes batches) for on-the-fly training data; None when
    ``queue_size`` is 0 or the training set is paired (its pairs are fixed)."""
    if not opt.queue_size or DATASET_REGISTRY.get(opt.datasets["train"].type) is not OTFDataset:
        return None
    from paragonsr.degrade import PairPool

    return PairPool(opt.queue_size)


def _forks_workers() -> bool:
    return multiprocessing.get_context().get_start_method() == "fork"
