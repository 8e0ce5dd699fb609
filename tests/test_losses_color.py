"""HSLuv and Oklab conversions against published reference values; colour loss behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paragonsr.losses import build_loss
from paragonsr.losses.color import rgb_to_hsluv, rgb_to_oklab


def _pixels(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).t().reshape(1, 3, len(rows), 1)


def test_hsluv_reference_values():
    # hsluv.org reference: #ff0000 -> (12.177, 100, 53.237), #00ff00 -> (127.715, 100, 87.737),
    # #0000ff -> (265.874, 100, 32.301); white L = 100 S = 0; mid grey S = 0
    out = rgb_to_hsluv(_pixels([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0.5, 0.5, 0.5]]))[0, :, :, 0].t()
    ref = torch.tensor(
        [[12.177, 100, 53.237], [127.715, 100, 87.737], [265.874, 100, 32.301]], dtype=torch.float64
    )
    assert torch.allclose(out[:3], ref, atol=2e-3)
    assert out[3, 2] == pytest.approx(100.0, abs=1e-3) and out[3, 1] == pytest.approx(0.0, abs=1e-3)
    assert out[4, 1] == pytest.approx(0.0, abs=1e-3)


def test_oklab_reference_values():
    # Ottosson's reference: sRGB red -> (0.62796, 0.22486, 0.12585), blue -> (0.45201, -0.03246, -0.31153)
    out = rgb_to_oklab(_pixels([[1, 0, 0], [0, 0, 1], [1, 1, 1]]))[0, :, :, 0].t()
    assert torch.allclose(out[0], torch.tensor([0.62796, 0.22486, 0.12585], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(out[1], torch.tensor([0.45201, -0.03246, -0.31153], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(out[2], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-4)


def test_hsluv_loss_terms(photo_crop: np.ndarray):
    gt = torch.from_numpy(photo_crop[:32, :32]).permute(2, 0, 1)[None].contiguous()
    hue_only = build_loss({"type": "HSLuvLoss", "saturation_weight": 0, "lightness_weight": 0})
    light_only = build_loss({"type": "HSLuvLoss", "hue_weight": 0, "saturation_weight": 0})
    swapped = gt[:, [1, 2, 0]]  # rotates hue
    assert float(hue_only(swapped, gt)) > 0.02
    grey = gt.mean(1, keepdim=True).expand_as(gt)  # hue of a grey target is ignored
    assert float(hue_only(gt, grey)) == pytest.approx(0.0, abs=1e-4)
    assert float(light_only(gt * 0.8, gt)) > float(light_only(gt * 0.95, gt)) > 0
    pred = grey.clone().requires_grad_()  # gradients stay finite at grey (no atan2)
    build_loss({"type": "HSLuvLoss"})(pred, gt).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="3-channel"):
        hue_only(gt[:, :1], gt[:, :1])


def test_consistency_loss_terms(photo_crop: np.ndarray):
    gt = torch.from_numpy(photo_crop[:32, :32]).permute(2, 0, 1)[None].contiguous()
    bright = build_loss({"type": "ConsistencyLoss", "chroma_weight": 0, "structure_weight": 0})
    chroma = build_loss({"type": "ConsistencyLoss", "brightness_weight": 0, "structure_weight": 0})
    tint = (gt * torch.tensor([1.1, 1.0, 0.9]).view(1, 3, 1, 1)).clamp(0, 1)
    dim = gt * 0.9
    assert float(chroma(tint, gt)) > 1.5 * float(chroma(dim, gt))  # a tint moves chroma more than dimming
    assert float(bright(dim, gt)) > 2 * float(bright(tint, gt)) > 0  # dimming moves brightness more
    assert float(build_loss({"type": "ConsistencyLoss"})(gt, gt)) == pytest.approx(0.0, abs=1e-7)
