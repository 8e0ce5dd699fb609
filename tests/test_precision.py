"""The one precision decision (paragonsr.precision): native bf16 from mocked CPU probes and the environment, the
resolver for every device capability x asked precision, training downgrading bf16 on a CPU without it (log line,
checkpoint metadata), the traiNNer fp16 default on a CPU, and the inference backend using the same decision."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

import paragonsr.precision as prec
from paragonsr.precision import CpuProbe, Hardware, cpu_bf16, resolve

SPR = CpuProbe("AVX512", avx512_bf16=True, amx_bf16=True, onednn_bf16=True, mkldnn=True, x86=True)
CPX = CpuProbe("AVX512", avx512_bf16=True, amx_bf16=False, onednn_bf16=True, mkldnn=True, x86=True)
SKX = CpuProbe("AVX512", avx512_bf16=False, amx_bf16=False, onednn_bf16=True, mkldnn=True, x86=True)
ZEN2 = CpuProbe("AVX2", avx512_bf16=False, amx_bf16=False, onednn_bf16=False, mkldnn=True, x86=True)
# an AVX-512 BF16 CPU run as the other kind: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, or only one of them
SPR_ATEN_AVX2 = CpuProbe("AVX2", avx512_bf16=True, amx_bf16=True, onednn_bf16=True, mkldnn=True, x86=True)
SPR_DNNL_AVX2 = CpuProbe("AVX512", avx512_bf16=True, amx_bf16=True, onednn_bf16=False, mkldnn=True, x86=True)
SPR_BOTH_AVX2 = CpuProbe("AVX2", avx512_bf16=True, amx_bf16=True, onednn_bf16=False, mkldnn=True, x86=True)
NO_DNNL = CpuProbe("AVX512", avx512_bf16=True, amx_bf16=True, onednn_bf16=False, mkldnn=False, x86=True)
ARM = CpuProbe("DEFAULT", avx512_bf16=False, amx_bf16=False, onednn_bf16=True, mkldnn=True, x86=False)

# probe -> (native bf16 with no override, words of the reason)
CPUS = {
    "sapphire rapids (AMX)": (SPR, True, "native bf16 (AVX512 + AMX)"),
    "cooper lake (AVX512-BF16)": (CPX, True, "native bf16 (AVX512 + AVX512-BF16)"),
    "skylake-x (AVX-512, no bf16)": (SKX, False, "no native bf16 (AVX512, no AVX512-BF16/AMX)"),
    "zen 2 (AVX2)": (ZEN2, False, "no native bf16 (AVX2, no AVX512-BF16/AMX)"),
    "ATEN_CPU_CAPABILITY=avx2": (SPR_ATEN_AVX2, False, "(AVX2: ATEN_CPU_CAPABILITY caps"),
    "ONEDNN_MAX_CPU_ISA=AVX2": (SPR_DNNL_AVX2, False, "(AVX512: ONEDNN_MAX_CPU_ISA caps oneDNN"),
    "both caps": (SPR_BOTH_AVX2, False, "(AVX2: ATEN_CPU_CAPABILITY caps"),
    "torch without oneDNN": (NO_DNNL, False, "built without oneDNN"),
    "arm": (ARM, False, "no native bf16 (DEFAULT, no AVX512-BF16/AMX)"),
}


@pytest.mark.parametrize("override", ["", "0", "1", " 1 "])
@pytest.mark.parametrize("cpu", list(CPUS))
def test_native_bf16_for_every_cpu_and_override(cpu: str, override: str) -> None:
    probe, native, words = CPUS[cpu]
    got, why = cpu_bf16(probe, {"PARAGONSR_CPU_BF16": override} if override else {})
    if override.strip():
        assert got is (override.strip() == "1")
        assert why.startswith(f"PARAGONSR_CPU_BF16={override.strip()} says this CPU has")
    else:
        assert got is native and words in why


@pytest.mark.parametrize("asked", prec.PRECISIONS)
@pytest.mark.parametrize("override", ["", "0", "1"])
@pytest.mark.parametrize("cpu", list(CPUS))
def test_cpu_decision_end_to_end(cpu: str, override: str, asked: str) -> None:
    """Mocked CPU x override x asked, through hardware() and resolve(): bf16 runs exactly where it is native (or
    forced), fp16 never runs on a CPU, and the layout is channels_last."""
    probe, native, _ = CPUS[cpu]
    native = native if not override else override == "1"
    hw = prec.hardware("cpu", probe=probe, env={"PARAGONSR_CPU_BF16": override} if override else {})
    p = resolve(asked, "cpu", hw=hw)
    reduced = "bf16" if native else "fp32"
    assert p.dtype == {"auto": reduced, "fp32": "fp32", "bf16": reduced, "fp16": reduced}[asked]
    assert p.channels_last and p.capability == probe.capability
    assert p.downgraded is (asked == "fp16" or (asked == "bf16" and not native))
    assert hw.label.startswith(f"CPU {probe.capability}") and ("PARAGONSR_CPU_BF16" in hw.label) is bool(
        override
    )


def test_bad_override_is_one_clear_line() -> None:
    with pytest.raises(
        ValueError, match=r"^environment variable PARAGONSR_CPU_BF16='yes': expected 1 .* or 0"
    ):
        cpu_bf16(SPR, {"PARAGONSR_CPU_BF16": "yes"})


CPU_BF16 = Hardware("cpu", bf16=True, fp16=False, label="CPU AVX512 + AMX", capability="AVX512")
CPU_FP32 = Hardware("cpu", False, False, "CPU AVX2", "this CPU has no native bf16 (AVX2)", "AVX2")
CUDA_BF16 = Hardware("cuda", True, True, "CUDA H100 (sm_90)", capability="sm_90")
CUDA_FP16 = Hardware("cuda", False, True, "CUDA T4 (sm_75)", "CUDA T4 (sm_75) has no native bf16", "sm_75")
MPS = Hardware("mps", False, True, "MPS", "bf16 is not treated as native on MPS")

# (hardware, asked) -> (dtype that runs, channels_last by default, downgraded)
TABLE = {
    (CPU_BF16, "auto"): ("bf16", True, False),
    (CPU_BF16, "fp32"): ("fp32", True, False),
    (CPU_BF16, "bf16"): ("bf16", True, False),
    (CPU_BF16, "fp16"): ("bf16", True, True),  # fp16 on a CPU: the native reduced precision instead
    (CPU_FP32, "auto"): ("fp32", True, False),
    (CPU_FP32, "fp32"): ("fp32", True, False),
    (CPU_FP32, "bf16"): ("fp32", True, True),  # emulated bf16 is the slowdown trap of issue 22
    (CPU_FP32, "fp16"): ("fp32", True, True),
    (CUDA_BF16, "auto"): ("bf16", True, False),
    (CUDA_BF16, "fp32"): ("fp32", False, False),
    (CUDA_BF16, "bf16"): ("bf16", True, False),
    (CUDA_BF16, "fp16"): ("fp16", True, False),
    (CUDA_FP16, "auto"): ("fp16", True, False),
    (CUDA_FP16, "fp32"): ("fp32", False, False),
    (CUDA_FP16, "bf16"): ("fp16", True, True),
    (CUDA_FP16, "fp16"): ("fp16", True, False),
    (MPS, "auto"): ("fp16", False, False),
    (MPS, "fp32"): ("fp32", False, False),
    (MPS, "bf16"): ("fp32", False, True),
    (MPS, "fp16"): ("fp16", False, False),
}


@pytest.mark.parametrize(("hw", "asked"), list(TABLE), ids=[f"{h.label}-{a}" for h, a in TABLE])
def test_resolver_for_every_capability_and_setting(hw: Hardware, asked: str) -> None:
    dtype, layout, downgraded = TABLE[(hw, asked)]
    p = resolve(asked, "cpu", hw=hw)
    assert (p.dtype, p.channels_last, p.downgraded) == (dtype, layout, downgraded)
    assert p.autocast_dtype == (None if dtype == "fp32" else prec.DTYPES[dtype])
    line = p.summary()
    if downgraded:
        assert line.startswith(f"precision: asked {asked} autocast, running {dtype}: ")
        assert p.reason and p.reason in line
    else:
        assert "asked" not in line and not p.reason
    # an asked layout is kept for inference (follow_layout=False), decided by the hardware for training
    for cl in (True, False):
        assert resolve(asked, "cpu", cl, hw=hw, follow_layout=False).channels_last is cl
        assert resolve(asked, "cpu", cl, hw=hw).channels_last is layout


def test_the_message_the_issue_asks_for_and_the_metadata() -> None:
    hw = prec.hardware("cpu", probe=ZEN2, env={})
    p = resolve("bf16", "cpu", True, hw=hw)
    assert p.summary() == (
        "precision: asked bf16 autocast, running fp32: this CPU has no native bf16 (AVX2, no AVX512-BF16/AMX) "
        "[fp32 channels_last]"
    )
    meta = p.meta()
    assert meta["precision_asked"] == "bf16" and meta["precision_dtype"] == "fp32"
    assert meta["precision_capability"] == "AVX2" and meta["precision_hardware"] == "CPU AVX2"
    assert "no native bf16" in meta["precision_reason"] and meta["precision_channels_last"] == "True"
    assert all(isinstance(v, str) for v in meta.values())  # safetensors metadata is str -> str
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve("int8", "cpu", hw=hw)


def test_train_options_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [prec.asked_by_train_options(a, b) for a, b in ((False, True), (True, True), (True, False))] == [
        "fp32", "bf16", "fp16"
    ]  # fmt: skip


def test_probe_works_without_linux_and_without_the_torch_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    real = prec.probe_cpu()
    assert real.capability == torch.backends.cpu.get_cpu_capability()

    def no_file(*a: Any, **k: Any) -> Any:
        raise FileNotFoundError("/proc/cpuinfo")

    class NoQueries:  # a torch build without torch.cpu's cpuinfo queries, on a system without /proc
        pass

    monkeypatch.setattr(torch, "cpu", NoQueries())
    monkeypatch.setattr(builtins, "open", no_file)
    prec.probe_cpu.cache_clear()
    try:
        p = prec.probe_cpu()
    finally:
        prec.probe_cpu.cache_clear()
    assert not p.avx512_bf16 and not p.amx_bf16 and p.capability == real.capability
    assert cpu_bf16(p, {})[0] is False


def test_env_caps_reach_the_probe_of_a_fresh_process() -> None:
    """ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA are read by torch at start-up: a child process with both set to
    AVX2 never has native bf16, whatever this CPU is."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    env.pop("PARAGONSR_CPU_BF16", None)
    code = "from paragonsr.precision import hardware, probe_cpu; print(probe_cpu().capability, hardware('cpu').bf16)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cap, bf16 = out.stdout.split()
    assert bf16 == "False" and cap != "AVX512"  # AVX2 on x86 (DEFAULT where the CPU has less; other ISAs)


