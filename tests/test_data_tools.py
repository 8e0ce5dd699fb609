"""meta-info, subset and extract-tiles: formats, reproducibility, BasicSR tiling semantics, resume, CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from paragonsr.cli import main
from paragonsr.data.meta_info import build_meta_info, read_meta_info, write_meta_info
from paragonsr.data.subset import choose, make_subset
from paragonsr.data.tiles import extract_tiles, list_images, read_image, tile_grid, tile_positions


def _img(path: Path, h: int, w: int, c: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    hi = 65535 if dtype == np.uint16 else 255
    a = np.random.default_rng(seed).integers(0, hi, (h, w, c) if c > 1 else (h, w), dtype=dtype)
    cv2.imwrite(str(path), a)
    return a


def test_tile_positions_match_basicsr() -> None:
    # BasicSR extract_subimages: range(0, h - crop + 1, step), plus h - crop when the leftover > thresh
    assert tile_positions(1000, 480, 240, 0) == [0, 240, 480, 520]
    assert tile_positions(960, 480, 240, 0) == [0, 240, 480]
    assert tile_positions(1000, 480, 240, 40) == [0, 240, 480]  # leftover 40 is not > 40
    assert tile_positions(1000, 480, 240, 39) == [0, 240, 480, 520]
    assert tile_positions(300, 480, 240) == []
    assert len(tile_grid(1000, 960, 480, 240)) == 4 * 3
    with pytest.raises(ValueError, match="positive"):
        tile_positions(100, 0, 10)


def test_extract_tiles_content_names_resume_and_bad_file(tmp_path: Path) -> None:
    src = tmp_path / "in"
    a = _img(src / "a.png", 100, 130)
    _img(src / "g.png", 64, 64, c=1)
    (src / "bad.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    n, errors = extract_tiles(list_images(src), out, crop=64, step=48, progress=False)
    # a: rows [0, 36], cols [0, 48, 66] -> 6 tiles; g: 1 tile
    assert n == 7 and len(errors) == 1 and "bad.png" in errors[0]
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"a_s{i:03d}.png" for i in range(1, 7)] + ["g_s001.png"]
    # row-major numbering, pixels exact (BGR file == BGR source)
    assert np.array_equal(cv2.imread(str(out / "a_s003.png")), a[0:64, 66:130])
    assert np.array_equal(cv2.imread(str(out / "a_s004.png")), a[36:100, 0:64])
    assert cv2.imread(str(out / "g_s001.png"), cv2.IMREAD_UNCHANGED).ndim == 2
    mtime = (out / "a_s001.png").stat().st_mtime_ns
    n2, _ = extract_tiles(list_images(src), out, crop=64, step=48, workers=2, progress=False)
    assert n2 == 0 and (out / "a_s001.png").stat().st_mtime_ns == mtime  # resumed, nothing rewritten


def test_read_image_keeps_16bit_and_alpha(tmp_path: Path) -> None:
    a16 = _img(tmp_path / "d.png", 8, 8, dtype=np.uint16)
    got = read_image(tmp_path / "d.png")
    assert got.dtype == np.uint16 and np.array_equal(got, a16[..., ::-1])
    rgba = _img(tmp_path / "e.png", 8, 8, c=4)
    got = read_image(tmp_path / "e.png")
    assert got.shape == (8, 8, 4) and np.array_equal(got[..., 3], rgba[..., 3])
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot decode image: .*empty\.png"):
        read_image(tmp_path / "empty.png")


def test_meta_info_formats_and_check(tmp_path: Path) -> None:
    root = tmp_path / "DF2K"
    _img(root / "DIV2K" / "0001.png", 10, 12)
    _img(root / "DIV2K" / "sub" / "0002.jpg", 6, 5)
    _img(root / "OST" / "x.png", 4, 4, c=1)
    (root / "OST" / "notes.txt").write_text("not an image")
    res = build_meta_info([root / "DIV2K", root / "OST"], [root])
    assert res.lines == ["DIV2K/0001.png", "DIV2K/sub/0002.jpg", "OST/x.png"]
    res = build_meta_info([root / "DIV2K"], None, fmt="basicsr")
    assert res.lines == ["0001.png (10,12,3)", "sub/0002.jpg (6,5,3)"]
    assert read_meta_info(write_meta_info(tmp_path / "m.txt", res.lines)) == ["0001.png", "sub/0002.jpg"]
    (root / "OST" / "y.png").write_bytes(b"garbage")
    res = build_meta_info([root / "OST"], [root / "OST"], check=True)
    assert res.lines == ["x.png"] and len(res.bad) == 1 and "y.png" in res.bad[0]
    with pytest.raises(ValueError, match="one --root, or one per --input"):
        build_meta_info([root / "DIV2K", root / "OST"], [root, root, root])
    # CLI: exit code 1 when --check finds an unreadable file, file written atomically either way
    out = tmp_path / "meta" / "meta_info.txt"
    rc = main(
        ["data", "meta-info", "--input", str(root / "OST"), "--root", str(root), "--out", str(out), "--check"]
    )
    assert rc == 1 and read_meta_info(out) == ["OST/x.png"]


def test_subset_reproducible_per_input_counts(tmp_path: Path) -> None:
    files = [f"{i:04d}.png" for i in range(50)]
    a = choose(files, n=10, seed=3)
    assert a == choose(list(reversed(files)), n=10, seed=3)  # input order does not matter
    assert a != choose(files, n=10, seed=4) and len(a) == 10 and a == sorted(a)
    assert choose(files, fraction=0.2, seed=3) == a
    assert choose(files, n=99) == files
    for d, n in (("A", 6), ("B", 4)):
        for i in range(n):
            _img(tmp_path / d / f"{i}.png", 2, 2, seed=i)
    res = make_subset([tmp_path / "A", tmp_path / "B"], tmp_path / "out", n=[3, 10], seed=1)
    assert [(p.name, avail, taken) for p, avail, taken in res.per_input] == [("A", 6, 3), ("B", 4, 4)]
    picked = sorted(p.name for p in (tmp_path / "out" / "A").iterdir())
    assert (tmp_path / "out" / "A" / picked[0]).is_symlink()
    rc = main(["data", "subset", "--input", str(tmp_path / "A"), "--n", "3", "--seed", "1",
               "--out", str(tmp_path / "cp"), "--mode", "copy"])  # fmt: skip
    assert rc == 0 and sorted(p.name for p in (tmp_path / "cp" / "A").iterdir()) == picked
    assert not (tmp_path / "cp" / "A" / picked[0]).is_symlink()
    with pytest.raises(ValueError, match="one --n, or one per --input"):
        make_subset([tmp_path / "A", tmp_path / "B"], tmp_path / "x", n=[1, 2, 3])
