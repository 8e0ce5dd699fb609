"""meta-info, subset and extract-tiles: formats, reproducibility, BasicSR tiling semantics, resume, CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import imread
from paragonsr.cli import main
from paragonsr.data.meta_info import build_meta_info, read_meta_info, write_meta_info
from paragonsr.data.subset import choose, make_subset
from paragonsr.data.tiles import extract_tiles, tile_grid, tile_positions
from paragonsr.io.files import list_images, read_image_native
from paragonsr.io.image_io import ImageReadError


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
    assert np.array_equal(imread(str(out / "a_s003.png")), a[0:64, 66:130])
    assert np.array_equal(imread(str(out / "a_s004.png")), a[36:100, 0:64])
    assert imread(str(out / "g_s001.png"), cv2.IMREAD_UNCHANGED).ndim == 2
    mtime = (out / "a_s001.png").stat().st_mtime_ns
    n2, _ = extract_tiles(list_images(src), out, crop=64, step=48, workers=2, progress=False)
    assert n2 == 0 and (out / "a_s001.png").stat().st_mtime_ns == mtime  # resumed, nothing rewritten


def test_read_image_keeps_16bit_and_alpha(tmp_path: Path) -> None:
    a16 = _img(tmp_path / "d.png", 8, 8, dtype=np.uint16)
    got = read_image_native(tmp_path / "d.png")
    assert got.dtype == np.uint16 and np.array_equal(got, a16[..., ::-1])
    rgba = _img(tmp_path / "e.png", 8, 8, c=4)
    got = read_image_native(tmp_path / "e.png")
    assert got.shape == (8, 8, 4) and np.array_equal(got[..., 3], rgba[..., 3])
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: empty file \(0 bytes\)$"):
        read_image_native(tmp_path / "empty.png")


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


def test_subset_leaves_no_temp_file_on_a_failed_copy_and_cleans_a_killed_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import paragonsr.data.subset as subset
    from paragonsr.utils.atomic import temp_path

    for i in range(3):
        _img(tmp_path / "A" / f"{i}.png", 2, 2, seed=i)
    out = tmp_path / "out"

    def half_copy(src: Path, dst: Path) -> None:  # a full disk halfway through the copy
        Path(dst).write_bytes(Path(src).read_bytes()[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(subset.shutil, "copy2", half_copy)
    with pytest.raises(OSError, match="No space left"):
        make_subset([tmp_path / "A"], out, n=[3], mode="copy")
    assert [p.name for p in (out / "A").iterdir()] == []  # no partial file, no temp file
    monkeypatch.undo()
    # a killed run's leftover (dead pid, our temp pattern, old) is removed by the next run
    stale = temp_path(out / "A" / "0.png")
    stale = stale.with_name(stale.name.replace(f".{os.getpid()}.", ".999999999."))
    stale.write_bytes(b"partial")
    os.utime(stale, (1, 1))
    rc = main(
        ["data", "subset", "--input", str(tmp_path / "A"), "--n", "3", "--out", str(out), "--mode", "copy"]
    )
    assert rc == 0 and sorted(p.name for p in (out / "A").iterdir()) == ["0.png", "1.png", "2.png"]


def _write(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), a)
    return a


def test_extract_tiles_same_names_are_not_lost(tmp_path: Path) -> None:
    src = tmp_path / "in"
    a = _write(src / "a" / "x.png", 64, 64, 1)
    b = _write(src / "b" / "x.png", 64, 64, 2)
    _write(src / "b" / "x.tif", 64, 64, 3)  # same stem in the same folder: its tiles would overwrite x.png's
    out = tmp_path / "out"
    n, errors = extract_tiles(list_images(src), out, crop=64, step=64, progress=False, root=src)
    assert n == 2
    assert np.array_equal(imread(str(out / "a" / "x_s001.png")), a)
    assert np.array_equal(imread(str(out / "b" / "x_s001.png")), b)
    assert len(errors) == 1 and "x.tif" in errors[0] and "overwrite" in errors[0]
    # without root (a flat list from two folders) the clash is reported too, not silently "resumed"
    n, errors = extract_tiles(list_images(src), tmp_path / "flat", crop=64, step=64, progress=False)
    assert n == 1 and len(errors) == 2
    # the CLI mirrors sub-folders
    assert main(["data", "extract-tiles", "--input", str(src / "a"), "--out", str(tmp_path / "c"),
                 "--crop", "64", "--step", "64", "--workers", "1"]) == 0  # fmt: skip
    assert (tmp_path / "c" / "x_s001.png").is_file()


@pytest.mark.parametrize(
    "tool",
    [
        ["extract-tiles", "--crop", "64"],
        ["meta-info"],
        ["subset", "--n", "3"],
    ],
)
def test_empty_input_folder_is_an_error(tool: list[str], tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / ("m.txt" if tool[0] == "meta-info" else "o"))
    assert main(["data", tool[0], *tool[1:], "--input", str(tmp_path / "empty"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and str(tmp_path / "empty") in err


def test_meta_info_on_a_symlinked_subset(tmp_path: Path) -> None:
    from paragonsr.data.meta_info import read_meta_info

    for i in range(3):
        _write(tmp_path / "DIV2K" / f"{i:04d}.png", 8, 8, i)
    # the documented flow: subset (symlinks by default), then meta_info over the subset; symlinks used to be
    # followed to their targets, which lie outside the subset root -> "not inside its root"
    assert (
        main(["data", "subset", "--input", str(tmp_path / "DIV2K"), "--n", "2", "--out", str(tmp_path / "s")])
        == 0
    )
    out = tmp_path / "meta.txt"
    assert main(["data", "meta-info", "--input", str(tmp_path / "s" / "DIV2K"), "--out", str(out)]) == 0
    lines = read_meta_info(out)
    assert len(lines) == 2 and all(ln.startswith("DIV2K/") for ln in lines)
    assert all((tmp_path / "s" / ln).is_symlink() for ln in lines)


def test_subset_rerun_with_another_seed_is_refused(tmp_path: Path) -> None:
    from paragonsr.data.subset import make_subset

    for i in range(6):
        _write(tmp_path / "in" / f"{i}.png", 4, 4, i)
    out = tmp_path / "out"
    first = make_subset([tmp_path / "in"], out, n=[2], seed=0)
    assert make_subset([tmp_path / "in"], out, n=[2], seed=0).skipped_existing == 2  # resume: same subset
    # another seed used to add its picks next to the old ones: OUT held up to 4 images for --n 2
    with pytest.raises(ValueError, match=r"already holds \d image\(s\) that are not in this subset"):
        make_subset([tmp_path / "in"], out, n=[2], seed=1)
    assert len(list((out / "in").iterdir())) == 2 and first.written == 2


def test_outputs_never_overwrite_or_nest_in_inputs(tmp_path: Path) -> None:
    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    ckpt = save_model(tmp_path / "c.safetensors", build_arch("compact", num_feat=4, num_conv=1, upscale=2))
    before = ckpt.read_bytes()
    assert main(["transfer", "-i", str(ckpt), "-o", str(ckpt), "--feat", "2", "--samples"]) == 1
    assert ckpt.read_bytes() == before  # the source checkpoint used to be replaced by the transferred one
    _write(tmp_path / "in" / "a.png", 64, 64, 0)
    tiles = ["--crop", "32", "--step", "32", "--workers", "1"]
    # tiles inside the input folder would be tiled again by the next run
    assert (
        main(
            [
                "data",
                "extract-tiles",
                "--input",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "in" / "t"),
                *tiles,
            ]
        )
        == 2
    )
    assert not (tmp_path / "in" / "t").exists()
    inp = str(tmp_path / "in")
    assert main(["data", "subset", "--input", inp, "--n", "1", "--out", str(tmp_path / "in" / "s")]) == 2
    filt = [
        "data",
        "filter",
        "--input",
        inp,
        "--out",
        str(tmp_path / "r.csv"),
        "--tile",
        "32",
        "--workers",
        "1",
    ]
    assert main([*filt, "--keep-dir", str(tmp_path / "in" / "keep")]) == 2
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.png"]
