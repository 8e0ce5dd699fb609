"""The channels_last training forms of ParagonSR2 compute what the NCHW forms compute: the per-sample dynamic
depthwise conv (batch-slice convs against one grouped conv), the global average pool of the kernel generator, the
channels_last matrix upsampler, and a whole nano training step (outputs, every parameter gradient and the tracked
kernels), in fp32 and under bf16 autocast, and three trainer steps. They also keep the channels_last layout through forward and backward,
which is what makes them fast on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paragonsr.archs import build_arch
from paragonsr.archs.mks_upsample import CL_MATMUL_MIN_CHANNELS, MagicKernelSharpUpsample
from paragonsr.archs.paragonsr2_blocks import DynamicTransformer, GlobalAvgPool2d, per_sample_depthwise
from paragonsr.train.option_io import parse_options
from paragonsr.train.sr_model import SRModel

CL = torch.channels_last


def _is_cl(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def _grouped_reference(h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The textbook per-sample form: one conv per sample, NCHW, fp32."""
    return torch.cat(
        [F.conv2d(h[i : i + 1], w[i], bias, padding=1, groups=h.shape[1]) for i in range(len(h))]
    )


@pytest.mark.parametrize("bf16", [False, True])
def test_per_sample_depthwise_channels_last_equals_grouped_conv(bf16: bool) -> None:
    g = torch.Generator().manual_seed(0)
    h0 = torch.randn(3, 5, 9, 7, generator=g)
    w0 = torch.randn(3, 5, 1, 3, 3, generator=g)
    b0 = torch.randn(5, generator=g)
    gy = torch.randn(3, 5, 9, 7, generator=g)
    results = {}
    for fmt in (torch.contiguous_format, CL):
        h = h0.clone(memory_format=fmt).requires_grad_(True)
        w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = per_sample_depthwise(h, w, b)
        assert _is_cl(y) == (fmt == CL)
        y.float().backward(gy)
        assert h.grad is not None and _is_cl(h.grad) == (fmt == CL)
        results[fmt] = (y.float(), h.grad, w.grad, b.grad)
    tol = 2e-2 if bf16 else 1e-5
    for nchw, cl in zip(results[torch.contiguous_format], results[CL], strict=True):
        torch.testing.assert_close(nchw, cl, rtol=tol, atol=tol)
    ref = _grouped_reference(h0, w0, b0)
    torch.testing.assert_close(results[CL][0], ref, rtol=tol, atol=tol)


def test_global_avg_pool_equals_adaptive_pool_and_keeps_the_layout() -> None:
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 6, 5, 4, generator=g)
    gy = torch.randn(2, 6, 1, 1, generator=g)
    ref_in = x0.clone().requires_grad_(True)
    ref = nn.AdaptiveAvgPool2d(1)(ref_in)
    ref.backward(gy)
    for fmt in (torch.contiguous_format, CL):
        x = x0.clone(memory_format=fmt).requires_grad_(True)
        y = GlobalAvgPool2d()(x)
        torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-7)
        y.backward(gy)
        assert x.grad is not None and _is_cl(x.grad) == (fmt == CL)
        torch.testing.assert_close(x.grad, ref_in.grad, rtol=0, atol=0)


@pytest.mark.parametrize("channels", [4, CL_MATMUL_MIN_CHANNELS])
def test_channels_last_matrix_upsampler_equals_the_filters(channels: int) -> None:
    g = torch.Generator().manual_seed(channels)
    x0 = torch.randn(2, channels, 10, 12, generator=g)
    gy = torch.randn(2, channels, 20, 24, generator=g)
    up = MagicKernelSharpUpsample(channels, 2, 0.5)
    ref_in = x0.clone().requires_grad_(True)
    ref = up.eval()(ref_in)  # the filter path
    ref.backward(gy)
    up.train()
    for fmt in (torch.contiguous_format, CL):
        x = x0.clone(memory_format=fmt).requires_grad_(True)
        y = up(x)
        assert _is_cl(y) == (fmt == CL)
        torch.testing.assert_close(y, ref, rtol=0, atol=2e-6)
        y.backward(gy.contiguous(memory_format=fmt))
        assert x.grad is not None and _is_cl(x.grad) == (fmt == CL)
        torch.testing.assert_close(x.grad, ref_in.grad, rtol=0, atol=1e-5)


