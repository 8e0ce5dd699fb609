"""bench/train.py runs end to end at tiny sizes, and --net-opt reaches every network it builds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import REPO, load_script

BENCH = REPO / "bench" / "train.py"
ARGS = ["--batch", "2", "--gt", "32", "--iters", "1", "--rounds", "1"]


def test_bench_runs_with_net_opt(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), *ARGS, "--data", str(tmp_path / "none"), "--net-opt", "hr_blocks=0"],
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


def test_every_network_of_the_bench_gets_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = load_script(BENCH)
    built: list[dict[str, Any]] = []
    real = mod.build_arch

    def recording(name: str, **kwargs: Any) -> torch.nn.Module:
        built.append({"type": name, **kwargs})
        return real(name, **kwargs)

    monkeypatch.setattr(mod, "build_arch", recording)
    hr0 = {"type": "paragonsr2_nano", "hr_blocks": 0}
    gt = torch.rand(2, 3, 32, 32)
    batch = {"gt": gt, "lq": torch.nn.functional.avg_pool2d(gt, 2)}
    mod.bare_step(hr0, batch, bf16=False)()
    mod.bare_step(hr0, batch, bf16=True)()
    mod.conv_layer_seconds(hr0, batch["lq"], 32, reps=1)
    flops_hr0 = mod.network_flops(hr0, batch["lq"][:1])
    assert built == [{**hr0, "scale": 2}] * 4
    assert flops_hr0 < mod.network_flops({"type": "paragonsr2_nano"}, batch["lq"][:1])
    # the trainer rows build their network from the options, as `paragonsr train` does
    assert mod.trainer_options(hr0, 2, 32)["network_g"] == hr0
    assert len(mod.make_net(hr0).hr_head) == 0 and len(mod.make_net({"type": "paragonsr2_nano"}).hr_head) == 1


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        ("hr_blocks", "--net-opt 'hr_blocks': expected KEY=VALUE"),
        ("scale=4", "'scale' is set by --net and the bench (x2), not here"),
        ("hr_blocks=[", "the value is not valid YAML"),
        ("no_such=1", "--net paragonsr2_nano --net-opt no_such=1: cannot build this network"),
    ],
)
def test_bad_net_opt_is_one_line(opt: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_script(BENCH).main([*ARGS, "--net-opt", opt])
    assert exc.value.code == 2 and message in capsys.readouterr().err.strip().splitlines()[-1]
