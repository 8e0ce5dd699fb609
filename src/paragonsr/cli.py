"""The one ``paragonsr`` command. Each subcommand lives in ``paragonsr.commands.<name>`` and exposes
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when needed so
``paragonsr --help`` stays fast and a broken optional area cannot take the others down."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from types import ModuleType

from paragonsr.errors import ParagonSRError
from paragonsr.utils.malloc import tune_malloc

# subcommand -> module (in the order shown by --help)
COMMANDS: dict[str, str] = {
    "upscale": "paragonsr.commands.upscale",
    "demo": "paragonsr.commands.demo",
    "train": "paragonsr.commands.train",
    "degrade": "paragonsr.commands.degrade",
    "export": "paragonsr.commands.export",
    "eval": "paragonsr.commands.eval",
    "data": "paragonsr.commands.data",
    "transfer": "paragonsr.commands.transfer",
    "archs": "paragonsr.commands.archs",
    "weights": "paragonsr.commands.weights",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paragonsr",
        description="Super-resolution from raw photos to a shipped, verified model.",
    )
    from paragonsr import __version__

    parser.add_argument("--version", action="version", version=f"paragonsr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            # Register a placeholder so --help lists every command without importing it.
            sub.add_parser(name, help=f"(run 'paragonsr {name} -h')", add_help=False)
            continue
        try:
            mod = _load(name)
        except ModuleNotFoundError as exc:  # area not built yet or optional dependency missing
            sub.add_parser(name, help=f"unavailable: {exc}")
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from paragonsr.utils.procs import interrupt_exit, terminate_as_interrupt

    terminate_as_interrupt()  # SIGTERM runs the Ctrl-C cleanup too, then exits 143
    try:  # an interrupt while the command is still being set up (imports, parsing) is as quiet as later
        return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl-C (130) or SIGTERM (143): one line, workers already stopped
        line, status = interrupt_exit(exc)
        with contextlib.suppress(OSError):
            print(line, file=sys.stderr)
        return status


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if not hasattr(args, "_run"):
        parser.error(f"command '{args.command}' is unavailable in this installation")
    # Reuse freed tensor buffers instead of page-faulting fresh mmap pages on every forward (glibc; opt out with
    # PARAGONSR_MALLOC_TUNING=0). Done here, not on import: a library must not retune its host's allocator.
    tune_malloc()
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # `paragonsr archs | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ParagonSRError, OSError) as exc:
        # Expected failures (bad file, option, path, permission): one line, no traceback. Anything else is a
        # bug and keeps its traceback; PARAGONSR_TRACEBACK=1 shows it for these too.
        if os.environ.get("PARAGONSR_TRACEBACK", "") not in ("", "0"):
            raise
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2


def error_line(exc: BaseException) -> str:
    """The one-line message for an expected error: OSErrors as ``path: reason`` (``'[Errno 13] ...'`` is noise),
    KeyErrors without their quotes, anything else as its text."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ParagonSRError):
        where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        return f"{where}: {exc.strerror}" if where else exc.strerror
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
