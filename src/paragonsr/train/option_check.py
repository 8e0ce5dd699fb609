"""Checks beyond the schema: ``check_registered`` (cross-section rules and the degradation pipeline named by an
on-the-fly dataset; run by the loader) and ``check_run`` (what `paragonsr train --check` verifies before training:
folders, weight files, the network's real scale and channels). Networks, losses, metrics and datasets are checked
by the schema itself (:mod:`paragonsr.train.option_types`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from paragonsr.degrade.realesrgan_opts import DATASET_KEYS
from paragonsr.train.options import Options


def check_registered(opt: Options) -> list[str]:
    """Problems of an already schema-valid :class:`Options` that one section alone cannot show (empty list =
    fine): a GAN model type without ``network_d``, no loss, an unknown degradation pipeline or keys of another
    pipeline, no training set or crop size, ``gt_size``/``lq_size`` that disagree."""
    import paragonsr.degrade  # noqa: F401  registers the pipelines
    from paragonsr.registry import DEGRADATION_REGISTRY

    problems: list[str] = []
    if opt.kind == "gan" and opt.network_d is None:
        problems.append(f"network_d: model_type {opt.model_type} needs a discriminator (network_d.type)")
    if not opt.train.losses:
        problems.append("train: no loss configured (add pixel_opt: {type: L1Loss} or a `losses:` list)")
    for phase, ds in opt.datasets.items():
        if not ds.on_the_fly:
            continue
        try:
            canon = DEGRADATION_REGISTRY.canonical(ds.degradation)
        except KeyError as exc:
            problems.append(f"datasets.{phase}.degradation: {exc.args[0]}")
            continue
        # pipeline-specific keys given to another pipeline would be silently ignored: refuse them
        own = {"workflows": ("p_clean", "predefined_sequences"), "realesrgan": DATASET_KEYS}
        for pipeline, keys in own.items():
            if canon != pipeline:
                for k in keys:
                    if getattr(ds, k) is not None:
                        problems.append(
                            f"datasets.{phase}.{k}: only used by the '{pipeline}' pipeline, but degradation "
                            f"is '{ds.degradation}'"
                        )
    if "train" not in opt.datasets:
        problems.append("datasets.train: required section is missing")
    tr = opt.datasets.get("train")
    if tr is not None and tr.gt_size is None and tr.lq_size is None and opt.gt_size is None:
        problems.append("datasets.train: set gt_size (or lq_size) for the training crops")
    if tr is not None and tr.gt_size and tr.lq_size and tr.gt_size != tr.lq_size * opt.scale:
        # the trainer would use gt_size and silently drop lq_size
        problems.append(
            f"datasets.train: gt_size {tr.gt_size} and lq_size {tr.lq_size} disagree at scale {opt.scale} "
            f"(expected gt_size = lq_size * scale = {tr.lq_size * opt.scale}); give only one"
        )
    return problems


# ---------------------------------------------------------------- run checks (`train --check`, before training)
def _first_image(root: Path) -> Path | None:
    from paragonsr.io.image_io import READ_EXTS

    for dirpath, _dirs, files in os.walk(root):
        for f in sorted(files):
            if Path(f).suffix.lower() in READ_EXTS:
                return Path(dirpath) / f
    return None


def _folder_problems(roots: Any, metas: Any, where: str) -> list[str]:
    from paragonsr.io.image_io import READ_EXTS

    roots = [roots] if isinstance(roots, str) else list(roots or [])
    metas = [metas] if isinstance(metas, str) else list(metas or [])
    problems = []
    for i, root in enumerate(roots):
        p = Path(root)
        if not p.is_dir():
            problems.append(
                f"{where}: folder {p} does not exist" if not p.exists() else f"{where}: {p} is not a folder"
            )
        elif i < len(metas):
            if not Path(metas[i]).is_file():
                problems.append(f"{where.rsplit('.', 1)[0]}.meta_info: file {metas[i]} does not exist")
        elif _first_image(p) is None:
            problems.append(f"{where}: folder {p} holds no images ({', '.join(READ_EXTS)})")
    return problems


def _network_problems(opt: Options) -> list[str]:
    """Build network_g on the meta device (no memory, no init cost) and run one shape-only forward: the scale it
    really produces and its channel counts."""
    import torch

    from paragonsr.data.build import network_channels
    from paragonsr.data.channels import SUPPORTED_CHANNELS
    from paragonsr.train.sr_model import build_network

    in_ch, out_ch = network_channels(opt)
    problems = [
        f"network_g: {n} channels ({k}) cannot be trained: datasets deliver 1 (Y), 3 (RGB) or 4 (RGBA)"
        for k, n in (("num_in_ch", in_ch), ("num_out_ch", out_ch))
        if n not in SUPPORTED_CHANNELS
    ]
    try:
        with torch.device("meta"):
            net = build_network(opt.network_g, opt.scale, "network_g")
    except (ValueError, TypeError, AssertionError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [
            *problems,
            msg
            if msg.startswith("network_g")
            else f"network_g ({opt.network_g.type}, scale {opt.scale}): {msg}",
        ]
    if problems:
        return problems
    side = 64
    try:
        with torch.device("meta"), torch.no_grad():
            y = net(torch.empty(1, in_ch, side, side))
    except Exception:  # an op without a meta kernel: the shape check is skipped, training will still tell
        return []
    if tuple(y.shape[-2:]) != (side * opt.scale, side * opt.scale):
        problems.append(
            f"network_g: {opt.network_g.type} turns {side}x{side} into {y.shape[-1]}x{y.shape[-2]}, "
            f"not the x{opt.scale} of `scale: {opt.scale}`"
        )
    if y.shape[1] != out_ch:
        problems.append(f"network_g: outputs {y.shape[1]} channels but num_out_ch is {out_ch}")
    if opt.network_d is not None:
        d_in = int(opt.network_d.kwargs().get("num_in_ch", 3))
        if d_in != out_ch:
            problems.append(f"network_d.num_in_ch: {d_in}, but network_g outputs {out_ch} channels")
    return problems


def _pretrain_problems(opt: Options) -> list[str]:
    """``path.pretrain_network_g/d`` set to a file that is not there (the model would fail loading it)."""
    problems = []
    for key in ("pretrain_network_g", "pretrain_network_d"):
        val = getattr(opt.path, key)
        if val and not Path(val).is_file():
            problems.append(
                f"path.{key}: file {val} does not exist (start from random weights with --force path.{key}=null)"
            )
    return problems


def _backbone_weight_problems(opt: Options, allow_download: bool) -> list[str]:
    """A loss on a pretrained network (VGG perceptual, LPIPS, DISTS, ...) whose weight file is not in the weights
    folder: the loss would stop the run at start. Nothing is fetched here; with ``allow_download`` the run may
    fetch it from the package registry, so only a missing local-only file (no registry source) is a problem."""
    from paragonsr.losses.backbones import loss_weight_names
    from paragonsr.weights import ALLOW_DOWNLOAD_ENV, WeightsError, WeightSource, load_manifest
    from paragonsr.weights.core import is_fetchable

    may_fetch = allow_download or os.environ.get(ALLOW_DOWNLOAD_ENV) == "1"
    problems = []
    for i, loss in enumerate(opt.train.losses):
        kw = loss.kwargs()
        try:
            names = loss_weight_names(loss.type, kw)
        except (KeyError, ValueError, TypeError):  # unknown type / bad value: reported by the loss itself
            continue
        where = f"train.{loss.name}_opt" if loss.name else f"train.losses.{i}"
        source = WeightSource(kw.get("weights_dir"), manifest=kw.get("manifest"))
        for name in sorted(names):
            try:
                if may_fetch and is_fetchable(load_manifest(kw.get("manifest")).get(name, {})):
                    continue
                source.resolve(name)
            except WeightsError as exc:
                problems.append(f"{where}: {exc} Or turn the term off with --force {where}=null.")
                break
    return problems


def check_run(opt: Options, allow_download: bool = False) -> list[str]:
    """What would fail once training starts, found before any heavy work (empty list = fine): dataset folders
    that are missing or hold no images, a ``path.pretrain_network_*`` file that is not there, a perceptual loss
    whose VGG weights are not in the weights folder (unless ``allow_download``), a scale or channel count the
    network does not support, degradation options out of range (the pipeline is built with them)."""
    problems: list[str] = []
    for phase, ds in opt.datasets.items():
        problems += _folder_problems(ds.dataroot_gt, ds.meta_info, f"datasets.{phase}.dataroot_gt")
        if not ds.on_the_fly:
            problems += _folder_problems(ds.dataroot_lq, None, f"datasets.{phase}.dataroot_lq")
    problems += _pretrain_problems(opt) + _backbone_weight_problems(opt, allow_download)
    problems += _network_problems(opt)
    from paragonsr.data.build import build_degradation_for

    for phase, ds in opt.datasets.items():
        if ds.on_the_fly:
            try:
                build_degradation_for(opt, ds)
            except (ValueError, KeyError, TypeError) as exc:
                msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
                problems.append(f"{msg} (degradation of datasets.{phase})")
    return problems
