"""``paragonsr upscale``, its run loop: claim each output, compute it, hand the write to the writer thread.

Concurrent runs into one folder (issue 26): every output is claimed (:class:`~paragonsr.utils.claims.OutputClaim`)
before it is computed and released once its write finished or failed; a full disk stops the batch once."""

from __future__ import annotations

import argparse
import errno
import functools
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paragonsr.commands.upscale_inputs import output_path
from paragonsr.utils.claims import OutputClaim, describe_holder


def disk_full(exc: BaseException) -> bool:
    """True for the errors after which every further write fails too (ENOSPC, EDQUOT)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def describe(src: Path, exc: BaseException) -> str:
    """One line for a failed input: the exception's text, prefixed by the input path unless it names it."""
    text = (
        str(exc) if isinstance(exc, (OSError, ValueError, RuntimeError)) else f"{type(exc).__name__}: {exc}"
    )
    return text if str(src) in text else f"{src}: {text}"


@dataclass
class Counts:
    """What a batch did: outputs written, skipped (exist / written meanwhile), failed, left to another run."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    busy: int = 0
    stop: bool = False  # a write hit a full disk: every further image would fail
    claimed: dict[Path, Path] = field(default_factory=dict)  # output -> the input it belongs to in this run


def upscale_files(
    files: list[tuple[Path, Path]],
    args: argparse.Namespace,
    upscaler: Any,
    single_file: Path | None,
    started_wall: float,
    err: Callable[[str], None],
) -> Counts:
    """Upscale ``files`` ((input, path relative to its root)) into their outputs; one line per problem on stderr.

    An output that exists is skipped unless ``args.overwrite``; ``--overwrite`` replaces only what existed before
    ``started_wall`` (epoch seconds), never a result another run wrote since. Raises only on an interrupt."""
    from tqdm import tqdm

    from paragonsr.infer.overlap import OverlappedFiles
    from paragonsr.io.image_io import FloatRangeWarning

    c = Counts()
    inputs = {src.resolve() for src, _ in files}
    bar = tqdm(files, unit="img", disable=args.quiet or not files, dynamic_ncols=True)
    tiles: list[Any] = []  # a second bar for big images split into tiles

    def on_tile(done_tiles: int, total: int) -> None:
        if args.quiet or total <= 1:
            return
        if not tiles or tiles[0].total != total:  # new image, or auto tiling restarted with smaller tiles
            for t in tiles:
                t.close()
            tiles[:] = [tqdm(total=total, unit="tile", leave=False, position=1, dynamic_ncols=True)]
        tiles[0].update(done_tiles - tiles[0].n)
        if done_tiles == total:
            tiles.pop().close()

    held: set[OutputClaim] = set()  # claims handed to the writer thread, released by ``written``

    def written(src: Path, claim: Any, exc: BaseException | None) -> None:
        try:
            if exc is None:
                c.done += 1
                return
            c.failed += 1
            if disk_full(exc) and c.stop:
                return  # the write already in flight when the disk filled: said once, above
            if disk_full(exc):
                c.stop = True
                err(
                    f"{describe(src, exc)}; stopped (the disk is full: every further image would fail; a rerun resumes)"
                )
            else:
                err(describe(src, exc))
        finally:
            claim.release()
            held.discard(claim)  # after the release: an interrupt in between leaves it to the final sweep

    pipe = OverlappedFiles(
        upscaler, [src for src, _ in files], outscale=args.outscale, quality=args.quality,
        first_frame=args.first_frame, progress=on_tile,
    )  # fmt: skip
    try:
        for src, rel in bar:
            bar.set_postfix_str(src.name[-40:], refresh=False)
            dst = output_path(src, rel, args, single_file)
            if dst.resolve() in inputs:
                err(
                    f"{src}: refusing to write {dst} because it is an input (set --suffix or another --output)"
                )
                c.failed += 1
                continue
            # Two inputs with one output name (same file name in two folders, or x.png + x.jpg with --ext): the
            # second must neither be reported as "exists" nor, with --overwrite, replace the first one's result.
            first = c.claimed.setdefault(dst.resolve(), src)
            if first is not src:
                err(
                    f"{src}: output {dst} is already the result of {first} in this run (use separate runs/--output)"
                )
                c.failed += 1
                continue
            if dst.exists() and not args.overwrite:
                tqdm.write(f"skip: {dst} exists (use --overwrite)", file=sys.stderr)
                c.skipped += 1
                continue
            # Another run writing into this folder: claim the output first, look again once it is ours
            claim = OutputClaim(dst)
            handed_over = (
                False  # the claim goes with the write to the writer thread, released when it is done
            )
            try:  # released whatever happens from here on (an interrupt included)
                if not claim.acquire():
                    tqdm.write(
                        f"skip: {dst} is being written by {describe_holder(claim.holder)}", file=sys.stderr
                    )
                    c.busy += 1
                    continue
                if dst.exists() and (not args.overwrite or dst.stat().st_mtime >= started_wall):
                    # --overwrite replaces what was there before this run, not another run's new result
                    tqdm.write(f"skip: {dst} was written by another run meanwhile", file=sys.stderr)
                    c.skipped += 1
                    continue
                # stills and animations (every frame, timing kept; --first-frame: the first one only); the write
                # overlaps the next image
                with warnings.catch_warnings(record=True) as notes:
                    warnings.simplefilter("always", FloatRangeWarning)
                    held.add(claim)  # first: an interrupt between the two lines is covered either way
                    handed_over = True
                    try:
                        pipe.upscale(src, dst, functools.partial(written, src, claim))
                    except BaseException:
                        handed_over = False  # reading or computing failed: no write will follow
                        held.discard(claim)
                        raise
                for note in notes:  # an HDR float input: its clamp to [0, 1] is said, once, as one line
                    if issubclass(note.category, FloatRangeWarning):
                        tqdm.write(f"note: {note.message}", file=sys.stderr)
                    else:
                        warnings.warn_explicit(note.message, note.category, note.filename, note.lineno)
            except Exception as exc:  # one bad file must not stop the batch
                c.failed += 1
                if disk_full(exc):
                    err(
                        f"{describe(src, exc)}; stopped (the disk is full: every further image would fail; a rerun resumes)"
                    )
                    break
                err(describe(src, exc))
                continue
            finally:
                if not handed_over:
                    claim.release()
            if c.stop:
                break
    finally:  # an interrupt too: the write in flight finishes and its callback releases its claim
        try:
            pipe.close()
        finally:  # an interrupt inside close() (waiting for the last write) loses that callback: release here
            for claim in list(held):
                claim.release()
            bar.close()
    return c