# ------------------------------------------------------------------------------------------- training + backend
@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prec_data")
    rng = np.random.default_rng(0)
    for sub in ("gt", "lq"):
        (root / sub).mkdir()
    for i in range(4):
        gt = cv2.GaussianBlur(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (5, 5), 1.5)
        cv2.imwrite(str(root / "gt" / f"{i}.png"), gt)
        cv2.imwrite(str(root / "lq" / f"{i}.png"), cv2.resize(gt, (16, 16), interpolation=cv2.INTER_AREA))
    return root


def train_opts(data: Path, out: Path, **train: Any) -> dict[str, Any]:
    paired = {"type": "PairedImageDataset", "dataroot_gt": str(data / "gt"), "dataroot_lq": str(data / "lq")}
    return {
        "name": "p", "scale": 2, "num_gpu": 0,
        "datasets": {"train": {**paired, "gt_size": 16, "batch_size_per_gpu": 2, "num_worker_per_gpu": 0}},
        "network_g": {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1, "upscale": 2},
        "path": {"experiments_root": str(out)},
        "train": {"total_iter": 2, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"},
                  "ema_decay": 0.9, "use_channels_last": False, **train},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
    }  # fmt: skip


@pytest.mark.parametrize(("amp_bf16", "asked"), [(True, "bf16"), (False, "fp16")])
def test_bf16_config_on_a_cpu_without_it_trains_in_fp32_and_says_so(
    tiny_pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amp_bf16: bool, asked: str
) -> None:
    from paragonsr.checkpoint import load_state_dict
    from paragonsr.train.option_io import parse_options
    from paragonsr.train.state import load_state
    from paragonsr.train.trainer import Trainer

    monkeypatch.delenv("PARAGONSR_CPU_BF16", raising=False)
    monkeypatch.setattr(prec, "probe_cpu", lambda: ZEN2)  # an AVX2 CPU, whatever runs the test
    trainer = Trainer(parse_options(train_opts(tiny_pairs, tmp_path / "e", use_amp=True, amp_bf16=amp_bf16)))
    assert trainer.model.amp_dtype is None and not trainer.model.scaler.is_enabled()
    # the hardware's layout, not the option's NCHW
    assert trainer.model.memory_format == torch.channels_last
    res = trainer.train()
    assert res.iters == 2
    (log_file,) = (tmp_path / "e").glob("train_p_*.log")
    lines = [ln for ln in log_file.read_text().splitlines() if "precision:" in ln]
    assert len(lines) == 1, lines  # ONE line, in the training log
    assert (
        "WARNING" in lines[0]
        and (f"training precision: asked {asked} autocast, running fp32: " in lines[0])
        and "(AVX2" in lines[0]
    )
    _, meta = load_state_dict(tmp_path / "e" / "models" / "net_g_2.safetensors")
    extra = meta["extra"]
    assert (extra["precision_asked"], extra["precision_dtype"], extra["precision_capability"]) == (
        asked, "fp32", "AVX2"
    )  # fmt: skip
    assert (
        load_state(tmp_path / "e" / "training_states" / "2.state")["precision"]
        == trainer.model.precision.meta()
    )


