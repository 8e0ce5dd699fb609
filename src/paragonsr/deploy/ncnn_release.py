"""The NCNN step of ``paragonsr export --ncnn``: convert, verify with the ncnn runtime, keep only what passes.

Gates (the ONNX gate's counterparts, :mod:`paragonsr.deploy.verify`):

- NCNN FP32 vs the PyTorch eval model on several sizes (odd ones included, batch of 2 run image by image):
  max abs diff <= 1/255 (one 8-bit grey level; ncnn's kernels reorder sums, so the ONNX 1e-4 is not the bar).
- NCNN fp16 storage vs the FP32 model on the verification crops: PSNR >= the FP16 gate (45 dB).

Also checked and recorded: the scale upscayl reads from the file name and the scale/channels chaiNNer infers
from the layers (a mismatch is refused: those apps would size the output wrongly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from paragonsr.deploy import verify as V
from paragonsr.deploy.ncnn_export import (
    app_model_name,
    commit_pair,
    convert_ncnn,
    pixels_contract,
    upscayl_scale,
)
from paragonsr.infer.ncnn_param import chainner_view, read_param

NCNN_FP32_MAX_ABS = 1.0 / 255.0
MODELS_DIR = "models"  # upscayl-bin only accepts a model folder whose path contains "models"


@dataclass
class NcnnResult:
    artifacts: dict[str, Path] = field(default_factory=dict)
    gates: list[V.GateResult] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)


def _ncnn_runner(param: Path, bin_: Path) -> V.Runner:
    from paragonsr.infer.ncnn_backend import NcnnBackend

    return NcnnBackend(param, threads=1, bin_path=bin_).run_numpy


def _app_check(
    param: Path, stem: str, scale: int, in_ch: int, out_ch: int
) -> tuple[dict[str, Any], str | None]:
    """What upscayl reads from the name ``stem`` and chaiNNer from the layers; a problem line when either
    differs from the model's real scale and channels."""
    view = chainner_view(read_param(param))
    seen = upscayl_scale(stem)
    problems = []
    if seen != scale:
        problems.append(f"upscayl reads x{seen} from the name")
    if (view["scale"], view["in_nc"], view["out_nc"]) != (scale, in_ch, out_ch):
        problems.append(
            f"chaiNNer would infer x{view['scale']} {view['in_nc']}->{view['out_nc']} channels from the layers"
        )
    info = {"upscayl_scale": seen, "chainner": view}
    return info, ("; ".join(problems) + f" (the model is x{scale} {in_ch}->{out_ch})") if problems else None


