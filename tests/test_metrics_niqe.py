"""NIQE, two labelled variants: the MATLAB release's computation with the standard pristine model (known values:
BasicSR's independent implementation on the shipped reference crops; MATLAB R2021a's 5.7296 on Set14 ``baboon`` when
the shared benchmarks are there) and the project's own fit (no weights). The MATLAB model's file skips with a
reason when the weights folder lacks it (CI fetches it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_WEIGHTS_DIR, REPO, imread
from paragonsr.metrics import calculate_metric
from paragonsr.metrics.niqe import (
    convert_niqe_npz,
    load_matlab_model,
    niqe_matlab,
    niqe_matlab_features,
    rgb2y_matlab,
)
from paragonsr.metrics.perceptual import perceptual_metrics
from paragonsr.weights import WeightsError

REF = REPO / "tests" / "data" / "perceptual_ref"
BENCH = Path(os.environ.get("PARAGONSR_BENCHMARKS", REPO.parent / "shared" / "data" / "benchmarks"))
# BasicSR 1.4.2's niqe() (scipy convolve, its own MATLAB imresize) on the Y channel of the shipped crops
BASICSR = {"ref0.png": 6.025845, "ref0_noise_s10.png": 10.202667, "ref0_blur_r2.png": 10.989694,
           "ref0_jpeg_q20.png": 8.465168}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> tuple[np.ndarray, np.ndarray]:
    try:
        return load_matlab_model(str(REAL_WEIGHTS_DIR))
    except WeightsError as exc:
        pytest.skip(f"NIQE MATLAB model not fetched ({str(exc).splitlines()[0][:160]})")


def _rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(imread(path)[:, :, ::-1])


def test_matlab_niqe_matches_basicsr_on_reference_crops(model) -> None:
    mu, cov = model
    assert mu.shape == (36,) and float(mu[0]) == pytest.approx(2.60131, abs=1e-5)  # MATLAB mu_prisparam(1)
    for name, want in BASICSR.items():
        assert niqe_matlab(_rgb(REF / name), mu, cov) == pytest.approx(want, abs=5e-4), name
    img = _rgb(REF / "ref0_noise_s10.png")
    got = calculate_metric(
        {"img": img.astype(np.float64), "img2": None},
        {"type": "niqe_matlab", "weights_dir": str(REAL_WEIGHTS_DIR)},
    )
    assert got == pytest.approx(BASICSR["ref0_noise_s10.png"], abs=5e-4)
    gray = calculate_metric(
        {"img": img},
        {"type": "calculate_niqe_matlab", "convert_to": "gray", "weights_dir": str(REAL_WEIGHTS_DIR)},
    )
    assert gray != pytest.approx(got, abs=1e-3)  # rgb2gray is another luma


def test_matlab_niqe_on_set14_baboon(model) -> None:
    path = BENCH / "Set14" / "baboon.png"
    if not path.is_file():
        pytest.skip(f"{path} not found (set PARAGONSR_BENCHMARKS)")
    mu, cov = model
    assert niqe_matlab(_rgb(path), mu, cov) == pytest.approx(
        5.72957, abs=1e-3
    )  # MATLAB R2021a (BasicSR docs)


def test_features_and_input_checks() -> None:
    y = rgb2y_matlab(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8))
    assert y.tolist() == [[81.0, 145.0, 41.0, 235.0]]  # MATLAB rgb2ycbcr Y of pure R, G, B, white
    img = rgb2y_matlab(_rgb(REF / "ref0.png"))
    f = niqe_matlab_features(img)
    assert f.shape == (4, 36)  # 256 px → two 96-px blocks a side, 48-px blocks at half size
    assert np.isfinite(f).all() and (f[:, [0, 18]] >= 0.2).all()
    with pytest.raises(ValueError, match="at least 96×96"):
        niqe_matlab_features(img[:95])
    with pytest.raises(ValueError, match="convert_to must be 'y' or 'gray'"):
        niqe_matlab(_rgb(REF / "ref0.png"), np.zeros(36), np.eye(36), "lab")


def test_project_fit_niqe_is_labelled_and_needs_no_weights() -> None:
    from paragonsr.metrics.niqe_fit import PACKAGED_NIQE, NIQEModel

    reg = perceptual_metrics()
    assert reg["niqe"][1].label == "NIQE (project fit)" and reg["niqe"][1].weights == ()
    assert reg["niqe_matlab"][1].label == "NIQE (MATLAB model)" and reg["niqe_matlab"][1].weights == (
        "niqe_matlab",
    )
    assert not reg["niqe"][1].full_reference and reg["brisque"][1].label == "BRISQUE"
    # report order: the field's full-reference metrics first, then ST-LPIPS, then the no-reference ones
    assert list(reg) == ["lpips_alex", "lpips_vgg", "dists", "stlpips_alex", "stlpips_vgg", "niqe_matlab", "niqe",
                         "brisque"]  # fmt: skip
    assert not reg["stlpips_vgg"][1].in_eval and reg["niqe_matlab"][1].min_size == 96
    img = _rgb(REF / "ref0_blur_r2.png")
    got = calculate_metric({"img": img.astype(np.float64)}, {"type": "niqe", "crop_border": 4})
    assert got == pytest.approx(NIQEModel.load(PACKAGED_NIQE).score(img[4:-4, 4:-4]), rel=1e-12)
    assert got > calculate_metric({"img": _rgb(REF / "ref0.png")}, {"type": "niqe", "crop_border": 4})


def test_converter_checks(tmp_path: Path) -> None:
    good = tmp_path / "niqe_pris_params.npz"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((36, 36))
    np.savez(
        good, mu_pris_param=np.arange(36.0)[None], cov_pris_param=a @ a.T, gaussian_window=np.ones((7, 7))
    )
    out = convert_niqe_npz(good)
    assert out["mu"].shape == (36,) and float(out["mu"][5]) == 5.0 and out["cov"].shape == (36, 36)
    np.savez(good, mu_pris_param=np.zeros(36), cov_pris_param=a)  # not symmetric
    with pytest.raises(WeightsError, match=r"niqe_pris_params.npz: .*not symmetric"):
        convert_niqe_npz(good)
    np.savez(good, mu=np.zeros(36))
    with pytest.raises(WeightsError, match=r"expected a 36-vector mu_pris_param.*found \['mu'\]"):
        convert_niqe_npz(good)
    np.savez(good, mu_pris_param=np.array([object()], dtype=object), cov_pris_param=a)
    with pytest.raises(WeightsError, match="cannot read NIQE parameters"):  # pickled objects are refused
        convert_niqe_npz(good)
