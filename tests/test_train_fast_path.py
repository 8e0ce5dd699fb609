"""The fast CPU training step computes what the plain one computes: the matrix form of the Magic Kernel Sharp
upsampler (training mode) against its filter form, the one-pass MS-SSIM against five separate blurs, and a short
ParagonSR2 training run with and without the fast upsampler."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import paragonsr.archs.mks_upsample as mks_upsample
from paragonsr.archs.mks_upsample import MagicKernelSharpUpsample
from paragonsr.losses.ssim import gaussian_1d, ms_ssim, ssim_components
from paragonsr.train.option_io import parse_options
from paragonsr.train.sr_model import SRModel


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_upsampler_matrix_form_equals_the_filters(scale: int, alpha: float) -> None:
    up = MagicKernelSharpUpsample(4, scale, alpha)
    g = torch.Generator().manual_seed(scale)
    for shape in ((2, 4, 17, 9), (1, 4, 1, 3), (1, 4, 40, 40)):
        x = torch.randn(shape, generator=g)
        ref = up.eval()(x)
        got = up.train()(x)
        assert got.shape == ref.shape == (shape[0], 4, shape[2] * scale, shape[3] * scale)
        torch.testing.assert_close(got, ref, rtol=0, atol=2e-6)
    # channels_last in, channels_last out (the HR convs that follow expect it)
    x = torch.randn(2, 4, 12, 12).contiguous(memory_format=torch.channels_last)
    assert up.train()(x).is_contiguous(memory_format=torch.channels_last)


def test_upsampler_large_inputs_keep_the_filter_path() -> None:
    up = MagicKernelSharpUpsample(2, 2, 0.5)
    x = torch.randn(1, 2, mks_upsample.MATRIX_PATH_MAX + 1, 8)
    assert torch.equal(up.train()(x), up.eval()(x))  # bit-identical: the very same ops


def _ssim_five_passes(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # The textbook form: each local mean from its own separable Gaussian pass (11 taps, sigma 1.5, 'valid').
    g = gaussian_1d(11, 1.5)
    c = x.shape[1]

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, g.view(1, 1, 11, 1).expand(c, 1, 11, 1), groups=c)
        return F.conv2d(t, g.view(1, 1, 1, 11).expand(c, 1, 1, 11), groups=c)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    cs = (2 * sxy + 0.03**2) / (sxx + syy + 0.03**2)
    lum = (2 * mx * my + 0.01**2) / (mx**2 + my**2 + 0.01**2)
    return (lum * cs).mean(dim=(2, 3)), cs.mean(dim=(2, 3))


def test_one_pass_ssim_equals_five_passes() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 48, 40, generator=g)
    x = (y + 0.1 * torch.randn(2, 3, 48, 40, generator=g)).clamp(0, 1).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    for a, b in zip(ssim_components(x, y), _ssim_five_passes(x_ref, y)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    ms_ssim(x, y).backward()
    # the reference MS-SSIM, built from the five-pass components over the same 2-level pyramid
    lv0, lv1 = _ssim_five_passes(x_ref, y), _ssim_five_passes(F.avg_pool2d(x_ref, 2), F.avg_pool2d(y, 2))
    w = torch.tensor([0.0448, 0.2856]) / (0.0448 + 0.2856)
    ref = (lv0[1].clamp_min(1e-6) ** w[0] * lv1[0].clamp_min(1e-6) ** w[1]).mean()
    torch.testing.assert_close(ms_ssim(x.detach(), y), ref.detach(), rtol=0, atol=1e-6)
    ref.backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-8)


def _model() -> SRModel:
    opt = {
        "name": "fast", "scale": 2,
        "datasets": {"train": {"type": "PairedImageDataset", "dataroot_gt": "-", "dataroot_lq": "-",
                               "gt_size": 32, "batch_size_per_gpu": 2}},
        "network_g": {"type": "paragonsr2_nano"},
        "train": {"total_iter": 10, "ema_decay": 0.9, "grad_clip": 1.0,
                  "optim_g": {"type": "AdamW", "lr": 2e-3, "weight_decay": 0},
                  "pixel_opt": {"type": "L1Loss"}, "mssim_opt": {"type": "MSSSIMLoss", "loss_weight": 0.1}},
        "logger": {"use_tb_logger": False},
    }  # fmt: skip
    torch.manual_seed(0)
    return SRModel(parse_options(opt), torch.device("cpu"))


def test_short_training_run_fast_equals_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(3):
        gt = torch.rand(2, 3, 32, 32, generator=g)
        batches.append({"gt": gt, "lq": F.avg_pool2d(gt, 2)})
    runs = {}
    for name, side in (("fast", mks_upsample.MATRIX_PATH_MAX), ("plain", 0)):
        monkeypatch.setattr(mks_upsample, "MATRIX_PATH_MAX", side)
        model = _model()
        logs = [model.optimize_parameters([model.to_device(b)], i + 1) for i, b in enumerate(batches)]
        runs[name] = (logs, model.networks())
    (fast_logs, fast_nets), (plain_logs, plain_nets) = runs["fast"], runs["plain"]
    for a, b in zip(fast_logs, plain_logs, strict=True):
        assert a["l_pixel"] == pytest.approx(b["l_pixel"], rel=1e-4)
        assert a["l_mssim"] == pytest.approx(b["l_mssim"], rel=1e-3, abs=1e-6)
    for name in ("net_g", "net_g_ema"):
        for (k, va), vb in zip(fast_nets[name].state_dict().items(), plain_nets[name].state_dict().values()):
            torch.testing.assert_close(va, vb, rtol=1e-3, atol=1e-5, msg=f"{name}.{k}")
