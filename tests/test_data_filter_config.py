"""Filter configuration is checked before a run: one gate per metric, direction only with threshold, the tile
size (also the CLI's --tile override), a NIQE model's own tile size; niqe-fit exits non-zero on a bad file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from paragonsr.cli import main
from paragonsr.data.filter import load_config


def _write(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), a)
    return a


def test_duplicate_gate_metric_is_rejected(tmp_path: Path) -> None:
    # two gates on one metric shared one status column: a tile failing the first gate came out as "pass"
    cfg = tmp_path / "g.yml"
    cfg.write_text("gates:\n  - {metric: entropy, min: 4.0}\n  - {metric: entropy, max: 7.99}\n")
    with pytest.raises(ValueError, match=r"gates\[1\] repeats metric 'entropy'.*gates\[0\]"):
        load_config(cfg)


def test_cli_filter_tile_override_is_validated(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "in" / "a.png", 64, 64, 0)
    out = tmp_path / "r.csv"
    args = ["data", "filter", "--input", str(tmp_path / "in"), "--out", str(out), "--workers", "1"]
    # a config file with tile.size 16 is refused; the --tile override used to get through and crash mid-run
    assert main([*args, "--tile", "16"]) == 2
    assert "--tile must be >= 32" in capsys.readouterr().err
    assert not out.exists()


def test_niqe_auto_threshold_needs_the_tile_size_it_was_measured_at(
    photo_crop: np.ndarray, tmp_path: Path
) -> None:
    from paragonsr.metrics.niqe_fit import NIQEModel

    img = (photo_crop * 255).round().astype(np.uint8)  # 128x128 RGB
    model = NIQEModel.fit([img, img[::-1].copy()], patch=32, tile=64, max_tiles=4)
    model.save(tmp_path / "n.npz")
    assert NIQEModel.load(tmp_path / "n.npz").tile == 64
    # scores grow as tiles shrink, so a p95 measured on 64-px tiles is no threshold for 128-px tiles
    with pytest.raises(ValueError, match=r"64-px tiles.*128 px.*niqe-fit --tile 128"):
        load_config(None, niqe_model=str(tmp_path / "n.npz"), tile={"size": 128})
    cfg = load_config(None, niqe_model=str(tmp_path / "n.npz"), tile={"size": 64})
    assert cfg.gates[5].max == pytest.approx(model.tile_p95)
    # the CLI's --tile override is checked too (it used to be applied after 'auto' was resolved)
    _write(tmp_path / "in" / "a.png", 64, 64, 0)
    args = ["data", "filter", "--input", str(tmp_path / "in"), "--workers", "1", "--no-plots"]
    args += ["--niqe-model", str(tmp_path / "n.npz")]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 2  # default 256-px tiles
    assert main([*args, "--out", str(tmp_path / "b.csv"), "--tile", "64"]) == 0


def test_gate_direction_without_threshold_is_not_ignored() -> None:
    from paragonsr.data.filter.gates import parse_gate

    # 'direction' was accepted and silently ignored next to min/max; threshold overwrote min without a word
    with pytest.raises(ValueError, match=r"gates\[2\]: 'direction' only applies to 'threshold'"):
        parse_gate({"metric": "entropy", "min": 4.0, "direction": "lower"}, "gates[2]")
    with pytest.raises(ValueError, match="either threshold"):
        parse_gate({"metric": "entropy", "min": 4.0, "threshold": 5.0}, "gates[0]")
    assert parse_gate({"metric": "entropy", "threshold": 5.0}, "g").min == 5.0


def test_niqe_fit_bad_file_makes_exit_non_zero(photo_crop: np.ndarray, tmp_path: Path) -> None:
    img = (photo_crop * 255).round().astype(np.uint8)
    (tmp_path / "in").mkdir()
    assert cv2.imwrite(str(tmp_path / "in" / "a.png"), img[..., ::-1])
    (tmp_path / "in" / "b.png").write_bytes(b"junk")
    args = ["data", "niqe-fit", "--input", str(tmp_path / "in"), "--patch", "32", "--tile", "64"]
    # docs: every data tool reports a bad file and exits non-zero; niqe-fit used to exit 0
    assert main([*args, "--out", str(tmp_path / "n.npz")]) == 1
    assert (tmp_path / "n.npz").is_file()  # the model from the good images is still written
