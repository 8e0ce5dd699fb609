"""Put a trained checkpoint into the package as the default model (``src/paragonsr/assets/models``).

Writes ``default_unfused.safetensors`` (trainable: use it as ``pretrain_network_g`` to fine-tune),
``default.safetensors`` (fused for release, what ``paragonsr upscale`` / ``demo`` use) and ``manifest.json`` with
each file's sha256 and the training record, after the release gate (fused vs unfused parity) passes.

    python scripts/package_default_model.py runs/default_nano_x2/latest_ema.safetensors --log runs/.../log.json
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="unfused EMA checkpoint with paragonsr metadata")
    ap.add_argument(
        "--log", type=Path, action="append", default=[], help="training log.json (repeat per phase)"
    )
    ap.add_argument("--out", type=Path, default=ASSETS)
    args = ap.parse_args()

    model = load_model(args.checkpoint)
    if cast(Any, model).checkpoint_meta.get("fused"):
        print(f"error: {args.checkpoint} is already fused; pass the trainable checkpoint", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    unfused_path = save_model(args.out / "default_unfused.safetensors", model)
    fused, report = prepare_for_release(model)
    print(report.parity)
    assert report.parity is not None  # set whenever the model is fusable (ParagonSR2 is)
    if not report.parity.passed:
        print("error: fused model failed its parity gate; nothing packaged", file=sys.stderr)
        return 1
    fused_path = save_model(args.out / "default.safetensors", fused)

    phases = []
    for log in args.log:
        data = json.loads(log.read_text())
        cfg = {k: v for k, v in data["config"].items() if k not in ("train_photos", "photos", "out")}
        phases.append({"config": cfg, "final": data["log"][-1]})
    common = {"arch": model.arch_name, "arch_kwargs": model.arch_kwargs, "scale": model.scale}
    manifest = {
        "default.safetensors": {**common, "fused": True, "sha256": sha256(fused_path)},
        "default_unfused.safetensors": {**common, "fused": False, "sha256": sha256(unfused_path)},
        "training": phases,
    }
    atomic_write_text(args.out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    for p in (fused_path, unfused_path):
        print(f"wrote {p} ({p.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
