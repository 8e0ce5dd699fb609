"""Degradation engine: makes the low-quality (LQ) inputs models learn from.

Stable interface (the trainer and the offline builder use only this)
--------------------------------------------------------------------
``build_degradation(name, opt, scale) -> Degradation``
    ``name`` is looked up in ``DEGRADATION_REGISTRY`` (case-insensitive): ``"realesrgan"``, ``"workflows"``,
    ``"lrgen"``, ``"bicubic"`` and ``"resize"``. ``opt`` is the pipeline's option dict (the YAML keys, ``None`` =
    defaults; a ``type`` key is dropped); unknown keys are an error naming the key and the valid ones (BasicSR
    dataset/loader keys such as ``dataroot_gt`` are ignored by ``realesrgan``). ``scale`` is 1-4. The configs in
    ``configs/degradations/*.yml`` are such option dicts. ``realesrgan``'s keys (defaults, bounds, descriptions,
    where they sit in a training file) are declared in :mod:`paragonsr.degrade.realesrgan_opts`.

``Degradation.__call__(gt, rng, index=None) -> dict[str, np.ndarray]``
    ``gt``: HWC (or HW) image, float in [0, 1] (a float image above 1 is an error) *or* uint8/uint16 (scaled);
    RGB or 1-channel (gray stays HW1). ``rng``: ``np.random.Generator``;
    every random choice comes from it, so the same seed gives identical bytes. ``index`` is only used by
    ``lrgen``'s validation mode (fixed kernel pattern by image index; ``None`` = derived from the pixels).
    Returns float32 HWC arrays in [0, 1]:

    - ``lq``: ``(H // scale, W // scale)`` (after the optional ``gt_size`` crop of ``realesrgan``);
    - ``gt``: the target aligned with ``lq``: cropped to ``lq * scale`` and, for ``workflows``, carrying the
      scene ops (lens distortion, rolling shutter, chromatic aberration and the colour/user filters are applied
      to the scene, then the LQ is derived from it, so the pair stays aligned);
    - ``gt_usm`` (``realesrgan`` only): the USM-sharpened GT the LQ was made from. Which GT each loss sees is
      given by ``deg.gt_usm_for == {"l1": bool, "percep": bool, "gan": bool}`` (``l1_gt_usm`` ...).

``Degradation.apply_with_record(gt, rng, index=None) -> (dict, list[dict])`` / ``apply_manifest(...)``
    Same output plus the list of what was applied, e.g. ``[{"op": "jpeg", "quality": 71}, ...]`` (JSON-able);
    the offline builder writes it as one JSON line per image.

Real-ESRGAN paths (``RealESRGANDegradation``)
---------------------------------------------
- ``deg(gt, rng)``: per-sample numpy path, meant for DataLoader workers. Every random choice is per *sample*
  (Real-ESRGAN draws the resize factor/mode, second-blur decision and final order once per *batch*); codecs are
  real libjpeg via OpenCV; filters are separable where the kernel is (USM, isotropic Gaussians).
- ``deg.degrade_batch(gt: Tensor[B,C,H,W], generator) -> {"lq", "gt", "gt_usm"}``: Real-ESRGAN's exact
  per-batch semantics on the tensor's device (per-sample kernels/noise/quality, per-batch resize and order,
  one shared crop window). ``generator`` is an ``np.random.Generator`` or an int seed. JPEG is a real codec
  round trip on the CPU.
- ``PairPool(queue_size)``: Real-ESRGAN's ``queue_size`` pool; ``pool(batch_dict)`` returns the batch to train on.
- Which to use: the trainer should run the per-sample path in its DataLoader workers (parallel, more diverse,
  keeps the accelerator free) and pass the collated batch through ``PairPool`` when ``queue_size > 0``. Use
  ``degrade_batch`` only to reproduce Real-ESRGAN's batch statistics exactly or when workers are the bottleneck.

- Poisson noise (both paths) draws exact Poisson counts for λ < 64 and the rounded normal N(λ, λ) above (same
  mean and variance; 5× faster). On a CPU the numpy path costs ~21 ms per 400² sample, the batched path ~55.

Building blocks: ``kernels`` (blur kernels), ``ops`` (resize/noise/codecs/sharpen/colour), ``geometry`` (scene
warps), ``workflow_ops.OPS`` (the op table YAML sequences draw from), ``presets.PRESETS`` (the six
built-in sequences), ``preview`` (the labelled comparison grid).
"""

from __future__ import annotations

from paragonsr.degrade.base import Degradation, apply_manifest, build_degradation, to_float32
from paragonsr.degrade.realesrgan import PairPool, RealESRGANDegradation, collect_realesrgan_opt

# Importing the modules registers the pipelines.
from paragonsr.degrade import lrgen as _lrgen  # noqa: F401  isort: skip
from paragonsr.degrade import simple as _simple  # noqa: F401  isort: skip
from paragonsr.degrade import workflows as _workflows  # noqa: F401  isort: skip

__all__ = [
    "Degradation",
    "PairPool",
    "RealESRGANDegradation",
    "apply_manifest",
    "build_degradation",
    "collect_realesrgan_opt",
    "to_float32",
]