def export_ncnn(
    model: nn.Module,
    out_dir: Path,
    name: str,
    verify_lr: Sequence[np.ndarray],
    fp32_out: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]] = V.DEFAULT_SIZES,
    fp16: bool = True,
    log: Callable[[str], None] = print,
) -> NcnnResult:
    """Write ``out_dir/models/<name>-x<s>.param/.bin`` (fp32 storage) and, with ``fp16``, ``…-x<s>-fp16``, each
    only after its gate passed (refusals are returned, nothing unverified stays). ``model``: the fused eval model;
    ``verify_lr``: HWC LR crops; ``fp32_out``: the FP32 outputs (NCHW, batch dropped) on those crops."""
    res = NcnnResult()
    scale, in_ch = int(getattr(model, "scale", 1)), int(getattr(model, "in_ch", 3))
    out_ch = int(getattr(model, "out_ch", in_ch))
    folder = out_dir / MODELS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    torch_run = V.torch_runner(model)
    kind = getattr(model, "parity_inputs", "uniform")
    files: list[dict[str, Any]] = []
    for half in (False, True) if fp16 else (False,):
        stem = app_model_name(name, scale, half)
        param, bin_ = folder / f"{stem}.param", folder / f"{stem}.bin"
        # scratch pair beside models/, not in it: upscayl lists every .param/.bin of its folder
        tmp_param, tmp_bin = out_dir / f".{stem}.param.verifying", out_dir / f".{stem}.bin.verifying"
        label = "ncnn_fp16" if half else "ncnn_fp32"
        try:
            convert_ncnn(model, tmp_param, tmp_bin, fp16=half)
            if half:
                got = V.run_all(_ncnn_runner(tmp_param, tmp_bin), verify_lr)
                gate = V.check_fp16(fp32_out, got)
                gate.name = "ncnn_fp16_storage_vs_fp32"
            else:
                gate = V.check_parity(
                    torch_run,
                    _ncnn_runner(tmp_param, tmp_bin),
                    in_ch,
                    scale,
                    sizes,
                    NCNN_FP32_MAX_ABS,
                    "ncnn_fp32_parity",
                    inputs=kind,
                )
            info, problem = _app_check(tmp_param, stem, scale, in_ch, out_ch)
        except (RuntimeError, ValueError, OSError) as exc:
            tmp_param.unlink(missing_ok=True)
            tmp_bin.unlink(missing_ok=True)
            res.refused.append(f"{stem}.param/.bin not written: conversion failed: {exc}")
            log(f"      {label}: conversion failed: {exc}")
            continue
        res.gates.append(gate)
        log(f"      {gate}")
        if gate.passed and problem is None:
            commit_pair(tmp_param, tmp_bin, param, bin_)
            res.artifacts[f"{label}_param"], res.artifacts[f"{label}_bin"] = param, bin_
            files.append(
                {
                    "param": f"{MODELS_DIR}/{param.name}",
                    "bin": f"{MODELS_DIR}/{bin_.name}",
                    "storage": "fp16" if half else "fp32",
                    **info,
                }
            )
        else:
            tmp_param.unlink(missing_ok=True)
            tmp_bin.unlink(missing_ok=True)
            param.unlink(
                missing_ok=True
            )  # an earlier export's pair must not sit beside a card that refuses it
            bin_.unlink(missing_ok=True)
            res.refused.append(f"{stem}.param/.bin not written: {problem or gate.detail}")
    res.card = {
        "folder": MODELS_DIR,
        "files": files,
        "contract": pixels_contract(),
        "op_types": read_param(folder / files[0]["param"].split("/", 1)[1]).op_types() if files else [],
    }
    return res


def card_lines(section: dict[str, Any] | None) -> list[str]:
    """The model card's NCNN section (Markdown lines): files, contract, and how to load them in upscayl and
    chaiNNer. Empty when the export wrote no NCNN files."""
    if not section or not section.get("files"):
        return []
    first = section["files"][0]
    stem = Path(first["param"]).stem
    lines = [
        "",
        "## NCNN (upscayl, chaiNNer, realesrgan-ncnn-vulkan)",
        "",
        f"Folder `{section['folder']}/`: {pixels_contract()}. Layers: {', '.join(section['op_types'])}.",
        "",
        "| files | weights | upscayl reads | chaiNNer infers |",
        "|---|---|---|---|",
    ]
    for f in section["files"]:
        c = f["chainner"]
        lines.append(
            f"| `{f['param']}` + `.bin` | {f['storage']} | x{f['upscayl_scale']} | "
            f"x{c['scale']}, {c['in_nc']}->{c['out_nc']} channels |"
        )
    lines += [
        "",
        "- **upscayl**: Settings → *Custom models* → *Select folder* → choose this `models` folder (it holds only "
        "`.param`/`.bin` pairs), then pick the model by name; upscayl takes the scale from the `-x<scale>` in the name.",
        f"- **chaiNNer**: *NCNN → Load Model*, select `{stem}.param` (the `.bin` beside it is found), then "
        "*NCNN → Upscale Image*; the fp32 pair is the one to use on CPUs, either on Vulkan GPUs.",
        f"- **realesrgan-ncnn-vulkan**: `-m <this folder>/models -n {stem} -s {first['upscayl_scale']}`.",
        "- fp16 storage halves the file; on a CPU ncnn widens the weights to fp32, on a GPU it computes in fp16.",
    ]
    return lines


__all__ = ["MODELS_DIR", "NCNN_FP32_MAX_ABS", "NcnnResult", "card_lines", "export_ncnn"]
