"""`paragonsr archs`: list registered architectures (with parameter counts for a given scale)."""

from __future__ import annotations

import argparse

HELP = "list the registered architectures (generators and discriminators) with parameter counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=int, default=2, help="scale of the generators counted (default 2)")
    parser.add_argument("--no-count", action="store_true", help="only list names")


def run(args: argparse.Namespace) -> int:
    from paragonsr.archs import ARCH_REGISTRY
    from paragonsr.archs.param_table import lookup, table_is_fresh

    if args.scale < 1:
        print(f"error: --scale must be a positive integer, got {args.scale}")
        return 2
    names = ARCH_REGISTRY.names()
    if not args.no_count and not table_is_fresh():
        print(
            "(parameter table is stale: counting by building each model; scripts/gen_arch_params.py updates it)"
        )
    for name in names:
        if args.no_count:
            print(name)
            continue
        entry = lookup(name, args.scale)
        if "error" in entry:
            print(f"{name:28s} no x{args.scale}: {entry['error']}")
            continue
        scale = entry.get("scale") or "-"
        print(f"{name:28s} scale={scale!s:3s} params={entry['params']:>12,d}")
    return 0
