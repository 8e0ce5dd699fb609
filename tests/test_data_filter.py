"""Quality filter: heuristics on synthetic cases with known answers, gates, NIQE fallback, pipeline + resume."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import imdecode
from paragonsr.data.filter import load_config, run_filter, score_tile
from paragonsr.data.filter.gates import (
    DEFAULT_GATES,
    FAIL,
    PASS,
    PYIQA_GATES,
    SKIPPED,
    Gate,
    evaluate,
    parse_gate,
    verdict,
)
from paragonsr.data.filter.heuristics import aliasing, blockiness, entropy, laplacian_variance, rms_contrast
from paragonsr.data.filter.iqa import ScorerSet
from paragonsr.io.files import read_image_native
from paragonsr.metrics.niqe_fit import NIQEModel


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clean_tile(photo_paths: list[Path]) -> np.ndarray:
    """A textured 128-px crop of a clean photo as uint8 RGB."""
    img = read_image_native(photo_paths[0])
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[h // 2 - 64 : h // 2 + 64, w // 2 - 64 : w // 2 + 64])


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def test_known_values() -> None:
    assert entropy(np.full((64, 64, 3), 77, np.uint8)) == 0.0
    two = np.zeros((64, 64), np.uint8)
    two[:, 32:] = 255
    assert entropy(two) == pytest.approx(1.0)  # two equally likely levels = 1 bit
    assert rms_contrast(two) == pytest.approx(0.5)  # std of a 50/50 {0, 1} image
    assert laplacian_variance(np.full((32, 32), 0.3)) == 0.0
    # a checkerboard has Laplacian ±4·255 everywhere: variance (4·255)²
    cb = (np.indices((32, 32)).sum(0) % 2).astype(np.float64)
    assert laplacian_variance(cb) == pytest.approx((4 * 255.0) ** 2)
    # clean steps every 8 px with nothing in between: all energy at one grid phase
    blocks = np.kron(np.random.default_rng(0).random((8, 8)), np.ones((8, 8)))
    assert blockiness(blocks) > 10
    assert blockiness(np.random.default_rng(1).random((64, 64))) == pytest.approx(1.0, abs=0.1)


def test_flat_tile_fails_entropy_and_contrast() -> None:
    flat = np.full((128, 128, 3), 128, np.uint8)
    row = score_tile(flat, load_config(), ScorerSet(load_config()))
    assert row["gate_entropy"] == FAIL and row["gate_contrast"] == FAIL
    assert row["verdict"] == FAIL and "entropy" in row["reason"]


def test_blurred_tile_fails_sharpness_band(clean_tile: np.ndarray) -> None:
    cfg = load_config()
    sc = ScorerSet(cfg)
    blurred = cv2.GaussianBlur(clean_tile, (0, 0), 3.0)
    assert score_tile(clean_tile, cfg, sc)["gate_sharpness"] == PASS
    row = score_tile(blurred, cfg, sc)
    assert row["gate_sharpness"] == FAIL and "sharpness" in row["reason"]
    assert laplacian_variance(blurred) < 0.2 * laplacian_variance(clean_tile)


def test_jpeg_scores_worse_blockiness(clean_tile: np.ndarray) -> None:
    b0, b30, b10 = (blockiness(t) for t in (clean_tile, _jpeg(clean_tile, 30), _jpeg(clean_tile, 10)))
    assert b10 > b30 > b0
    assert b10 > 1.45 >= b0  # the default gate separates them


def test_nearest_downscale_scores_worse_aliasing(photo_paths: list[Path]) -> None:
    big = read_image_native(photo_paths[0])  # 384x384
    near = cv2.resize(big, (96, 96), interpolation=cv2.INTER_NEAREST)  # x1/4, as every 4th pixel
    area = cv2.resize(big, (96, 96), interpolation=cv2.INTER_AREA)
    assert aliasing(near) > 1.5 * aliasing(area)

    # jaggies: a slanted edge + disc point-sampled at pixel centres vs 8x8 supersampled (antialiased)
    def shapes(ss: int) -> np.ndarray:
        yy, xx = (np.mgrid[0 : 128 * ss, 0 : 128 * ss] + 0.5) / ss
        img = np.maximum(
            (yy - 64) < np.tan(np.radians(10)) * (xx - 64), (yy - 40) ** 2 + (xx - 90) ** 2 < 400
        )
        return img.astype(np.float64).reshape(128, ss, 128, ss).mean((1, 3))

    assert aliasing(shapes(1)) > 2 * aliasing(shapes(8))


def _gates_yaml(tmp_path: Path, gates: list[dict]) -> Path:
    import yaml

    path = tmp_path / "gates.yml"
    path.write_text(yaml.safe_dump({"gates": gates}))
    return path


def test_clean_photo_passes_stage1_and_optional_gates_are_skipped(clean_tile: np.ndarray, tmp_path) -> None:
    stage1 = [g for g in DEFAULT_GATES if g["stage"] == 1]
    cfg = load_config(_gates_yaml(tmp_path, stage1 + PYIQA_GATES), tile={"size": 128})
    sc = ScorerSet(cfg)
    row = score_tile(clean_tile, cfg, sc)
    for m in ("entropy", "contrast", "sharpness", "blockiness", "aliasing"):
        assert row[f"gate_{m}"] == PASS, row
    # no pyiqa weights and no NIQE model here: skipped, never passed
    assert row["gate_arniqa"] == SKIPPED and row["gate_nima"] == SKIPPED
    assert row["verdict"] == "unverified"
    assert "nima" in sc.unavailable and "no local weight file" in sc.unavailable["nima"]


def test_gate_parsing_and_evaluation(tmp_path: Path) -> None:
    g = parse_gate({"metric": "blockiness", "threshold": 1.5, "direction": "lower", "stage": 2}, "t")
    assert (g.min, g.max, g.stage) == (None, 1.5, 2)
    assert evaluate(g, {"blockiness": 1.2}) == (PASS, "")
    assert evaluate(g, {"blockiness": 1.7})[0] == FAIL
    assert evaluate(g, {"blockiness": None}) == (SKIPPED, "blockiness unavailable")
    fb = Gate("arniqa", 2, 0.6, None, Gate("niqe", 2, None, 8.0))
    assert evaluate(fb, {"arniqa": None, "niqe": 5.0})[0] == PASS
    assert evaluate(fb, {"arniqa": None, "niqe": 9.0})[0] == FAIL
    assert verdict([PASS, SKIPPED]) == "unverified" and verdict([PASS, SKIPPED, FAIL]) == FAIL
    with pytest.raises(ValueError, match="unknown metric 'sharpnes'"):
        parse_gate({"metric": "sharpnes", "min": 1}, "gates[0]")
    with pytest.raises(ValueError, match="needs min, max or threshold"):
        parse_gate({"metric": "entropy"}, "gates[0]")
    bad = tmp_path / "g.yml"
    bad.write_text("tile: {size: 64}\ngates:\n  - {metric: entropy, min: 5, max: 1}\n")
    with pytest.raises(ValueError, match=r"g.yml: gates\[0\]: min 5.0 is above max 1.0"):
        load_config(bad)


def test_niqe_fallback_separates_clean_from_degraded(
    photo_paths: list[Path], clean_tile: np.ndarray, tmp_path
):
    pristine = []
    for p in photo_paths[1:]:  # the other crops (of photos already area-downscaled), nine 128-px tiles each
        pristine.append(read_image_native(p))
    model = NIQEModel.fit(pristine, patch=32, tile=128, max_tiles=12)
    model.save(tmp_path / "niqe.npz")
    model = NIQEModel.load(tmp_path / "niqe.npz")
    assert model.tile_p95 is not None and model.tile_p95 > 0
    # an arniqa gate falls back to niqe with max = the pristine tiles' p95; the tile is not skipped
    gates = [{"metric": "arniqa", "min": 0.6, "fallback": {"metric": "niqe", "max": "auto"}}]
    cfg = load_config(_gates_yaml(tmp_path, gates), niqe_model=str(tmp_path / "niqe.npz"), tile={"size": 128})
    fallback = cfg.gates[0].fallback
    assert fallback is not None and fallback.max == pytest.approx(model.tile_p95)
    row = score_tile(clean_tile, cfg, ScorerSet(cfg))
    assert row["gate_arniqa"] in (PASS, FAIL) and "via fallback" in row["reason"]
    assert float(row["niqe"]) == pytest.approx(model.score(clean_tile), rel=1e-5)
    clean = model.score(clean_tile)
    noisy = np.clip(clean_tile + np.random.default_rng(0).normal(0, 25, clean_tile.shape), 0, 255).astype(
        np.uint8
    )
    assert model.score(cv2.GaussianBlur(clean_tile, (0, 0), 2.0)) > clean + 2
    assert model.score(noisy) > clean + 2
    with pytest.raises(FileNotFoundError, match="niqe-fit"):
        NIQEModel.load(tmp_path / "missing.npz")


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[..., ::-1])


def test_pipeline_report_keep_and_resume(clean_tile: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "in"
    # 256x128 image: left tile clean photo, right tile flat -> one pass, one fail (stage-1-only config)
    _write(src / "a.png", np.concatenate([clean_tile, np.full_like(clean_tile, 90)], axis=1))
    _write(src / "sub" / "b.png", cv2.GaussianBlur(clean_tile, (0, 0), 3.0))
    (src / "broken.png").write_bytes(b"not an image")
    _write(src / "tiny.png", clean_tile[:32, :32])  # smaller than a tile: noted, not an error
    cfg_path = tmp_path / "gates.yml"
    cfg_path.write_text(
        "tile: {size: 128}\ngates:\n"
        "  - {metric: entropy, min: 4.0}\n  - {metric: sharpness, min: 5.0, max: 2000}\n"
        "  - {metric: blockiness, max: 1.45, stage: 2}\n"
    )
    cfg = load_config(cfg_path)
    out = tmp_path / "rep" / "report.csv"
    res = run_filter(src, out, cfg, keep_dir=tmp_path / "keep", workers=1, progress=False)
    by = {(r["image"], r["x"]): r for r in res.rows}
    assert by[("a.png", "0")]["verdict"] == PASS
    assert by[("a.png", "128")]["verdict"] == FAIL
    assert by[("a.png", "128")]["gate_blockiness"] == "not_run"  # stage 2 never sees stage-1 failures
    assert by[("sub/b.png", "0")]["gate_sharpness"] == FAIL
    assert len(res.errors) == 1 and "broken.png" in res.errors[0]
    assert "1 image(s) smaller than one tile" in res.summary and "tiny.png" in res.summary
    assert [p.name for p in (tmp_path / "keep").iterdir()] == ["a_y0_x0.png"]
    assert (out.parent / "report_plots" / "entropy.png").is_file()
    assert "| 1 | 4 <= entropy | 3 | 2 | 1 | 0 |" in (out.parent / "report.summary.md").read_text()
    # resume: drop one row, re-run, only that tile is scored again and the report is whole and sorted
    with out.open() as f:
        rows = list(csv.reader(f))
    with out.open("w", newline="") as f:
        csv.writer(f).writerows(rows[:-1])
        f.write("sub/b.png,0,0,12")  # a killed run's partial last line, no newline
    res2 = run_filter(src, out, cfg, workers=1, progress=False, plots=False)
    assert [(r["image"], r["x"]) for r in res2.rows] == sorted(by)
    with pytest.raises(ValueError, match="other metrics/gates"):
        run_filter(src, out, load_config(), workers=1, progress=False)


def test_pipeline_with_workers_matches_serial(clean_tile: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "in"
    for i in range(2):
        _write(src / f"{i}.png", np.rot90(clean_tile, i).copy())
    cfg = load_config(None, tile={"size": 64})
    a = run_filter(src, tmp_path / "a.csv", cfg, workers=1, progress=False, plots=False).rows
    b = run_filter(src, tmp_path / "b.csv", cfg, workers=2, progress=False, plots=False).rows
    assert a == b and len(a) == 8


def test_pyiqa_gate_without_pyiqa_is_skipped_with_reason(tmp_path: Path) -> None:
    weights = tmp_path / "arniqa.pth"
    weights.write_bytes(b"\0")
    iqa = {"arniqa": str(weights), "nima": str(tmp_path / "missing.pth")}
    cfg = load_config(_gates_yaml(tmp_path, PYIQA_GATES), iqa_weights=iqa)
    sc = ScorerSet(cfg)
    assert "pyiqa" in sc.unavailable["arniqa"]  # not installable next to CPU torch: never silently passed
    assert "weight file not found" in sc.unavailable["nima"]
    assert sc.score("arniqa", np.zeros((8, 8, 3), np.uint8)) is None


def test_cli_filter_exit_codes(clean_tile: np.ndarray, tmp_path: Path) -> None:
    from paragonsr.cli import main

    _write(tmp_path / "in" / "a.png", clean_tile[:64, :64])
    args = ["data", "filter", "--input", str(tmp_path / "in"), "--tile", "64", "--workers", "1", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "r.csv")]) == 0
    assert (tmp_path / "r.summary.md").is_file()
    (tmp_path / "in" / "b.png").write_bytes(b"junk")
    assert main([*args, "--out", str(tmp_path / "r.csv")]) == 1  # resumed; the bad file makes it non-zero
    bad_cfg = tmp_path / "g.yml"
    bad_cfg.write_text("gates: [{metric: nope, min: 1}]\n")
    assert main([*args, "--out", str(tmp_path / "s.csv"), "--config", str(bad_cfg)]) == 2
