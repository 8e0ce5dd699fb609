"""``paragonsr degrade``: offline paired dataset (manifest, resume, bad files, workers) and the preview grid."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import imread
from paragonsr.cli import main


@pytest.fixture()
def hr_dir(tmp_path: Path, photo_paths: list[Path]) -> Path:
    d = tmp_path / "hr"
    (d / "sub").mkdir(parents=True)
    for i, p in enumerate(photo_paths[4:6]):
        img = imread(str(p))[150:217, 150:200]  # odd sizes
        cv2.imwrite(str(d / f"img{i}.png"), img)
    img16 = (imread(str(photo_paths[7]))[200:264, 200:264].astype(np.uint16) * 257)[:, :, 0]  # 16-bit gray
    cv2.imwrite(str(d / "sub" / "gray16.png"), img16)
    (d / "broken.jpg").write_bytes(b"not an image")
    return d


def _read(p: Path) -> np.ndarray:
    return imread(str(p), cv2.IMREAD_UNCHANGED)


def test_offline_builder_manifest_resume_and_workers(
    hr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = [
        "degrade",
        "--pipeline",
        "workflows",
        "-i",
        str(hr_dir),
        "-o",
        str(out),
        "--scale",
        "2",
        "--seed",
        "3",
    ]
    assert main(args) == 1  # one bad file -> non-zero, the others are done
    assert "broken.jpg" in capsys.readouterr().err
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    good = {e["file"]: e for e in lines if "error" not in e}
    assert set(good) == {"img0.png", "img1.png", "sub/gray16.png"}
    assert any("error" in e and e["file"] == "broken.jpg" for e in lines)
    for rel, e in good.items():
        lq, gt = _read(out / "lq" / rel), _read(out / "gt" / rel)
        assert (
            lq.shape[:2] == tuple(e["lq_size"])
            and gt.shape[0] == 2 * lq.shape[0]
            and gt.shape[1] == 2 * lq.shape[1]
        )
        assert e["ops"] and e["pipeline"] == "workflows" and e["scale"] == 2
    assert _read(out / "lq" / "img0.png").shape == (33, 25, 3)
    assert _read(out / "gt" / "sub" / "gray16.png").dtype == np.uint16  # GT keeps 16 bits, LQ is 8-bit
    assert _read(out / "lq" / "sub" / "gray16.png").ndim == 2
    before = (out / "lq" / "img1.png").read_bytes()
    # resume: finished files are skipped; a deleted one is redone with identical bytes
    (out / "lq" / "img1.png").unlink()
    capsys.readouterr()
    assert main(args) == 1
    assert "3 already done" not in capsys.readouterr().out  # img1 was missing, so only 2 were done
    assert (out / "lq" / "img1.png").read_bytes() == before
    # two workers give the same bytes (per-image streams do not depend on scheduling)
    out2 = tmp_path / "out2"
    assert main([*args[:6], str(out2), *args[7:], "--workers", "2"]) == 1
    for rel in good:
        assert (out2 / "lq" / rel).read_bytes() == (out / "lq" / rel).read_bytes()
    # optional GT crops
    out3 = tmp_path / "out3"
    assert (
        main(["degrade", "--pipeline", "lrgen", "-i", str(hr_dir), "-o", str(out3), "--gt-crop", "40"]) == 1
    )
    entry = json.loads((out3 / "manifest.jsonl").read_text().splitlines()[1])
    assert entry["gt_crop"][2] == 40 and entry["seed"][0] == 0
    assert _read(out3 / "lq" / entry["file"]).shape[:2] == (20, 20) and _read(
        out3 / "gt" / entry["file"]
    ).shape[:2] == (40, 40)


def test_config_errors_and_preview(
    tmp_path: Path, photo_paths: list[Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("type: realesrgan\nnoise_rang: [1, 30]\n")
    assert main(["degrade", "--config", str(cfg), "-i", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "unknown option 'noise_rang'" in capsys.readouterr().err
    cfg.write_text("type: lrgen\nscale: 4\n")
    assert (
        main(
            ["degrade", "--config", str(cfg), "--scale", "2", "-i", str(tmp_path), "-o", str(tmp_path / "o")]
        )
        == 2
    )
    assert "--scale 2 contradicts 'scale: 4'" in capsys.readouterr().err
    grid = tmp_path / "grid.png"
    assert main(["degrade", "--preview", str(photo_paths[4]), "-o", str(grid), "--scale", "4"]) == 0
    img = _read(grid)
    assert img.shape == (3 * (256 + 22), 4 * 256, 3)  # 11 panels, 4 columns, caption bars
    assert img[22:278, :256].std() > 10  # the clean panel holds the photo, not a blank


def test_degrade_refuses_outputs_that_would_collide(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(hr / "a.png"), (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(hr / "a.jpg"), (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    rc = main(["degrade", "--pipeline", "lrgen", "-i", str(hr), "-o", str(out), "--scale", "2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "a.jpg" in err and "a.png" in err and "both be written" in err
    assert not (out / "lq").exists()


def test_degrade_output_inside_input_is_not_read_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    cv2.imwrite(str(hr / "a.png"), (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    args = ["degrade", "--pipeline", "lrgen", "-i", str(hr), "-o", str(hr / "lr"), "--scale", "2"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0  # the resumed run sees only a.png, already done
    assert "1 images, 1 already done, 0 to degrade" in capsys.readouterr().out
    assert not (hr / "lr" / "lq" / "lr").exists()


def test_degrade_no_gt_refuses_pipelines_that_change_the_gt(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    cv2.imwrite(str(hr / "a.png"), (np.random.default_rng(0).random((33, 35, 3)) * 255).astype(np.uint8))
    cfg = tmp_path / "crop.yml"
    cfg.write_text("type: realesrgan\ngt_size: 16\n", encoding="utf-8")  # the pipeline crops the GT
    out = tmp_path / "out"
    rc = main(["degrade", "--config", str(cfg), "-i", str(hr), "-o", str(out), "--scale", "2", "--no-gt"])
    assert rc == 1
    assert "--no-gt: the pipeline changed the GT" in capsys.readouterr().err
    assert not (out / "lq" / "a.png").exists()
    # a pipeline that keeps the GT (odd sizes only lose the < scale remainder) is fine with --no-gt
    out2 = tmp_path / "out2"
    assert (
        main(["degrade", "--pipeline", "lrgen", "-i", str(hr), "-o", str(out2), "--scale", "2", "--no-gt"])
        == 0
    )
    assert imread(str(out2 / "lq" / "a.png")).shape == (16, 17, 3)
