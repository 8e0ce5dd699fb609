"""MSSSIML1Loss (Zhao et al. 2017 mix, traiNNer-redux's msssiml1loss): known values on flat images, limits, dtype."""

from __future__ import annotations

import pytest
import torch

from paragonsr.losses import build_loss


def test_flat_images_known_value_and_identity() -> None:
    # Flat fields: every variance is 0, so cs = 1 at every scale and the loss is
    # alpha * (1 - prod_c l_c) + (1 - alpha) * |a - b|, with l = (2ab + C1) / (a^2 + b^2 + C1).
    loss = build_loss({"type": "msssiml1loss", "alpha": 0.3, "loss_weight": 2.0})
    a, b, c1 = 0.6, 0.2, 0.01**2
    x, y = torch.full((1, 3, 40, 36), a), torch.full((1, 3, 40, 36), b)
    lum = (2 * a * b + c1) / (a * a + b * b + c1)
    assert loss(x, y).item() == pytest.approx(2.0 * (0.3 * (1 - lum**3) + 0.7 * abs(a - b)), abs=1e-4)
    z = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert loss(z, z).item() == pytest.approx(0.0, abs=1e-6)


def test_alpha_limits_and_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    l1_only = build_loss({"type": "MSSSIML1Loss", "alpha": 0.0})
    # away from the borders the Gaussian-weighted L1 averages to the plain L1 (weights sum to 1)
    assert l1_only(y, x).item() == pytest.approx((y - x).abs().mean().item(), rel=0.05)
    const = torch.full_like(x, 0.5)
    assert l1_only(const + 0.1, const).item() == pytest.approx(0.1, abs=1e-6)
    ms_only = build_loss({"type": "MSSSIML1Loss", "alpha": 1.0})
    p = y.clone().requires_grad_(True)
    val = ms_only(p, x)
    val.backward()
    assert p.grad is not None
    assert 0 < val.item() < 1 and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_autocast_and_bad_options() -> None:
    loss = build_loss({"type": "msssiml1loss"})
    x, y = torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(x.bfloat16(), y.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(loss(x.bfloat16().float(), y.bfloat16().float()).item(), rel=1e-6)
    with pytest.raises(ValueError, match="gaussian_sigmas needs 5 positive values"):
        build_loss({"type": "msssiml1loss", "gaussian_sigmas": [1.0, 2.0]})
    with pytest.raises(ValueError, match="alpha must be in"):
        build_loss({"type": "msssiml1loss", "alpha": 1.5})
