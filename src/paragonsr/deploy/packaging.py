"""Packaging a trained model into ``assets/models`` (``scripts/package_default_model.py``): the training record
kept in the manifest, and the release gates a packaged model passes beyond fused = unfused parity.

- :func:`training_summary`: what a reader needs to know of a run at a glance (model type, generator losses and
  their weights, discriminator and adversarial weight, start model, data lists, iterations, precision), beside
  the full options the manifest also keeps.
- :func:`run_overrides`: the settings a run used that differ from the committed option file recorded for it.
- :func:`release_gates`: FP32/FP16 ONNX and INT8 through :func:`paragonsr.deploy.release.export_release`; for a
  perceptual (GAN) model the INT8 gate also bounds the LPIPS increase, and INT8 is not shipped when LPIPS cannot
  be measured.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

# option keys of the sections the training record keeps (the rest is run bookkeeping: logger, dist, rank, ...)
RECORD_KEYS = ("name", "model_type", "scale", "datasets", "network_g", "network_d", "path", "train")
MACHINE_KEYS = ("root", "experiments_root")  # path.<key>: where the run folder happened to be
_DATA_KEYS = ("name", "type", "dataroot_gt", "dataroot_lq", "meta_info", "degradation", "degradation_opt",
              "gt_size", "batch_size_per_gpu", "dataset_enlarge_ratio")  # fmt: skip


def is_adversarial(loss_type: str) -> bool:
    """True for a registered adversarial loss (one with a discriminator side, ``d_loss``: GANLoss, R3GANLoss)."""
    from paragonsr.losses import LOSS_REGISTRY

    try:
        return hasattr(LOSS_REGISTRY.get(loss_type), "d_loss")
    except KeyError:
        return False


def loss_specs(opt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The training losses of resolved options (``train.losses``, or BasicSR-style ``train.<x>_opt``), each
    ``{type, **kwargs}``: what :func:`paragonsr.metrics.perceptual.training_loss_specs` reads back from a
    packaged file's ``train_losses`` metadata."""
    from paragonsr.metrics.perceptual import _loss_specs_from_options

    return [dict(s) for s in _loss_specs_from_options(dict(opt))]