def test_dynamic_transformer_channels_last_equals_nchw_and_tracks_the_same_kernel() -> None:
    torch.manual_seed(0)
    ref = DynamicTransformer(8, 1.5).train()
    new = DynamicTransformer(8, 1.5).train()
    new.load_state_dict(ref.state_dict())
    new.to(memory_format=CL)  # type: ignore[call-overload]
    g = torch.Generator().manual_seed(2)
    for step in range(2):
        x0 = torch.randn(4, 8, 6, 6, generator=g)
        outs = []
        for m, fmt in ((ref, torch.contiguous_format), (new, CL)):
            m.zero_grad(set_to_none=True)
            y = m(x0.contiguous(memory_format=fmt))
            y.square().mean().backward()
            outs.append(y)
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6, msg=f"step {step}")
        torch.testing.assert_close(new.tracked_kernel, ref.tracked_kernel, rtol=1e-6, atol=1e-7)
        for (name, pa), pb in zip(ref.named_parameters(), new.parameters(), strict=True):
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("bf16", [False, True])
def test_nano_training_step_channels_last_equals_nchw(bf16: bool) -> None:
    """The whole training graph (inception, dynamic blocks, upsamplers, HR head): outputs, every parameter
    gradient and the tracked kernels of a channels_last model against the NCHW model (the pre-existing forms)."""
    torch.manual_seed(0)
    ref = build_arch("paragonsr2_nano", scale=2).train()
    with torch.no_grad():  # LayerScale far from its 1e-5 init, so the blocks matter
        for name, p in ref.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.3)
    new = build_arch("paragonsr2_nano", scale=2).train()
    new.load_state_dict(ref.state_dict())
    new.to(memory_format=CL)  # type: ignore[call-overload]
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(3, 3, 20, 20, generator=g)
    lq = F.avg_pool2d(gt, 2)
    outs = []
    for m, fmt in ((ref, torch.contiguous_format), (new, CL)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = m(lq.contiguous(memory_format=fmt))
        assert _is_cl(y) == (fmt == CL)
        F.l1_loss(y.float(), gt.contiguous(memory_format=fmt)).backward()
        outs.append(y.float())
    rtol, atol = (3e-2, 3e-2) if bf16 else (1e-4, 1e-5)
    torch.testing.assert_close(outs[1], outs[0], rtol=rtol, atol=atol)
    for (name, pa), pb in zip(ref.named_parameters(), new.parameters(), strict=True):
        assert pa.grad is not None and pb.grad is not None, name
        # gradients are compared relative to their own scale: bf16 rounds every conv input
        scale = pa.grad.abs().max().item() + 1e-12
        err = (pa.grad - pb.grad).abs().max().item() / scale
        assert err < (0.05 if bf16 else 1e-4), f"{name}: relative gradient error {err:.2e}"
    for (name, ba), bb in zip(ref.named_buffers(), new.buffers(), strict=True):
        torch.testing.assert_close(bb, ba, rtol=1e-2 if bf16 else 1e-5, atol=1e-4 if bf16 else 1e-7, msg=name)


def _trainer(channels_last: bool) -> SRModel:
    opt = {
        "name": "layouts", "scale": 2,
        "datasets": {"train": {"type": "PairedImageDataset", "dataroot_gt": "-", "dataroot_lq": "-",
                               "gt_size": 24, "batch_size_per_gpu": 3}},
        "network_g": {"type": "paragonsr2_nano"},
        "train": {"total_iter": 10, "ema_decay": 0.9, "grad_clip": 1.0, "use_channels_last": channels_last,
                  "optim_g": {"type": "AdamW", "lr": 2e-3, "weight_decay": 0}, "pixel_opt": {"type": "L1Loss"}},
        "logger": {"use_tb_logger": False},
    }  # fmt: skip
    torch.manual_seed(0)
    return SRModel(parse_options(opt), torch.device("cpu"))


def test_short_training_run_channels_last_equals_nchw() -> None:
    """Three optimizer steps of the trainer (fp32): losses, weight updates, EMA weights and tracked kernels agree.

    AdamW divides by the gradient's running RMS, so rounding-level gradient differences in near-zero gradients
    move weights by a visible fraction of one step: updates are compared relative to their own size (a wrong
    formulation moves them by whole steps)."""
    g = torch.Generator().manual_seed(4)
    batches = []
    for _ in range(3):
        gt = torch.rand(3, 3, 24, 24, generator=g)
        batches.append({"gt": gt, "lq": F.avg_pool2d(gt, 2)})
    init = {k: v.clone() for k, v in _trainer(False).net_g.state_dict().items()}
    runs = {}
    for fast in (False, True):
        model = _trainer(fast)
        logs = [model.optimize_parameters([model.to_device(b)], i + 1) for i, b in enumerate(batches)]
        runs[fast] = (logs, model.networks())
    (plain_logs, plain_nets), (fast_logs, fast_nets) = runs[False], runs[True]
    for a, b in zip(fast_logs, plain_logs, strict=True):
        assert a["l_pixel"] == pytest.approx(b["l_pixel"], rel=1e-5)
        assert a["grad_norm_g"] == pytest.approx(b["grad_norm_g"], rel=1e-4)
    for name in ("net_g", "net_g_ema"):
        fast_sd, plain_sd = fast_nets[name].state_dict(), plain_nets[name].state_dict()
        for k, v0 in init.items():
            if k.endswith("tracked_kernel"):
                torch.testing.assert_close(fast_sd[k], plain_sd[k], rtol=1e-5, atol=1e-7, msg=f"{name}.{k}")
                continue
            step_f, step_p = fast_sd[k] - v0, plain_sd[k] - v0
            err = (step_f - step_p).abs().max().item() / (step_p.abs().max().item() + 1e-12)
            assert err < 0.05, f"{name}.{k}: update differs by {err:.1%} of its size"


def test_matrix_upsampler_trains_after_a_forward_under_inference_mode() -> None:
    """The per-size matrices are cached for the process: one first built by a training-mode forward under
    ``torch.inference_mode()`` (e.g. a calibration pass) must still serve later training steps (an inference
    tensor cannot be saved for backward)."""
    from paragonsr.archs.mks_upsample import axis_matrix

    axis_matrix.cache_clear()
    up = MagicKernelSharpUpsample(4, 2, 0.5).train()
    with torch.inference_mode():
        up(torch.rand(2, 4, 11, 9))
    x = torch.rand(2, 4, 11, 9, requires_grad=True)
    up(x).square().sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
