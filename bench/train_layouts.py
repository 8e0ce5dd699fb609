"""The exact channels_last training forms of ParagonSR2 against the forms they replaced, forward + backward.

Side by side in one process, interleaved round by round, CPU time of this process (``time.process_time``), the min
over rounds (the machine is shared; the min is the least-disturbed run). Same maths in every pair (parity:
``tests/test_train_layouts.py``); only the memory layout of the work differs.

* ``dynamic FFN``: one ParagonSR2 DynamicTransformer (nano: C 24, hidden 36) on 16×24×64×64 channels_last, bf16
  autocast. ``grouped``: the per-sample kernels as one grouped conv over (1, B·hidden) channels, which permutes the
  hidden features to NCHW and back (and leaves the LeakyReLU / 1×1 conv on mixed layouts), with
  ``AdaptiveAvgPool2d`` in the kernel generator. ``per-sample``: B depthwise convs on channels_last batch slices
  and a pool whose gradient stays channels_last (what the model runs now).
* ``feature upsampler``: Magic Kernel Sharp ×2 of 16×24×64×64 channels_last fp32 (training matrix form).
  ``NCHW matmul``: two matmuls in NCHW order plus a permute copy to channels_last each way. ``CL bmm``: the two
  contractions in the tensor's own NHWC order.
* ``nano network``: the whole nano forward + backward (bf16 + channels_last, batch 16, LQ 64) with the former
  forms patched back in, against the current model.

    python bench/train_layouts.py [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import paragonsr.archs.mks_upsample as mks
import paragonsr.archs.paragonsr2_blocks as blocks
from paragonsr.archs import build_arch
from paragonsr.archs.paragonsr2_blocks import DynamicTransformer

CL = torch.channels_last


def grouped_depthwise(h: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """The former training form: one grouped conv over (1, B·C) channels (needs NCHW, so a channels_last ``h``
    is permuted)."""
    b, c, hh, ww = h.shape
    k = w.shape[-1]
    bias_bc = None if bias is None else bias.repeat(b)
    out = F.conv2d(
        h.reshape(1, b * c, hh, ww), w.reshape(b * c, 1, k, k), bias_bc, padding=k // 2, groups=b * c
    )
    return out.view(b, c, hh, ww)


def nchw_upsample_matrix(self: mks.MagicKernelSharpUpsample, x: Tensor) -> Tensor:
    """The former matrix form: NCHW matmuls, the result copied back to channels_last."""
    h, w = x.shape[-2:]
    key = (self.scale, self.alpha, self.version)
    mh = mks.axis_matrix(h, *key).to(device=x.device, dtype=x.dtype)
    mw = mh if w == h else mks.axis_matrix(w, *key).to(device=x.device, dtype=x.dtype)
    y = torch.matmul(mh.t(), torch.matmul(x, mw))
    return y.contiguous(memory_format=CL) if x.is_contiguous(memory_format=CL) else y


@contextmanager
def former_forms(net: nn.Module | None = None) -> Any:
    """Patch the replaced forms back in (module functions; and the pools of ``net``'s kernel generators)."""
    saved = (blocks.per_sample_depthwise, mks.MagicKernelSharpUpsample._upsample_matrix)
    pools = []
    if net is not None:
        for m in net.modules():
            if isinstance(m, DynamicTransformer):
                pools.append((m.kernel_gen, m.kernel_gen[0]))
                m.kernel_gen[0] = nn.AdaptiveAvgPool2d(1)
    blocks.per_sample_depthwise = grouped_depthwise
    mks.MagicKernelSharpUpsample._upsample_matrix = nchw_upsample_matrix  # type: ignore[method-assign]
    try:
        yield
    finally:
        blocks.per_sample_depthwise, mks.MagicKernelSharpUpsample._upsample_matrix = saved  # type: ignore[method-assign]
        for seq, pool in pools:
            seq[0] = pool


def fwd_bwd(fn: Callable[[Tensor], Tensor], x: Tensor, gy: Tensor, bf16: bool) -> Callable[[], None]:
    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = fn(x)
        y.float().backward(gy)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).contiguous(memory_format=CL)

    dyn = DynamicTransformer(24, 1.5).to(memory_format=CL).train()  # type: ignore[call-overload]
    x_dyn, g_dyn = rand(16, 24, 64, 64).requires_grad_(True), rand(16, 24, 64, 64)
    up = mks.MagicKernelSharpUpsample(24, 2, 0.5).train()
    x_up, g_up = rand(16, 24, 64, 64).requires_grad_(True), rand(16, 24, 128, 128)
    net = build_arch("paragonsr2_nano", scale=2).to(memory_format=CL).train()  # type: ignore[call-overload]
    lq, g_net = rand(16, 3, 64, 64).abs(), rand(16, 3, 128, 128)

    cases: dict[str, tuple[Callable[[], None], Callable[[], AbstractContextManager[Any]]]] = {}
    patched: nn.Module | None
    for name, run, patched in (
        ("dynamic FFN", fwd_bwd(dyn, x_dyn, g_dyn, bf16=True), dyn),
        ("feature upsampler", fwd_bwd(up, x_up, g_up, bf16=False), None),
        ("nano network", fwd_bwd(net, lq, g_net, bf16=True), net),
    ):
        cases[f"{name} | former"] = (run, partial(former_forms, patched))
        cases[f"{name} | current"] = (run, ExitStack)
    best = {k: float("inf") for k in cases}
    for r in range(args.rounds + 1):  # round 0 warms up (oneDNN primitives, allocator)
        for key, (run, ctx) in cases.items():
            with ctx():
                t0 = time.process_time()
                run()
                dt = time.process_time() - t0
            if r:
                best[key] = min(best[key], dt)
    print(f"forward + backward, CPU ms (min of {args.rounds} rounds), {torch.get_num_threads()} thread(s)")
    labels = {"dynamic FFN": ("grouped", "per-sample"), "feature upsampler": ("NCHW matmul", "CL bmm"),
              "nano network": ("former forms", "current")}  # fmt: skip
    for name, (old_label, new_label) in labels.items():
        old, new = best[f"{name} | former"] * 1e3, best[f"{name} | current"] * 1e3
        print(f"{name:>18}: {old_label} {old:7.1f} ms   {new_label} {new:7.1f} ms   x{old / new:4.2f}")


if __name__ == "__main__":
    main()
