"""scripts/compare_per_image.py: paired per-image differences between two methods of `paragonsr eval` outputs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, load_script
from paragonsr.cli import main as cli_main

mod = load_script(REPO / "scripts" / "compare_per_image.py")
HEADER = "image,method,psnr_y,ssim_y,seconds,output_megapixels\n"


def _csv(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{i},{m},{v},0.9,0.01,0.1\n" for i, m, v in rows))
    return path


def _counts(d: np.ndarray, tie: float = 0.0) -> tuple[int, int, int]:
    s = mod.paired_stats(d, tie=tie, n_boot=10)
    return int(s["better"]), int(s["tie"]), int(s["worse"])


def test_paired_stats_known_values() -> None:
    d = np.array([0.1, -0.05, 0.2, 0.0])
    s = mod.paired_stats(d, n_boot=4000, seed=3)
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.0625)
    assert s["se"] == pytest.approx(np.std(d, ddof=1) / 2)
    assert (s["better"], s["tie"], s["worse"]) == (2, 1, 1)  # tie: Δ = 0
    assert mod.paired_stats(d, n_boot=4000, seed=3) == s  # seeded
    one = mod.paired_stats(np.array([0.3]))
    assert math.isnan(one["se"]) and one["lo"] == one["hi"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no images"):
        mod.paired_stats(np.array([]))
    with pytest.raises(ValueError, match="tie must be a finite number >= 0"):
        mod.paired_stats(d, tie=-1.0)


def test_bootstrap_interval_is_the_2_5_and_97_5_percentile() -> None:
    """Four zeros and a one: a resampled mean is k/5 with k ~ Binomial(5, 0.2), P(k <= 2) = 0.942 and
    P(k <= 3) = 0.993, so the 97.5th percentile is 3/5 (not the maximum 1, nor the 90th percentile 2/5) and the
    2.5th is 0."""
    s = mod.paired_stats(np.array([0.0, 0.0, 0.0, 0.0, 1.0]), n_boot=10000, seed=0)
    assert (s["lo"], s["hi"]) == (0.0, pytest.approx(0.6))


def test_ties_on_the_printed_grid_classify_exactly() -> None:
    """Scores printed to four decimals give deltas like 30.0005 - 30.0 = 0.000499999...: rounded before the
    comparison, +-0.0005 is a tie at tie=0.0005 and a win or loss below it; the counts always sum to n."""
    a = np.array([30.0, 41.1234, 29.9999, 52.0760, 38.8599, 10.0])
    b = np.array([30.0005, 41.1239, 29.9994, 52.0763, 38.8599, 10.0001])
    d = b - a
    assert _counts(d, tie=5e-4) == (0, 6, 0)
    assert _counts(d, tie=4e-4) == (2, 3, 1)
    assert _counts(d) == (4, 1, 1)


def test_report_per_set_and_pooled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _csv(tmp_path / "o" / "per_set" / "Set5" / "per_image.csv", [
        ("x.png", "ckA", 30.0), ("x.png", "ckB", 30.5), ("y.png", "ckB", 29.0), ("y.png", "ckA", 29.0),
        ("x.png", "bicubic", 20.0),
    ])  # fmt: skip
    _csv(
        tmp_path / "o" / "per_set" / "Set14" / "per_image.csv",
        [("z.png", "ckA", 25.0), ("z.png", "ckB", 24.9)],
    )
    out = tmp_path / "paired.md"
    assert mod.main([str(tmp_path / "o"), "--a", "ckA", "--b", "ckB", "-o", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in text.splitlines()[6:]}
    assert list(rows) == ["Set14", "Set5", "all images"]  # sorted folders, then the pooled row
    assert rows["Set5"][:5] == ["2", "29.5000", "29.7500", "+0.2500", "0.2500"]
    assert rows["Set5"][-1] == "1 / 1 / 0"
    assert rows["Set14"][3:5] == ["-0.1000", "—"] and rows["Set14"][-1] == "0 / 0 / 1"
    assert rows["all images"][0] == "3" and rows["all images"][3] == f"{(0.5 + 0 - 0.1) / 3:+.4f}"
    assert mod.read_pairs(a, "ckA", "ckB") == [("x.png", 30.0, 30.5), ("y.png", 29.0, 29.0)]
    # the same file given twice is read once
    assert mod.main([str(tmp_path / "o"), str(a), "--a", "ckA", "--b", "ckB"]) == 0
    assert capsys.readouterr().out == text


def test_two_runs_with_the_same_set_names_are_told_apart_and_not_pooled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for run, shift in (("H", 0.1), ("J", 0.3)):
        _csv(tmp_path / run / "per_set" / "Set5" / "per_image.csv",
             [("x.png", "ckA", 30.0), ("x.png", "ckB", 30.0 + shift)])  # fmt: skip
    assert mod.main([str(tmp_path), "--a", "ckA", "--b", "ckB"]) == 0
    rows = [r.split("|")[1:-1] for r in capsys.readouterr().out.splitlines()[6:]]
    assert [(r[0].strip(), r[4].strip()) for r in rows] == [
        ("H/per_set/Set5", "+0.1000"),
        ("J/per_set/Set5", "+0.3000"),
    ]


@pytest.mark.parametrize(
    ("rows", "args", "message"),
    [
        (
            [("x.png", "ckA", 30.0)],
            ["--a", "ckA", "--b", "ckC"],
            "no rows of method 'ckC' (methods there: ckA)",
        ),
        (
            [("x.png", "ckA", 30.0), ("x.png", "ckB", 31.0), ("y.png", "ckA", 30.0)],
            ["--a", "ckA", "--b", "ckB"],
            "images scored by only one of 'ckA' and 'ckB': y.png",
        ),
        ([("x.png", "ckA", 30.0)], ["--a", "ckA", "--b", "ckB", "--metric", "lpips"], "no column 'lpips'"),
        ([("x.png", "ckA", math.inf)], ["--a", "ckA", "--b", "ckB"], "line 2: psnr_y 'inf' is not a finite"),
        (
            [("x.png", "ckA", 30.0), ("x.png", "ckB", 31.0), ("x.png", "ckA", 10.0)],
            ["--a", "ckA", "--b", "ckB"],
            "line 4: image 'x.png' already scored by 'ckA' (line 2)",
        ),
        ([], ["--a", "ckA", "--b", "ckB"], "no rows of method 'ckA' (methods there: none, no rows)"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[tuple[str, str, float]], args: list[str],
    message: str,
) -> None:  # fmt: skip
    path = _csv(tmp_path / "set" / "per_image.csv", rows)
    out = tmp_path / "paired.md"
    assert mod.main([str(path), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}") and message in err and "\n" not in err
    assert not out.exists()
    assert mod.main([str(tmp_path / "missing"), "--a", "a", "--b", "b"]) == 2
    assert "missing: no such file or folder" in capsys.readouterr().err
    assert mod.main([str(tmp_path / "set" / ".."), "--a", "a", "--b", "b"]) == 2  # a folder is searched
    assert "no rows of method 'a'" in capsys.readouterr().err


def test_on_a_real_eval_output_the_mean_difference_is_the_table_difference(tmp_path: Path) -> None:
    """Through `paragonsr eval --benchmark`: pooled per set, the paired mean Δ equals the difference of the table's
    set averages, and each image's Δ has the sign of its own two scores."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "tiny"
    folder.mkdir()
    for i, (h, w) in enumerate([(40, 36), (34, 46), (30, 30)]):
        small = rng.random((h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"im{i}.png"), np.clip(np.round(img * 255), 0, 255).astype(np.uint8))
    out = tmp_path / "eval"
    assert (
        cli_main(["eval", "--benchmark", str(folder), "--resampler", "magic_sharp_2021", "-o", str(out)]) == 0
    )
    table = {r["method"]: float(r["psnr_y"]) for r in csv.DictReader((out / "benchmark.csv").open())}
    pairs = mod.read_pairs(out / "per_set" / "tiny" / "per_image.csv", "bicubic", "magic_sharp_2021")
    assert len(pairs) == 3
    s = mod.paired_stats(np.array([b - a for _, a, b in pairs]))
    assert s["mean"] == pytest.approx(table["magic_sharp_2021"] - table["bicubic"], abs=2e-4)  # CSV rounding
    rows = list(csv.DictReader((out / "per_set" / "tiny" / "per_image.csv").open()))
    score = {(r["image"], r["method"]): float(r["psnr_y"]) for r in rows}
    wins = sum(score[i, "magic_sharp_2021"] > score[i, "bicubic"] for i in {r["image"] for r in rows})
    assert (s["better"], s["better"] + s["tie"] + s["worse"]) == (wins, 3)


def test_malformed_files_and_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short" / "per_image.csv"
    short.parent.mkdir()
    short.write_text(HEADER + "x.png,ckA\n")
    binary = tmp_path / "bin" / "per_image.csv"
    binary.parent.mkdir()
    binary.write_bytes(HEADER.encode() + b"\xff\xfe\x00x\n")
    for path, message in (
        (short, "line 2: short row (expected 6 columns)"),
        (binary, "not a UTF-8 text file"),
    ):
        assert mod.main([str(path), "--a", "ckA", "--b", "ckB"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}") and message in err and "\n" not in err
    for args, message in (
        (["--a", "ckA", "--b", "ckA"], "--a and --b name the same method 'ckA'"),
        (["--a", "ckA", "--b", "ckB", "--tie", "-0.1"], "--tie -0.1: expected a finite number >= 0"),
    ):
        with pytest.raises(SystemExit) as exc:
            mod.main([str(short), *args])
        assert exc.value.code == 2 and message in capsys.readouterr().err
