"""NCNN export: a (fused) generator -> ``.param`` + ``.bin`` through pnnx, laid out for upscayl / realesrgan-ncnn-vulkan.

Conversion: the model is traced (TorchScript) and handed to the ``pnnx`` converter from the package registry
(two example sizes, so every height/width stays dynamic), then the input blob is renamed ``data`` and the output
blob ``output``: the names realesrgan-ncnn-vulkan and upscayl's ``upscayl-bin`` ask the net for (upscayl falls
back to pnnx's ``in0``/``out0``; the original realesrgan program does not). Input and output are RGB in [0, 1]:
those programs divide the 8-bit pixels by 255 before the net and multiply by 255 after it.

Export form (:func:`export_form`): the Magic Kernel Sharp upsampler crops its transposed-conv outputs with a
negative slice, which this pnnx release drops on dynamic shapes (the output came out 8 pixels too large);
here the crop is the transposed conv's own ``padding`` (same maths, tested), which ncnn's
``DeconvolutionDepthWise`` carries as pad_left/right/top/bottom. ParagonSR2's two upsamplers (features and
the image residual) are merged into one depthwise chain over the concatenated channels, so the graph holds a
single upsampling step: chaiNNer infers an NCNN model's scale by multiplying the stride of every
deconvolution, and two parallel ones would read as x4 for a x2 model.

Files: every pair is written as scratch files in the target folder, verified, then moved in place by
:func:`commit_pair` (old ``.param`` removed first, then the new ``.bin``, then the new ``.param``), so a
crash can leave a ``.bin`` without a ``.param`` but never a ``.param`` beside a ``.bin`` of another export.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.archs.mks_upsample import MagicKernelSharpUpsample
from paragonsr.infer.ncnn_param import INPUT_BLOB, OUTPUT_BLOB, rename_io_blobs

EXAMPLE_HW: tuple[tuple[int, int], tuple[int, int]] = ((37, 29), (24, 40))  # odd, non-square, two shapes


def require_pnnx() -> Any:
    try:
        import pnnx
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
        raise ModuleNotFoundError(
            "NCNN export needs the optional dependencies: pip install 'paragonsr[ncnn]'"
        ) from exc
    return pnnx


# ------------------------------------------------------------------------------------------------ export form


def _mks_export(
    x: Tensor, sharp: tuple[Tensor, Tensor] | None, up: tuple[Tensor, Tensor], scale: int
) -> Tensor:
    """Magic Kernel Sharp upsampling (``MagicKernelSharpUpsample._upsample``'s filter path) with the crops as
    transposed-conv padding. ``sharp``: the (C, 1, 1, K) and (C, 1, K, 1) taps or None; ``up``: the
    (C, 1, 1, 3s) and (C, 1, 3s, 1) phase kernels. Constant buffers, so the converter folds pads into convs."""
    c, s = (
        int(sharp[0].shape[0] if sharp is not None else up[0].shape[0]),
        scale,
    )  # Python ints: traced as constants
    if sharp is not None:
        p = int(sharp[0].shape[-1]) // 2
        x = F.conv2d(F.pad(x, (p, p, 0, 0), mode="replicate"), sharp[0], groups=c)
        x = F.conv2d(F.pad(x, (0, 0, p, p), mode="replicate"), sharp[1], groups=c)
    x = F.pad(x, (1, 1, 0, 0), mode="replicate")
    x = F.conv_transpose2d(x, up[0], stride=(1, s), padding=(0, 2 * s), groups=c)
    x = F.pad(x, (0, 0, 1, 1), mode="replicate")
    return F.conv_transpose2d(x, up[1], stride=(s, 1), padding=(2 * s, 0), groups=c)


def _centre_pad(taps: Tensor, k: int) -> Tensor:
    extra = (k - taps.shape[-1]) // 2
    return F.pad(taps, (extra, extra))


class MKSExport(nn.Module):
    """One Magic Kernel Sharp upsampler (or several merged over concatenated channels) in export form.

    ``parts``: the :class:`~paragonsr.archs.mks_upsample.MagicKernelSharpUpsample` modules whose channels are
    stacked in this order; all must have the same scale. Equal to running each on its channels (tested)."""

    sharp_w: Tensor | None
    sharp_h: Tensor | None
    up_w: Tensor
    up_h: Tensor

    def __init__(self, *parts: MagicKernelSharpUpsample) -> None:
        super().__init__()
        scales = {int(p.scale) for p in parts}
        if len(scales) != 1:
            raise ValueError(f"merged upsamplers must share one scale, got {sorted(scales)}")
        self.scale = scales.pop()
        sharpen = any(p.alpha != 0.0 for p in parts)
        k = max(p.sharp_w.shape[-1] for p in parts)
        taps = []
        for p in parts:
            w = p.sharp_w.detach().float()
            if p.alpha == 0.0:  # this part skips sharpening: identity taps
                w = torch.zeros_like(w)
                w[..., w.shape[-1] // 2] = 1.0
            taps.append(_centre_pad(w, k))
        sharp = torch.cat(taps) if sharpen else None
        up = torch.cat([p.up_w.detach().float() for p in parts])
        self.register_buffer("sharp_w", sharp)
        self.register_buffer("sharp_h", None if sharp is None else sharp.transpose(2, 3).contiguous())
        self.register_buffer("up_w", up)
        self.register_buffer("up_h", up.transpose(2, 3).contiguous())

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1:
            return x
        sharp = None if self.sharp_w is None or self.sharp_h is None else (self.sharp_w, self.sharp_h)
        return _mks_export(x, sharp, (self.up_w, self.up_h), self.scale)


class ParagonSR2Export(nn.Module):
    """ParagonSR2 with both upsamplers as one :class:`MKSExport` over ``cat(features, image)``."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.feat_ch = int(model.upsampler.channels)
        self.merged = MKSExport(model.upsampler, model.base_upsampler)

    def forward(self, x: Tensor) -> Tensor:
        m = self.model
        feat = m.conv_in(x)
        feat = m.conv_body(m.body(feat)) + feat
        up = self.merged(torch.cat([feat, x], dim=1))
        hr, base = torch.split(up, [self.feat_ch, up.shape[1] - self.feat_ch], dim=1)
        return m.conv_out(m.hr_head(m.hr_conv_in(hr))) + base


def export_form(model: nn.Module) -> nn.Module:
    """A CPU fp32 eval copy of ``model`` whose Magic Kernel Sharp upsamplers are in export form (see the module
    docstring); ``model`` itself is left untouched. Same outputs up to fp32 rounding (tested)."""
    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    if getattr(m, "base_upsampler", None) is not None and isinstance(
        getattr(m, "upsampler", None), MagicKernelSharpUpsample
    ):
        return ParagonSR2Export(m).eval()

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, MagicKernelSharpUpsample):
                setattr(parent, name, MKSExport(child))
            else:
                swap(child)

    swap(m)
    return m


