"""``paragonsr upscale`` / ``paragonsr demo`` end to end (in process): batches with bad files, no overwriting
inputs, model files, bit depth and channels through the CLI, the demo comparison image, bundled samples."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import imread
from paragonsr.cli import main


def _write(path: Path, arr: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), arr)
    return path


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    _write(src / "good.png", rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    _write(src / "deep.png", rng.integers(0, 65536, (10, 12), dtype=np.uint16))  # 16-bit gray
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    jpg = cv2.imencode(".jpg", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))[1].tobytes()
    (src / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (src / "empty.png").write_bytes(b"")
    _write(src / "dot.png", np.zeros((1, 1, 3), np.uint8))
    return src


def _model(tmp_path: Path, scale: int = 2) -> Path:
    import torch

    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    torch.manual_seed(0)
    return save_model(
        tmp_path / f"tiny_x{scale}.safetensors", build_arch("compact", num_feat=8, num_conv=1, upscale=scale)
    )


def test_batch_with_bad_files_continues(batch: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["upscale", str(batch), "-o", str(out), "--resampler", "bicubic", "-s", "2", "-q"])
    captured = capsys.readouterr()
    assert rc == 1
    good = imread(str(out / "good.png"), cv2.IMREAD_UNCHANGED)
    assert good.shape == (48, 40, 3)
    deep = imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (20, 24)  # 16-bit gray stays 16-bit gray
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 4  # one line per bad file
    for name in ("corrupt.png", "truncated.jpg", "empty.png", "dot.png"):
        assert sum(name in line for line in errors) == 1, (name, errors)
        assert not (out / name).exists()
    assert "too small" in next(e for e in errors if "dot.png" in e)
    assert "upscaled 2 image(s)" in captured.out and "4 problem(s)" in captured.out
    assert not list(out.glob(".*.tmp"))


def test_never_overwrites_inputs(tmp_path: Path, capsys) -> None:
    src = _write(tmp_path / "a.png", np.full((8, 8, 3), 77, np.uint8))
    before = src.read_bytes()
    rc = main(["upscale", str(src), "-o", str(tmp_path), "--resampler", "mks2021", "-q", "--overwrite"])
    assert rc == 1 and src.read_bytes() == before
    assert "refusing to write" in capsys.readouterr().err
    rc = main(["upscale", str(src), "-o", str(src), "--resampler", "mks2021", "-q", "--overwrite"])
    assert rc == 1 and src.read_bytes() == before
    rc = main(["upscale", str(src), "-o", str(tmp_path), "--resampler", "mks2021", "--suffix", "_x2", "-q"])
    assert rc == 0 and imread(str(tmp_path / "a_x2.png")).shape == (16, 16, 3)


def test_existing_output_skipped_unless_overwrite(tmp_path: Path, capsys) -> None:
    src = _write(tmp_path / "a.png", np.full((8, 8, 3), 77, np.uint8))
    dst = tmp_path / "out.webp"
    dst.write_bytes(b"keep me")
    assert main(["upscale", str(src), "-o", str(dst), "--resampler", "bicubic", "-q"]) == 0
    assert dst.read_bytes() == b"keep me" and "exists (use --overwrite)" in capsys.readouterr().err
    assert main(["upscale", str(src), "-o", str(dst), "--resampler", "bicubic", "-q", "--overwrite"]) == 0
    assert imread(str(dst)).shape == (16, 16, 3)


def test_model_file_glob_and_ext(tmp_path: Path) -> None:
    model = _model(tmp_path)
    for i in range(2):
        _write(tmp_path / f"p{i}.jpg", np.full((12, 9, 3), 100 + i, np.uint8))
    out = tmp_path / "out"
    args = ["upscale", str(tmp_path / "p*.jpg"), "-o", str(out), "-m", str(model), "--ext", "png", "-q"]
    assert main([*args, "--tile", "0", "--precision", "fp32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]
    assert imread(str(out / "p0.png")).shape == (24, 18, 3)


def test_model_problems_are_one_line(tmp_path: Path, capsys) -> None:
    src = _write(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    rc = main(
        ["upscale", str(src), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "nope.safetensors"), "-q"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nope.safetensors" in err[0] and "not found" in err[0]
    model = _model(tmp_path, scale=2)
    rc = main(["upscale", str(src), "-o", str(tmp_path / "o"), "-m", str(model), "-s", "4", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "upscales x2 but --scale 4" in err and "--outscale 4" in err
    rc = main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(model), "--outscale", "3", "-q"])
    assert rc == 0 and imread(str(tmp_path / "o.png")).shape == (24, 24, 3)


def test_missing_input_reported(tmp_path: Path, capsys) -> None:
    rc = main(
        ["upscale", str(tmp_path / "ghost.png"), "-o", str(tmp_path / "o"), "--resampler", "bicubic", "-q"]
    )
    assert rc == 1 and "ghost.png: no such file or folder" in capsys.readouterr().err


def test_demo_writes_comparison(tmp_path: Path, capsys) -> None:
    model = _model(tmp_path)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--model", str(model), "--precision", "fp32"]) == 0
    printed = capsys.readouterr().out
    grid = imread(str(out / "comparison.png"))
    # 4 samples x (nearest | bicubic | MKS2021 | model) cells of 256 px + label strips and 4 px gaps
    assert grid.shape == (4 * (256 + 34) + 3 * 4, 4 * 256 + 3 * 4, 3)
    for folder in ("bicubic", "mks2021", "model_tiny_x2"):
        files = sorted((out / folder).glob("*.png"))
        assert len(files) == 4 and imread(str(files[0])).shape == (384, 384, 3)
        assert str(out / folder) in printed
    assert str(out / "comparison.png") in printed
    # The labels are drawn: the header strip holds white text pixels, the image below it does not start grey.
    assert grid[:34, :256].max() > 200 and (grid[:34, :256] == 30).mean() > 0.8


@pytest.mark.parametrize(
    ("arch", "kwargs", "label"),
    [
        ("paragonsr2_nano", {"scale": 2}, "ParagonSR2 nano"),
        ("paragonsr_tiny", {"scale": 2}, "ParagonSR tiny"),
        ("span_s", {"scale": 2}, "SPAN s"),
        ("compact", {"num_feat": 8, "num_conv": 1}, "SRVGGNetCompact"),
        ("rrdbnet", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}, "RRDBNet"),
    ],
)
def test_demo_labels_a_model_by_its_class_and_variant(arch: str, kwargs: dict, label: str) -> None:
    from paragonsr.archs import build_arch
    from paragonsr.commands.demo import model_label

    assert model_label(build_arch(arch, **kwargs)) == label
    assert model_label(object()) is None  # an ONNX session records no arch


def test_bundled_samples() -> None:
    from paragonsr.infer import sample_images

    paths = sample_images()
    assert len(paths) == 4 and sum(p.stat().st_size for p in paths) < 400_000
    credits = (paths[0].parent / "CREDITS.md").read_text()
    for p in paths:
        assert imread(str(p)).shape == (192, 192, 3)
        assert p.name in credits
    assert "CC0-1.0" in credits and "CC-BY-4.0" in credits


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the classic exporter announces its retirement
def test_onnx_backend_through_cli_matches_torch(tmp_path: Path) -> None:
    """--backend onnx goes through the same pipeline (tiling, channels, writing) as the torch backend."""
    pytest.importorskip("onnxruntime")
    import torch

    from paragonsr.checkpoint import load_model

    model_path = _model(tmp_path)
    model = load_model(model_path)
    onnx_path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        model,
        (torch.rand(1, 3, 16, 16),),
        str(onnx_path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}, "output": {0: "b", 2: "h2", 3: "w2"}},
        dynamo=False,
    )
    src = _write(tmp_path / "a.png", np.random.default_rng(5).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    common = ["upscale", str(src), "--tile", "32", "--tile-overlap", "16", "-q"]
    assert main([*common, "-o", str(tmp_path / "t.png"), "-m", str(model_path), "--precision", "fp32"]) == 0
    assert main([*common, "-o", str(tmp_path / "o.png"), "-m", str(onnx_path), "--backend", "onnx"]) == 0
    a = imread(str(tmp_path / "t.png")).astype(int)
    b = imread(str(tmp_path / "o.png")).astype(int)
    assert a.shape == (80, 60, 3) and np.abs(a - b).max() <= 1


def test_outputs_inside_input_folder_are_not_reprocessed(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", np.full((8, 8, 3), 50, np.uint8))
    args = ["upscale", str(tmp_path), "-r", "-o", str(tmp_path / "up"), "--resampler", "bicubic", "-q"]
    assert main(args) == 0 and main([*args, "--overwrite"]) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        "a.png",
        "up/a.png",
    ]


def test_recursive_glob_keeps_subfolders(tmp_path: Path) -> None:
    for sub in ("x", "y"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        _write(tmp_path / "in" / sub / "same.png", np.full((6, 6, 3), 10, np.uint8))
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert (
        main(["upscale", str(tmp_path / "in" / "**" / "*"), "-o", str(out), "--resampler", "box", "-q"]) == 0
    )
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "x",
        "x/same.png",
        "y",
        "y/same.png",
    ]


def test_v1_file_without_metadata_takes_scale_from_cli(tmp_path: Path, capsys) -> None:
    """ParagonSR v1 weights from other tools record no scale: `--scale` supplies it, its absence is one clear line."""
    import torch

    from paragonsr.archs import build_arch

    torch.save({"params_ema": build_arch("paragonsr_nano", scale=3).state_dict()}, tmp_path / "v1.pth")
    src = _write(tmp_path / "a.png", np.full((10, 7, 3), 90, np.uint8))
    rc = main(["upscale", str(src), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "v1.pth"), "-q"])
    assert rc != 0 and "scale" in capsys.readouterr().err
    rc = main(
        ["upscale", str(src), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "v1.pth"), "-s", "3", "-q"]
    )
    assert rc == 0 and imread(str(tmp_path / "o" / "a.png")).shape == (30, 21, 3)


def _tiny_image(tmp_path: Path) -> Path:
    import cv2

    path = tmp_path / "in.png"
    assert cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--outscale", "0"], "--outscale must be a positive factor"),  # used to write a 1x1 image, exit 0
        (["--tile", "16"], "--tile 16 is too small"),  # used to fail once per file
        (["--tile-blend", "2"], "--tile-blend must be in [0, 1]"),
        (["--tile-overlap", "-4"], "--tile-overlap must be >= 0"),
    ],
)
def test_upscale_rejects_bad_numbers_up_front(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    from paragonsr.cli import main

    src = _tiny_image(tmp_path)
    out = tmp_path / "out"
    rc = main(["upscale", str(src), "-o", str(out), "--resampler", "bicubic", "-q", *extra])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_inputs_with_one_output_name(tmp_path: Path, capsys, overwrite: bool) -> None:
    """a/x.png and b/x.png both map to out/x.png: the second used to be 'skipped (exists)' with exit 0, or with
    --overwrite to silently replace the first one's result."""
    import cv2

    from paragonsr.cli import main

    for name, value in (("a", 40), ("b", 200)):
        (tmp_path / name).mkdir()
        assert cv2.imwrite(str(tmp_path / name / "x.png"), np.full((6, 8), value, np.uint8))
    out = tmp_path / "out"
    args = ["upscale", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "--resampler", "nearest"]
    rc = main([*args, "-q", *(["--overwrite"] if overwrite else [])])
    err = capsys.readouterr().err
    assert rc == 1
    assert "is already the result of" in err and str(tmp_path / "b" / "x.png") in err
    result = imread(str(out / "x.png"), cv2.IMREAD_UNCHANGED)
    assert result.shape == (12, 16) and (result == 40).all()  # the first input's result survives
