"""bench/train.py runs end to end at tiny sizes, and --net-opt reaches every network it builds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from conftest import REPO, load_script

BENCH = REPO / "bench" / "train.py"


def test_net_opt_changes_the_network_of_every_row(tmp_path: Path) -> None:
    args = ["--batch", "2", "--gt", "32", "--iters", "1", "--rounds", "1", "--data", str(tmp_path / "none")]
    run = subprocess.run(
        [sys.executable, str(BENCH), *args, "--net-opt", "hr_blocks=0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("paragonsr2_nano hr_blocks=0 x2, batch 2, GT 32")
    rows = dict(
        re.findall(r"^\s*(bare fp32|bare bf16\+CL|trainer|trainer L1): +([\d.]+) CPU-s/it", out, re.M)
    )
    assert set(rows) == {"bare fp32", "bare bf16+CL", "trainer", "trainer L1"}
    assert all(float(v) > 0 for v in rows.values())
    assert "bound: the network's Conv2d layers alone" in out

    mod = load_script(BENCH)
    nano = {"type": "paragonsr2_nano"}
    hr0 = {**nano, "hr_blocks": 0}
    assert len(mod.make_net(hr0).hr_head) == 0 and len(mod.make_net(nano).hr_head) == 1
    assert mod.trainer_options(hr0, 2, 32)["network_g"] == hr0
    lq = torch.rand(1, 3, 16, 16)
    assert mod.network_flops(hr0, lq) < mod.network_flops(nano, lq)

    bad = subprocess.run(
        [sys.executable, str(BENCH), *args, "--net-opt", "hr_blocks"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--net-opt 'hr_blocks': expected KEY=VALUE" in bad.stderr
