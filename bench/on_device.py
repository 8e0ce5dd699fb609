"""On-device figures for seed 002's compressed Compact (32 feat / 32 conv, x2; Qualcomm QCS8550 target: <= 33 ms
per 1920x1080 frame, < 50 MB) and the ParagonSR2 nano, with CPU latencies measured here beside them.

    .venv/bin/python bench/on_device.py                      # Compact 32/32 x2 (random weights) + packaged nano
    .venv/bin/python bench/on_device.py --compact-ckpt X.safetensors --card EXPORT_DIR --json out.json

Per model: parameters, MACs per output pixel, weight bytes (fp32/fp16/int8), peak activation memory of one LR
tile graph and tiles per 1080p frame (:mod:`paragonsr.deploy.on_device`), the INT8 QDQ graph's operators against
the list ONNX Runtime's QNN execution provider accepts, and the NPU throughput / memory the targets imply
(estimates, derived with the formulas printed). Measured here: ONNX Runtime FP32 / INT8 and ncnn (fp32) CPU
latency of one tile, with the CPU flags and the load average printed. None of these figures depends on the weight
values except the INT8 quality (not measured here; the export gate does that) and, marginally, latency.
``--card DIR`` writes the figures into an export's model_card.json / MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paragonsr.archs import build_arch
from paragonsr.checkpoint import load_model
from paragonsr.deploy.fuse import prepare_for_release
from paragonsr.deploy.on_device import device_figures, qnn_op_check
from paragonsr.deploy.onnx_export import export_onnx
from paragonsr.deploy.quantize import keep_float_scopes, quantize_int8
from paragonsr.deploy.verify import make_calib_inputs, synthetic_image
from paragonsr.infer.onnx_backend import make_session
from paragonsr.tiling import DEFAULT_OVERLAP

REPO = Path(__file__).resolve().parents[1]
TARGET_MS, TARGET_MB = 33.0, 50.0  # seed 002: QCS8550, <= 33 ms, < 50 MB
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    caps = [f for f in FLAGS if f in have]
    env = [f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ]
    return " ".join(caps + env) or "none of " + ", ".join(FLAGS)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(
    model: torch.nn.Module, side: int, runs: int, threads: int, work: Path, tag: str
) -> dict[str, Any]:
    """ORT FP32 / INT8 and ncnn fp32 CPU latency of one side x side LR tile; the INT8 graph's QNN op check."""
    scale = int(getattr(model, "scale", 1))
    fp32, int8 = work / f"{tag}_fp32.onnx", work / f"{tag}_int8.onnx"
    export_onnx(model, fp32)
    calib = make_calib_inputs([synthetic_image(max(256, 48 * scale), seed=i) for i in range(2)], scale, 3, 48)
    quantize_int8(fp32, int8, calib, keep_float=keep_float_scopes(model))
    x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
    out: dict[str, Any] = {"tile_input": f"1x3x{side}x{side}", "threads": threads, "qnn": qnn_op_check(int8)}
    for name, path in (("ort_fp32_ms", fp32), ("ort_int8_ms", int8)):
        sess = make_session(path, "cpu", threads=threads)
        feed = {sess.get_inputs()[0].name: x}
        out[name] = median_ms(functools.partial(sess.run, None, feed), runs)
    try:
        from paragonsr.deploy.ncnn_export import convert_ncnn
        from paragonsr.infer.ncnn_backend import NcnnBackend

        param, bin_ = work / f"{tag}.param", work / f"{tag}.bin"
        convert_ncnn(model, param, bin_)
        net = NcnnBackend(param, threads=threads)
        out["ncnn_fp32_ms"] = median_ms(lambda: net.run_numpy(x), runs)
    except ModuleNotFoundError as exc:
        out["ncnn_fp32_ms"] = None
        print(f"  ncnn skipped: {exc}", flush=True)
    return out


def derive(fig: dict[str, Any], meas: dict[str, Any], tile_macs: float) -> dict[str, Any]:
    """Targets implied by one plan's figures (ESTIMATES), and the CPU frame time at the rate measured here."""
    macs = fig["macs_per_frame"]
    mem = {
        k: (fig["weight_bytes"][k] + fig["peak_activation_bytes"][k] + fig["frame_io_bytes"][k]) / 1e6
        for k in ("int8", "fp16")
    }
    return {
        "ops_per_frame": 2 * macs,
        "npu_tops_needed_for_33ms": 2 * macs / (TARGET_MS / 1e3) / 1e12,  # 1 MAC = 2 ops
        "memory_int8_mb": mem["int8"],
        "memory_fp16_mb": mem["fp16"],
        # the measured tile's MAC rate applied to the plan's MACs (same graph, bigger or more inputs)
        "cpu_frame_s_ort_fp32": meas["ort_fp32_ms"] / 1e3 * macs / tile_macs,
        "cpu_frame_s_ort_int8": meas["ort_int8_ms"] / 1e3 * macs / tile_macs,
    }


