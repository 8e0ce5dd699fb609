"""The one image writer for stored-type pixels: ``write_image_native`` round trips through ``read_image_native``, and
the training image dump and the release comparison image go through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paragonsr.data.transforms import imwrite_rgb
from paragonsr.deploy.model_card import comparison_image
from paragonsr.io.files import read_image_native, write_image_native


@pytest.mark.parametrize(
    ("dtype", "channels", "ext"),
    [
        (np.uint8, 3, ".png"),
        (np.uint16, 3, ".png"),
        (np.uint8, 4, ".png"),
        (np.uint8, 1, ".png"),
        (np.uint16, 1, ".tif"),
    ],
)
def test_native_write_then_read_is_lossless(tmp_path: Path, dtype: type, channels: int, ext: str) -> None:
    peak = np.iinfo(dtype).max
    img = np.random.default_rng(channels).integers(0, peak + 1, (7, 5, channels), dtype=dtype)
    path = tmp_path / f"x{ext}"
    write_image_native(path, img)
    back = read_image_native(path)
    assert back.dtype == img.dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)


def test_native_write_names_the_file_it_cannot_encode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot encode x\.nope as \.nope"):
        write_image_native(tmp_path / "x.nope", np.zeros((4, 4, 3), np.uint8))
    assert not (tmp_path / "x.nope").exists()


def test_training_image_dump_creates_its_folder_and_keeps_pixels(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    path = tmp_path / "visual" / "img" / "img_100.png"
    imwrite_rgb(path, img)
    np.testing.assert_array_equal(read_image_native(path), img)
    with pytest.raises(OSError, match=r"cannot encode .*img_100\.nope"):
        imwrite_rgb(path.with_suffix(".nope"), img)


def test_release_comparison_image_is_a_png_of_the_zoomed_panels(tmp_path: Path) -> None:
    a = np.zeros((16, 12, 3), np.float32)
    b = np.ones((16, 12, 1), np.float32)  # gray panels are shown as RGB
    path = comparison_image(tmp_path / "cmp.png", [("a", a), ("b", b)], zoom=2, gap=3)
    out = read_image_native(path)
    assert out.dtype == np.uint8 and out.shape == (32, 2 * 24 + 3, 3)
    # the bottom row lies below the 20-pixel label bands: black panel, white gap, white panel
    assert (out[-1, :24] == 0).all() and (out[-1, 24:] == 255).all()
