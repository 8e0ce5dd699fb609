"""bench/infer.py runs end to end (tiny sizes) and reports both speed targets (fused/unfused nano, fused nano/Compact) and the training-graph row."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "infer.py"


def test_infer_bench_prints_rows_ratios_and_breakdown() -> None:
    args = [
        "--archs",
        "paragonsr2_nano,compact_32f32c",
        "--size",
        "32",
        "--repeats",
        "2",
        "--precisions",
        "fp32",
    ]
    out = subprocess.run(
        [sys.executable, str(BENCH), *args, "--threads", "1", "--breakdown", "--peak-batch", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    printed = {
        tuple(m.groups()[:2]): m.group(3) for m in re.finditer(r"^(\S+)\s+(\w+)\s+([\d.]+)$", out, re.M)
    }
    rows = {k: float(v) for k, v in printed.items()}
    assert set(rows) == {
        ("paragonsr2_nano", "unfused"),
        ("paragonsr2_nano", "training"),
        ("paragonsr2_nano", "fused"),
        ("compact_32f32c", "unfused"),
    }
    assert all(v > 0 for v in rows.values())
    a, b = ("paragonsr2_nano", "fused"), ("compact_32f32c", "unfused")
    want = rows[a] / rows[b]
    # The rows are printed rounded: the ratio of the unrounded figures may differ by their rounding error.
    half_step = {k: 0.5 * 10.0 ** -len(printed[k].partition(".")[2]) for k in (a, b)}
    tol = want * (half_step[a] / rows[a] + half_step[b] / rows[b]) + 0.006
    line = re.search(r"TARGET fused nano \(fp32\) / Compact 32f32c \(fp32\), best each: ([\d.]+)x", out)
    assert line and abs(float(line.group(1)) - want) < tol  # the printed ratio is the ratio of the rows
    assert "TARGET fused nano (fp32) / unfused nano (fp32)" in out
    stages = re.search(r"breakdown paragonsr2_nano fused fp32: total [\d.]+ ms = (.*)$", out, re.M)
    assert stages and all(s in stages.group(1) for s in ("body", "upsampler", "hr_head", "conv_out"))
    # the physical limit: effective GFLOP/s of each forward = its FLOPs x forwards per second, against the peak
    peak = re.search(r"^conv peak \(64->64 3x3 forward\): fp32 ([\d.]+) GFLOP/s$", out, re.M)
    assert peak and float(peak.group(1)) > 0
    gf = {
        (m.group(1), m.group(2)): (float(m.group(3)), float(m.group(4)), float(m.group(5)))
        for m in re.finditer(r"^(\S+)\s+(unfused|fused)\s+([\d.e-]+)\s+([\d.]+) =\s*([\d.]+)%$", out, re.M)
    }
    assert set(gf) == {
        ("paragonsr2_nano", "unfused"),
        ("paragonsr2_nano", "fused"),
        ("compact_32f32c", "unfused"),
    }
    out_mp = (32 * 2) ** 2 / 1e6
    for key, (gflop, gflops, pct) in gf.items():
        want = gflop * rows[key] / out_mp  # GFLOP per forward x forwards per second
        # both printed rounded: the MP/s row to its decimals (a slow, loaded machine prints few digits)
        rel = (
            0.01 + 0.5 * 10.0 ** -len(printed[key].partition(".")[2]) / rows[key] + 5e-4
        )  # GFLOP: 4 significant digits
        assert abs(gflops - want) <= rel * want + 0.06, (key, gflops, want)
        assert abs(pct - 100 * gflops / float(peak.group(1))) <= 0.02 * pct + 0.06
    # Compact 32f/32c: 32 3x3 convs of 32 channels at 32x32 (+ in/out convs), ~2 x 9 x 32 x 32 FLOP per conv px
    assert (
        0.9 * 2 * 9 * 32 * 32 * 33 * 32 * 32 / 1e9
        < gf[("compact_32f32c", "unfused")][0]
        < 1.2 * 2 * 9 * 32 * 32 * 34 * 32 * 32 / 1e9
    )
