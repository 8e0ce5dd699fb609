"""MATLAB-compatible bicubic imresize: hand-computed values and an independent per-pixel reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import matlab_imresize_ref as ref
from paragonsr.ops.imresize import imresize_matlab, matlab_contributions
from paragonsr.ops.resample import resize


def test_hand_computed_downscale_weights_with_symmetric_edges() -> None:
    # x1/2, antialias: kernel 0.5*cubic(0.5 d), 8 taps; first output pixel sits at u = 1.5 (1-based).
    # cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125, cubic(1.75) = -0.0234375
    indices, weights = matlab_contributions(8, 4, 0.5)
    assert indices[0].tolist() == [2, 1, 0, 0, 1, 2, 3, 4]  # taps -2, -1, 0 mirror to 3, 2, 1 (1-based)
    expected = np.array(
        [-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375]
    )
    np.testing.assert_array_equal(weights[0], expected / 2)
    # on a ramp 0..7: 0.546875*0 + 0.3984375*1 + 0.1015625*2 - 0.03515625*3 - 0.01171875*4
    out = imresize_matlab(np.arange(8, dtype=np.float64)[:, None], 0.5)
    assert out[0, 0] == 0.44921875
    # clamped (replicate) edges would give 0.5078125 here: MATLAB mirrors
    clamped = resize(torch.arange(8, dtype=torch.float64).view(1, 1, 8, 1), size=(4, 1), kernel="bicubic")
    assert float(clamped[0, 0, 0, 0]) == pytest.approx(0.5078125)


def test_hand_computed_upscale_and_uint8_half_rounds_away_from_zero() -> None:
    # x2: first output pixel at u = 0.75, taps -1..2 -> weights cubic(1.75), cubic(0.75), cubic(0.25), cubic(1.25);
    # tap -1 mirrors to 2 and tap 0 to 1, so out = 1.09375 x1 - 0.09375 x2.
    row = np.array([[2.0, 18.0, 18.0, 18.0]])
    assert imresize_matlab(row, 2.0)[0, 0] == 0.5  # 1.09375*2 - 0.09375*18, exactly
    # uint8: MATLAB rounds half away from zero (numpy's rint would give 0)
    out8 = imresize_matlab(row.astype(np.uint8), 2.0)
    assert out8.dtype == np.uint8 and out8.shape == (2, 8) and out8[0, 0] == 1 and out8[1, 0] == 1


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2.0, 3.0, 4.0])
@pytest.mark.parametrize("antialias", [True, False])
def test_matches_independent_reference_on_odd_sizes(scale: float, antialias: bool) -> None:
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    got8 = imresize_matlab(img, scale, antialias=antialias)
    want8 = ref.imresize(img, scale, antialias)
    assert got8.shape == want8.shape == (int(np.ceil(13 * scale)), int(np.ceil(17 * scale)), 3)
    np.testing.assert_array_equal(got8, want8)
    imgf = img.astype(np.float64) / 255
    np.testing.assert_allclose(
        imresize_matlab(imgf, scale, antialias=antialias), ref.imresize(imgf, scale, antialias), atol=1e-12
    )


def test_antialias_widens_the_kernel_only_when_shrinking() -> None:
    _, w_aa = matlab_contributions(40, 10, 0.25, antialias=True)
    _, w_no = matlab_contributions(40, 10, 0.25, antialias=False)
    assert w_aa.shape[1] == 16 and w_no.shape[1] == 4  # width 4 / 0.25 = 16 taps vs the plain 4
    _, w_up = matlab_contributions(10, 40, 4.0, antialias=True)
    _, w_up_no = matlab_contributions(10, 40, 4.0, antialias=False)
    np.testing.assert_array_equal(w_up, w_up_no)
    np.testing.assert_allclose(w_aa.sum(axis=1), 1.0, atol=1e-14)


def test_uint8_rounds_after_each_axis_and_saturates() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (31, 27), dtype=np.uint8)
    got = imresize_matlab(img, 1 / 3)
    once = np.floor(np.clip(imresize_matlab(img.astype(np.float64), 1 / 3), 0, 255) + 0.5)
    np.testing.assert_array_equal(got, ref.imresize(img, 1 / 3))
    assert np.any(got != once)  # a single rounding at the end is not what MATLAB does for uint8
    # a hard edge overshoots: float output leaves [0, 255] (MATLAB does not clip doubles), uint8 saturates
    step = np.zeros((8, 8), dtype=np.uint8)
    step[:, 4:] = 255
    up = imresize_matlab(step.astype(np.float64), 2.0)
    assert up.min() < 0 and up.max() > 255
    up8 = imresize_matlab(step, 2.0)
    assert up8.min() == 0 and up8.max() == 255


def test_interior_agrees_with_the_generic_bicubic_resize() -> None:
    # same kernel and coordinate mapping as resample.resize(kernel="bicubic"); only the edges differ
    rng = np.random.default_rng(1)
    img = rng.random((48, 40))
    ours = imresize_matlab(img, 0.5)
    generic = resize(torch.from_numpy(img)[None, None], size=(24, 20), kernel="bicubic")[0, 0].numpy()
    np.testing.assert_allclose(ours[3:-3, 3:-3], generic[3:-3, 3:-3], atol=1e-12)
    assert np.abs(ours[0] - generic[0]).max() > 1e-3


def test_size_argument_and_errors() -> None:
    img = np.zeros((10, 12, 3), dtype=np.uint8)
    assert imresize_matlab(img, size=(5, 20)).shape == (5, 20, 3)
    with pytest.raises(ValueError, match="exactly one of scale or size"):
        imresize_matlab(img, 0.5, size=(5, 6))
    with pytest.raises(ValueError, match="uint8 or float"):
        imresize_matlab(img.astype(np.int16), 0.5)
    with pytest.raises(ValueError, match="HW or HWC"):
        imresize_matlab(np.zeros(4), 0.5)
