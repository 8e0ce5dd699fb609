"""``paragonsr upscale`` pipeline throughput next to the model's own forward throughput, per backend, in one run.

    python bench/upscale.py                          # default model, 2048x1536 photo, 2 threads
    python bench/upscale.py --model my.safetensors --size 1024x768 --threads 4

1. Forward: output MP/s of the model alone on a random 256x256 LR input for every candidate ``--backend auto``
   compares (torch NCHW and channels_last in the precision ``auto`` resolves to, ONNX Runtime FP32), best of
   ``--repeats``, interleaved.
2. Pipeline: ``paragonsr upscale photo -o out.jpg -q`` as a user runs it (a fresh process: decode, tiles,
   encode, atomic write) with ``--backend auto`` (the default), ``torch`` and ONNX Runtime (the cached ONNX export).
   Start-up (imports, model load) is removed by also timing a 64x48 image: pipeline MP/s = (output MP of the
   photo - of the tiny image) / (time of the photo - time of the tiny image).
3. Ratio pipeline / best forward (target >= 0.80), and decode/encode speed of the photo.

Reported, never asserted. On a machine shared with other jobs, run it under ``nice`` and read the ratios, not the
absolute figures. ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` emulates a CPU without AVX-512/bf16.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))

from paragonsr.infer import default_model_path  # noqa: E402
from paragonsr.infer.auto import candidate_factories  # noqa: E402
from paragonsr.infer.backends import resolve_precision  # noqa: E402
from paragonsr.infer.calibrate import measure_rates  # noqa: E402
from paragonsr.infer.onnx_cache import cached_onnx_path, file_sha256  # noqa: E402


def run_cli(args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one ``paragonsr upscale`` process."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "paragonsr", "upscale", *args], env=env, capture_output=True)
    secs = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"paragonsr upscale {' '.join(args)} failed:\n{proc.stderr.decode()[-2000:]}")
    return secs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="torch model file (default: the packaged default model)")
    ap.add_argument("--photo", help="source photo, resized to --size (default: a bundled sample image)")
    ap.add_argument("--size", default="2048x1536", help="photo WxH (default 2048x1536)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1, help="pipeline runs per backend (best kept)")
    ap.add_argument(
        "--torch-precision",
        default="auto",
        help="precision of the 'torch' pipeline row and extra forward rows (e.g. fp32 where auto picks an "
        "emulated bf16)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_path = Path(args.model) if args.model else default_model_path()
    if model_path is None:
        raise SystemExit("no packaged default model: pass --model")

    from paragonsr.checkpoint import load_model
    from paragonsr.deploy.onnx_export import export_onnx
    from paragonsr.infer.onnx_cache import set_exporter

    set_exporter(export_onnx)
    model = load_model(str(model_path))
    precision = resolve_precision("auto", torch.device("cpu"))
    sha = file_sha256(model_path)
    factories, notes = candidate_factories(model, precision, False, sha, args.threads)
    tp = resolve_precision(args.torch_precision, torch.device("cpu"))
    if tp != precision:
        factories.update(candidate_factories(model, tp, True, sha, args.threads)[0])
    backends = {name: make() for name, make in factories.items()}  # exports the ONNX twin once (cached)
    fwd = measure_rates(backends, 256, int(getattr(model, "in_ch", 3)), args.repeats)

    w, h = map(int, args.size.lower().split("x"))
    photo = args.photo or str(SRC / "paragonsr" / "assets" / "samples" / "mountain.png")
    img = cv2.imread(photo, cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"{photo}: cannot read")
    scale = int(getattr(model, "scale", 2))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": str(args.threads)}
    env.pop("PARAGONSR_BACKEND", None)
    pipe: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        big, tiny = Path(tmp) / "photo.jpg", Path(tmp) / "tiny.jpg"
        cv2.imwrite(
            str(big), cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        cv2.imwrite(str(tiny), cv2.resize(img, (64, 48), interpolation=cv2.INTER_AREA))
        t0 = time.perf_counter()
        decoded = cv2.imread(str(big))
        assert decoded is not None
        t_read = time.perf_counter() - t0
        up = cv2.resize(decoded, (w * scale, h * scale))
        t0 = time.perf_counter()
        cv2.imencode(".jpg", up, [cv2.IMWRITE_JPEG_QUALITY, 95])
        t_jpg = time.perf_counter() - t0
        onnx_file = cached_onnx_path(sha)
        variants = {
            "auto (default)": ["-m", str(model_path)],
            f"torch {tp}": ["-m", str(model_path), "--backend", "torch", "--precision", tp],
        }
        if onnx_file.is_file():
            variants["onnx (cached export)"] = ["-m", str(onnx_file)]
        run_cli([str(tiny), "-o", str(Path(tmp) / "warm.jpg"), "-q", "-m", str(model_path)], env)  # calibrate
        out_mp = (w * h - 64 * 48) * scale * scale / 1e6
        for label, opts in variants.items():
            best = float("inf")
            for i in range(args.runs):
                t_tiny = run_cli(
                    [str(tiny), "-o", str(Path(tmp) / f"t{i}.jpg"), "-q", "--overwrite", *opts], env
                )
                t_big = run_cli(
                    [str(big), "-o", str(Path(tmp) / f"b{i}.jpg"), "-q", "--overwrite", *opts], env
                )
                best = min(best, t_big - t_tiny)
            pipe[label] = out_mp / best

    caps = f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '-')} " + (
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')}"
    )
    print(f"torch {torch.__version__}, {args.threads} threads, {caps}; auto precision: {precision}")
    for n in notes:
        print(f"note: {n}")
    print(f"{'forward, 256x256 LR (model alone)':44s} {'out MP/s':>9s}")
    for name, rate in fwd.items():
        print(f"  {name:42s} {rate:9.3f}")
    best_name = max(fwd, key=fwd.__getitem__)
    print(
        f"{'pipeline, ' + args.size + ' photo (start-up removed)':44s} {'out MP/s':>9s} {'/ best fwd':>10s}"
    )
    for label, rate in pipe.items():
        print(f"  {label:42s} {rate:9.3f} {rate / fwd[best_name]:9.0%}")
    print(f"best forward: {best_name} {fwd[best_name]:.3f} MP/s; target pipeline >= 80 % of it")
    mp = w * h / 1e6
    print(
        f"I/O: JPEG decode {mp / t_read:.1f} MP/s, JPEG encode (x{scale} output) {mp * scale * scale / t_jpg:.1f} MP/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
