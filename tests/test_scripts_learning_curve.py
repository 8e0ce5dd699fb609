"""scripts/plot_learning_curve.py: checkpoints of one run read from an eval --benchmark CSV and plotted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import REPO, load_script


def test_curve_points_from_benchmark_csv_and_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = load_script(REPO / "scripts" / "plot_learning_curve.py")
    csv_path = tmp_path / "benchmark.csv"
    csv_path.write_text(
        "set,method,psnr_y,ssim_y,n\n"
        "Set5,bicubic,33.67,0.93,5\n"
        "Set5,net_g_ema_1000,36.20,0.95,5\n"
        "Set5,net_g_ema_500,36.15,0.95,5\n"
        "Set14,net_g_ema_500,32.11,0.90,14\n"
        "Set5,classic,36.43,0.95,5\n"
    )
    assert mod.read_curve(csv_path) == {"Set5": [(500, 36.15), (1000, 36.20)], "Set14": [(500, 32.11)]}
    out = tmp_path / "curve.png"
    argv = [
        "plot",
        str(csv_path),
        "-o",
        str(out),
        "--ref",
        "FSRCNN=Set5:37.00",
        "--stage",
        "700=stage 2",
        "--linear",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    mod.main()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "none.csv").write_text("set,method,psnr_y,ssim_y,n\nSet5,bicubic,33.67,0.93,5\n")
    monkeypatch.setattr(sys, "argv", ["plot", str(tmp_path / "none.csv"), "-o", str(out)])
    with pytest.raises(SystemExit, match="no method ends in _<iteration>"):
        mod.main()
