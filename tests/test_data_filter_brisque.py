"""The data filter's stage-1 BRISQUE gate (own implementation, LIVE model): joins the default gates only when the
model is in the weights folder, scores tiles as :func:`paragonsr.metrics.brisque.brisque`, drops a blurred tile,
and without the model is skipped with a reason that says what to fetch. Tests that need the model skip with a
reason when the weights folder lacks it (CI fetches it)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REAL_WEIGHTS_DIR, REPO, imread
from paragonsr.data.filter import load_config, score_tile
from paragonsr.data.filter.gates import BRISQUE_GATE, DEFAULT_GATES
from paragonsr.data.filter.iqa import ScorerSet
from paragonsr.metrics.brisque import BrisqueModel, brisque, load_live_model
from paragonsr.weights import WeightsError

REF = REPO / "tests" / "data" / "perceptual_ref"


@pytest.fixture(scope="module")
def live() -> BrisqueModel:
    try:
        return load_live_model(str(REAL_WEIGHTS_DIR))
    except WeightsError as exc:
        pytest.skip(f"BRISQUE LIVE model not fetched ({str(exc).splitlines()[0][:160]})")


def test_defaults_gain_the_brisque_gate_when_the_model_is_there(live: BrisqueModel, monkeypatch) -> None:
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(REAL_WEIGHTS_DIR))  # the folder holding the fetched model
    cfg = load_config()
    assert [g.metric for g in cfg.gates] == [g["metric"] for g in DEFAULT_GATES] + ["brisque"]
    gate = cfg.gates[-1]
    assert (gate.stage, gate.max, BRISQUE_GATE["max"]) == (1, 55.0, 55.0) and not cfg.notes
    scorers = ScorerSet(cfg)
    assert scorers.unavailable == {}
    clean = np.ascontiguousarray(imread(REF / "ref0.png")[:, :, ::-1])
    assert scorers.score("brisque", clean) == pytest.approx(brisque(clean, live), abs=1e-12)
    as_float = clean.astype(np.float32) / 255.0  # float tiles (HDR TIFF) are [0, 1]
    assert scorers.score("brisque", as_float) == pytest.approx(brisque(clean, live), abs=1e-9)
    row = score_tile(clean, cfg, scorers)
    assert row["gate_brisque"] == "pass", row
    blurred = cv2.GaussianBlur(clean, (0, 0), 2.0)
    row = score_tile(blurred, cfg, scorers)
    assert row["gate_brisque"] == "fail" and float(row["brisque"]) > 55.0, row
    assert row["gate_niqe"] == "not_run" and "brisque" in row["reason"]


def test_brisque_gate_without_the_model_is_skipped_with_a_reason(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(tmp_path))
    assert "brisque" not in [g.metric for g in load_config().gates]
    cfg_file = tmp_path / "gates.yml"
    cfg_file.write_text("gates:\n  - {metric: brisque, max: 55, stage: 1}\n")
    cfg = load_config(cfg_file)
    why = ScorerSet(cfg).unavailable["brisque"]
    assert "LIVE model not available" in why and "paragonsr weights fetch brisque_live" in why
    tile = np.ascontiguousarray(imread(REF / "ref0.png")[:, :, ::-1])
    row = score_tile(tile, cfg, ScorerSet(cfg))
    assert row["gate_brisque"] == "skipped" and row["verdict"] == "unverified"
    cfg_file.write_text(
        f"gates:\n  - {{metric: brisque, max: 55}}\niqa_weights: {{brisque: {tmp_path / 'nope'}}}\n"
    )
    assert "nope" in ScorerSet(load_config(cfg_file)).unavailable["brisque"]