# ------------------------------------------------------------------------------------------------ conversion


def _shape_arg(in_ch: int, hw: tuple[int, int]) -> str:
    return f"[1,{in_ch},{hw[0]},{hw[1]}]f32"


def convert_ncnn(
    model: nn.Module,
    param_path: str | os.PathLike[str],
    bin_path: str | os.PathLike[str],
    *,
    fp16: bool = False,
    example_hw: tuple[tuple[int, int], tuple[int, int]] = EXAMPLE_HW,
    timeout_s: float = 600.0,
) -> None:
    """Convert ``model`` (1xCxHxW -> 1xC'xsHxsW, any H/W) to an NCNN pair at exactly these two paths.

    ``fp16``: weights stored as float16 in the ``.bin`` (half the file; ncnn computes in fp32 on CPUs without
    fp16 arithmetic and in fp16 on GPUs). Intermediate pnnx files live in a temporary folder. The caller
    verifies the pair before moving it in place (the paths are scratch names). Raises RuntimeError with the
    converter's last lines when pnnx fails."""
    pnnx = require_pnnx()
    net = export_form(model)
    in_ch = int(getattr(model, "in_ch", 3))
    dummy = torch.rand(1, in_ch, *example_hw[0])
    with tempfile.TemporaryDirectory(prefix="paragonsr-pnnx-") as tmp:
        pt = Path(tmp) / "model.pt"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            torch.jit.trace(net, dummy, check_trace=False).save(str(pt))
        raw_param, raw_bin = Path(tmp) / "model.ncnn.param", Path(tmp) / "model.ncnn.bin"
        cmd = [
            pnnx.EXEC_PATH,
            str(pt),
            "inputshape=" + _shape_arg(in_ch, example_hw[0]),
            "inputshape2=" + _shape_arg(in_ch, example_hw[1]),
            "device=cpu",
            "optlevel=2",
            f"fp16={int(fp16)}",
            f"pnnxparam={tmp}/model.pnnx.param",
            f"pnnxbin={tmp}/model.pnnx.bin",
            f"pnnxpy={tmp}/model_pnnx.py",
            f"pnnxonnx={tmp}/model.pnnx.onnx",
            f"ncnnparam={raw_param}",
            f"ncnnbin={raw_bin}",
            f"ncnnpy={tmp}/model_ncnn.py",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=timeout_s, check=False)
        if proc.returncode != 0 or not raw_param.is_file() or not raw_bin.is_file():
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise RuntimeError(f"pnnx could not convert the model (exit {proc.returncode}): {tail}")
        text = rename_io_blobs(raw_param.read_text(encoding="utf-8"), where=str(param_path))
        Path(param_path).write_text(text, encoding="utf-8")
        os.replace(raw_bin, bin_path)


