"""Subcommands of ``paragonsr`` (see :mod:`paragonsr.cli`) and the few helpers they share."""

from __future__ import annotations

import os
import sys


def clean_temps(folder: str | os.PathLike[str], recursive: bool = False) -> int:
    """Remove our own temp files a killed run left in ``folder`` (see ``clean_stale_temps``); say so on stderr.
    Returns how many were removed."""
    from paragonsr.utils.atomic import clean_stale_temps
    from paragonsr.utils.claims import clean_claims

    clean_claims(folder, recursive=recursive)  # claims of killed runs: their outputs are free again
    removed = clean_stale_temps(folder, recursive=recursive)
    if removed:
        print(
            f"note: removed {len(removed)} temp file(s) left by an interrupted run in {folder}",
            file=sys.stderr,
        )
    return len(removed)
