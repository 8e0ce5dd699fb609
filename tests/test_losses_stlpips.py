"""ST-LPIPS (shift-tolerant LPIPS, alex / vgg) on the real published weights: the reference values of
``tests/data/perceptual_ref`` (computed with the stlpips-pytorch package's own code), the loss, the metric, the
converter's checks and the blur-pool geometry. Tests needing the weight files skip with a reason when the weights
folder lacks them (``paragonsr weights fetch`` puts them there; CI fetches them)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REAL_WEIGHTS_DIR, REPO, imread
from paragonsr.losses import build_loss
from paragonsr.losses.stlpips import BlurDown, STLPIPSNet, convert_stlpips
from paragonsr.metrics import calculate_metric
from paragonsr.weights import WeightsError, WeightSource

REF = REPO / "tests" / "data" / "perceptual_ref"
SHARED_REF = Path(
    os.environ.get("PARAGONSR_PERCEPTUAL_REF", REPO.parent / "shared" / "data" / "perceptual_ref")
)


def _net(kind: str) -> STLPIPSNet:
    try:
        return STLPIPSNet(kind, weights=WeightSource(REAL_WEIGHTS_DIR))
    except WeightsError as exc:
        pytest.skip(f"ST-LPIPS-{kind} weights not fetched ({str(exc).splitlines()[0][:160]})")


@pytest.fixture(scope="module")
def alex() -> STLPIPSNet:
    return _net("alex")


@pytest.fixture(scope="module")
def vgg() -> STLPIPSNet:
    return _net("vgg")


def _img(folder: Path, name: str) -> torch.Tensor:
    rgb = imread(folder / name)[:, :, ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]


def _pairs(folder: Path) -> list[dict]:
    rows = json.loads((folder / "values.json").read_text(encoding="utf-8"))
    return [r for r in rows if r.get("dist") and (folder / r["dist"]).is_file()]


def test_blurdown_is_reflect_padded_binomial_stride2() -> None:
    x = torch.arange(36.0).view(1, 1, 6, 6)
    y = BlurDown(1)(x)
    assert y.shape == (1, 1, 4, 4)  # reflect pad 2 → 10×10, 3×3 stride 2 → 4×4
    assert float(BlurDown(1)(torch.full((1, 1, 8, 8), 3.0)).std()) == 0.0  # constants stay constant
    # output (1, 1) sits on input (0, 0)'s 3×3 neighbourhood: rows/cols 0..2 of the 10×10 padded image
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")[0, 0]
    k = torch.tensor([1.0, 2.0, 1.0])
    expect = float((padded[2:5, 2:5] * (k[:, None] * k[None, :]) / 16).sum())
    assert float(y[0, 0, 1, 1]) == pytest.approx(expect)


@pytest.mark.parametrize("kind", ["alex", "vgg"])
def test_stlpips_matches_reference_values(kind: str, request: pytest.FixtureRequest) -> None:
    net = request.getfixturevalue(kind)
    rows = _pairs(REF)
    assert len(rows) == 4, "the shipped ref0 pairs"
    rows = rows if kind == "alex" else rows[:2]  # VGG costs ~3× AlexNet here; two pairs pin it
    with torch.no_grad():  # one batch: the reference repeated against each distorted copy
        got = net(
            torch.cat([_img(REF, r["ref"]) for r in rows]), torch.cat([_img(REF, r["dist"]) for r in rows])
        )
    for r, g in zip(rows, got.tolist()):
        assert g == pytest.approx(r[f"stlpips_{kind}"], abs=2e-5), (r["dist"], g)


def test_stlpips_alex_other_reference_photos(alex: STLPIPSNet) -> None:
    if not SHARED_REF.is_dir():
        pytest.skip(f"the full reference set is not at {SHARED_REF} (set PARAGONSR_PERCEPTUAL_REF)")
    rows = _pairs(SHARED_REF)
    assert len(rows) == 16
    rows = [r for i, r in enumerate(rows) if r["ref"] != "ref0.png" and i % 4 == int(r["ref"][3])]
    assert len(rows) == 3  # one distortion of each of the three unshipped photos
    with torch.no_grad():
        got = alex(
            torch.cat([_img(SHARED_REF, r["ref"]) for r in rows]),
            torch.cat([_img(SHARED_REF, r["dist"]) for r in rows]),
        )
    for r, g in zip(rows, got.tolist()):
        assert g == pytest.approx(r["stlpips_alex"], abs=2e-5), (r["dist"], g)


def test_stlpips_is_shift_tolerant(alex: STLPIPSNet) -> None:
    """The point of the network: a 1-px shift costs far less than a q20 JPEG (values from the shipped pair)."""
    img, jpg = _img(REF, "ref0.png")[..., :129, :129], _img(REF, "ref0_jpeg_q20.png")[..., :129, :129]
    with torch.no_grad():
        shifted = float(alex(img[..., 1:, 1:], img[..., :-1, :-1]))
        jpeg = float(alex(img[..., 1:, 1:], jpg[..., 1:, 1:]))
        same = float(alex(img, img))
    assert same == 0.0
    assert shifted < 0.5 * jpeg, (shifted, jpeg)


def test_stlpips_loss_and_metric_agree_with_net(alex: STLPIPSNet) -> None:
    a, b = _img(REF, "ref0.png"), _img(REF, "ref0_blur_r2.png")
    want = 0.16514  # values.json, ref0 vs blur r2
    loss = build_loss({"type": "STLPIPSLoss", "loss_weight": 2.0, "weights_dir": str(REAL_WEIGHTS_DIR)})
    pred = a.clone().requires_grad_(True)
    out = loss(pred, b)
    assert float(out.detach()) == pytest.approx(2 * want, abs=4e-5)
    out.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in loss.parameters())
    u8 = lambda t: (t[0].permute(1, 2, 0).numpy() * 255.0).round()  # noqa: E731
    got = calculate_metric(
        {"img": u8(a), "img2": u8(b)}, {"type": "calculate_stlpips", "weights_dir": str(REAL_WEIGHTS_DIR)}
    )
    assert got == pytest.approx(want, abs=2e-5)


def test_stlpips_vgg_loss_and_metric_match_the_net(vgg: STLPIPSNet) -> None:
    a, b = _img(REF, "ref0.png")[..., :64, :64], _img(REF, "ref0_jpeg_q20.png")[..., :64, :64]
    with torch.no_grad():
        want = float(vgg(a, b))
    assert want > 0.01
    assert float(
        build_loss({"type": "stlpips_vgg", "loss_weight": 3.0, "weights_dir": str(REAL_WEIGHTS_DIR)})(a, b)
    ) == pytest.approx(3 * want, rel=1e-5)
    u8 = lambda t: (t[0].permute(1, 2, 0).numpy() * 255.0).round()  # noqa: E731
    got = calculate_metric(
        {"img": u8(a), "img2": u8(b)}, {"type": "calculate_stlpips_vgg", "weights_dir": str(REAL_WEIGHTS_DIR)}
    )
    assert got == pytest.approx(want, rel=1e-5)


def test_stlpips_missing_weights_names_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"stlpips_vgg.*vgg_shift_tolerant"):
        STLPIPSNet("vgg", weights=WeightSource(tmp_path))
    with pytest.raises(ValueError, match="'alex' or 'vgg'"):
        STLPIPSNet("squeeze", pretrained=False)


def test_convert_stlpips_checks_fixed_parts(tmp_path: Path) -> None:
    net = STLPIPSNet("alex", pretrained=False)
    state = dict(net.state_dict())
    state["scaling_layer.shift"] = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    state["scaling_layer.scale"] = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    state["net.slice1.1.filt"] = BlurDown(64).filt.clone()
    good = tmp_path / "alex_shift_tolerant.pth"
    torch.save(state, good)
    out = convert_stlpips(good)
    assert "net.slice1.1.filt" not in out and "scaling_layer.shift" not in out
    assert torch.equal(out["lin0.model.1.weight"], state["lin0.model.1.weight"])
    state["net.slice1.1.filt"] = torch.ones(64, 1, 3, 3) / 9  # a box blur is another network
    torch.save(state, good)
    with pytest.raises(WeightsError, match=r"alex_shift_tolerant.pth.*slice1.1.filt.*binomial"):
        convert_stlpips(good)
