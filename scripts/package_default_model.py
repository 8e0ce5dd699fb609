"""Put a trained checkpoint into the package as a packaged model (``src/paragonsr/assets/models``).

Writes ``<name>_unfused.safetensors`` (trainable: use it as ``pretrain_network_g`` to fine-tune),
``<name>.safetensors`` (fused for release; ``default`` is what ``paragonsr upscale`` / ``demo`` use, ``--model
classic`` picks the other) and updates ``manifest.json`` with each file's sha256 and the training record, after
the release gate (fused vs unfused parity) passes. Other models' entries in the manifest are kept.

    python scripts/package_default_model.py EXP/models/net_g_ema_3000.safetensors --name default --run EXP \
        --config configs/2x_ParagonSR2_Nano_default.yml
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
from paragonsr.utils.atomic import atomic_write_text

ASSETS = Path(__file__).resolve().parents[1] / "src" / "paragonsr" / "assets" / "models"


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
    them). ``final`` holds every validation set's figures at the checkpoint's iteration (the last state's when
    the name carries no iteration)."""
    import torch
    import yaml

    if config is not None:
        from paragonsr.train.option_io import load_options

        opt = load_options(config).model_dump(mode="json", exclude_none=True)
    else:
        opt = yaml.safe_load((run / "options.yml").read_text(encoding="utf-8"))
    states = sorted((run / "training_states").glob("*.state"), key=lambda p: int(p.stem))
    final: dict[str, Any] = {}
    if states:
        state = torch.load(states[-1], map_location="cpu", weights_only=True)
        it = checkpoint_iter(checkpoint) or state.get("iter")
        val: dict[str, Any] = {}
        for entry in state.get("val_history") or []:
            if entry.get("iter") == it:
                val.update(entry)
        final = {"iter": it, "val": val or None}
    keep = ("name", "scale", "datasets", "network_g", "path", "train")
    for machine_specific in ("root", "experiments_root"):  # where the run folder happened to be
        opt.get("path", {}).pop(machine_specific, None)
    record = {
        "model": name,
        "checkpoint": checkpoint.name,
        "options": {k: opt[k] for k in keep if k in opt},
        "final": final,
    }
    if config is not None:
        record["config"] = config.as_posix()
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
    ap.add_argument("--name", default="default", choices=("default", "classic"), help="packaged model name")
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
    phases += [run_record(run, args.name, args.checkpoint, cfg) for run, cfg in zip(args.run, configs)]
    fused, report = prepare_for_release(model)  # works on a copy; the gate runs before any file is written
    print(report.parity)
    assert report.parity is not None  # set whenever the model is fusable (ParagonSR2 is)
    if not report.parity.passed:
        print("error: fused model failed its parity gate; nothing packaged", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    unfused_path = save_model(args.out / f"{args.name}_unfused.safetensors", model)
    fused_path = save_model(args.out / f"{args.name}.safetensors", fused)

    common = {"arch": model.arch_name, "arch_kwargs": model.arch_kwargs, "scale": model.scale}
    old = args.out / "manifest.json"
    manifest = json.loads(old.read_text()) if old.is_file() else {}
    manifest[fused_path.name] = {**common, "fused": True, "sha256": sha256(fused_path)}
    manifest[unfused_path.name] = {**common, "fused": False, "sha256": sha256(unfused_path)}
    # phases without a "model" key are the default model's (the first manifests recorded only that one)
    manifest["training"] = [*manifest.get("training", []), *phases]
    atomic_write_text(args.out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    for p in (fused_path, unfused_path):
        print(f"wrote {p} ({p.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
