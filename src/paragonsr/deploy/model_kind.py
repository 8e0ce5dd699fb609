"""Is a checkpoint a perceptual (GAN-trained) model? Decides whether the INT8 gate also bounds the LPIPS increase
(:data:`paragonsr.deploy.verify.INT8_MAX_LPIPS_INCREASE`): PSNR alone misjudges such models, whose INT8 error can
look small in dB while it smooths away the texture they were trained to make.

The training record is read from, in order: the packaged name (``perceptual``), the checkpoint's ``extra``
metadata (``model_type``, written by ``scripts/package_default_model.py``; ``perceptual: true``), and the run's
``options.yml`` when the checkpoint sits in ``<run>/models/`` (what ``paragonsr train`` writes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def trains_discriminator(model_type: object) -> bool:
    """True when ``model_type`` (an option file's ``model_type``, any registered spelling or alias, e.g.
    ``GANModel``, ``RealESRGANModel``) trains a discriminator. Unknown names: False."""
    if not isinstance(model_type, str) or not model_type:
        return False
    # the registry's first lookup imports the model modules (GANModel and its aliases)
    from paragonsr.registry import MODEL_REGISTRY

    try:
        return bool(getattr(MODEL_REGISTRY.get(model_type), "needs_discriminator", False))
    except KeyError:
        return False


def _run_model_type(path: Path) -> str | None:
    options = path.parent.parent / "options.yml"
    if path.parent.name != "models" or not options.is_file():
        return None
    import yaml

    try:
        opt = yaml.safe_load(options.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    value = opt.get("model_type") if isinstance(opt, dict) else None
    return value if isinstance(value, str) else None


def perceptual_reason(
    path: str | Path | None, meta: Mapping[str, Any] | None = None, packaged_name: str | None = None
) -> str | None:
    """Why the model counts as perceptual (one short phrase for a note), or None when nothing says so.

    ``path``: the checkpoint file; ``meta``: its ``checkpoint_meta`` (:func:`paragonsr.checkpoint.load_model`);
    ``packaged_name``: the ``--model`` short name it was resolved from, if any."""
    from paragonsr.infer import PERCEPTUAL_MODELS

    if packaged_name in PERCEPTUAL_MODELS:
        return f"the packaged '{packaged_name}' model"
    extra = (meta or {}).get("extra") or {}
    if isinstance(extra, Mapping):
        if extra.get("perceptual") is True:
            return "its metadata says perceptual"
        if trains_discriminator(extra.get("model_type")):
            return f"its metadata records model_type {extra['model_type']}"
    if path is not None:
        model_type = _run_model_type(Path(path))
        if trains_discriminator(model_type):
            return f"its run's options.yml says model_type {model_type}"
    return None
