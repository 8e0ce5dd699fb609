"""``paragonsr degrade``: build an offline paired dataset (resumable, with a JSONL manifest), or preview pipelines."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from paragonsr.commands import clean_temps
from paragonsr.utils.atomic import WriteError, clean_stale_temps, write_error
from paragonsr.utils.claims import OutputClaim, clean_claims, describe_holder
from paragonsr.utils.procs import worker_pool

HELP = "make LR images from HR ones with a degradation pipeline (offline dataset builder, --preview grid)"
PIPELINES = ("realesrgan", "workflows", "lrgen", "bicubic", "resize")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", default=None, help=f"one of {', '.join(PIPELINES)} (or 'type' in --config)")
    p.add_argument(
        "--config",
        type=Path,
        help="YAML with the pipeline's options (a whole BasicSR option file works for realesrgan)",
    )
    p.add_argument("--input", "-i", type=Path, help="folder of HR images (searched recursively)")
    p.add_argument(
        "--output", "-o", type=Path, help="output folder (lq/, gt/, manifest.jsonl) or the --preview PNG"
    )
    p.add_argument(
        "--scale", type=int, default=None, choices=(1, 2, 3, 4), help="default: the config's scale, else 2"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed; each image's stream is derived from it and its path"
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument(
        "--gt-crop", type=int, default=0, metavar="SIZE", help="degrade a random SIZE×SIZE GT crop per image"
    )
    p.add_argument(
        "--no-gt",
        action="store_true",
        help="do not write gt/ (an image whose GT the pipeline crops or warps is refused)",
    )
    p.add_argument(
        "--preview", type=Path, metavar="IMAGE", help="write a labelled grid of IMAGE under every pipeline"
    )


def load_options(
    pipeline: str | None, config: Path | None, scale: int | None = None
) -> tuple[str, dict[str, Any], int]:
    """(pipeline name, options, scale) from the flags; a config's ``type`` key names the pipeline and its
    ``scale`` key is the default scale (a different --scale is an error: one of them is a mistake)."""
    opt: dict[str, Any] = {}
    if config is not None:
        import yaml

        if not config.is_file():
            raise FileNotFoundError(f"--config {config}: no such file")
        with open(config, encoding="utf-8") as fh:
            opt = yaml.safe_load(fh) or {}
        if not isinstance(opt, dict):
            raise ValueError(f"--config {config}: expected a mapping of options, got {type(opt).__name__}")
    name = pipeline or opt.pop("type", None) or ("realesrgan" if "datasets" in opt else None)
    opt.pop("type", None)
    if name is None:
        raise ValueError(
            f"no pipeline: pass --pipeline ({', '.join(PIPELINES)}) or put 'type:' in the config"
        )
    cfg_scale = opt.pop("scale", None)
    if scale is not None and cfg_scale is not None and int(cfg_scale) != scale:
        raise ValueError(f"--scale {scale} contradicts 'scale: {cfg_scale}' in {config}")
    scale = scale or int(cfg_scale or 2)
    if "datasets" in opt:  # a whole BasicSR / traiNNer option file
        from paragonsr.degrade import collect_realesrgan_opt

        opt = collect_realesrgan_opt(opt)
    return name, opt, scale


def image_seed(seed: int, rel: str) -> np.random.SeedSequence:
    """Per-image stream from the base seed and the relative path: independent of order, workers and resumes."""
    return np.random.SeedSequence([seed, zlib.crc32(rel.encode("utf-8"))])


_STATE: dict[str, Any] = {}


def _init_worker(name: str, opt: dict[str, Any], scale: int, cfg: dict[str, Any]) -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from paragonsr.degrade import build_degradation

    _STATE.update(deg=build_degradation(name, opt, scale), cfg=cfg)


def _process(job: tuple[int, str]) -> dict[str, Any]:
    """Degrade one file; returns its manifest entry, an 'error' entry, or a 'busy' entry (another run holds or
    finished the pair). Runs in a worker."""
    index, rel = job
    cfg = _STATE["cfg"]
    stem = Path(rel).with_suffix(".png")
    lq_path, gt_path = Path(cfg["output"]) / "lq" / stem, Path(cfg["output"]) / "gt" / stem
    claim = OutputClaim(lq_path)  # a second run into this folder leaves this pair to us (and we to it)
    try:
        if not claim.acquire():
            return {"file": rel, "index": index, "busy": describe_holder(claim.holder)}
        if (
            lq_path.is_file()
            and (cfg["no_gt"] or gt_path.is_file())
            and lq_path.stat().st_mtime >= cfg["started"]
        ):
            return {"file": rel, "index": index, "busy": "another run (finished meanwhile)"}
        return _degrade_one(index, rel, stem, cfg)
    except Exception as exc:  # one bad file must not stop the batch
        return {"file": rel, "index": index, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        claim.release()


def _degrade_one(index: int, rel: str, stem: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    from paragonsr.degrade import apply_manifest
    from paragonsr.io.image_io import read_image

    deg = _STATE["deg"]
    img, info = read_image(Path(cfg["input"]) / rel)
    entry: dict[str, Any] = {"file": rel, "index": index, "pipeline": cfg["pipeline"], "scale": deg.scale,
                             "seed": [cfg["seed"], zlib.crc32(rel.encode("utf-8"))]}  # fmt: skip
    if img.shape[2] in (2, 4):  # gray + alpha or RGBA
        img, entry["alpha"] = img[..., :-1], "dropped"
    rng = np.random.default_rng(image_seed(cfg["seed"], rel))
    crop = cfg["gt_crop"]
    if crop:
        h, w = img.shape[:2]
        if h < crop or w < crop:
            raise ValueError(f"image is {h}x{w}, smaller than --gt-crop {crop}")
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        img, entry["gt_crop"] = img[top : top + crop, left : left + crop], [top, left, crop]
    out, record = apply_manifest(deg, img, rng, index=index)
    if cfg[
        "no_gt"
    ]:  # the LQ will be paired with the input file itself: the pipeline must not have changed it
        lh, lw = out["lq"].shape[:2]
        src = np.clip(img[: lh * deg.scale, : lw * deg.scale], 0.0, 1.0)
        if out["gt"].shape != src.shape or not np.array_equal(out["gt"], src):
            raise ValueError(
                "--no-gt: the pipeline changed the GT (a gt_size crop or a scene op), so the LQ would not "
                "match the input image; drop --no-gt to write gt/"
            )
    gt = None if cfg["no_gt"] else (out["gt"], 16 if info.bit_depth == 16 else 8)
    write_pair(Path(cfg["output"]), stem, out["lq"], gt)
    entry.update(lq_size=list(out["lq"].shape[:2]), ops=record)
    return entry


def write_pair(root: Path, stem: Path, lq: np.ndarray, gt: tuple[np.ndarray, int] | None) -> None:
    """Write ``root/lq/stem`` (8-bit) and ``root/gt/stem`` (``gt`` = (image, bit depth); None: no GT) so that a
    pair is complete or absent: both are encoded first, GT is written before LQ (a dataset lists LQ files), and
    when a write fails (full disk) or an interrupt comes, both files of the pair are removed, LQ first. Raises the
    write error (naming the file)."""
    from paragonsr.io.image_io import encode_image
    from paragonsr.utils.atomic import atomic_write_bytes

    parts = [(root / "gt" / stem, encode_image(gt[0], "png", gt[1]))] if gt is not None else []
    parts.append((root / "lq" / stem, encode_image(lq, "png", 8)))
    try:
        for path, data in parts:
            atomic_write_bytes(path, data)
    except BaseException:  # full disk or an interrupt at any point: the pair goes, LQ first (never LQ alone)
        for path, _ in reversed(parts):
            path.unlink(missing_ok=True)
        raise


def _done(manifest: Path) -> set[str]:
    if not manifest.is_file():
        return set()
    done = set()
    with open(manifest, encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that image is simply redone
            if "error" not in entry:
                done.add(entry["file"])
    return done


def _append(fh: Any, path: Path, line: str) -> None:
    """Append one manifest line durably; a full disk cuts at most this line (a rerun redoes that image)."""
    try:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    except OSError as exc:
        raise write_error(exc, path) from None


def _disk_full(error: str) -> bool:
    return "cannot write (" in error and any(
        os.strerror(e) in error for e in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
    )


def build_dataset(args: argparse.Namespace, name: str, opt: dict[str, Any]) -> int:
    from tqdm import tqdm

    from paragonsr.degrade import build_degradation
    from paragonsr.io.image_io import READ_EXTS

    build_degradation(name, opt, args.scale)  # validate options before starting workers
    if args.input is None or not args.input.is_dir():
        print(f"error: --input {args.input}: not a folder of images", file=sys.stderr)
        return 2
    if args.output is None:
        print("error: --output is required", file=sys.stderr)
        return 2
    out_root = args.output.resolve()  # an output folder inside the input one must not become more input
    files = sorted(
        p.relative_to(args.input).as_posix()
        for p in args.input.rglob("*")
        if p.suffix.lower() in READ_EXTS and out_root not in p.resolve().parents
    )
    if not files:
        print(f"error: no images ({', '.join(READ_EXTS)}) under {args.input}", file=sys.stderr)
        return 2
    seen: dict[str, str] = {}
    for rel in files:  # a.jpg and a.png would both be written as a.png, one silently replacing the other
        stem = Path(rel).with_suffix(".png").as_posix()
        if stem in seen:
            print(f"error: {seen[stem]} and {rel} under {args.input} would both be written as {stem}; "
                  "rename one", file=sys.stderr)  # fmt: skip
            return 2
        seen[stem] = rel
    args.output.mkdir(parents=True, exist_ok=True)
    clean_temps(args.output, recursive=True)
    manifest = args.output / "manifest.jsonl"
    done = _done(manifest)
    todo = []
    for i, rel in enumerate(files):
        lq = args.output / "lq" / Path(rel).with_suffix(".png")
        gt = args.output / "gt" / Path(rel).with_suffix(".png")
        if rel in done and lq.is_file() and (args.no_gt or gt.is_file()):
            continue
        todo.append((i, rel))
    cfg = {"input": str(args.input), "output": str(args.output), "seed": args.seed, "gt_crop": args.gt_crop,
           "no_gt": args.no_gt, "pipeline": name, "started": time.time()}  # fmt: skip
    print(f"{len(files)} images, {len(files) - len(todo)} already done, {len(todo)} to degrade with '{name}'")
    failures = busy = 0
    results: Iterator[dict[str, Any]]
    with contextlib.ExitStack() as stack:
        # workers stopped halfway (Ctrl-C, full disk) leave claims of dead processes: free them on the way out
        stack.callback(clean_claims, args.output, recursive=True)
        # ... and temp files of workers terminated mid-write (their pids are gone once the pool is joined)
        stack.callback(clean_stale_temps, args.output, recursive=True, min_age_s=0.0)
        try:
            fh = stack.enter_context(open(manifest, "a", encoding="utf-8"))
        except OSError as exc:
            raise write_error(exc, manifest) from None
        if args.workers > 1 and len(todo) > 1:
            # quiet workers: Ctrl-C / SIGTERM reach only the parent, which terminates them; they die with it
            pool = stack.enter_context(
                worker_pool(args.workers, _init_worker, (name, opt, args.scale, cfg), "spawn")
            )
            results = pool.imap_unordered(_process, todo)
        else:
            _init_worker(name, opt, args.scale, cfg)
            results = map(_process, todo)
        for entry in tqdm(results, total=len(todo), desc="degrade", unit="img", disable=None):
            if "busy" in entry:
                busy += 1
                tqdm.write(f"skip: {entry['file']}: written by {entry['busy']}", file=sys.stderr)
                continue
            if "error" in entry:
                if _disk_full(entry["error"]):  # every further image would fail the same way
                    msg = entry["error"].partition(": ")[2]
                    raise WriteError(errno.ENOSPC, f"{msg}; stopped (a rerun resumes)")
                failures += 1
                tqdm.write(f"error: {entry['file']}: {entry['error']}", file=sys.stderr)
            _append(fh, manifest, json.dumps(entry) + "\n")
    print(f"wrote {len(todo) - failures - busy} pairs to {args.output} ({failures} failed"
          + (f", {busy} left to another run" if busy else "") + f"); manifest: {manifest}")  # fmt: skip
    return 1 if failures else 0


def preview(args: argparse.Namespace, opt: dict[str, Any], name: str | None) -> int:
    from paragonsr.degrade.preview import grid_image, preview_panels
    from paragonsr.io.image_io import read_image, to_rgb, write_image

    if args.output is None:
        print("error: --preview needs -o/--output grid.png", file=sys.stderr)
        return 2
    img, _ = read_image(args.preview)
    panels = preview_panels(to_rgb(img), args.scale, args.seed, opts={name: opt} if name else None)
    write_image(args.output, grid_image(panels).astype(np.float32) / 255.0, bit_depth=8)
    print(f"wrote {args.output} ({len(panels)} panels)")
    return 0


def run(args: argparse.Namespace) -> int:
    opt: dict[str, Any]
    try:
        if args.preview is not None:
            if args.pipeline is None and args.config is None:
                name, opt, args.scale = None, {}, args.scale or 2
            else:
                name, opt, args.scale = load_options(args.pipeline, args.config, args.scale)
            return preview(args, opt, name)
        name, opt, args.scale = load_options(args.pipeline, args.config, args.scale)
        return build_dataset(args, name, opt)
    except (KeyError, ValueError, FileNotFoundError, TypeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
