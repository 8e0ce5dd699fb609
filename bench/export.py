"""ONNX Runtime (FP32, INT8) vs PyTorch eager (fp32, and what `--precision auto` runs here: bf16 + channels_last
where bf16 is native, else fp32 + channels_last; `paragonsr.precision`) on the same fused model and input.

    .venv/bin/python bench/export.py --archs paragonsr2_nano,compact --scale 2 --size 256 --runs 5

Prints median latencies and ratios (speed-up vs torch fp32 eager); targets: ORT FP32 >= 1.2x torch fp32, ORT INT8
>= 1.5x ORT FP32 on a CPU with VNNI (the CPU's int8 dot-product flags are printed). INT8 twice: ORT's static
quantiser (PTQ) and the QAT writer (the same fake-quant placement QAT trains, calibrated here without training).
Both runtimes get the same number of intra-op threads.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paragonsr.archs import build_arch
from paragonsr.deploy.fuse import prepare_for_release
from paragonsr.deploy.onnx_export import export_onnx
from paragonsr.deploy.qat import calibrate_ranges, prepare_qat
from paragonsr.deploy.qat_onnx import export_qat_onnx
from paragonsr.deploy.quantize import keep_float_scopes, quantize_int8
from paragonsr.deploy.verify import make_calib_inputs, synthetic_image
from paragonsr.infer.onnx_backend import make_session
from paragonsr.precision import resolve

ARCH_KWARGS = {"compact": lambda s: {"upscale": s}}


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_arch(arch: str, scale: int, size: int, runs: int, threads: int, workdir: Path) -> dict[str, float]:
    torch.manual_seed(0)
    kwargs = ARCH_KWARGS.get(arch, lambda s: {"scale": s})(scale)
    fused, _ = prepare_for_release(build_arch(arch, **kwargs), sizes=((24, 20),))
    in_ch = int(cast(Any, fused).in_ch)
    x = torch.rand(1, in_ch, size, size)
    xn = x.numpy()
    res: dict[str, float] = {}

    with torch.inference_mode():
        res["torch fp32 eager"] = median_ms(lambda: fused(x), runs)
        # what `upscale --precision auto` runs on this CPU (paragonsr.precision): bf16 + channels_last where bf16
        # is native, fp32 + channels_last elsewhere
        auto = resolve("auto", "cpu")
        cl = fused.to(memory_format=auto.memory_format)  # type: ignore[call-overload]
        xcl = x.contiguous(memory_format=auto.memory_format)

        def best() -> torch.Tensor:
            with auto.autocast():
                return cl(xcl)

        res[f"torch {auto.dtype}{' channels_last' if auto.channels_last else ''}"] = median_ms(best, runs)
    fused.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]

    fp32 = export_onnx(fused, workdir / f"{arch}_fp32.onnx")
    calib = make_calib_inputs([synthetic_image(256, s) for s in range(2)], scale, in_ch, 48, 2)
    int8 = quantize_int8(fp32, workdir / f"{arch}_int8.onnx", calib, keep_float=keep_float_scopes(fused))
    qat = prepare_qat(fused, torch.from_numpy(calib[0]))
    calibrate_ranges(qat, [torch.from_numpy(c) for c in calib])
    qat_int8 = export_qat_onnx(qat, workdir / f"{arch}_qat_int8.onnx")
    for label, path in (("ORT fp32", fp32), ("ORT int8 (PTQ QDQ)", int8), ("ORT int8 (QAT QDQ)", qat_int8)):
        sess = make_session(path, "cpu", threads=threads)
        name = sess.get_inputs()[0].name
        res[label] = median_ms(functools.partial(sess.run, None, {name: xn}), runs)
    return res


def cpu_int8_flags() -> str:
    """The CPU's int8 dot-product / matrix flags (VNNI, AMX) from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return " ".join(f for f in wanted if f in flags) or "none of avx2/avx512/vnni/amx"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="paragonsr2_nano,compact")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--size", type=int, default=256, help="input side (LR)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"input 1x3x{args.size}x{args.size}, x{args.scale}, {args.threads} threads, median of {args.runs} runs"
    )
    print(f"CPU int8 flags: {cpu_int8_flags()}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            res = bench_arch(arch.strip(), args.scale, args.size, args.runs, args.threads, Path(tmp))
            base = res["torch fp32 eager"]
            print(f"\n{arch}")
            for label, ms in res.items():
                print(f"  {label:<26} {ms:9.1f} ms   {base / ms:5.2f}x vs torch fp32")
            ratio = base / res["ORT fp32"]
            verdict = "meets" if ratio >= 1.2 else "MISSES"
            print(f"  ORT fp32 / torch fp32 speed-up {ratio:.2f}x ({verdict} the 1.2x target)")
            for label in ("ORT int8 (PTQ QDQ)", "ORT int8 (QAT QDQ)"):
                r8 = res["ORT fp32"] / res[label]
                print(
                    f"  {label} / ORT fp32 speed-up {r8:.2f}x ({'meets' if r8 >= 1.5 else 'MISSES'} the 1.5x target)"
                )
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