def report(name: str, figs: dict[str, dict[str, Any]], meas: dict[str, Any]) -> dict[str, Any]:
    """Print one model's figures for each plan (tiles, whole frame) and return the derived numbers."""
    mb = 1e6
    first = next(iter(figs.values()))
    side = int(meas["tile_input"].split("x")[-1])
    tile_macs = first["macs_per_output_px"] * (side * first["scale"]) ** 2
    print(f"\n## {name}\n")
    print(f"parameters {first['params']:,}; MACs per output pixel {first['macs_per_output_px']:,.0f}")
    wb = first["weight_bytes"]
    print(
        f"weights: fp32 {wb['fp32'] / mb:.3f} MB, fp16 {wb['fp16'] / mb:.3f} MB, int8 {wb['int8'] / mb:.3f} MB"
    )
    q = meas["qnn"]
    verdict = "all in the QNN EP list" if q["ok"] else f"NOT in the list: {q['not_in_qnn_list']}"
    print(f"INT8 QDQ graph ops: {', '.join(q['ops'])}: {verdict}")
    nc = meas.get("ncnn_fp32_ms")
    print(
        f"MEASURED CPU here ({meas['tile_input']}, {meas['threads']} threads): ORT FP32 {meas['ort_fp32_ms']:.1f} ms, "
        f"ORT INT8 {meas['ort_int8_ms']:.1f} ms (x{meas['ort_fp32_ms'] / meas['ort_int8_ms']:.2f} vs FP32), "
        + (f"ncnn fp32 {nc:.1f} ms" if nc is not None else "ncnn not installed")
    )
    derived = {}
    for plan, fig in figs.items():
        d = derive(fig, meas, tile_macs)
        derived[plan] = d
        pa = fig["peak_activation_bytes"]
        hw = "x".join(str(v) for v in fig["tile_input_hw"])
        print(
            f"- {plan}: {fig['tiles_for_frame']} input(s) of {hw} LR px; peak activations fp32 {pa['fp32'] / mb:.2f} / "
            f"fp16 {pa['fp16'] / mb:.2f} / int8 {pa['int8'] / mb:.2f} MB; ESTIMATE {d['ops_per_frame'] / 1e9:.0f} GOP per "
            f"frame -> {d['npu_tops_needed_for_33ms']:.1f} TOPS sustained for {TARGET_MS:.0f} ms; memory (weights + peak "
            f"+ frame in/out) int8 {d['memory_int8_mb']:.1f} MB, fp16 {d['memory_fp16_mb']:.1f} MB (target < "
            f"{TARGET_MB:.0f}); CPU here at the measured rate: ORT FP32 {d['cpu_frame_s_ort_fp32']:.1f} s, INT8 "
            f"{d['cpu_frame_s_ort_int8']:.1f} s per frame"
        )
    return derived


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--compact-ckpt", type=Path, help="the fine-tuned Compact 32/32 (default: random weights)"
    )
    ap.add_argument("--nano", type=Path, default=REPO / "src/paragonsr/assets/models/default.safetensors")
    ap.add_argument("--tile", type=int, default=128, help="LR tile side (context overlap added on each side)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument(
        "--card",
        type=Path,
        action="append",
        help="export folder whose model card gets the figures of its model's arch (repeatable)",
    )
    args = ap.parse_args(argv)
    print(
        f"CPU flags: {cpu_flags()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    if args.compact_ckpt:
        compact = load_model(args.compact_ckpt, device="cpu")
        compact_name = f"Compact {args.compact_ckpt.name}"
    else:
        torch.manual_seed(0)
        compact = build_arch("compact", num_feat=32, num_conv=32, upscale=2)
        compact_name = "Compact 32 feat / 32 conv x2 (seed 002 layout, random weights)"
    models = {
        compact_name: compact,
        f"ParagonSR2 nano ({args.nano.name})": load_model(args.nano, device="cpu"),
    }
    results: dict[str, Any] = {"cpu_flags": cpu_flags(), "load_average": os.getloadavg()[0], "models": {}}
    with tempfile.TemporaryDirectory(prefix="paragonsr-ondevice-") as tmp:
        for i, (name, model) in enumerate(models.items()):
            print(f"[{i + 1}/{len(models)}] {name}: figures, INT8 graph, CPU latency ...", flush=True)
            fused, _ = prepare_for_release(model.eval(), sizes=((24, 20),))
            figs = {
                f"tiles of {args.tile} px": device_figures(
                    fused, tile=args.tile, overlap=DEFAULT_OVERLAP
                ).to_dict(),
                "whole frame": device_figures(fused, tile=0).to_dict(),
            }
            meas = measure(
                fused, args.tile + 2 * DEFAULT_OVERLAP, args.runs, args.threads, Path(tmp), f"m{i}"
            )
            results["models"][name] = {"figures": figs, "measured": meas, "derived": report(name, figs, meas)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    from paragonsr.deploy.model_card import write_model_card

    for folder in args.card or []:
        card = json.loads((folder / "model_card.json").read_text())
        names = {str(card["model"].get(k, "")).lower() for k in ("arch", "variant")}
        arch = card["model"]["arch"]
        match = [
            v
            for v in results["models"].values()
            if next(iter(v["figures"].values()))["arch"].lower() in names
        ]
        if not match:
            print(f"error: {folder}: no figures for arch {arch}", file=sys.stderr)
            return 1
        extra = {"cpu_flags": results["cpu_flags"], "load_average": results["load_average"]}
        card["on_device"] = {**match[0], **extra}
        write_model_card(folder, card)
        print(f"wrote the on-device figures into {folder / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
