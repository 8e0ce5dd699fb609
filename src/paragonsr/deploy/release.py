"""One call from a trained model to verified release artifacts (what ``paragonsr export`` runs).

Order: calibrate/fuse (lossless check) -> fused safetensors -> FP32 ONNX (parity gate) -> FP16 (PSNR gate)
-> INT8 (quality gate; refused unless forced) -> latency, comparison crop, model card.
"""

from __future__ import annotations

import glob
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from paragonsr.deploy import verify as V
from paragonsr.deploy.fuse import FuseReport, dynamic_outputs, prepare_for_release
from paragonsr.deploy.model_card import artifact_entry, comparison_image, ort_cpu_latency_ms, write_model_card
from paragonsr.deploy.onnx_export import MIN_OPSET, convert_fp16, export_onnx
from paragonsr.deploy.quantize import keep_float_scopes, quantize_int8
from paragonsr.errors import ParagonSRError


class ExportError(ParagonSRError, RuntimeError):
    """An artifact failed its verification gate (nothing unverified was left in place)."""


@dataclass
class ExportOptions:
    fp16: bool = False
    keep_io_types: bool = True
    int8: bool = False
    force_int8: bool = False
    int8_method: str = "minmax"
    opset: int = MIN_OPSET
    calibrate_steps: int = 0
    sizes: Sequence[tuple[int, int]] = V.DEFAULT_SIZES
    lr_crop: int = 48  # LR side of verification/calibration crops
    calib_per_image: int = 2
    latency_size: int = 512  # 0 skips the latency measurement
    latency_runs: int = 3
    save_fused: bool = True
    ncnn: bool = False  # also write verified NCNN pairs (fp32 + fp16 storage) under <out>/models/
    verify_whole: bool = False  # verify on whole images (LR = the downscaled image) instead of centre crops
    perceptual: bool = (
        False  # a GAN model: the INT8 gate also bounds the LPIPS increase (when LPIPS is available)
    )


@dataclass
class ExportResult:
    out_dir: Path
    artifacts: dict[str, Path] = field(default_factory=dict)
    gates: list[V.GateResult] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # files of an earlier export that are not part of this one
    card: dict[str, Any] = field(default_factory=dict)
    fuse: FuseReport | None = None

    @property
    def ok(self) -> bool:
        return not self.refused


def _gate_or_remove(gate: V.GateResult, tmp: Path, final: Path, force: bool = False) -> bool:
    if gate.passed or force:
        tmp.replace(final)
        return True
    tmp.unlink(missing_ok=True)
    # A file of the same name from an earlier export into this folder would sit next to a card that says this
    # artifact was refused, looking like part of the release: remove it.
    final.unlink(missing_ok=True)
    return False


def _refuse_non_finite(model: nn.Module, lrs: Sequence[np.ndarray], name: str) -> None:
    """No artifact from a model whose output holds NaN/inf (clamped, it would look like a dark result)."""
    from paragonsr.utils.finite import array_non_finite

    for i, out in enumerate(V.run_all(V.torch_runner(model), lrs)):
        bad = array_non_finite(out)
        if bad is not None:
            raise ExportError(
                f"{name}: the model's output holds {bad} values (verification crop {i + 1} of {len(lrs)}); "
                "nothing exported"
            )


def _int8_step(
    res: ExportResult,
    opt: ExportOptions,
    name: str,
    fused: nn.Module,
    fp32: Path,
    fp32_out: list[np.ndarray],
    vset: V.VerifySet,
    calib: list[np.ndarray],
    scale: int,
    qat_model: nn.Module | None,
    log: Callable[[str], None],
) -> None:
    """Write ``<name>_int8.onnx`` (QAT scales, or PTQ calibration) if it passes the INT8 gate (or is forced)."""
    i8 = res.out_dir / f"{name}_int8.onnx"
    tmp8 = res.out_dir / f".{name}_int8.onnx.verifying"
    if qat_model is not None:
        from paragonsr.deploy.qat_onnx import export_qat_onnx

        log("[4/5] INT8 ONNX (QDQ with the scales learned by QAT; gated against its FP32 twin)")
        export_qat_onnx(qat_model, tmp8, opset=opt.opset, metadata={"name": name})
    elif not calib:
        res.refused.append(f"{i8.name} not written: INT8 needs calibration images (--calib DIR)")
        return
    else:
        log(
            f"[4/5] INT8 ONNX (QDQ, per-channel weights, {opt.int8_method} calibration on {len(calib)} crops)"
        )
        quantize_int8(fp32, tmp8, calib, method=opt.int8_method, keep_float=keep_float_scopes(fused))
    lpips = None
    if opt.perceptual:
        lpips, why = V.lpips_metric()
        if lpips is None:
            log(f"      note: LPIPS not available ({why}); the INT8 gate checks PSNR only")
    gate = V.check_int8(vset.hr, fp32_out, V.run_all(V.onnx_runner(tmp8), vset.lr), scale, lpips=lpips)
    res.gates.append(gate)
    log(f"      {gate}")
    if _gate_or_remove(gate, tmp8, i8, force=opt.force_int8):
        res.artifacts["int8"] = i8
        if not gate.passed:
            log("      written anyway (--force-int8)")
    else:
        res.refused.append(f"{i8.name} not written: {gate.detail} (use --force-int8 to write it anyway)")


