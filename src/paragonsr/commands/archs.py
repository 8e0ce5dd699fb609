"""`paragonsr archs`: list registered architectures (with parameter counts for a given scale)."""

from __future__ import annotations

import argparse

HELP = "list the registered architectures (generators and discriminators) with parameter counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale", type=int, default=2, help="scale used to instantiate generators (default 2)"
    )
    parser.add_argument(
        "--no-count", action="store_true", help="only list names (skips building every model)"
    )


def run(args: argparse.Namespace) -> int:
    from paragonsr.archs import ARCH_REGISTRY, build_arch

    for name in ARCH_REGISTRY.names():
        if args.no_count:
            print(name)
            continue
        try:
            model = build_arch(name, scale=args.scale)
        except TypeError:
            try:
                model = build_arch(name)
            except TypeError:
                print(f"{name:28s} (needs explicit hyperparameters)")
                continue
        n = sum(p.numel() for p in model.parameters())
        scale = getattr(model, "scale", "-")
        print(f"{name:28s} scale={scale!s:3s} params={n:>12,d}")
    return 0
