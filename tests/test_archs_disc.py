"""Discriminators: MUNet (Magic upsampling, spectral norm) and Real-ESRGAN's UNetDiscriminatorSN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import narrow
from paragonsr.archs import build_arch
from paragonsr.archs.mks_upsample import MagicKernelSharpUpsample
from paragonsr.archs.munet import MUNet
from paragonsr.archs.unet_sn import UNetDiscriminatorSN
from paragonsr.losses.gan import R3GANLoss, gradient_penalty


@pytest.mark.parametrize("name", ["munet", "unetdiscriminatorsn"])
def test_any_size_gives_per_pixel_logits(name):
    d = build_arch(name, num_feat=8)
    for h, w in ((16, 16), (17, 23), (32, 48), (33, 31)):
        out = d(torch.rand(2, 3, h, w))
        assert out.shape == (2, 1, h, w) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="at least"):
        d(torch.rand(1, 3, 7, 40))


def test_munet_layout():
    d = narrow(MUNet, build_arch("munet", num_feat=8))
    ups = [m for m in d.modules() if isinstance(m, MagicKernelSharpUpsample)]
    assert len(ups) == 4 and all(u.scale == 2 for u in ups)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    sn = [m for m in convs if hasattr(m, "parametrizations")]
    assert len(convs) == 1 + 4 + 2 + 8 + 1 and len(sn) == len(convs) - 1  # only in_conv is plain
    assert [m.out_channels for m in d.downs] == [8, 16, 32, 64]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in d.downs)
    assert d.out_conv.out_channels == 1
    # a saved state dict (spectral-norm u/v included) restores the exact eval output
    d(torch.rand(1, 3, 32, 32))  # one training-mode power iteration moves u/v
    fresh = build_arch("munet", num_feat=8)
    fresh.load_state_dict(d.state_dict(), strict=True)
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), d.eval()(x))
    with pytest.raises(ValueError, match="four down levels"):
        build_arch("munet", ch_mult=(1, 2))


def test_unet_sn_realesrgan_keys_and_reference_forward():
    d = narrow(UNetDiscriminatorSN, build_arch("UNetDiscriminatorSN", num_feat=8))
    expected = {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"}
    for i in range(1, 9):
        expected |= {f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"}
    assert set(d.state_dict()) == expected
    fresh = build_arch("unetdiscriminatorsn", num_feat=8)
    fresh.load_state_dict(d.state_dict(), strict=True)  # a Real-ESRGAN net_d state dict loads strictly
    d.eval()
    fresh.eval()
    x = torch.rand(1, 3, 32, 32)

    def ref(x):  # Real-ESRGAN's forward, written with scale_factor=2 upsampling
        lr = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = lr(d.conv0(x))
        x1 = lr(d.conv1(x0))
        x2 = lr(d.conv2(x1))
        x3 = lr(d.conv3(x2))
        x4 = lr(d.conv4(up(x3))) + x2
        x5 = lr(d.conv5(up(x4))) + x1
        x6 = lr(d.conv6(up(x5))) + x0
        return d.conv9(lr(d.conv8(lr(d.conv7(x6)))))

    with torch.no_grad():
        assert torch.allclose(d(x), ref(x), atol=1e-6)
        assert torch.allclose(fresh(x), d(x), atol=1e-6)


@pytest.mark.parametrize("name", ["munet", "unetdiscriminatorsn"])
def test_spectral_norm_survives_double_backward(name):
    torch.manual_seed(0)
    d = build_arch(name, num_feat=8).train()
    real = torch.rand(2, 3, 17, 16)  # odd size: exercises the size matching inside the up path
    fake = torch.rand(2, 3, 17, 16)
    loss, logs = R3GANLoss(r1_gamma=10.0, r2_gamma=10.0).d_loss(d, real, fake)
    assert torch.isfinite(loss) and logs["r1"] > 0 and logs["r2"] > 0
    loss.backward()
    grads = [p.grad for p in d.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the penalty alone has a non-zero gradient on a spectral-normed weight (second-order path is connected)
    d.zero_grad()
    x = real.clone().requires_grad_()
    pen = gradient_penalty(d(x), x)
    sn_param = next(p for n, p in d.named_parameters() if "original" in n or "weight_orig" in n)
    (g,) = torch.autograd.grad(pen, sn_param)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
