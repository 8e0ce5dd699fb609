"""Put a trained checkpoint into the package as a packaged model (``src/paragonsr/assets/models``).

Writes ``<name>_unfused.safetensors`` (trainable: use it as ``pretrain_network_g`` to fine-tune),
``<name>.safetensors`` (fused for release; ``default`` is what ``paragonsr upscale`` / ``demo`` use, ``--model
classic`` / ``--model perceptual`` pick the others) and updates ``manifest.json`` with each file's sha256 and the
training record, after the release gate (fused vs unfused parity) passes. Other models' entries in the manifest
are kept.

The training record of each ``--run`` holds its options (``--config``: the committed file, plus the settings the
run overrode), a ``summary`` (model type, generator losses and weights, discriminator and GAN weight, start model,
data lists, iterations, precision; :mod:`paragonsr.deploy.packaging`) and the validation at the checkpoint's
iteration. The packaged files' metadata records the model type and the training losses (so ``paragonsr eval``
marks a metric that shares a network with one, and ``paragonsr export`` gates a GAN model's INT8 on LPIPS).

``--verify-images DIR`` (required for a GAN run) also runs the export gates: FP32 ONNX = PyTorch, FP16 ONNX
>= 45 dB vs FP32 (packaging stops if it fails), INT8 within 0.3 dB and, for a GAN model, LPIPS-alex up by
<= 0.003: ``<name>_int8.onnx`` is shipped only when it passes. Every gate's figures go into the manifest.

    python scripts/package_default_model.py EXP/models/net_g_ema_3000.safetensors --name default --run EXP \
        --config configs/2x_ParagonSR2_Nano_default.yml
    python scripts/package_default_model.py RUN/models/net_g_ema_2500.safetensors --name perceptual --run RUN \
        --config configs/2x_ParagonSR2_Nano_perceptual_default.yml --verify-images VAL_DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, cast

from paragonsr.checkpoint import load_model, save_model
from paragonsr.deploy.fuse import prepare_for_release
from paragonsr.deploy.packaging import (
    MACHINE_KEYS,
    RECORD_KEYS,
    load_verify_images,
    loss_specs,
    release_gates,
    run_overrides,
    training_summary,
)
from paragonsr.utils.atomic import atomic_write_bytes, atomic_write_text

ASSETS = Path(__file__).resolve().parents[1] / "src" / "paragonsr" / "assets" / "models"
NAMES = ("default", "classic", "perceptual")  # paragonsr.infer.PACKAGED_MODELS


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoint_iter(checkpoint: Path) -> int | None:
    """``net_g_ema_4000.safetensors`` -> 4000 (``None`` for ``..._latest`` or other names)."""
    tail = checkpoint.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def run_record(run: Path, name: str, checkpoint: Path, config: Path | None = None) -> dict[str, Any]:
    """A ``paragonsr train`` experiment folder -> its options and the validation of ``checkpoint``.

    The options are the run's ``options.yml``, or, with ``config``, the committed option file that reproduces the
    run (resolved the same way, so its relative data paths are recorded rather than where this machine kept
    them); ``overrides`` then lists what the run changed (e.g. ``train.total_iter`` given on the command line).
    ``final`` holds every validation set's figures at the checkpoint's iteration (the last state's when the name
    carries no iteration); ``summary`` is :func:`paragonsr.deploy.packaging.training_summary` of the options as
    the run used them, with the precision the trainer chose (recorded in the training state)."""
    import torch
    import yaml

    ran: dict[str, Any] | None = None
    if config is None or (run / "options.yml").is_file():  # without --config the run's options are required
        ran = yaml.safe_load((run / "options.yml").read_text(encoding="utf-8"))
    if config is not None:
        from paragonsr.train.option_io import load_options

        opt: dict[str, Any] = load_options(config).model_dump(mode="json", exclude_none=True)
    else:
        opt = dict(ran or {})
    states = sorted((run / "training_states").glob("*.state"), key=lambda p: int(p.stem))
    final: dict[str, Any] = {}
    precision = None
    if states:
        state = torch.load(states[-1], map_location="cpu", weights_only=True)
        it = checkpoint_iter(checkpoint) or state.get("iter")
        val: dict[str, Any] = {}
        for entry in state.get("val_history") or []:
            if entry.get("iter") == it:
                val.update(entry)
        final = {"iter": it, "val": val or None}
        precision = state.get("precision")
    for machine_specific in MACHINE_KEYS:  # where the run folder happened to be
        opt.get("path", {}).pop(machine_specific, None)
    record: dict[str, Any] = {
        "model": name,
        "checkpoint": checkpoint.name,
        "options": {k: opt[k] for k in RECORD_KEYS if k in opt},
        "summary": training_summary(ran or opt, precision),  # as run (overrides included)
        "final": final,
    }
    if config is not None:
        record["config"] = config.as_posix()
        record["overrides"] = None if ran is None else run_overrides(opt, ran)
    return record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="unfused EMA checkpoint with paragonsr metadata")
    ap.add_argument(
        "--log", type=Path, action="append", default=[], help="training log.json (repeat per phase)"
    )
    ap.add_argument(
        "--run", type=Path, action="append", default=[], help="paragonsr train experiment folder (per phase)"
    )
    ap.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        help="committed option file that reproduces each --run (same order); recorded instead of the run's paths",
    )
    ap.add_argument("--name", default="default", choices=NAMES, help="packaged model name")
    ap.add_argument(
        "--verify-images",
        type=Path,
        help="held-out images for the FP16/INT8 gates (required for a GAN run): INT8 is shipped only if it passes",
    )
    ap.add_argument("--max-images", type=int, default=8, help="at most this many --verify-images")
    ap.add_argument("--crop", type=int, default=96, help="LR side of the verification/calibration crops")
    ap.add_argument("--out", type=Path, default=ASSETS)
    args = ap.parse_args()
    if args.config and len(args.config) != len(args.run):  # before anything is written
        print(
            f"error: {len(args.config)} --config for {len(args.run)} --run; give one per run", file=sys.stderr
        )
        return 2

    model = load_model(args.checkpoint)
    if cast(Any, model).checkpoint_meta.get("fused"):
        print(f"error: {args.checkpoint} is already fused; pass the trainable checkpoint", file=sys.stderr)
        return 2
    # the training record first: a bad --log/--run/--config fails before any packaged file is replaced
    phases = []
    for log in args.log:
        data = json.loads(log.read_text())
        cfg = {k: v for k, v in data["config"].items() if k not in ("train_photos", "photos", "out")}
        phases.append({"model": args.name, "config": cfg, "final": data["log"][-1]})
    configs: list[Path | None] = [*args.config] or [None] * len(args.run)
    records = [run_record(run, args.name, args.checkpoint, cfg) for run, cfg in zip(args.run, configs)]
    interp = (cast(Any, model).checkpoint_meta.get("extra") or {}).get("interpolation")
    if (
        interp and records
    ):  # scripts/interpolate_networks.py: the packaged weights blend the run with a start model
        records[-1]["interpolation"] = interp
    phases += records
    for r in records:
        if r.get("overrides"):
            print(f"note: {r['config']} does not reproduce the run as it is; recorded overrides: "
                  + ", ".join(f"{k}={v}" for k, v in r["overrides"].items()))  # fmt: skip
    model_type = records[-1]["summary"]["model_type"] if records else None
    gan = bool(records) and records[-1]["summary"]["adversarial"] is not None
    perceptual = gan or args.name == "perceptual"
    if perceptual and args.verify_images is None:
        print(
            f"error: --name {args.name}: a perceptual/GAN model is packaged only through the FP16 and INT8 (LPIPS) "
            "gates; give --verify-images DIR (held-out photos)",
            file=sys.stderr,
        )
        return 2
    fused, report = prepare_for_release(model)  # works on a copy; the gate runs before any file is written
    print(report.parity)
    assert report.parity is not None  # set whenever the model is fusable (ParagonSR2 is)
    if not report.parity.passed:
        print("error: fused model failed its parity gate; nothing packaged", file=sys.stderr)
        return 1
    gates = None
    if args.verify_images is not None:
        try:
            images = load_verify_images(args.verify_images, args.max_images, args.crop * model.scale)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        gates = release_gates(model, args.name, images, perceptual, lr_crop=args.crop)
        if not gates.fp16_passed:
            print(
                f"error: FP16 ONNX failed its gate ({'; '.join(gates.refused)}); nothing packaged",
                file=sys.stderr,
            )
            return 1
        for reason in gates.refused:
            print(f"note: {reason}")

    specs = [s for r in records for s in loss_specs(r["options"])]
    meta = {"extra": {"model_type": model_type, "train_losses": specs}} if records else None
    args.out.mkdir(parents=True, exist_ok=True)
    unfused_path = save_model(args.out / f"{args.name}_unfused.safetensors", model, metadata=meta)
    fused_path = save_model(args.out / f"{args.name}.safetensors", fused, metadata=meta)

    common = {"arch": model.arch_name, "arch_kwargs": model.arch_kwargs, "scale": model.scale}
    old = args.out / "manifest.json"
    manifest = json.loads(old.read_text()) if old.is_file() else {}
    manifest[fused_path.name] = {**common, "fused": True, "sha256": sha256(fused_path)}
    manifest[unfused_path.name] = {**common, "fused": False, "sha256": sha256(unfused_path)}
    if model_type is not None:
        for file in (fused_path.name, unfused_path.name):
            manifest[file]["model_type"] = model_type
    written = [fused_path, unfused_path]
    int8_path = args.out / f"{args.name}_int8.onnx"
    if gates is not None:
        manifest[fused_path.name]["release_gates"] = {
            "images": f"{args.verify_images.name}/: {', '.join(n for n, _ in images)} ({args.crop}px LR centre crops, "
            "bicubic LR; INT8 calibrated on crops of the same images)",
            "gates": gates.gates,
            "refused": gates.refused,
        }
        if gates.int8 is not None and gates.int8_gate is not None:
            atomic_write_bytes(int8_path, gates.int8)
            manifest[int8_path.name] = {
                **common,
                "fp32_twin": fused_path.name,
                "precision": "int8",
                "format": "QDQ, int8 per-channel symmetric weights, uint8 per-tensor activations",
                "source": f"post-training quantisation of {fused_path.name} (min/max on the gate's images)",
                "gate": gates.int8_gate["extra"],
                "sha256": sha256(int8_path),
            }
            written.append(int8_path)
    stale = manifest.get(int8_path.name) if int8_path not in written else None
    if stale is not None:  # an INT8 file made from the model this packaging replaces
        if str(stale.get("source", "")).startswith("post-training quantisation"):  # this script's: remove it
            del manifest[int8_path.name]
            int8_path.unlink(missing_ok=True)
            print(f"removed {int8_path}: it was made from the {args.name} model this packaging replaced")
        else:
            print(f"warning: {int8_path.name} (from {stale.get('source')}) was made from the previous {args.name} "
                  "model: re-export it (README, Deployment) or remove it")  # fmt: skip
    # phases without a "model" key are the default model's (the first manifests recorded only that one)
    manifest["training"] = [*manifest.get("training", []), *phases]
    atomic_write_text(args.out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    for p in written:
        print(f"wrote {p} ({p.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
