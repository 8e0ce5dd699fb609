"""``--backend auto``: the backend/layout and tile rules on made-up measurements, the calibration cache, and
pixel parity of every backend and tile choice with the old path (torch fp32 NCHW, whole image)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from paragonsr.infer import default_model_path
from paragonsr.infer.auto import auto_backend, memory_cap
from paragonsr.infer.backends import TorchBackend
from paragonsr.infer.calibrate import (
    Calibration,
    cache_key,
    load_cached,
    machine_key,
    measure_rates,
    run_calibration,
    should_remeasure,
    store,
)
from paragonsr.infer.choice import choose_backend
from paragonsr.infer.upscale import Upscaler
from paragonsr.tiling import Tiler, choose_tile, tiled_forward, tiled_pixels


@pytest.fixture(scope="module")
def _module_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One cache folder for the module (the ONNX export is made once), its calibrations cleared per test."""
    from paragonsr.deploy.onnx_export import export_onnx
    from paragonsr.infer.onnx_cache import set_exporter

    cache = tmp_path_factory.mktemp("cache")
    set_exporter(export_onnx)  # as paragonsr upscale does
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PARAGONSR_CACHE_DIR", str(cache))
        yield cache
    set_exporter(None)


@pytest.fixture(autouse=True)
def _own_cache(_module_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Calibrations cleared per test; the machine counts as quiet (load 0.2 per CPU) unless a test says else."""
    import paragonsr.infer.auto as auto
    import paragonsr.infer.calibrate as calibrate

    (_module_cache / "calibration.json").unlink(missing_ok=True)
    monkeypatch.setattr(calibrate, "load_per_cpu", lambda: 0.2)
    monkeypatch.setattr(auto, "load_per_cpu", lambda: 0.2)
    return _module_cache


def fake_measure(table: Mapping[str, Mapping[int, float]], calls: list[tuple[str, int]]) -> Any:
    """A ``measure`` that returns ``table[name][side]`` (0 for sides it lacks) and records what was asked."""

    def measure(cands: Mapping[str, Any], side: int, in_ch: int, repeats: int) -> dict[str, float]:
        calls.extend((name, side) for name in cands)
        return {name: float(table.get(name, {}).get(side, table.get(name, {}).get(0, 0.0))) for name in cands}

    return measure


# --- the backend rule ---------------------------------------------------------------------------------------------


def test_choose_backend_fastest_torch_layout() -> None:
    assert choose_backend({"torch:fp32:nchw": 1.0, "torch:fp32:cl": 2.5}) == "torch:fp32:cl"
    assert choose_backend({"torch:fp32:nchw": 3.0, "torch:fp32:cl": 2.5}) == "torch:fp32:nchw"


def test_choose_backend_onnx_needs_a_clear_margin() -> None:
    assert choose_backend({"torch:fp32:cl": 2.0, "onnx:fp32": 2.08}) == "torch:fp32:cl"  # 4 %: a tie
    assert choose_backend({"torch:fp32:cl": 2.0, "onnx:fp32": 2.2}) == "onnx:fp32"  # 10 %
    assert choose_backend({"torch:fp32:cl": 0.0, "onnx:fp32": 0.5}) == "onnx:fp32"  # torch failed
    assert choose_backend({"onnx:fp32": 0.5}) == "onnx:fp32"


def test_choose_backend_nothing_measured() -> None:
    with pytest.raises(ValueError, match="no backend candidate could be measured"):
        choose_backend({"torch:fp32:cl": 0.0, "onnx:fp32": -1.0})


# --- the tile rule ------------------------------------------------------------------------------------------------


def test_tiled_pixels_counts_what_the_tiler_computes() -> None:
    x = torch.zeros(1, 1, 301, 517)
    for tile, overlap in ((None, 32), (128, 32), (96, 16), (256, 32), (600, 32), (64, 40)):
        seen: list[int] = []

        def fn(t: torch.Tensor, seen: list[int] = seen) -> torch.Tensor:
            seen.append(t.shape[-2] * t.shape[-1])
            return t.repeat_interleave(2, -1).repeat_interleave(2, -2)

        tiled_forward(fn, x, 2, tile, overlap)
        assert sum(seen) == tiled_pixels(301, 517, tile, overlap), (tile, overlap)


def test_choose_tile_flat_rates_prefers_fewest_overlaps() -> None:
    flat = {128: 2.0, 256: 2.0, 360: 2.0}
    assert choose_tile(2000, 3000, flat, 32, 360) == 360  # the largest tile under the memory cap
    assert choose_tile(2000, 3000, flat, 32, 256) == 256  # the cap is respected
    assert choose_tile(300, 200, flat, 32, None) is None  # the whole image fits: no overlap at all


def test_choose_tile_follows_the_measured_rates() -> None:
    # Small tiles twice as fast per pixel (cache-friendly model): their extra overlap is worth it.
    fast_small = {128: 4.0, 256: 2.0, 360: 2.0}
    assert choose_tile(2000, 3000, fast_small, 32, 360) == 128
    # The whole image would fit, but large inputs run slower than 256 px tiles.
    assert choose_tile(700, 700, {128: 1.0, 256: 3.0, 512: 1.0}, 32, None) == 256
    # Nothing measured under the cap: the cap itself.
    assert choose_tile(2000, 3000, {512: 2.0}, 32, 256) == 256


def test_tiler_uses_rates_under_the_memory_cap() -> None:
    budget = 64 * 2**20  # cap = 256 px at x2 (1 kB per LR px)
    x = torch.zeros(1, 3, 700, 900)
    for rates, want in (({128: 4.0, 256: 2.0}, 128), ({128: 2.0, 256: 2.0}, 256)):
        sizes: list[tuple[int, int]] = []

        def fn(t: torch.Tensor, sizes: list[tuple[int, int]] = sizes) -> torch.Tensor:
            sizes.append((t.shape[-2], t.shape[-1]))
            return t.repeat_interleave(2, -1).repeat_interleave(2, -2)

        Tiler("auto", 32, budget_bytes=budget, rates=rates)(fn, x, 2, on_cuda=False)
        assert max(max(s) for s in sizes) <= want and max(max(s) for s in sizes) > want * 0.75, (rates, sizes)


# --- calibration and its cache ------------------------------------------------------------------------------------


def test_run_calibration_picks_backend_then_times_tiles_under_the_cap() -> None:
    calls: list[tuple[str, int]] = []
    table = {"torch:fp32:nchw": {0: 1.0}, "torch:fp32:cl": {0: 2.0, 128: 1.5, 256: 2.0, 300: 2.1}}
    cands = {"torch:fp32:nchw": lambda t: t, "torch:fp32:cl": lambda t: t}
    calib = run_calibration(cands, 3, 300, measure=fake_measure(table, calls))
    assert calib.choice == "torch:fp32:cl"
    assert calib.rates == {"torch:fp32:nchw": 1.0, "torch:fp32:cl": 2.0}
    assert calib.tile_rates == {128: 1.5, 256: 2.0, 300: 2.1}  # 384/512 are above the cap: never run
    assert [c for c in calls if c[0] == "torch:fp32:nchw"] == [("torch:fp32:nchw", 256)]


def test_measure_rates_real_functions() -> None:
    def broken(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("unsupported op")

    rates = measure_rates({"ok": lambda t: t.repeat(1, 1, 2, 2), "broken": broken}, 32, 3, 1)
    assert rates["broken"] == 0.0 and rates["ok"] > 0.0


def test_cache_round_trip_and_machine_key(monkeypatch: pytest.MonkeyPatch, _own_cache: Path) -> None:
    calib = Calibration("onnx:fp32", {"onnx:fp32": 2.0, "torch:fp32:cl": 1.0}, {128: 1.8, 256: 2.0}, ["n"])
    key = cache_key("ab" * 32, "fp32")
    assert load_cached(key) is None
    assert store(key, calib) == _own_cache / "calibration.json"
    assert load_cached(key) == calib
    (_own_cache / "calibration.json").write_text("{not json")
    assert load_cached(key) is None  # a damaged cache is measured again, not an error
    before = machine_key(2)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert machine_key(2) != before and machine_key(1) != machine_key(2)


def test_auto_backend_measures_once_then_uses_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxslim")
    import paragonsr.infer.auto as auto

    monkeypatch.setattr(auto, "resolve_precision", lambda p, d: "fp32")  # the same names on every CPU
    path = default_model_path()
    assert path is not None
    calls: list[tuple[str, int]] = []
    table = {"torch:fp32:nchw": {0: 1.0}, "torch:fp32:cl": {0: 1.2}, "onnx:fp32": {0: 2.0, 128: 1.9}}
    logs: list[str] = []
    b: Any = auto_backend(str(path), "cpu", "auto", measure=fake_measure(table, calls), log=logs.append)
    assert type(b).__name__ == "OnnxBackend" and b.calibration.choice == "onnx:fp32"
    assert b.tile_rates[128] == 1.9 and len(logs) == 2 and "onnx:fp32 2.00 MP/s" in logs[1]
    assert {c[0] for c in calls} == set(table)
    calls.clear()
    again: Any = auto_backend(str(path), "cpu", "auto", measure=fake_measure(table, calls), log=logs.append)
    assert calls == [] and type(again).__name__ == "OnnxBackend" and again.tile_rates == b.tile_rates
    # A pinned precision is a separate cache entry, and ONNX Runtime (fp32 only) does not compete for it.
    pinned: Any = auto_backend(str(path), "cpu", "fp32", measure=fake_measure(table, calls), log=logs.append)
    assert type(pinned) is TorchBackend and pinned.channels_last and pinned.precision == "fp32"
    assert "onnx:fp32" not in {c[0] for c in calls}
    notes: list[str] = getattr(pinned, "calibration").notes  # noqa: B009 - set on the instance
    assert any("--precision fp32" in n for n in notes)


def test_a_busy_measurement_is_redone_when_the_load_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    import paragonsr.infer.auto as auto
    import paragonsr.infer.calibrate as calibrate

    monkeypatch.setattr(auto, "resolve_precision", lambda p, d: "fp32")
    path = default_model_path()
    assert path is not None
    calls: list[tuple[str, int]] = []
    table = {"torch:fp32:nchw": {0: 1.0}, "torch:fp32:cl": {0: 1.2}}
    monkeypatch.setattr(calibrate, "load_per_cpu", lambda: 3.0)  # measured while busy
    b: Any = auto_backend(str(path), "cpu", "fp32", measure=fake_measure(table, calls), log=lambda m: None)
    assert b.calibration.load == 3.0 and "busy machine" in b.calibration.summary()
    for load_now, remeasured in ((2.0, False), (1.6, False), (-1.0, False), (1.4, True), (0.1, True)):
        calls.clear()
        monkeypatch.setattr(auto, "load_per_cpu", lambda v=load_now: v)
        auto_backend(str(path), "cpu", "fp32", measure=fake_measure(table, calls), log=lambda m: None)
        assert bool(calls) == remeasured, load_now
        assert should_remeasure(Calibration("x", {}, {}, [], load=3.0), load_now) == remeasured


# --- parity with the old path -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_image() -> np.ndarray:
    rng = np.random.default_rng(3)
    base = rng.random((14, 18, 3)).astype(np.float32)
    import cv2

    smooth = np.asarray(cv2.resize(base, (90, 70), interpolation=cv2.INTER_CUBIC), np.float32)
    noise = 0.05 * rng.standard_normal(smooth.shape)  # photo-like: smooth + detail
    return np.clip(smooth + noise, 0, 1).astype(np.float32)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_backend_and_tile_choice_matches_the_old_path(
    monkeypatch: pytest.MonkeyPatch, parity_image: np.ndarray, _own_cache: Path
) -> None:
    """Old path: torch fp32 NCHW on the whole image. New: each candidate layout/backend, whole and tiled (a fixed
    tile, and auto tiles from the rates under a small memory cap). All within 1/255 of the old output."""
    import paragonsr.infer.auto as auto
    from paragonsr.checkpoint import load_model

    monkeypatch.setattr(auto, "resolve_precision", lambda p, d: "fp32")
    path = default_model_path()
    assert path is not None
    ref, _ = Upscaler(TorchBackend(load_model(str(path)), "cpu", "fp32", channels_last=False), 0)(
        parity_image
    )
    names = ["torch:fp32:nchw", "torch:fp32:cl"]
    if auto.onnx_available() is None:
        names.append("onnx:fp32")
    budget = 5 * 2**20  # memory cap 64 px at x2: the 90x70 image runs in auto tiles
    assert memory_cap(2, budget) == 64
    for name in names:
        (_own_cache / "calibration.json").unlink(missing_ok=True)
        table = {n: {0: (2.0 if n == name else 1.0)} for n in names}
        b: Any = auto_backend(
            str(path), "cpu", "auto", measure=fake_measure(table, []), log=lambda m: None, budget_bytes=budget
        )
        assert b.calibration.choice == name and set(b.tile_rates) == {64}
        for tile in (0, 40, "auto"):
            out, _ = Upscaler(b, tile, overlap=32, budget_bytes=budget)(parity_image)
            assert out.shape == ref.shape
            diff = float(np.abs(out - ref).max())
            assert diff <= 1 / 255, (name, tile, diff)


def test_an_unfaithful_onnx_export_never_competes(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ONNX candidate whose output is not the model's (here: shifted by 2/255) is left out, however fast."""
    import paragonsr.infer.auto as auto

    real = auto.candidate_factories

    def factories(*a: Any, **k: Any) -> Any:
        made, notes = real(*a, **k)
        torch_name = next(n for n in made if n.endswith(":nchw"))

        def shifted() -> Any:
            inner = made[torch_name]()
            return lambda t: inner(t) + 2.0 / 255

        return {**made, "onnx:fp32": shifted}, notes

    monkeypatch.setattr(auto, "candidate_factories", factories)
    monkeypatch.setattr(auto, "resolve_precision", lambda p, d: "fp32")
    path = default_model_path()
    assert path is not None
    calls: list[tuple[str, int]] = []
    table = {"torch:fp32:nchw": {0: 1.0}, "torch:fp32:cl": {0: 1.2}, "onnx:fp32": {0: 9.0}}
    b: Any = auto_backend(str(path), "cpu", "auto", measure=fake_measure(table, calls), log=lambda m: None)
    assert b.calibration.choice == "torch:fp32:cl" and "onnx:fp32" not in {c[0] for c in calls}
    assert any("differs from torch fp32 by 2.00/255" in n for n in b.calibration.notes)


def test_cli_default_backend_is_auto_and_reads_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``paragonsr upscale`` without --backend: auto, served from a cached calibration (nothing measured), same
    pixels as --backend torch."""
    import cv2

    from paragonsr.cli import main
    from paragonsr.infer.backends import resolve_precision
    from paragonsr.infer.onnx_cache import file_sha256

    monkeypatch.delenv("PARAGONSR_BACKEND", raising=False)
    path = default_model_path()
    assert path is not None
    p = resolve_precision("auto", torch.device("cpu"))
    key = cache_key(file_sha256(path), p, torch.get_num_threads())
    store(key, Calibration(f"torch:{p}:cl", {f"torch:{p}:cl": 2.0}, {128: 2.0}, []))
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), (np.random.default_rng(1).random((40, 52, 3)) * 255).astype(np.uint8))
    assert main(["upscale", str(src), "-o", str(tmp_path / "auto.png"), "-q"]) == 0
    out = capsys.readouterr()
    assert "calibrating" not in out.err and "channels_last" in out.out  # the cached choice ran
    assert main(["upscale", str(src), "-o", str(tmp_path / "t.png"), "-q", "--backend", "torch"]) == 0
    a = np.asarray(cv2.imread(str(tmp_path / "auto.png")), dtype=int)
    b = np.asarray(cv2.imread(str(tmp_path / "t.png")), dtype=int)
    assert a.shape == (80, 104, 3) and np.abs(a - b).max() <= 1
