"""The one meaning of a tile size, shared by ``upscale --tile``, ``eval --tile`` and ``val.tile_size`` in options.

A tile size is ``0`` (the whole image at once), ``auto`` (tiles sized from the free memory, halved and retried on
an out-of-memory error; on CUDA the whole image is tried first) or a number of LR (input) pixels. ``None`` and
``"0"`` are accepted and normalised to ``0`` (older API calls and YAML ``~``); spellings are case-insensitive.
This module imports no torch, so the command-line parsers stay fast.
"""

from __future__ import annotations

import argparse
from typing import Literal

from paragonsr.errors import InputError

DEFAULT_OVERLAP = 32  # LR px shared by neighbouring tiles unless asked otherwise
MIN_TILE = 32  # smallest tile size a user may ask for (smaller tiles spend most of their work on overlap)

TileSize = int | Literal["auto"]
WHOLE_IMAGE = 0

TILE_HELP = (
    "tile size in input (LR) pixels: 0 = whole image at once, auto = sized from the free memory (and halved on "
    "out-of-memory), N = tiles of at most N px (>= {min_tile})"
)


def parse_tile(value: object, option: str = "tile", min_tile: int = MIN_TILE) -> TileSize:
    """Normalise a tile size: ``0``/``None`` -> ``0`` (whole image), ``"auto"`` -> ``"auto"``, a number of pixels
    (int or digit string) -> int.

    Raises:
        InputError: anything else, a negative number, or a size below ``min_tile`` (message names ``option``).
    """
    if value is None:
        return WHOLE_IMAGE
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = int(text)
        except ValueError:
            raise InputError(
                f"{option} must be a number of pixels, 0 (whole image) or 'auto', got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{option} must be a number of pixels, 0 (whole image) or 'auto', got {value!r}")
    if value < 0:
        raise InputError(f"{option} must be >= 0 pixels (0 = whole image) or 'auto', got {value}")
    if 0 < value < min_tile:
        raise InputError(f"{option} {value} is too small (minimum {min_tile} px, 0 = whole image, or auto)")
    return value


def add_tile_argument(
    parser: argparse.ArgumentParser, default: TileSize = "auto", short: bool = False
) -> None:
    """``--tile`` (and ``-t`` with ``short``) with the shared help text; the raw string is kept, the command
    normalises it with :func:`parse_tile` so a bad value is one ``error:`` line and exit status 2."""
    names = ("-t", "--tile") if short else ("--tile",)
    parser.add_argument(
        *names,
        default=str(default),
        metavar="N|0|auto",
        help=TILE_HELP.format(min_tile=MIN_TILE) + f" (default {default})",
    )


__all__ = [
    "DEFAULT_OVERLAP",
    "MIN_TILE",
    "TILE_HELP",
    "WHOLE_IMAGE",
    "TileSize",
    "add_tile_argument",
    "parse_tile",
]
