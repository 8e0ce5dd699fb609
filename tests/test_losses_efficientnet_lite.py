"""EfficientNet-Lite0 (own definition) on the real packaged ImageNet weights: top-5 classes of real photos, a
fixed feature checksum, the perceptual loss built from options, TF "SAME" padding and the converter's checks.
Tests needing the weight file skip with a reason when the weights folder lacks it (CI fetches it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REAL_WEIGHTS_DIR, REPO, imread
from paragonsr.losses import build_loss
from paragonsr.losses.efficientnet_lite import (
    EfficientNetLite0,
    EfficientNetLitePerceptualLoss,
    SameConv2d,
    convert_efficientnet_lite,
)
from paragonsr.weights import WeightsError, WeightSource

SAMPLES = REPO / "src" / "paragonsr" / "assets" / "samples"
WD = str(REAL_WEIGHTS_DIR)
FRIENDS = REPO / "tests" / "data" / "photos" / "lomiri_friends_by_Aitzol_Berasategi.jpg"


def _weights_or_skip() -> None:
    try:
        WeightSource(REAL_WEIGHTS_DIR).resolve("efficientnet_lite0")
    except WeightsError as exc:
        pytest.skip(f"EfficientNet-Lite0 weights not fetched ({str(exc).splitlines()[0][:160]})")


def _rgb(path: Path, size: int | None = 224) -> torch.Tensor:
    """Centre square, area-resized to ``size`` (the trained resolution), RGB [0, 1] (1, 3, H, W)."""
    import cv2

    im = imread(path)[:, :, ::-1]
    h, w = im.shape[:2]
    s = min(h, w)
    im = np.ascontiguousarray(im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])
    if size is not None:
        im = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(im.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def classifier() -> EfficientNetLite0:
    _weights_or_skip()
    return EfficientNetLite0(weights=WeightSource(REAL_WEIGHTS_DIR))


def test_imagenet_top5_on_real_photos(classifier: EfficientNetLite0) -> None:
    """ImageNet indices: 151–268 are dog breeds (219 cocker spaniel), 696 paintbrush, 970 alp."""
    x = torch.cat([_rgb(SAMPLES / "dog.png"), _rgb(SAMPLES / "brushes.png"), _rgb(SAMPLES / "mountain.png")])
    with torch.no_grad():
        prob = classifier(x).softmax(1)
    top = prob.topk(5).indices.tolist()
    assert top[0][0] == 219 and all(151 <= c <= 268 for c in top[0]), top[0]
    assert top[1][0] == 696, top[1]
    assert top[2][0] == 970 and 979 in top[2], top[2]  # alp, then valley among the five
    assert float(prob[0, 219]) == pytest.approx(0.749, abs=0.01)


def test_feature_checksum_and_truncation(classifier: EfficientNetLite0) -> None:
    x = _rgb(FRIENDS, None)[..., :64, :64]
    trunk = EfficientNetLite0("stage4", weights=WeightSource(REAL_WEIGHTS_DIR))
    assert len(trunk._blocks) == 8 and not hasattr(trunk, "_fc")
    with torch.no_grad():
        feats = trunk.features(x)
        full = classifier.features(x, ["stage4"])
    shapes = {k: tuple(v.shape) for k, v in feats.items()}
    assert shapes == {"stem": (1, 32, 32, 32), "stage1": (1, 16, 32, 32), "stage2": (1, 24, 16, 16),
                      "stage3": (1, 40, 8, 8), "stage4": (1, 80, 4, 4)}  # fmt: skip
    # checksums of this fixed crop (float64 sums of the float32 features)
    assert float(feats["stem"].double().sum()) == pytest.approx(62191.567, rel=1e-5)
    assert float(feats["stage3"].double().sum()) == pytest.approx(864.863, abs=0.05)
    assert float(feats["stage4"].double().abs().mean()) == pytest.approx(5.41996, rel=1e-5)
    assert torch.equal(full["stage4"], feats["stage4"])
    with pytest.raises(RuntimeError, match="truncated"):
        trunk(x)


def test_perceptual_loss_from_options() -> None:
    _weights_or_skip()
    x = _rgb(FRIENDS, None)[..., :64, :64]
    y = x.flip(-1)
    loss = build_loss({"type": "EfficientNetLitePerceptualLoss", "loss_weight": 0.5,
                       "layer_weights": {"stage2": 1.0, "stage3": 0.5}, "weights_dir": WD})  # fmt: skip
    assert isinstance(loss, EfficientNetLitePerceptualLoss) and len(loss.net._blocks) == 5
    pred = x.clone().requires_grad_(True)
    out = loss(pred, y)
    with torch.no_grad():
        f, g = loss.net.features(x), loss.net.features(y)
    want = 0.5 * (F.l1_loss(f["stage2"], g["stage2"]) + 0.5 * F.l1_loss(f["stage3"], g["stage3"]))
    assert float(out.detach()) == pytest.approx(float(want), rel=1e-6)
    assert float(out.detach()) > 0.5  # a mirrored photo is far in feature space
    out.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert float(loss(x, x)) == 0.0
    ranged = build_loss({"type": "EfficientNetLitePerceptualLoss", "range_norm": True, "weights_dir": WD})
    assert float(ranged(2 * x - 1, 2 * y - 1)) == pytest.approx(
        float(build_loss({"type": "efficientnet_lite_perceptual", "weights_dir": WD})(x, y)), rel=1e-6
    )


def test_loss_refuses_unknown_stage_and_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['stage9'\].*stem, stage1"):
        EfficientNetLitePerceptualLoss({"stage9": 1.0}, pretrained=False)
    with pytest.raises(WeightsError, match="efficientnet_lite0"):
        EfficientNetLitePerceptualLoss(weights_dir=tmp_path)


def test_same_padding_puts_the_odd_pixel_bottom_right() -> None:
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, 3, stride=2)
    x = torch.randn(1, 2, 8, 7)
    y = conv(x)
    assert y.shape == (1, 3, 4, 4)  # ceil(8/2), ceil(7/2)
    # H 8: total pad 1 → (0 top, 1 bottom); W 7: total pad 2 → (1, 1)
    ref = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    assert torch.allclose(y, ref)
    conv5 = SameConv2d(2, 2, 5, stride=1)
    assert torch.allclose(conv5(x), F.conv2d(x, conv5.weight, conv5.bias, padding=2))


def test_converter_checks_the_network(tmp_path: Path) -> None:
    net = EfficientNetLite0(pretrained=False)
    state = dict(net.state_dict())
    good = tmp_path / "efficientnet-lite0.pth"
    torch.save(state, good)
    out = convert_efficientnet_lite(good)
    assert not any(k.endswith("num_batches_tracked") for k in out)
    assert torch.equal(out["_blocks.3._depthwise_conv.weight"], state["_blocks.3._depthwise_conv.weight"])
    state["_blocks.0._se_reduce.weight"] = torch.zeros(8, 32, 1, 1)
    torch.save(state, good)
    with pytest.raises(WeightsError, match="squeeze-excitation"):
        convert_efficientnet_lite(good)
    del state["_fc.weight"]
    torch.save(state, good)
    with pytest.raises(WeightsError, match=r"efficientnet-lite0.pth: not an EfficientNet-Lite0.*_fc.weight"):
        convert_efficientnet_lite(good)
