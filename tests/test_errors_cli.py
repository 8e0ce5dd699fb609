"""Expected failures end in one ``error:`` line naming the file/key (no traceback), batches go on past bad
inputs and exit non-zero; all inputs are generated here."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from paragonsr.cli import main
from paragonsr.errors import ParagonSRError


def _png(path: Path, seed: int = 0, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    small = (rng.random((size // 4, size // 4, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(path), cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC))
    return path


def _huge_png(path: Path, w: int = 100_000, h: int = 100_000) -> Path:
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert lines, err
    return lines[0]


def test_project_errors_share_one_base() -> None:
    from paragonsr.checkpoint.meta import CheckpointError
    from paragonsr.deploy.release import ExportError
    from paragonsr.io.image_io import ImageReadError
    from paragonsr.train.option_io import OptionError
    from paragonsr.train.sr_model import NonFiniteError
    from paragonsr.weights import WeightsError

    for cls in (CheckpointError, ExportError, ImageReadError, OptionError, NonFiniteError, WeightsError):
        assert issubclass(cls, ParagonSRError), cls
    assert issubclass(ImageReadError, ValueError) and issubclass(WeightsError, FileNotFoundError)  # kept


def test_header_declaring_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    from paragonsr.io.image_io import ImageReadError, read_image

    with pytest.raises(ImageReadError, match=r"huge.png: image is too large to decode \(100000x100000"):
        read_image(_huge_png(tmp_path / "huge.png"))


def test_eval_scores_good_images_and_reports_bad_ones(tmp_path: Path, capsys) -> None:
    gt = tmp_path / "gt"
    gt.mkdir()
    _png(gt / "a.png", 1)
    _png(gt / "b.png", 2)
    (gt / "empty.png").write_bytes(b"")
    (gt / "half.png").write_bytes(_png(tmp_path / "x.png").read_bytes()[:200])
    (gt / "text.png").write_text("not an image")
    _huge_png(gt / "huge.png")
    out = tmp_path / "rep"
    rc = main(["eval", "--gt", str(gt), "-o", str(out), "--no-crops", "--resampler", "bicubic"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for name, why in (("empty", "empty file"), ("half", "truncated PNG"), ("text", "not a recognised"),
                      ("huge", "image is too large")):  # fmt: skip
        assert f"{name}.png: {why}" in err
    rows = (out / "per_image.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == ["a.png", "b.png"]  # bicubic once, not twice
    report = (out / "report.md").read_text()
    assert "Not scored (4 image(s)" in report and report.count("| bicubic |") == 1


@pytest.mark.parametrize("content", [b"", b"garbage" * 8])
def test_bad_onnx_file_is_one_line(tmp_path: Path, capsys, content: bytes) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(content)
    _png(tmp_path / "a.png")
    rc = main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "-m", str(model), "-q"])
    assert rc == 2
    line = _one_line(capsys.readouterr().err)
    assert str(model) in line and ("empty file" in line or "cannot load as an ONNX model" in line)


def test_eval_resampler_typo_and_lq_names(tmp_path: Path, capsys) -> None:
    gt, lq = tmp_path / "gt", tmp_path / "lq"
    gt.mkdir()
    lq.mkdir()
    _png(gt / "a.png")
    _png(lq / "other.png", size=16)
    assert main(["eval", "--gt", str(gt), "-o", str(tmp_path / "r"), "--resampler", "lanczoss"]) == 2
    assert "error: unknown resampling kernel 'lanczoss'; did you mean 'lanczos' or 'lanczos3'?" in _one_line(
        capsys.readouterr().err
    )
    assert main(["eval", "--gt", str(gt), "-o", str(tmp_path / "r"), "--lq", str(lq)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--lq {lq}: no LQ image has the name of a GT image" in line


def test_transfer_of_a_non_compact_file_names_it(tmp_path: Path, capsys) -> None:
    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    src = tmp_path / "rrdb.safetensors"
    save_model(src, build_arch("rrdbnet", scale=2, num_feat=8, num_block=1, num_grow_ch=4))
    rc = main(["transfer", "-i", str(src), "-o", str(tmp_path / "t.safetensors"), "--samples"])
    assert rc == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {src}: not an SRVGGNetCompact") and "body.0.rdb1" in line


def test_degrade_into_unwritable_folder_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    import paragonsr.commands.degrade as degrade_cmd

    src = tmp_path / "hr"
    src.mkdir()
    _png(src / "a.png")
    out = tmp_path / "ro"
    out.mkdir()

    def denied(path, *a, **k):  # what a read-only folder does to a non-root user
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(degrade_cmd, "open", denied, raising=False)
    assert main(["degrade", "--pipeline", "bicubic", "-i", str(src), "-o", str(out)]) == 2
    assert _one_line(capsys.readouterr().err) == f"error: {out / 'manifest.jsonl'}: Permission denied"
    # a file where a folder is expected: same one-line form, from the OSError's own path
    assert main(["degrade", "--pipeline", "bicubic", "-i", str(src), "-o", str(src / "a.png" / "x")]) == 2
    assert _one_line(capsys.readouterr().err) == f"error: {src / 'a.png' / 'x'}: Not a directory"


def test_upscale_quality_out_of_range(tmp_path: Path, capsys) -> None:
    a = _png(tmp_path / "a.png")
    rc = main(
        ["upscale", str(a), "-o", str(tmp_path / "o.jpg"), "--resampler", "bicubic", "--quality", "150"]
    )
    assert rc == 2
    assert (
        _one_line(capsys.readouterr().err)
        == "error: --quality must be a JPEG/WebP quality in [0, 100], got 150"
    )
    assert not (tmp_path / "o.jpg").exists()
