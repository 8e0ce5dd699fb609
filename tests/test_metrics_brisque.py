"""BRISQUE (own numpy implementation of the MATLAB release) with the LIVE ``allmodel``: the MATLAB release's
published feature vectors score 52.521 and 123.74 as in MATLAB; images score as the reference values of
``tests/data/perceptual_ref`` (computed by another implementation, pyiqa's, so within its stated tolerance); the
feature code's parts against their definitions; the converter's checks. Tests needing the model skip with a reason
when the weights folder lacks it (CI fetches it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_WEIGHTS_DIR, REPO, imread
from paragonsr.metrics import calculate_metric
from paragonsr.metrics.brisque import (
    LIVE_ALLRANGE,
    BrisqueModel,
    _aggd,
    _ggd,
    brisque,
    brisque_features,
    convert_brisque_allmodel,
    load_live_model,
    mscn_matlab,
    rgb2gray_matlab,
)
from paragonsr.weights import WeightsError

REF = REPO / "tests" / "data" / "perceptual_ref"

# Features the MATLAB release computes for its two example images (TID2008 i04_14_1.bmp, a blurred image) and the
# scores MATLAB's brisquescore prints for them; published with the pybrisque 1.0 package's tests (numbers only).
MATLAB_FEATS = [
    [2.187000, 0.305119, 0.731000, 0.046159, 0.078954, 0.124348, 0.735000, 0.032419, 0.086307, 0.118338,
     0.733000, -0.020298, 0.112611, 0.092477, 0.730000, -0.022557, 0.114732, 0.092231, 2.103000, 0.360946,
     0.731000, -0.055774, 0.183185, 0.116578, 0.734000, -0.046589, 0.179101, 0.123198, 0.730000, -0.037948,
     0.168773, 0.123828, 0.725000, -0.033253, 0.165621, 0.126170],
    [0.4610000, 0.1652788, 0.3410000, -0.1192659, 0.2319912, 0.0417499, 0.3370000, -0.1010206, 0.2127568,
     0.0502738, 0.3410000, -0.1070136, 0.1971343, 0.0380880, 0.3390000, -0.0978340, 0.1865236, 0.0413579,
     0.4860000, 0.1888571, 0.3480000, -0.0518405, 0.1354198, 0.0621431, 0.3500000, -0.0487347, 0.1329318,
     0.0642503, 0.3420000, -0.0046308, 0.0917469, 0.0853537, 0.3410000, -0.0035089, 0.0918414, 0.0869626],
]  # fmt: skip
MATLAB_SCORES = [52.521, 123.74]
# libsvm svm-scale output of the first vector with the LIVE allrange (same source)
MATLAB_SCALED_0 = [-0.617264, -0.270555, -0.295875, 0.0406103, -0.778699, -0.474667, -0.297065, 0.0308621,
                   -0.757414, -0.500593, -0.258806, -0.0243801, -0.671236, -0.656588, -0.275518, -0.00898751,
                   -0.665791, -0.658926, 0.168636, 0.00856362, 0.23913, -0.72301, -0.171255, -0.433049, 0.24878,
                   -0.502953, -0.193939, -0.392484, 0.308192, -0.264632, -0.365476, -0.333965, 0.304462,
                   -0.19329, -0.375196, -0.322727]  # fmt: skip


@pytest.fixture(scope="module")
def live() -> BrisqueModel:
    try:
        return load_live_model(str(REAL_WEIGHTS_DIR))
    except WeightsError as exc:
        pytest.skip(f"BRISQUE LIVE model not fetched ({str(exc).splitlines()[0][:160]})")


def test_matlab_reference_scores(live: BrisqueModel) -> None:
    assert live.sv.shape == (774, 36) and live.gamma == 0.05
    np.testing.assert_allclose(live.scale(np.array(MATLAB_FEATS[0])), MATLAB_SCALED_0, atol=1e-6)
    for feats, want in zip(MATLAB_FEATS, MATLAB_SCORES):
        assert live.score(np.array(feats)) == pytest.approx(want, abs=5e-3)


def test_images_match_reference_values(live: BrisqueModel) -> None:
    rows = json.loads((REF / "values.json").read_text(encoding="utf-8"))
    checked = 0
    for r in rows:
        name = r["dist"] or r["ref"]
        if not (REF / name).is_file():
            continue
        want = r["brisque_dist"] if r["dist"] else r["brisque"]
        got = brisque(imread(REF / name)[:, :, ::-1], live)
        assert got == pytest.approx(want, abs=0.06), (name, got, want)  # pyiqa's pipeline vs MATLAB's
        checked += 1
    assert checked == 5
    noisy = imread(REF / "ref0_noise_s10.png")[:, :, ::-1]
    via_metric = calculate_metric(
        {"img": noisy.astype(np.float64)}, {"type": "brisque", "weights_dir": str(REAL_WEIGHTS_DIR)}
    )
    assert via_metric == pytest.approx(brisque(noisy, live), abs=1e-9)


def test_feature_parts_follow_their_definitions() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    assert rgb2gray_matlab(rgb.astype(np.float64)).tolist() == [[76, 150, 29, 18]]  # MATLAB rgb2gray
    # zero-padded filter2: a constant image's MSCN is 0 inside, not at the border
    m = mscn_matlab(np.full((16, 16), 100.0))
    assert np.abs(m[3:-3, 3:-3]).max() < 1e-9 and m[0, 0] > 0.5
    rng = np.random.default_rng(0)
    g = rng.standard_normal(200_000)  # Gaussian: GGD shape 2, variance 1
    a, var = _ggd(g)
    assert a == pytest.approx(2.0, abs=0.03) and var == pytest.approx(1.0, abs=0.01)
    lap = rng.laplace(size=200_000)  # Laplacian: shape 1
    assert _ggd(lap)[0] == pytest.approx(1.0, abs=0.03)
    # an AGGD of shape 2 with left σ 0.5, right σ 2: each side a half-Gaussian, the left one with mass 0.5/2.5
    skew = np.where(rng.random(g.size) < 0.2, -0.5, 2.0) * np.abs(g)
    alpha, mean, lvar, rvar = _aggd(skew)
    assert alpha == pytest.approx(2.0, abs=0.05)
    assert lvar == pytest.approx(0.25, rel=0.02) and rvar == pytest.approx(4.0, rel=0.02)
    # AGGD mean (β_r − β_l) Γ(2/α)/Γ(1/α) with β = σ √(Γ(1/α)/Γ(3/α)); α = 2: (2 − 0.5)·√2/√π
    assert mean == pytest.approx(1.5 * math.sqrt(2 / math.pi), rel=0.03)


def test_features_shape_and_bad_input() -> None:
    img = imread(REF / "ref0.png", 0)
    f = brisque_features(img)
    assert f.shape == (36,) and np.isfinite(f).all()
    assert brisque_features(img.astype(np.float64)).tolist() == f.tolist()
    with pytest.raises(ValueError, match="flat image"):
        brisque_features(np.zeros((32, 32), np.uint8))  # a constant non-zero image is not flat (zero padding)
    with pytest.raises(ValueError, match="at least 8×8"):
        brisque_features(np.zeros((4, 40)))


def test_missing_model_and_converter_checks(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="brisque_live"):
        load_live_model(str(tmp_path))
    good = tmp_path / "allmodel"
    svs = "\n".join(f"{c} 1:{0.1 * i} 36:-0.5" for i, c in enumerate((-1024, 512.5, 3)))
    good.write_text(
        f"svm_type epsilon_svr\nkernel_type rbf\ngamma 0.05\nnr_class 2\ntotal_sv 3\nrho -1.5\nSV\n{svs}\n"
    )
    t = convert_brisque_allmodel(good)
    assert (
        t["sv"].shape == (3, 36)
        and float(t["sv"][1, 0]) == pytest.approx(0.1)
        and float(t["sv"][2, 35]) == -0.5
    )
    assert t["coef"].tolist() == [-1024, 512.5, 3] and float(t["rho"][0]) == -1.5
    assert np.array_equal(t["range"].numpy(), LIVE_ALLRANGE)
    model = BrisqueModel(t["sv"].numpy(), t["coef"].numpy(), -1.5, 0.05, LIVE_ALLRANGE)
    x = np.zeros(36)
    want = sum(
        c * math.exp(-0.05 * float(((t["sv"][i].numpy() - x) ** 2).sum()))
        for i, c in enumerate(t["coef"].tolist())
    )
    assert model.predict(x) == pytest.approx(want + 1.5)
    good.write_text(good.read_text().replace("total_sv 3", "total_sv 4"))
    with pytest.raises(WeightsError, match="3 support vectors, the header says 4"):
        convert_brisque_allmodel(good)
    good.write_text("svm_type c_svc\nkernel_type rbf\nSV\n")
    with pytest.raises(WeightsError, match=r"allmodel: expected an epsilon_svr"):
        convert_brisque_allmodel(good)
