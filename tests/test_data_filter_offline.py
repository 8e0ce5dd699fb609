"""The filter's default configuration keeps data offline: packaged NIQE gate, resume + keep, outputs outside input.

Clean crops are the packaged sample images (always there); degraded ones are made here (heavy blur, JPEG q10,
strong noise). One test repeats the check on crops of the project photos and skips when they are absent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import imdecode
from paragonsr.cli import main
from paragonsr.data.filter import load_config, run_filter, score_tile
from paragonsr.data.filter.gates import DEFAULT_GATES, PACKAGED_NIQE
from paragonsr.data.filter.iqa import ScorerSet
from paragonsr.io.files import read_image_native, write_image_native
from paragonsr.metrics.niqe_fit import NIQEModel

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "src/paragonsr/assets/samples").glob("*.png"))
TILE = 96  # the samples are 192 px: four tiles each


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return np.ascontiguousarray(imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def degrade(img: np.ndarray, kind: str) -> np.ndarray:
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), 3.0)
    if kind == "jpeg10":
        return _jpeg(img, 10)
    noise = np.random.default_rng(0).normal(0, 25, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


KINDS = ("blur", "jpeg10", "noise25")


def test_default_config_is_offline_with_the_packaged_niqe_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(tmp_path))  # no BRISQUE model: the no-weights defaults
    cfg = load_config()
    assert cfg.notes and "paragonsr weights fetch brisque_live" in cfg.notes[0]
    assert [g.metric for g in cfg.gates] == [g["metric"] for g in DEFAULT_GATES]
    assert cfg.metrics()[-1] == "niqe" and not {"arniqa", "nima", "brisque"} & set(cfg.metrics())
    assert cfg.niqe_model == str(PACKAGED_NIQE) and PACKAGED_NIQE.stat().st_size < 50_000
    model = NIQEModel.load(PACKAGED_NIQE)
    assert cfg.gates[-1].max == pytest.approx(model.thresholds[256])
    assert load_config(None, tile={"size": TILE}).gates[-1].max == pytest.approx(model.thresholds[TILE])
    assert ScorerSet(cfg).unavailable == {}  # every default gate runs: no tile is left 'unverified'
    # between two calibrated sizes the threshold is interpolated; outside them 'auto' is refused with the reason
    t = load_config(None, tile={"size": 160}).gates[-1].max
    assert t is not None
    assert (
        min(model.thresholds[128], model.thresholds[192])
        <= t
        <= max(model.thresholds[128], model.thresholds[192])
    )
    with pytest.raises(ValueError, match=r"niqe 'max: auto'.*64- to 512-px tiles, not on 40 px"):
        load_config(None, tile={"size": 40})
    # provenance: the thresholds in the model are the ones the fit script recorded; CC0 / CC-BY inputs only
    prov = json.loads(PACKAGED_NIQE.with_suffix(".json").read_text())
    assert {int(k): v for k, v in prov["thresholds"].items()} == pytest.approx(model.thresholds, abs=1e-4)
    assert {f["license"] for f in prov["fitted_on"]} <= {"CC0-1.0", "CC-BY-4.0"}
    assert model.patch == prov["args"]["patch"]


def test_packaged_niqe_separates_clean_samples_from_degraded_ones() -> None:
    """On whole 192-px samples the NIQE gate alone tells clean from each degradation."""
    model = NIQEModel.load(PACKAGED_NIQE)
    thr = model.threshold_for(192)
    for path in SAMPLES:
        img = read_image_native(path)
        assert model.score(img) <= thr, (path.name, model.score(img), thr)
        for kind in KINDS:
            assert model.score(degrade(img, kind)) > thr, (path.name, kind, thr)


def test_default_filter_keeps_clean_samples_and_drops_degraded(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for path in SAMPLES:
        img = read_image_native(path)
        write_image_native(src / path.name, img)
        for kind in KINDS:
            write_image_native(src / kind / path.name, degrade(img, kind))
    cfg = load_config(None, tile={"size": TILE})
    res = run_filter(src, tmp_path / "r.csv", cfg, tmp_path / "keep", progress=False, plots=False)
    assert res.unavailable == {} and not res.errors
    verdicts = {(r["image"], r["y"], r["x"]): r["verdict"] for r in res.rows}
    assert set(verdicts.values()) <= {"pass", "fail"}  # nothing 'unverified' with the defaults
    for kind in KINDS:
        assert all(v == "fail" for (im, *_), v in verdicts.items() if im.startswith(kind)), kind
    clean = [v for (im, *_), v in verdicts.items() if "/" not in im]
    assert clean.count("pass") >= 0.75 * len(clean)
    kept = sorted(p.name for p in (tmp_path / "keep").iterdir())
    assert len(kept) == clean.count("pass") and all("__" not in k for k in kept)


def _cfg_with_skipped_gate(tmp_path: Path) -> Path:
    path = tmp_path / "gates.yml"
    gates = [{"metric": "entropy", "min": 4.0}, {"metric": "nima", "min": 4.5, "stage": 2}]
    path.write_text(yaml.safe_dump({"tile": {"size": 64}, "gates": gates}))
    return path


def test_keep_unverified_works_on_a_resumed_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    write_image_native(src / "a.png", (rng.random((64, 128, 3)) * 255).astype(np.uint8))  # 2 unverified tiles
    write_image_native(src / "b.png", np.full((64, 64, 3), 90, np.uint8))  # flat: fails entropy
    keep = tmp_path / "keep"
    args = ["data", "filter", "--input", str(src), "--out", str(tmp_path / "r.csv"), "--keep-dir", str(keep)]
    args += ["--config", str(_cfg_with_skipped_gate(tmp_path)), "--workers", "1", "--no-plots"]
    assert main(args) == 0
    with (tmp_path / "r.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["verdict"] for r in rows) == ["fail", "unverified", "unverified"]
    assert list(keep.iterdir()) == []
    # same --out: every tile is already scored, yet the keep decision is made again and the copies written
    assert main([*args, "--keep-unverified"]) == 0
    assert sorted(p.name for p in keep.iterdir()) == ["a_y0_x0.png", "a_y0_x64.png"]
    assert np.array_equal(read_image_native(keep / "a_y0_x64.png"), read_image_native(src / "a.png")[:, 64:])
    with (tmp_path / "r.csv").open() as f:
        assert list(csv.DictReader(f)) == rows  # nothing scored twice


def test_outputs_inside_the_input_folder_are_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    write_image_native(src / "a.png", np.zeros((64, 64, 3), np.uint8))
    base = ["data", "filter", "--input", str(src), "--workers", "1", "--no-plots", "--tile", "64"]
    assert main([*base, "--out", str(src / "report.csv")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {src / 'report.csv'} must not be the input folder {src} or inside it\n"
    assert main([*base, "--out", str(tmp_path / "r.csv"), "--keep-dir", str(src / "keep")]) == 2
    assert "--keep-dir" in capsys.readouterr().err
    assert sorted(p.name for p in src.rglob("*")) == ["a.png"]  # nothing written into the input
    with pytest.raises(ValueError, match="must not be the input folder"):
        run_filter(src, src / "sub" / "r.csv", load_config(None, tile={"size": 64}), progress=False)


def test_real_photo_crops_pass_and_their_degraded_copies_fail(shared_photos_dir: Path) -> None:
    """Held-out full-size photos (not the ones the packaged model was fitted on): the 256-px centre crops that
    pass stage 1 mostly pass NIQE too; every degraded copy fails."""
    prov = json.loads(PACKAGED_NIQE.with_suffix(".json").read_text())
    fitted = {f["file"] for f in prov["fitted_on"]}
    held = [p for p in sorted(shared_photos_dir.glob("*.jpg")) if p.name not in fitted][::3]
    if not held:
        pytest.skip(f"no held-out photos in {shared_photos_dir}")
    cfg = load_config()
    sc = ScorerSet(cfg)
    clean, degraded = [], []
    for p in held:
        img = read_image_native(p)[..., :3]
        h, w = img.shape[:2]
        tile = np.ascontiguousarray(img[h // 2 - 128 : h // 2 + 128, w // 2 - 128 : w // 2 + 128])
        row = score_tile(tile, cfg, sc)
        if row["gate_sharpness"] != "pass" or row["gate_entropy"] != "pass":
            continue
        clean.append(row["verdict"])
        degraded += [score_tile(degrade(tile, k), cfg, sc)["verdict"] for k in KINDS]
    assert len(clean) >= 5
    assert clean.count("pass") >= 0.7 * len(clean), clean
    assert degraded.count("fail") == len(degraded), degraded


def test_batched_niqe_features_match_the_per_block_reference() -> None:
    from paragonsr.metrics import niqe_fit as niqe

    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur((rng.random((96, 128, 3)) * 255).astype(np.uint8), (0, 0), 0.8)
    img[:32, :32] = 128  # a flat block: AGGD sides with no samples take the 1e-6 fallback
    m, _ = niqe.mscn(niqe.to_gray(img) * 255.0)
    ref = np.array([niqe._block_features(b) for b in niqe._blocks(m, 32)])
    assert np.allclose(niqe.niqe_features(img, 32)[:, :18], ref, rtol=1e-12, atol=1e-12)