def test_bf16_config_on_a_cpu_with_it_keeps_bf16(
    tiny_pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paragonsr.train.option_io import parse_options
    from paragonsr.train.sr_model import SRModel

    monkeypatch.delenv("PARAGONSR_CPU_BF16", raising=False)
    monkeypatch.setattr(prec, "probe_cpu", lambda: SPR)
    for amp_bf16 in (True, False):  # traiNNer's fp16 default becomes the CPU's native bf16
        opt = parse_options(train_opts(tiny_pairs, tmp_path / "f", use_amp=True, amp_bf16=amp_bf16))
        model = SRModel(opt, torch.device("cpu"))
        assert model.amp_dtype == torch.bfloat16 and model.precision.downgraded is (not amp_bf16)


def test_trainner_use_amp_without_amp_bf16_is_fast_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from paragonsr.train.trainner_compat import translate

    monkeypatch.delenv("PARAGONSR_CPU_BF16", raising=False)
    t = translate({"use_amp": True, "name": "x", "scale": 2}).data["train"]
    asked = prec.asked_by_train_options(t["use_amp"], t["amp_bf16"])
    assert asked == "fp16"
    for hw, want in ((CPU_FP32, "fp32"), (CPU_BF16, "bf16")):
        p = resolve(asked, "cpu", hw=hw)
        assert (
            p.dtype == want and p.downgraded and "fp16 autocast on the CPU has no fast kernels" in p.summary()
        )


def test_backend_uses_the_same_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    from paragonsr.archs import build_arch
    from paragonsr.infer.backends import TorchBackend, cpu_has_native_bf16, resolve_precision

    model = build_arch("compact", num_feat=4, num_conv=1, upscale=2)
    monkeypatch.setattr(prec, "probe_cpu", lambda: ZEN2)
    monkeypatch.delenv("PARAGONSR_CPU_BF16", raising=False)
    assert cpu_has_native_bf16() is False and resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.warns(UserWarning, match=r"asked bf16 autocast, running fp32: this CPU has no native bf16"):
        be = TorchBackend(model, "cpu", "bf16")
    assert (be.precision, be.channels_last) == ("fp32", True)
    monkeypatch.setenv("PARAGONSR_CPU_BF16", "1")
    assert cpu_has_native_bf16() is True and TorchBackend(model, "cpu", "auto").precision == "bf16"
    assert TorchBackend(model, "cpu", "fp32", channels_last=False).channels_last is False


@pytest.mark.parametrize(("probe", "want"), [(ZEN2, "asked bf16 autocast, running fp32: this CPU has no native bf16"),
                                             (SPR, "precision: bf16 autocast channels_last")])  # fmt: skip
def test_shipped_config_checks_on_both_kinds_of_cpu(
    tiny_pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    probe: CpuProbe, want: str,
) -> None:  # fmt: skip
    from conftest import REPO
    from paragonsr.cli import main

    monkeypatch.delenv("PARAGONSR_CPU_BF16", raising=False)
    monkeypatch.setattr(prec, "probe_cpu", lambda: probe)
    cfg = REPO / "configs" / "2x_ParagonSR2_Nano_fidelity.yml"
    force = [f"datasets.train.dataroot_gt={tiny_pairs / 'gt'}", f"datasets.val.dataroot_gt={tiny_pairs / 'gt'}",
             "datasets.train.gt_size=16", f"path.experiments_root={tmp_path}", "num_gpu=0"]  # fmt: skip
    assert main(["train", "-opt", str(cfg), "--check", "--force", *force]) == 0
    ok, machine = capsys.readouterr().out.strip().splitlines()
    assert ok.endswith("OK (SRModel, x2, paragonsr2_nano)") and machine.startswith(
        "  on this machine: precision: "
    )
    assert want in machine