def export_release(
    model: nn.Module,
    out_dir: str | Path,
    name: str,
    images: Sequence[tuple[str, np.ndarray]] = (),
    calib_images: Sequence[tuple[str, np.ndarray]] | None = None,
    options: ExportOptions | None = None,
    log: Callable[[str], None] = print,
    qat_model: nn.Module | None = None,
) -> ExportResult:
    """:func:`_export_release`, and whatever ends it (a refused gate, a full disk, Ctrl-C) leaves no
    ``.<name>_*.onnx.verifying`` file behind: an ONNX file is only ever seen under its final name once verified."""
    try:
        return _export_release(model, out_dir, name, images, calib_images, options, log, qat_model)
    finally:
        for tmp in Path(out_dir).glob(f".{glob.escape(name)}_*.onnx.verifying"):
            tmp.unlink(missing_ok=True)


def _export_release(
    model: nn.Module,
    out_dir: str | Path,
    name: str,
    images: Sequence[tuple[str, np.ndarray]] = (),
    calib_images: Sequence[tuple[str, np.ndarray]] | None = None,
    options: ExportOptions | None = None,
    log: Callable[[str], None] = print,
    qat_model: nn.Module | None = None,
) -> ExportResult:
    """Export ``model`` to ``out_dir`` as ``<name>_fused.safetensors``, ``<name>_fp32.onnx`` (+ fp16/int8).

    ``images``: (name, HWC float RGB) used for verification (centre crops) and, unless ``calib_images`` is
    given, for INT8 calibration (random crops). Without images a synthetic test card is used for the FP16
    check and INT8 is refused.

    ``qat_model``: the quantization-aware-trained twin of ``model`` (``model`` is then its FP32 twin, see
    :func:`paragonsr.deploy.qat.load_qat_checkpoint`): the INT8 file is written from its learned scales
    (:func:`paragonsr.deploy.qat_onnx.export_qat_onnx`, no calibration) and gated against ``model``.
    """
    opt = options or ExportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = ExportResult(out)
    scale, in_ch = int(getattr(model, "scale", 1)), int(getattr(model, "in_ch", 3))
    source = "calibration images" if images else "synthetic test card"
    verify_imgs = list(images) or [("synthetic", V.synthetic_image(max(128, opt.lr_crop * scale)))]
    calib_src = list(calib_images) if calib_images is not None else list(images)
    calib = V.make_calib_inputs([im for _, im in calib_src], scale, in_ch, opt.lr_crop, opt.calib_per_image)
    out_ch = int(getattr(model, "out_ch", in_ch))
    vset = V.make_verify_set(verify_imgs, scale, in_ch, 0 if opt.verify_whole else opt.lr_crop, out_ch)

    log(f"[1/5] fusing {getattr(model, 'arch_name', type(model).__name__)} (x{scale})")
    _refuse_non_finite(model, vset.lr, name)
    fused, rep = prepare_for_release(
        model, calib_inputs=calib, calibrate_steps=opt.calibrate_steps, sizes=opt.sizes
    )
    _refuse_non_finite(fused, vset.lr, name)
    res.fuse = rep
    if rep.parity is not None:
        res.gates.append(rep.parity)
        log(f"      {rep.parity}")
    if opt.save_fused:
        from paragonsr.checkpoint import save_model

        p = out / f"{name}_fused.safetensors"
        save_model(p, fused, metadata={"fused": rep.fusable, "exported_by": "paragonsr export"})
        res.artifacts["fused"] = p

    log(f"[2/5] FP32 ONNX (opset {opt.opset}, dynamic batch/height/width)")
    fp32 = out / f"{name}_fp32.onnx"
    tmp32 = out / f".{name}_fp32.onnx.verifying"
    export_onnx(fused, tmp32, opset=opt.opset, metadata={"name": name})
    torch_run = V.torch_runner(fused)
    kind = getattr(fused, "parity_inputs", "uniform")
    gate = V.check_parity(torch_run, V.onnx_runner(tmp32), in_ch, scale, opt.sizes, inputs=kind)
    res.gates.append(gate)
    log(f"      {gate}")
    if not _gate_or_remove(gate, tmp32, fp32):
        raise ExportError(f"FP32 ONNX does not match PyTorch: {gate.detail}")
    res.artifacts["fp32"] = fp32
    fp32_out = V.run_all(V.onnx_runner(fp32), vset.lr)

    if opt.fp16:
        log(f"[3/5] FP16 ONNX ({'float32' if opt.keep_io_types else 'float16'} inputs/outputs)")
        fp16 = out / f"{name}_fp16.onnx"
        tmp16 = out / f".{name}_fp16.onnx.verifying"
        convert_fp16(fp32, tmp16, keep_io_types=opt.keep_io_types)
        gate = V.check_fp16(fp32_out, V.run_all(V.onnx_runner(tmp16), vset.lr))
        res.gates.append(gate)
        log(f"      {gate}")
        if _gate_or_remove(gate, tmp16, fp16):
            res.artifacts["fp16"] = fp16
        else:
            res.refused.append(f"{fp16.name} not written: {gate.detail}")

    if opt.int8:
        _int8_step(res, opt, name, fused, fp32, fp32_out, vset, calib, scale, qat_model, log)

    # Same-named FP16/INT8 files from an earlier export that this run did not make: never deleted (they are the
    # user's files), but flagged so nobody ships them as part of this release.
    for kind in ("fp16", "int8"):
        old = out / f"{name}_{kind}.onnx"
        if (
            kind not in res.artifacts
            and old.is_file()
            and not any(r.startswith(old.name) for r in res.refused)
        ):
            res.stale.append(old.name)
            log(
                f"      note: {old.name} is from an earlier export and is NOT part of this release (not in the card)"
            )

    ncnn_card = None
    if opt.ncnn:
        from paragonsr.deploy.ncnn_release import export_ncnn

        log("[ncnn] NCNN .param/.bin through pnnx, verified with the ncnn runtime (CPU)")
        nres = export_ncnn(fused, out, name, vset.lr, fp32_out, opt.sizes, log=log)
        res.gates += nres.gates
        res.refused += nres.refused
        res.artifacts.update(nres.artifacts)
        ncnn_card = nres.card

    log("[5/5] latency, comparison crop, model card")
    entries = []
    for kind, path in res.artifacts.items():
        lat = None
        if path.suffix == ".onnx" and opt.latency_size > 0:
            lat = ort_cpu_latency_ms(path, opt.latency_size, opt.latency_runs)
            log(
                f"      {path.name}: {lat:.1f} ms for 1x{in_ch}x{opt.latency_size}x{opt.latency_size} (ORT CPU)"
            )
        entries.append(artifact_entry(path, kind, lat, opt.latency_size, in_ch))

    bicubic = [V.to_model_channels(V.upscale_bicubic(lr, scale), out_ch) for lr in vset.lr]
    model_hwc = [np.clip(o.transpose(1, 2, 0), 0, 1) for o in fp32_out]
    quality: dict[str, Any] = {
        "source": source,
        "images": len(vset.hr),
        "psnr_bicubic_db": float(np.mean([V.psnr(b, g, scale) for b, g in zip(bicubic, vset.hr)])),
        "psnr_model_db": float(np.mean([V.psnr(m, g, scale) for m, g in zip(model_hwc, vset.hr)])),
    }
    dyn = dynamic_outputs(model, vset.lr)  # train-mode output does not use the tracked kernels
    if dyn is not None:
        # What baking the tracked kernels costs: the dynamic-vs-static gap, reported in the card.
        dyn_db = float(np.mean([V.psnr(d.transpose(1, 2, 0), g, scale) for d, g in zip(dyn, vset.hr)]))
        quality["psnr_dynamic_db"] = dyn_db
        quality["static_minus_dynamic_db"] = quality["psnr_model_db"] - dyn_db
        quality["static_vs_dynamic_db"] = float(np.mean([V.psnr(a, b) for a, b in zip(fp32_out, dyn)]))
    # Show the crop with the most detail: flat sky tells a viewer nothing about an SR model.
    i = int(
        np.argmax([np.abs(np.diff(h, axis=0)).mean() + np.abs(np.diff(h, axis=1)).mean() for h in vset.hr])
    )
    cmp_path = comparison_image(
        out / f"{name}_comparison.png",
        [("bicubic", bicubic[i]), (f"{name} (fp32 onnx)", model_hwc[i]), ("ground truth", vset.hr[i])],
    )
    from paragonsr import __version__

    res.card = {
        "name": name,
        "paragonsr_version": __version__,
        "model": {
            "arch": rep.arch,
            "variant": rep.variant,
            "arch_kwargs": dict(getattr(model, "arch_kwargs", {}) or {}),
            "scale": rep.scale,
            "in_ch": rep.in_ch,
            "out_ch": rep.out_ch,
            "params_trainable": rep.params_trainable,
            "params_fused": rep.params_fused,
            "macs_per_output_mp": rep.macs_per_output_mp,
            "fusable": rep.fusable,
            "calibrated_steps": rep.calibrated_steps,
        },
        "opset": opt.opset,
        "fp16_io": ("float32" if opt.keep_io_types else "float16") if opt.fp16 else None,
        "int8_settings": {
            "format": "QDQ",
            "weights": "int8, per-channel, symmetric",
            "activations": "uint8, per-tensor, asymmetric",
            "calibration": "QAT (learned scales)" if qat_model is not None else opt.int8_method,
            "calibration_crops": 0 if qat_model is not None else len(calib),
            "kept_float": list(keep_float_scopes(fused)),
        }
        if opt.int8
        else None,
        "dynamic_axes": ["batch", "height", "width"],
        "artifacts": entries,
        "verification": [g.to_dict() for g in res.gates],
        "refused": res.refused,
        "stale_files": res.stale,
        "quality": quality,
        "comparison_image": cmp_path.name,
        "host": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "ncnn": ncnn_card,
    }
    write_model_card(out, res.card)
    return res
