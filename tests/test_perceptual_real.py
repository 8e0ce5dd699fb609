"""Known values of the perceptual losses and metrics on the real weights (fetched from the package registry).

They run where the weights are present and verified in the folder the session started with (``$PARAGONSR_WEIGHTS``
or ``~/.cache/paragonsr/weights``; ``.ci/run`` fetches them before the suite) and skip with the reason otherwise. References:
``tests/data/perceptual_ref`` (README there): the LPIPS and DISTS repositories' published example values, and
values of implementations checked against the official ones on CC photo pairs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import REAL_WEIGHTS_DIR
from paragonsr.weights import weights_status

REF = Path(__file__).parent / "data" / "perceptual_ref"
VALUES = {r["dist"]: r for r in json.loads((REF / "values.json").read_text()) if r["dist"]}


def _need(*names: str) -> Path:
    folder = REAL_WEIGHTS_DIR
    status = {r["name"]: r["status"] for r in weights_status(folder)}
    absent = [n for n in names if status.get(n) != "verified"]
    if absent:
        pytest.skip(
            f"real weights {', '.join(absent)} not fetched and verified in {folder} (run `paragonsr weights "
            f"fetch` or set $PARAGONSR_WEIGHTS); known-value tests need them"
        )
    return folder


def _u8(name: str) -> np.ndarray:
    img = cv2.imread(str(REF / name), cv2.IMREAD_COLOR)
    assert img is not None, name
    return img[:, :, ::-1].astype(np.float64)  # RGB in [0, 255], as paragonsr eval hands images to metrics


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1) / 255.0, dtype=np.float32))[None]


def _metric(key: str, folder: Path) -> Callable[[np.ndarray, np.ndarray], float]:
    from paragonsr.metrics.perceptual import perceptual_metrics

    fn = perceptual_metrics()[key][0]  # the function `paragonsr eval` and val.metrics call
    return functools.partial(fn, weights_dir=str(folder))


def test_lpips_alex_matches_published_and_reference_values() -> None:
    lpips = _metric("lpips_alex", _need("alexnet", "lpips_alex"))
    ref = _u8("lpips_ex_ref.png")
    # LPIPS README: ref vs p0 0.722, vs p1 0.137 (published to 3 decimals)
    assert lpips(_u8("lpips_ex_p0.png"), ref) == pytest.approx(0.722, abs=1e-3)
    assert lpips(_u8("lpips_ex_p1.png"), ref) == pytest.approx(0.137, abs=1e-3)
    for dist, row in VALUES.items():
        assert lpips(_u8(dist), _u8(row["ref"])) == pytest.approx(row["lpips_alex"], abs=1e-4), dist


def _crop(img: np.ndarray) -> np.ndarray:
    return img[96:160, 96:160]


def test_lpips_vgg_metric_and_loss_match_reference_values() -> None:
    from paragonsr.losses import build_loss

    folder = _need("vgg16", "lpips_vgg")
    lpips = _metric("lpips_vgg", folder)
    dist = "ref0_jpeg_q20.png"
    assert lpips(_u8(dist), _u8("ref0.png")) == pytest.approx(VALUES[dist]["lpips_vgg"], abs=1e-4)
    loss = build_loss({"type": "LPIPSLoss", "net": "vgg", "loss_weight": 2.0, "weights_dir": str(folder)})
    x, y = _crop(_u8(dist)), _crop(_u8("ref0.png"))  # the loss is the metric (64×64 crop: same nets, cheaper)
    with torch.no_grad():
        assert float(loss(_t(x), _t(y))) == pytest.approx(2.0 * lpips(x, y), rel=1e-5)


def test_dists_matches_published_and_reference_values() -> None:
    from paragonsr.losses import build_loss

    folder = _need("vgg16", "dists")
    dists = _metric("dists", folder)
    # DISTS README example (images already resized so the shorter side is 256): 0.3347
    assert dists(_u8("dists_r1.png"), _u8("dists_r0.png")) == pytest.approx(0.3347, abs=1e-3)
    dist = "ref0_blur_r2.png"
    assert dists(_u8(dist), _u8("ref0.png")) == pytest.approx(VALUES[dist]["dists"], abs=1e-4)
    loss = build_loss({"type": "DISTSLoss", "weights_dir": str(folder)})
    x, y = _crop(_u8(dist)), _crop(_u8("ref0.png"))
    with torch.no_grad():
        assert float(loss(_t(x), _t(y))) == pytest.approx(dists(x, y), rel=1e-5)


def test_vgg16_perceptual_loss_on_conv3_conv4() -> None:
    """PerceptualLoss(vgg16) defaults to the conv3_3 + conv4_3 layers of the ParagonSR2 recipe; equal to the
    features written out with F.conv2d from the weight file, on 64×64 crops."""
    from paragonsr.losses import build_loss
    from paragonsr.weights import resolve_weights

    folder = _need("vgg16")
    loss = build_loss({"type": "PerceptualLoss", "vgg_type": "vgg16", "weights_dir": str(folder)})
    assert loss.layer_weights == {"conv3_3": 1.0, "conv4_3": 1.0}
    state = load_file(str(resolve_weights("vgg16", folder)))
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)

    def feats(x: torch.Tensor) -> list[torch.Tensor]:
        h, out = (x - mean) / std, []
        for block, convs in enumerate(((0, 2), (5, 7), (10, 12, 14), (17, 19, 21))):
            if block:
                h = F.max_pool2d(h, 2)
            for i, idx in enumerate(convs):
                h = F.conv2d(h, state[f"features.{idx}.weight"], state[f"features.{idx}.bias"], padding=1)
                if i == len(convs) - 1 and block >= 2:
                    out.append(h)  # conv3_3, conv4_3: before their ReLU
                h = F.relu(h)
        return out

    gt = _t(_crop(_u8("ref0.png")))
    values = {}
    for dist in ("ref0_bicubic_down_up_x2.png", "ref0_noise_s10.png"):
        x = _t(_crop(_u8(dist)))
        with torch.no_grad():
            ref = sum(float((a - b).abs().mean()) for a, b in zip(feats(x), feats(gt)))
            values[dist] = float(loss(x, gt))
        assert values[dist] == pytest.approx(ref, rel=1e-5), dist
    assert 0 < values["ref0_bicubic_down_up_x2.png"] < values["ref0_noise_s10.png"]
