"""``paragonsr data multiscale``: downscaled GT copies, MATLAB-bicubic values, names, meta_info, resume, CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import imread
from paragonsr.cli import main
from paragonsr.data.multiscale import copy_name, downscale, make_multiscale
from paragonsr.io.image_format import encode_png_gray_alpha
from paragonsr.io.image_io import read_image
from paragonsr.ops.imresize import imresize_matlab


def _png(path: Path, h: int, w: int, seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    hi = 65535 if dtype == np.uint16 else 255
    rgb = np.random.default_rng(seed).integers(0, hi, (h, w, 3), dtype=dtype)
    cv2.imwrite(str(path), rgb[..., ::-1])
    return rgb


def test_copy_names() -> None:
    assert copy_name("a", 1.0) == "a_scale100.png"
    assert copy_name("a", 0.5) == "a_scale050.png"
    assert copy_name("a", 1 / 3) == "a_scale033.png"


def test_copies_are_matlab_bicubic_of_the_source(tmp_path: Path) -> None:
    rgb = _png(tmp_path / "in" / "a.png", 301, 257)
    res = make_multiscale([tmp_path / "in" / "a.png"], tmp_path / "out", (1.0, 0.5, 1 / 3), min_size=16)
    assert not res.errors and not res.skipped
    assert [p.name for p in res.written] == ["a_scale100.png", "a_scale050.png", "a_scale033.png"]
    assert (tmp_path / "out" / "meta_info.txt").read_text().split() == [
        "a_scale100.png",
        "a_scale050.png",
        "a_scale033.png",
    ]
    full = imread(str(tmp_path / "out" / "a_scale100.png"))[..., ::-1]
    np.testing.assert_array_equal(full, rgb)  # lossless re-encode
    half = imread(str(tmp_path / "out" / "a_scale050.png"))[..., ::-1]
    assert half.shape == (151, 129, 3)  # ceil(0.5 * size), as MATLAB
    np.testing.assert_array_equal(half, imresize_matlab(rgb, scale=0.5))


def test_sixteen_bit_source_keeps_its_depth(tmp_path: Path) -> None:
    _png(tmp_path / "in" / "b.png", 64, 80, dtype=np.uint16)
    make_multiscale([tmp_path / "in" / "b.png"], tmp_path / "out", (0.5,), min_size=8)
    out = imread(str(tmp_path / "out" / "b_scale050.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (32, 40, 3)


def test_small_copies_skipped_bad_input_reported_and_resume(tmp_path: Path) -> None:
    _png(tmp_path / "in" / "a.png", 200, 300)
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    paths = [tmp_path / "in" / "a.png", tmp_path / "in" / "bad.png"]
    res = make_multiscale(paths, tmp_path / "out", (1.0, 0.5), min_size=128)
    assert [p.name for p in res.written] == ["a_scale100.png"]
    assert len(res.skipped) == 1 and "x0.50 copy would be below 128 px" in res.skipped[0]
    assert len(res.errors) == 1 and "bad.png" in res.errors[0]
    again = make_multiscale(paths[:1], tmp_path / "out", (1.0,), min_size=128)
    assert not again.written and [p.name for p in again.kept] == ["a_scale100.png"]


def test_bad_scales_and_colliding_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        make_multiscale([tmp_path / "a.png"], tmp_path / "out", (1.5,))
    with pytest.raises(ValueError, match="share a name"):
        make_multiscale([tmp_path / "x" / "a.png", tmp_path / "y" / "a.jpg"], tmp_path / "out")
    with pytest.raises(ValueError, match=r"0\.5 and 0\.501 share the copy name <stem>_scale050\.png"):
        make_multiscale([tmp_path / "a.png"], tmp_path / "out", (0.5, 0.501))  # one file, listed twice
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        downscale(np.zeros((4, 4, 3), np.float32), 0.0, 8)


def test_cli_meta_info_subset_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _png(tmp_path / "in" / "a.png", 140, 140, seed=1)
    _png(tmp_path / "in" / "held_out.png", 140, 140, seed=2)
    meta = tmp_path / "train.txt"
    meta.write_text("a.png\n")
    out = tmp_path / "ms"
    args = [
        "data",
        "multiscale",
        "--input",
        str(tmp_path / "in"),
        "--meta_info",
        str(meta),
        "--out",
        str(out),
    ]
    assert main([*args, "--scales", "1", "0.5", "--min-size", "64"]) == 0
    assert (out / "meta_info.txt").read_text().split() == ["a_scale100.png", "a_scale050.png"]
    assert not list(out.glob("held_out*"))
    assert "wrote 2 copies" in capsys.readouterr().out
    assert (
        main(["data", "multiscale", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "in" / "x")])
        == 2
    )
    assert "must not be the input folder" in capsys.readouterr().err


def test_gray_alpha_source_gives_opaque_gray_copies_as_rgba_gives_rgb(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    gray = np.random.default_rng(3).integers(0, 255, (40, 48), dtype=np.uint8)
    alpha = np.full_like(gray, 128)
    cv2.imwrite(str(src / "ga.png"), np.dstack([gray, gray, gray, alpha]))  # OpenCV writes BGRA
    assert read_image(src / "ga.png")[0].shape[2] == 4  # (an RGBA file: its alpha is dropped too)
    (src / "g2.png").write_bytes(encode_png_gray_alpha(np.dstack([gray, alpha])))
    assert read_image(src / "g2.png")[0].shape[2] == 2
    make_multiscale([src / "ga.png", src / "g2.png"], tmp_path / "out", (1.0,), min_size=8)
    for name in ("ga_scale100.png", "g2_scale100.png"):
        out = imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
        assert out.ndim == 2 or out.shape[2] in (1, 3), (name, out.shape)  # no alpha channel
        np.testing.assert_array_equal(out if out.ndim == 2 else out[..., 0], gray)


def test_float_source_with_nan_is_an_error_not_a_copy(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    img = np.random.default_rng(4).random((40, 40, 3), dtype=np.float32)
    img[5, 5, 1] = np.nan
    cv2.imwrite(str(src / "f.tif"), img)  # a float32 TIFF
    _png(src / "ok.png", 40, 40)
    res = make_multiscale([src / "f.tif", src / "ok.png"], tmp_path / "out", (1.0, 0.5), min_size=8)
    assert res.errors == [f"{src / 'f.tif'}: holds NaN values; no copies written"]
    assert [p.name for p in res.written] == ["ok_scale100.png", "ok_scale050.png"]  # the batch goes on
    assert not list((tmp_path / "out").glob("f_*"))
