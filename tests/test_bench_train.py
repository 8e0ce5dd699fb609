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
ARGS = ["--batch", "2", "--gt", "32", "--iters", "1", "--rounds", "1", "--peak-batch", "1"]


def rows_of(section: str) -> dict[str, float]:
    found = re.findall(r"^\s*(bare fp32|bare fp32\+CL|bare bf16\+CL|trainer|trainer L1): +([\d.]+) CPU-s/it",
                       section, re.M)  # fmt: skip
    return {k: float(v) for k, v in found}


def test_bench_runs_with_net_opt_on_both_kinds_of_cpu(tmp_path: Path) -> None:
    from paragonsr.precision import hardware

    run = subprocess.run(
        [sys.executable, str(BENCH), *ARGS, "--data", str(tmp_path / "none"), "--net-opt", "hr_blocks=0"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("paragonsr2_nano hr_blocks=0 x2, batch 2, GT 32")
    native = hardware("cpu").bf16
    sections = out.split("\n--- the same CPU as an AVX2 CPU without native bf16")
    # a CPU with native bf16 also runs as the other kind (child process with the AVX2 caps); an AVX2 CPU once
    assert len(sections) == (2 if native else 1)
    for i, section in enumerate(sections):
        rows = rows_of(section)
        has_bf16 = native and i == 0  # the bare bf16 row only where bf16 is native
        assert set(rows) == {"bare fp32", "bare fp32+CL", "trainer", "trainer L1"} | (
            {"bare bf16+CL"} if has_bf16 else set()
        )
        assert all(v > 0 for v in rows.values())
        assert "bound: the network's Conv2d layers alone" in section
        want = (
            "bf16 autocast channels_last" if has_bf16 else "running fp32" if native else "fp32 channels_last"
        )
        assert want in section.split("trainer runs: ")[1].splitlines()[0]
    if native:
        assert "[emulated: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2]" in sections[1]
        table = out.split("side by side")[1].splitlines()
        assert table[2].startswith("CPU AVX512") and table[3].startswith("CPU AVX2 (emulated)")
        # the summary repeats each section's trainer ratio
        for section, line in zip(sections, table[2:4]):
            rows = rows_of(section)
            ratio = float(line.split()[-3].rstrip("x"))
            bare, trainer = rows["bare fp32"], rows["trainer"]
            rounding = ratio * (0.0005 / bare + 0.0005 / trainer)  # the rows are printed to 3 decimals
            assert abs(ratio - bare / trainer) < 0.01 + 0.01 * ratio + rounding


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
    flops_hr0 = mod.network_flops(mod.make_net(hr0), batch["lq"][:1])
    assert built == [{**hr0, "scale": 2}] * 4
    assert flops_hr0 < mod.network_flops(mod.make_net({"type": "paragonsr2_nano"}), batch["lq"][:1])
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
