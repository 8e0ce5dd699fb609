"""Weight transfer between SRVGGNetCompact sizes, e.g. 64 feat / 16 conv -> 32 feat / 32 conv.

Width: every hidden layer keeps the ``feat`` output channels whose filters (the weights that produce that channel,
``W[c]``) have the largest L2 norm; the kept indices are **sorted**, so channel order (and with it the colour
order the last conv relies on) is preserved. PReLU slopes and the next layer's input channels are sliced with the
same indices. Widening keeps every channel and adds new ones whose incoming weights are zero and outgoing weights
tiny random: they output exactly 0, so the function is unchanged and they still receive gradients.

Depth: ``depth_mode="identity"`` (default) inserts the extra body convs after the source convs, spread evenly, as
Dirac (identity) kernels with zero bias and PReLU slope 1: each inserted (conv, act) pair is exactly the identity,
so 64/16 -> 32/32 computes the same function as the narrowed 32/16 model and fine-tuning starts from there
(``noise`` adds a little jitter to break symmetry). ``depth_mode="copy"`` repeats each source conv (16
convs -> 32 by duplication), which changes the function far more. Fewer convs than the source drops evenly
spaced ones. The first layer keeps its input channels, the last conv keeps its ``out_ch·upscale²`` outputs, so
the upscale factor is preserved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from paragonsr.archs import build_arch
from paragonsr.archs.compact import compact_kwargs_from_state_dict
from paragonsr.metrics.psnr_ssim import calculate_psnr

_NEW = -1  # marker for a channel that does not exist in the source (widening)


CRITERIA = ("filter", "both")  # both = filter norm × norm of the weights reading the channel


def topk_channels(weight: Tensor, k: int, consumer: Tensor | None = None) -> list[int]:
    """Indices of the ``k`` output channels with the largest filter L2 norm (``weight[c]``), sorted ascending.

    With ``consumer`` (the next conv's weight), the score is the product of the filter norm and the norm of the
    weights that read the channel (``consumer[:, c]``): a channel matters when it is both produced strongly and
    used strongly. ``k`` above the channel count keeps every channel and appends ``_NEW`` markers."""
    n = weight.shape[0]
    if k >= n:
        return list(range(n)) + [_NEW] * (k - n)
    score = weight.detach().float().flatten(1).norm(dim=1)
    if consumer is not None:
        score = score * consumer.detach().float().transpose(0, 1).flatten(1).norm(dim=1)
    return sorted(torch.topk(score, k).indices.tolist())


def _rows(t: Tensor, idx: list[int], fill: float = 0.0) -> Tensor:
    out = t.new_full((len(idx), *t.shape[1:]), fill)
    for i, j in enumerate(idx):
        if j != _NEW:
            out[i] = t[j]
    return out


def _cols(w: Tensor, idx: list[int], gen: torch.Generator, new_std: float = 1e-3) -> Tensor:
    out = torch.empty((w.shape[0], len(idx), *w.shape[2:]), dtype=w.dtype)
    for i, j in enumerate(idx):
        if j == _NEW:  # input from a new (always-zero) channel: value irrelevant, small so it can grow
            out[:, i] = torch.randn(out[:, i].shape, generator=gen, dtype=w.dtype) * new_std
        else:
            out[:, i] = w[:, j]
    return out


def depth_map(n_src: int, n_dst: int, mode: str = "identity") -> list[int | None]:
    """For each target body conv, the source body conv it comes from (0-based) or None for an identity conv."""
    if mode not in ("identity", "copy"):
        raise ValueError(f"depth_mode must be 'identity' or 'copy', got {mode!r}")
    if n_dst <= n_src:  # keep evenly spaced source layers (the last one always)
        return sorted({round(x) for x in np.linspace(0, n_src - 1, n_dst)}) if n_dst else []
    if n_src == 0:
        return [None] * n_dst
    # spread the inserted convs evenly: 16 -> 32 puts one after each source conv
    extra = [len(a) for a in np.array_split(np.arange(n_dst - n_src), n_src)]
    out: list[int | None] = []
    for s in range(n_src):
        out.append(s)
        out.extend([s if mode == "copy" else None] * extra[s])
    return out


@dataclass
class TransferResult:
    state_dict: dict[str, Tensor]
    src_kwargs: dict[str, Any]
    dst_kwargs: dict[str, Any]
    # per source hidden layer (first conv, then body convs): the kept source channel indices
    kept: list[list[int]]
    layer_map: list[int | None]
    notes: list[str] = field(default_factory=list)


def transfer_compact(
    src_state: dict[str, Tensor],
    num_feat: int,
    num_conv: int,
    depth_mode: str = "identity",
    noise: float = 0.0,
    seed: int = 0,
    criterion: str = "filter",
) -> TransferResult:
    """Build a ``num_feat``/``num_conv`` SRVGGNetCompact state dict from a Real-ESRGAN-layout source state dict."""
    if num_feat < 1 or num_conv < 0:
        raise ValueError(f"target needs num_feat >= 1 and num_conv >= 0 (got {num_feat}, {num_conv})")
    src_kw = compact_kwargs_from_state_dict(src_state)
    n_src, act = src_kw["num_conv"], src_kw["act_type"]
    gen = torch.Generator().manual_seed(seed)
    # source hidden convs: body.0 (first) then body.2, body.4, ... (one PReLU after each at index + 1)
    src_idx = [0] + [2 * (i + 1) for i in range(n_src)]
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    consumers = [*src_idx[1:], 2 * n_src + 2]  # the conv that reads each hidden layer's output
    kept = [
        topk_channels(
            src_state[f"body.{i}.weight"],
            num_feat,
            None if criterion == "filter" else src_state[f"body.{c}.weight"],
        )
        for i, c in zip(src_idx, consumers)
    ]

    def conv(i: int, out_idx: list[int], in_idx: list[int] | None) -> tuple[Tensor, Tensor]:
        w, b = src_state[f"body.{i}.weight"].detach().clone(), src_state[f"body.{i}.bias"].detach().clone()
        w = _rows(w, out_idx)  # new output channels: zero filter, zero bias -> constant 0
        return (w if in_idx is None else _cols(w, in_idx, gen)), _rows(b, out_idx)

    def slope(i: int, out_idx: list[int]) -> Tensor:
        return _rows(src_state[f"body.{i}.weight"].detach().clone(), out_idx, fill=0.25)

    out: dict[str, Tensor] = {}
    out["body.0.weight"], out["body.0.bias"] = conv(0, kept[0], None)
    if act == "prelu":
        out["body.1.weight"] = slope(1, kept[0])
    layers = depth_map(n_src, num_conv, depth_mode)
    prev = kept[0]
    notes = []
    for t, s in enumerate(layers):
        k = 2 * (t + 1)
        if s is None:
            w = torch.zeros(num_feat, num_feat, 3, 3, dtype=out["body.0.weight"].dtype)
            w[range(num_feat), range(num_feat), 1, 1] = 1.0
            if noise > 0:
                w += torch.randn(w.shape, generator=gen, dtype=w.dtype) * noise
            out[f"body.{k}.weight"], out[f"body.{k}.bias"] = w, torch.zeros(num_feat, dtype=w.dtype)
            if act == "prelu":
                out[f"body.{k + 1}.weight"] = torch.ones(num_feat, dtype=w.dtype)
            continue
        if t > 0 and layers[t - 1] == s:  # copy mode: a literal duplicate of the conv (and act) just placed
            out[f"body.{k}.weight"] = out[f"body.{k - 2}.weight"].clone()
            out[f"body.{k}.bias"] = out[f"body.{k - 2}.bias"].clone()
            if act == "prelu":
                out[f"body.{k + 1}.weight"] = out[f"body.{k - 1}.weight"].clone()
            continue
        out[f"body.{k}.weight"], out[f"body.{k}.bias"] = conv(src_idx[s + 1], kept[s + 1], prev)
        if act == "prelu":
            out[f"body.{k + 1}.weight"] = slope(src_idx[s + 1] + 1, kept[s + 1])
        prev = kept[s + 1]
    last = 2 * n_src + 2
    k = 2 * num_conv + 2
    w, b = src_state[f"body.{last}.weight"].detach().clone(), src_state[f"body.{last}.bias"].detach().clone()
    out[f"body.{k}.weight"], out[f"body.{k}.bias"] = _cols(w, prev, gen), b
    if act == "leakyrelu" and None in layers:
        notes.append(
            "leakyrelu: inserted identity convs are not exact identities (negative inputs scale by 0.1)"
        )
    if num_conv < n_src:
        notes.append(f"depth reduced {n_src} -> {num_conv}: dropped convs, the function is not preserved")
    if depth_mode == "copy" and num_conv > n_src:
        notes.append("depth_mode=copy: repeated convs change the function; fine-tune before judging")
    dst_kw = dict(src_kw, num_feat=num_feat, num_conv=num_conv)
    return TransferResult(out, src_kw, dst_kw, kept, layers, notes)


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR (dB) of two [0, 1] tensors of any equal shape after clamping (what a user would save), over all their
    values: :func:`paragonsr.metrics.calculate_psnr` of the values as one column; ``inf`` when identical."""

    def column(x: Tensor) -> np.ndarray:
        return x.detach().clamp(0, 1).to("cpu", torch.float64).numpy().reshape(-1, 1) * 255.0

    return calculate_psnr(column(a), column(b))


@torch.no_grad()
def compare_outputs(src: nn.Module, dst: nn.Module, images: list[np.ndarray]) -> list[dict[str, float]]:
    """Per image: PSNR of dst vs src outputs, and of the plain nearest-neighbour upscale vs src (for context)."""
    src.eval()
    dst.eval()
    res = []
    for img in images:
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
        ys, yd = src(x), dst(x)
        near = torch.nn.functional.interpolate(x, scale_factor=cast(Any, src).scale, mode="nearest")
        res.append({"psnr_dst_vs_src": psnr(yd, ys), "psnr_nearest_vs_src": psnr(near, ys)})
    return res


def build_pair(result: TransferResult) -> tuple[nn.Module, nn.Module]:
    """Fresh (source-shaped, target) models; the target already carries the transferred weights."""
    src = build_arch("srvggnetcompact", **result.src_kwargs)
    dst = build_arch("srvggnetcompact", **result.dst_kwargs)
    dst.load_state_dict(result.state_dict, strict=True)
    return src, dst
