"""Filter reruns: resuming with another tile size, stride or thresholds; kept tiles of same-stem files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import imread
from paragonsr.data.filter import load_config, run_filter


def _write(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), a)
    return a


def test_resume_with_other_tile_size_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.png", 128, 128, 0)
    out = tmp_path / "r.csv"
    run_filter(tmp_path / "in", out, load_config(None, tile={"size": 64}), progress=False, plots=False)
    # before: the (0, 0) tile counted as done, so the 128-px run scored nothing and mixed two sizes in one report
    with pytest.raises(ValueError, match=r"tile size 128.*--restart"):
        run_filter(tmp_path / "in", out, load_config(None, tile={"size": 128}), progress=False, plots=False)
    res = run_filter(
        tmp_path / "in", out, load_config(None, tile={"size": 128}), restart=True, progress=False, plots=False
    )
    assert [(r["h"], r["w"]) for r in res.rows] == [("128", "128")]


def test_resume_with_other_stride_drops_off_grid_rows(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.png", 128, 128, 0)
    out = tmp_path / "r.csv"
    fine = load_config(None, tile={"size": 64, "stride": 32})
    assert len(run_filter(tmp_path / "in", out, fine, progress=False, plots=False).rows) == 9
    coarse = load_config(None, tile={"size": 64, "stride": 64})
    res = run_filter(tmp_path / "in", out, coarse, progress=False, plots=False)
    # the 5 rows at offset 32 are not on the stride-64 grid: they used to stay in the report and the summary
    assert sorted((int(r["y"]), int(r["x"])) for r in res.rows) == [(0, 0), (0, 64), (64, 0), (64, 64)]
    assert "5 tile row(s) from an earlier run with another stride dropped" in res.summary


def test_resume_with_changed_threshold_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.png", 64, 64, 0)
    out = tmp_path / "r.csv"

    def cfg(lo: float):
        return load_config(None, tile={"size": 64}, gates=[{"metric": "entropy", "min": lo}])

    assert (
        run_filter(tmp_path / "in", out, cfg(4.0), progress=False, plots=False).rows[0]["verdict"] == "pass"
    )
    assert (
        run_filter(tmp_path / "in", out, cfg(4.0), progress=False, plots=False).rows[0]["verdict"] == "pass"
    )
    # same columns, other threshold: every tile counted as done and kept its old verdict
    with pytest.raises(ValueError, match=r"other gates, thresholds.*--restart"):
        run_filter(tmp_path / "in", out, cfg(7.99), progress=False, plots=False)
    res = run_filter(tmp_path / "in", out, cfg(7.99), restart=True, progress=False, plots=False)
    assert res.rows[0]["verdict"] == "fail"  # random noise: entropy just under 8 bits


def test_filter_keep_dir_same_stem_tiles_do_not_overwrite(tmp_path: Path) -> None:
    a = _write(tmp_path / "in" / "x.png", 64, 64, 0)
    b = _write(tmp_path / "in" / "x.bmp", 64, 64, 1)
    cfg = load_config(None, tile={"size": 64}, gates=[{"metric": "contrast", "min": 0.01}])
    run_filter(tmp_path / "in", tmp_path / "r.csv", cfg, keep_dir=tmp_path / "k", progress=False, plots=False)
    # both used to be saved as k/x_y0_x0.png, the second overwriting the first
    kept = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert kept == ["x_bmp_y0_x0.png", "x_png_y0_x0.png"]
    assert np.array_equal(imread(str(tmp_path / "k" / "x_png_y0_x0.png")), a)
    assert np.array_equal(imread(str(tmp_path / "k" / "x_bmp_y0_x0.png")), b)
