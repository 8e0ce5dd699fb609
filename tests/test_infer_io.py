"""Image I/O: exact 8/16-bit round trips, grayscale, RGBA, EXIF orientation, output formats, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import imread
from paragonsr.io.image_io import ImageReadError, read_image, write_image


def _rand(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_round_trip_exact(tmp_path: Path, ext: str, dtype: type, channels: int) -> None:
    raw = _rand((9, 13, channels) if channels > 1 else (9, 13), dtype)  # OpenCV order (BGR[A])
    src = tmp_path / f"in{ext}"
    assert cv2.imwrite(str(src), raw)
    img, info = read_image(src)
    peak = float(np.iinfo(dtype).max)
    assert img.dtype == np.float32 and img.shape == (9, 13, channels)
    assert info.bit_depth == (8 if dtype == np.uint8 else 16)
    assert info.channels == channels and info.has_alpha == (channels == 4) and info.is_gray == (channels == 1)
    expected = raw[..., None] if channels == 1 else raw[..., [2, 1, 0, 3][:channels]]  # -> RGB(A)
    np.testing.assert_array_equal(np.rint(img * peak).astype(dtype), expected)
    dst = tmp_path / f"out{ext}"
    write_image(dst, img, info)
    back = imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, raw)


def test_dark_16bit_stays_16bit(tmp_path: Path) -> None:
    """Depth comes from the dtype, not from max > 255 (a dark 16-bit frame is not 8-bit)."""
    raw = np.full((4, 4), 200, np.uint16)
    cv2.imwrite(str(tmp_path / "dark.png"), raw)
    img, info = read_image(tmp_path / "dark.png")
    assert info.bit_depth == 16
    np.testing.assert_allclose(img, 200 / 65535, rtol=0, atol=1e-9)
    write_image(tmp_path / "out.png", img, info)
    np.testing.assert_array_equal(imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED), raw)


def test_rgb_order(tmp_path: Path) -> None:
    Image.new("RGBA", (3, 2), (255, 0, 0, 128)).save(tmp_path / "red.png")
    img, _ = read_image(tmp_path / "red.png")
    np.testing.assert_allclose(img[0, 0], [1.0, 0.0, 0.0, 128 / 255], atol=1e-7)


def _oriented_jpeg(orientation: int) -> bytes:
    arr = np.zeros((24, 40, 3), np.uint8)
    arr[:8, :, 0] = 255  # red band on top
    arr[:, :10, 2] = 255  # blue band on the left
    arr[16:, 30:] = 255  # white block bottom right
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=98, subsampling=0, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(_oriented_jpeg(orientation))
    img, info = read_image(path)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), np.float32) / 255
    assert info.orientation == orientation
    assert img.shape == ref.shape == ((24, 40, 3) if orientation < 5 else (40, 24, 3))
    assert np.abs(img - ref).mean() < 0.01  # same decoder family; only IDCT rounding may differ


@pytest.mark.parametrize(
    ("ext", "depth"), [(".jpg", 8), (".webp", 8), (".bmp", 8), (".png", 16), (".tif", 16)]
)
def test_output_formats_by_extension(tmp_path: Path, ext: str, depth: int) -> None:
    img = np.linspace(0, 1, 16 * 20 * 3, dtype=np.float32).reshape(16, 20, 3)
    from paragonsr.io.image_io import ImageInfo

    write_image(tmp_path / f"o{ext}", img, ImageInfo(bit_depth=16), quality=100)
    back, info = read_image(tmp_path / f"o{ext}")
    assert back.shape == img.shape and info.bit_depth == depth  # 16-bit request degrades to 8 where needed
    assert np.abs(back - img).max() < 0.05
    assert not list(tmp_path.glob(".*.tmp"))


def test_jpeg_alpha_composited_over_white(tmp_path: Path) -> None:
    img = np.zeros((8, 8, 4), np.float32)  # fully transparent black
    write_image(tmp_path / "a.jpg", img)
    back, info = read_image(tmp_path / "a.jpg")
    assert info.channels == 3 and back.min() > 0.95


def test_write_replaces_existing_atomically(tmp_path: Path) -> None:
    dst = tmp_path / "x.png"
    dst.write_bytes(b"old")
    write_image(dst, np.full((4, 4, 1), 0.5, np.float32))
    img, info = read_image(dst)
    assert info.channels == 1 and img.shape == (4, 4, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_unknown_output_extension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot write '\.heic'"):
        write_image(tmp_path / "x.heic", np.zeros((2, 2, 3), np.float32))


def test_bad_files_named_clearly(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), _rand((32, 32, 3), np.uint8))
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    jpg = _oriented_jpeg(1)
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) - 40])
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"hello, I am not an image")
    cases = {
        "cut.png": r"cut\.png: truncated PNG",
        "cut.jpg": r"cut\.jpg: truncated JPEG",
        "zero.png": r"zero\.png: empty file",
        "text.png": r"text\.png: not a recognised image format",
    }
    for name, pattern in cases.items():
        with pytest.raises(ImageReadError, match=pattern):
            read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"missing\.png: no such file"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("mode", ["L", "I;16"])
@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (3, lambda a: a[::-1, ::-1]),  # rotate 180
        (6, lambda a: np.rot90(a, k=-1)),  # rotate 90 clockwise
        (8, lambda a: np.rot90(a, k=1)),  # rotate 90 counter-clockwise
    ],
)
def test_tiff_orientation_applied_once(tmp_path: Path, mode: str, orientation: int, expected) -> None:
    """OpenCV's TIFF decoder honours the Orientation tag itself; read_image must not rotate a second time."""
    rng = np.random.default_rng(orientation)
    dtype, peak = (np.uint8, 255) if mode == "L" else (np.uint16, 65535)
    raw = rng.integers(0, peak + 1, size=(6, 10), dtype=dtype)
    im = Image.frombytes(mode, (10, 6), raw.tobytes()) if mode == "I;16" else Image.fromarray(raw)
    path = tmp_path / f"o{orientation}.tif"
    im.save(path, tiffinfo={274: orientation})
    img, info = read_image(path)
    assert info.orientation == orientation
    want = np.ascontiguousarray(expected(raw))
    assert img.shape == (*want.shape, 1)
    np.testing.assert_array_equal(np.rint(img[..., 0] * peak).astype(dtype), want)


def test_jpeg_with_trailing_data_is_not_called_truncated(tmp_path: Path) -> None:
    """Motion photos append an MP4 after the JPEG's EOI; its bytes may contain FF DA (start-of-scan). The old
    check (last EOI before last SOS anywhere in the file) rejected such photos as truncated."""
    import cv2

    from paragonsr.io.image_io import ImageReadError

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    path = tmp_path / "motion.jpg"
    path.write_bytes(jpg + b"\x00\x00\x00\x18ftypmp42" + rng.bytes(64) + b"\xff\xda\x00\x0c" + rng.bytes(32))
    img, info = read_image(path)
    assert img.shape == (16, 24, 3) and info.format == "jpeg"
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) - 40])  # a real truncation is still caught
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")
