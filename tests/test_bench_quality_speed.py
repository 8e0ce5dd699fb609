"""bench/quality_speed.py: measured PSNR from a benchmark CSV, published PSNR for the reference rows, a plot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "quality_speed.py"


def test_quality_speed_table_takes_psnr_from_the_csv_and_the_papers(tmp_path: Path) -> None:
    table = tmp_path / "benchmark.csv"
    table.write_text(
        "set,method,psnr_y,ssim_y,n\nSet5,bicubic,33.67,0.93,5\nSet5,nano,36.11,0.95,5\nSet14,nano,32.09,0.9,14\n",
        encoding="utf-8",
    )
    png = tmp_path / "plot.png"
    args = ["--csv", str(table), "--method", "nano=paragonsr2_nano", "--size", "16", "--repeats", "1"]
    out = subprocess.run(
        [sys.executable, str(BENCH), *args, "--threads", "1", "-o", str(png)],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    rows = {
        m.group(1): m.groups()[1:]
        for m in re.finditer(r"^\| (\w+) \| ([\d.]+) \| (\w+) \| ([\d.]+) \|", out, re.M)
    }
    assert rows["nano"][:2] == ("36.11", "measured")
    assert rows["fsrcnn"][:2] == ("37.00", "published") and rows["vdsr"][:2] == ("37.53", "published")
    assert all(float(r[2]) > 0 for r in rows.values())
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    bad = subprocess.run(
        [sys.executable, str(BENCH), "--csv", str(table), "--method", "missing=paragonsr2_nano"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "--method ['missing']: not in the CSV rows of Set5" in bad.stderr