def training_summary(opt: Mapping[str, Any], precision: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A run's resolved options (``paragonsr train``'s ``options.yml`` or a loaded option file) -> the summary.

    ``generator_losses``: ``[{name, type, weight, kwargs}]`` of the non-adversarial losses; ``adversarial``: the
    adversarial loss (type, weight, its kwargs such as R1/R2 gamma) or None; ``discriminator``: ``network_d`` or
    None; ``precision``: how the run computed (``asked`` from the options, ``used`` as the trainer decided,
    when recorded)."""
    train = dict(opt.get("train") or {})
    losses, adversarial = [], None
    for spec in loss_specs(opt):
        kind = str(spec.get("type", ""))
        entry = {
            "name": spec.get("name"),
            "type": kind,
            "weight": spec.get("loss_weight", 1.0),
            "kwargs": {k: v for k, v in spec.items() if k not in ("type", "name", "loss_weight")},
        }
        if is_adversarial(kind):
            adversarial = entry
        else:
            losses.append(entry)
    datasets = dict(opt.get("datasets") or {})
    data = {
        phase: {k: ds[k] for k in _DATA_KEYS if isinstance(ds, Mapping) and k in ds}
        for phase, ds in datasets.items()
    }
    path = dict(opt.get("path") or {})
    return {
        "model_type": opt.get("model_type", "SRModel"),
        "generator_losses": losses,
        "adversarial": adversarial,
        "discriminator": opt.get("network_d"),
        "start_model": path.get("pretrain_network_g"),
        "start_discriminator": path.get("pretrain_network_d"),
        "data": data,
        "total_iter": train.get("total_iter"),
        "optim_g": train.get("optim_g"),
        "optim_d": train.get("optim_d"),
        "ema_decay": train.get("ema_decay"),
        "precision": {
            "asked": {k: train.get(k) for k in ("use_amp", "amp_bf16", "use_channels_last")},
            "used": {k.removeprefix("precision_"): v for k, v in precision.items()} if precision else None,
        },
    }


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return {k.removesuffix("."): v for k, v in out.items()}


def run_overrides(committed: Mapping[str, Any], ran: Mapping[str, Any]) -> dict[str, Any]:
    """``{dotted.key: value as run}`` for every setting of :data:`RECORD_KEYS` in which the run (its
    ``options.yml``) differs from the committed option file (both resolved; ``None`` = absent in the run);
    machine-specific paths (``path.root``) are left out. Empty when the file reproduces the run as it is."""
    a = _flat({k: committed[k] for k in RECORD_KEYS if k in committed})
    b = _flat({k: ran[k] for k in RECORD_KEYS if k in ran})
    skip = {f"path.{k}" for k in MACHINE_KEYS}
    return {k: b.get(k) for k in sorted(set(a) | set(b)) if k not in skip and a.get(k) != b.get(k)}


@dataclass
class GateOutcome:
    """What :func:`release_gates` found: every gate's record, the verified INT8 file (bytes, None if refused)
    and why each refused artifact was refused."""

    gates: list[dict[str, Any]] = field(default_factory=list)
    int8: bytes | None = None
    int8_gate: dict[str, Any] | None = None
    refused: list[str] = field(default_factory=list)
    fp16_passed: bool = False


def load_verify_images(folder: Path, limit: int, min_side: int) -> list[tuple[str, Any]]:
    """(name, HWC float RGB) of the first ``limit`` decodable images of ``folder`` at least ``min_side`` px.
    Raises FileNotFoundError naming the folder when none is usable."""
    from paragonsr.deploy.verify import load_image
    from paragonsr.io.files import list_images

    out: list[tuple[str, Any]] = []
    for path in list_images(folder, recursive=False, what="verification", allow_empty=False):
        if len(out) >= limit:
            break
        img = load_image(path)
        if min(img.shape[:2]) >= min_side:
            out.append((path.name, img))
    if not out:
        raise FileNotFoundError(f"--verify-images {folder}: no image of at least {min_side}px")
    return out


def release_gates(
    model: nn.Module,
    name: str,
    images: list[tuple[str, Any]],
    perceptual: bool,
    lr_crop: int = 96,
    log: Callable[[str], None] = print,
) -> GateOutcome:
    """Run the export gates on ``model`` (unfused) in a scratch folder: fused = unfused, FP32 ONNX = PyTorch,
    FP16 ONNX >= 45 dB vs FP32, INT8 (PTQ, min/max calibration on ``images``) within
    :data:`~paragonsr.deploy.verify.INT8_MAX_DROP_DB` and, when ``perceptual``, LPIPS-alex up by at most
    :data:`~paragonsr.deploy.verify.INT8_MAX_LPIPS_INCREASE` — for a perceptual model without LPIPS weights INT8
    is refused (PSNR alone misjudges it). Nothing is written outside the scratch folder.

    Raises :class:`paragonsr.deploy.release.ExportError` when the FP32 ONNX fails its parity gate."""
    from paragonsr.deploy import verify as V
    from paragonsr.deploy.release import ExportOptions, export_release

    out = GateOutcome()
    int8 = True
    if perceptual:
        lpips, why = V.lpips_metric()
        if lpips is None:  # PSNR alone misjudges a perceptual model's INT8: not shipped without LPIPS
            int8 = False
            out.refused.append(
                f"{name}_int8.onnx not shipped: a perceptual model's INT8 gate needs LPIPS-alex, which cannot be "
                f"measured here ({why.splitlines()[0][:160]}; `paragonsr weights fetch alexnet lpips_alex`)"
            )
    opts = ExportOptions(
        fp16=True, int8=int8, perceptual=perceptual, lr_crop=lr_crop, latency_size=0, save_fused=False
    )
    with tempfile.TemporaryDirectory(prefix="paragonsr-gates-") as tmp:
        res = export_release(model, tmp, name, images, calib_images=images, options=opts, log=log)
        out.gates = [g.to_dict() for g in res.gates]
        out.refused += [r.replace(" (use --force-int8 to write it anyway)", "") for r in res.refused]
        out.fp16_passed = "fp16" in res.artifacts
        out.int8_gate = next((g for g in out.gates if g["name"] == "int8"), None)
        if "int8" in res.artifacts and out.int8_gate is not None:
            out.int8 = res.artifacts["int8"].read_bytes()
    return out