def commit_pair(tmp_param: Path, tmp_bin: Path, param: Path, bin_: Path) -> None:
    """Move a verified scratch pair in place: old ``.param`` out first, then the ``.bin``, then the ``.param``.
    At no moment does a ``.param`` sit beside a ``.bin`` of another export."""
    param.unlink(missing_ok=True)
    os.replace(tmp_bin, bin_)
    os.replace(tmp_param, param)


# ------------------------------------------------------------------------------------------------ app layout


_SCALE_TOKENS = (1, 2, 3, 4, 8, 16)


def upscayl_scale(model_name: str) -> int:
    """The scale upscayl (and its ``upscayl-bin``) reads from a model's file name: the first of x1/1x, x2/2x,
    x3/3x, x4/4x, x8/8x, x16/16x found in the name, 4 when none is."""
    low = model_name.lower()
    for s in _SCALE_TOKENS:
        if f"x{s}" in low or f"{s}x" in low:
            return s
    return 4


def app_model_name(name: str, scale: int, fp16: bool) -> str:
    """``<name>-x<scale>`` (``-fp16`` appended for fp16 storage). When upscayl would read another scale from
    that (a ``4x``/``x1`` inside ``name`` is found first), the ``x`` beside digits in ``name`` becomes ``_``."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"
    suffix = f"-x{scale}" + ("-fp16" if fp16 else "")
    if upscayl_scale(base + suffix) != scale:
        base = re.sub(r"(?i)x(?=\d)|(?<=\d)x", "_", base)
    out = base + suffix
    if upscayl_scale(out) != scale:
        raise ValueError(
            f"NCNN model name {out!r} would read as x{upscayl_scale(out)} in upscayl, not x{scale}"
        )
    return out


def pixels_contract() -> str:
    return f"input blob '{INPUT_BLOB}', output blob '{OUTPUT_BLOB}', RGB in [0, 1] (NCHW, batch 1, any H/W)"


__all__ = [
    "EXAMPLE_HW",
    "MKSExport",
    "ParagonSR2Export",
    "app_model_name",
    "commit_pair",
    "convert_ncnn",
    "export_form",
    "pixels_contract",
    "require_pnnx",
    "upscayl_scale",
]
