"""scripts/eval_lr_kernels.py: PSNR-Y of models by the kernel that made the LR."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, load_script
from paragonsr.evaluate import bicubic_lq, evaluate, resampler_method
from paragonsr.io.image_io import write_image

mod = load_script(REPO / "scripts" / "eval_lr_kernels.py")


def _gt_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    gt = tmp_path / "gt"
    gt.mkdir()
    yy, xx = np.mgrid[0:40, 0:52] / 40.0
    for i in range(2):  # smooth content plus a little texture, so bicubic scores a finite PSNR
        img = np.stack([np.sin(3 * xx + i), np.cos(2 * yy), xx * yy], axis=-1) * 0.4 + 0.5
        img += rng.normal(0, 0.03, img.shape)
        write_image(gt / f"img{i}.png", np.clip(img, 0, 1).astype(np.float32))
    return gt


def test_condition_options_and_bad_names() -> None:
    assert mod.condition_options("lanczos3")["kernels"] == ["lanczos3"]
    blur = mod.condition_options("blur0.6_bicubic")
    assert blur["blur_sigma"] == [0.6, 0.6] and blur["blur_prob"] == 1.0 and blur["kernels"] == ["bicubic"]
    assert mod.condition_options("chain")["chain_prob"] == 1.0
    with pytest.raises(ValueError, match="blur<sigma>_bicubic"):
        mod.condition_options("blurry")
    for bad in ("blur_bicubic", "blur-1_bicubic", "blur0_bicubic", "blurnan_bicubic"):
        with pytest.raises(ValueError, match="blur sigma must be a finite number > 0"):
            mod.condition_options(bad)


def test_bicubic_condition_is_the_eval_commands_bicubic_lr(tmp_path: Path) -> None:
    """The 'bicubic' LR is the LR `paragonsr eval` and the trainer's validation make (within one 8-bit step)."""
    gt = np.random.default_rng(0).random((30, 42, 3)).astype(np.float32)
    lq = mod.lq_maker("bicubic", 2, 0)(tmp_path / "a.png", gt)
    assert lq.shape == (15, 21, 3)
    assert np.abs(lq - bicubic_lq(gt, 2)).max() <= 1 / 255 + 1e-6
    nearest = mod.lq_maker("nearest", 2, 0)(tmp_path / "a.png", gt)
    assert np.abs(nearest - lq).mean() > 0.02  # a different kernel makes a different LR


def test_end_to_end_csv_matches_the_eval_path(tmp_path: Path) -> None:
    gt = _gt_folder(tmp_path)
    out = tmp_path / "out"
    rc = mod.main(["--gt", str(gt), "--kernel", "bicubic", "--kernel", "nearest", "--blur", "0.8", "--no-chain",
                   "-o", str(out)])  # fmt: skip
    assert rc == 0
    rows = list(csv.DictReader((out / "lr_kernels.csv").open()))
    assert [r["condition"] for r in rows] == ["bicubic", "nearest", "blur0.8_bicubic"]
    assert all(r["method"] == "bicubic" and r["n"] == "2" for r in rows)
    # the bicubic condition scores what evaluate() scores on its own bicubic LR path
    paths = sorted(gt.iterdir())
    ref = evaluate(paths, [resampler_method("bicubic", 2)], 2, lambda p, g: bicubic_lq(g, 2), progress=False)
    assert float(rows[0]["psnr_y"]) == pytest.approx(ref.mean("bicubic", "psnr_y"), abs=1e-3)
    assert float(rows[1]["psnr_y"]) < float(rows[0]["psnr_y"])  # aliased nearest LR upscales worse
    assert (out / "lr_kernels.png").stat().st_size > 0
    assert "| blur0.8_bicubic |" in (out / "lr_kernels.md").read_text()
    mod.write_outputs(mod.run(paths, [resampler_method("bicubic", 2), resampler_method("lanczos3", 2)],
                              ["bicubic"], 2, 0), ["bicubic", "lanczos3"], out, [("lanczos3", "bicubic")])  # fmt: skip
    row = next(r for r in (out / "lr_kernels.md").read_text().splitlines() if r.startswith("| bicubic |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[3]) == pytest.approx(float(cells[2]) - float(cells[1]), abs=2e-3)  # lanczos3 − bicubic
    # without --diff: every model against the first model (here two resamplers standing in for models)
    mod.write_outputs(mod.run(paths, [resampler_method("bicubic", 2), resampler_method("lanczos3", 2),
                                      resampler_method("bilinear", 2)], ["bicubic"], 2, 0),
                      ["bicubic", "lanczos3", "bilinear"], out)  # fmt: skip
    head = next(r for r in (out / "lr_kernels.md").read_text().splitlines() if r.startswith("| LR made by"))
    assert head.endswith("| bilinear − lanczos3 |")


def test_bad_kernel_is_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = mod.main(["--gt", str(_gt_folder(tmp_path)), "--kernel", "bicubik", "-o", str(out)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "bicubik" in err and "\n" not in err
    assert not out.exists()
    assert mod.main(["--gt", str(tmp_path / "gt"), "--seed", "-1", "-o", str(out)]) == 2
    assert "--seed -1: expected an integer >= 0" in capsys.readouterr().err
    rc = mod.main(["--gt", str(tmp_path / "gt"), "--diff", "bicubic,nope", "-o", str(out)])
    assert (
        rc == 2
        and "--diff bicubic,nope: expected A,B of the method labels bicubic" in capsys.readouterr().err
    )
    assert not out.exists()
