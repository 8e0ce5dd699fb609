"""Every image reader in the package is :func:`paragonsr.io.image_io.read_image` underneath: EXIF orientation,
one error style and one extension list everywhere (data tools, training datasets, ONNX verification)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paragonsr.data.cache import imread_raw, to_float
from paragonsr.data.channels import imread_channels
from paragonsr.data.datasets import scan_images
from paragonsr.data.transforms import imread_rgb
from paragonsr.deploy.verify import load_image
from paragonsr.io.files import list_images
from paragonsr.io.files import read_image_native as read_stored
from paragonsr.io.image_io import READ_EXTS, ImageReadError, read_image, to_rgb
from paragonsr.train.option_check import _first_image


def _rotated_png(path: Path, channels: int = 3) -> np.ndarray:
    """A PNG stored 10x6 with EXIF orientation 6 (viewers show it 6x10, rotated clockwise); returns the stored
    pixels."""
    arr = np.random.default_rng(channels).integers(0, 256, (6, 10, channels), dtype=np.uint8)
    im = Image.fromarray(arr if channels > 1 else arr[..., 0])
    exif = im.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes())
    path.write_bytes(buf.getvalue())
    return arr


def test_every_reader_applies_exif_orientation_like_read_image(tmp_path: Path) -> None:
    stored = _rotated_png(tmp_path / "r.png")
    shown = np.rot90(stored, k=-1)  # orientation 6: rotate 90 degrees clockwise
    ref, info = read_image(tmp_path / "r.png")
    assert info.orientation == 6 and np.array_equal(np.rint(ref * 255).astype(np.uint8), shown)
    assert np.array_equal(read_stored(tmp_path / "r.png"), shown)  # data tools: the stored sample type
    assert np.array_equal(load_image(tmp_path / "r.png"), to_rgb(ref))  # ONNX verification
    assert np.array_equal(imread_rgb(tmp_path / "r.png"), ref)  # training
    assert np.array_equal(imread_channels(tmp_path / "r.png", alpha=True)[..., :3], ref)
    assert np.array_equal(to_float(imread_raw(tmp_path / "r.png")), ref)  # the training cache


def test_data_tools_reader_keeps_gray_and_makes_gray_alpha_rgba(tmp_path: Path) -> None:
    gray = _rotated_png(tmp_path / "g.png", channels=1)
    got = read_stored(tmp_path / "g.png")
    assert got.dtype == np.uint8 and np.array_equal(got, np.rot90(gray, k=-1))
    la = np.random.default_rng(5).integers(0, 256, (4, 5, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert np.array_equal(read_stored(tmp_path / "la.png"), la[..., [0, 0, 0, 1]])


def test_readers_fail_with_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    for reader in (read_stored, load_image):
        with pytest.raises(
            ImageReadError, match=r"^\S*bad\.png: truncated PNG \(no IEND chunk at the end\)$"
        ):
            reader(tmp_path / "bad.png")
        with pytest.raises(FileNotFoundError, match=r"missing\.png: no such file$"):
            reader(tmp_path / "missing.png")


def test_one_extension_list_for_every_folder_scan(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 3), np.uint8)
    for name in ("a.jfif", "b.GIF", "c.pgm"):
        Image.fromarray(arr if not name.endswith("pgm") else arr[..., 0]).save(
            tmp_path / name, {"jfif": "JPEG", "GIF": "GIF", "pgm": "PPM"}[name.split(".")[1]]
        )
    (tmp_path / "notes.txt").write_text("not an image")
    names = ["a.jfif", "b.GIF", "c.pgm"]
    assert {".jfif", ".gif", ".pgm"} <= set(READ_EXTS)
    assert [p.name for p in list_images(tmp_path)] == names
    assert [p.name for p in scan_images(tmp_path)] == names
    assert _first_image(tmp_path) == tmp_path / "a.jfif"
    assert read_stored(tmp_path / "b.GIF").shape == (4, 4, 3)


def test_to_rgba_repeats_gray_and_adds_opaque_alpha() -> None:
    from paragonsr.io.image_io import to_rgba

    la = np.array([[[0.25, 0.5]]], np.float32)
    assert to_rgba(la).tolist() == [[[0.25, 0.25, 0.25, 0.5]]]
    assert to_rgba(la[..., :1]).tolist() == [[[0.25, 0.25, 0.25, 1.0]]]
    rgba = np.array([[[0.1, 0.2, 0.3, 0.4]]], np.float32)
    assert to_rgba(rgba) is rgba


def test_training_readers_raise_oserror_with_the_readers_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    readers = (imread_rgb, lambda p: imread_channels(p, alpha=True), imread_raw)
    for reader in readers:
        with pytest.raises(OSError, match=r"^\S*bad\.png: not a recognised image format$"):
            reader(tmp_path / "bad.png")
        with pytest.raises(OSError, match=r"^\S*empty\.png: empty file \(0 bytes\)$"):
            reader(tmp_path / "empty.png")
        with pytest.raises(FileNotFoundError, match=r"missing\.png: no such file$"):
            reader(tmp_path / "missing.png")
