"""Parameter counts of every registered arch at every scale, for ``paragonsr archs`` without building models.

The table (``assets/arch_params.json``) is written by ``python scripts/gen_arch_params.py``. It records the
sha256 of the arch source files it was computed from; when any of them changed since, or an arch/scale is not in
it (a newly registered arch), the count is computed on the spot by building the model on the ``meta`` device
(shapes only, no memory), so a listing is never wrong, only slower.
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any, cast

from paragonsr.utils.params import count_params

SCALES = (1, 2, 3, 4, 8)
ARCHS_DIR = Path(__file__).resolve().parent
TABLE = ARCHS_DIR.parent / "assets" / "arch_params.json"


# Files that define no layers: editing them cannot change a count.
_NOT_LAYERS = ("__init__.py", "detect.py", "hparams.py", "options.py", "param_table.py")


def _code_digest(source: str) -> str:
    """sha256 of the code itself: the syntax tree without docstrings, so comment and docstring edits do not make
    the table stale (unparsable text falls back to the raw bytes)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return hashlib.sha256(source.encode()).hexdigest()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not (isinstance(body, list) and body):
            continue
        first = body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            cast(Any, node).body = body[1:] or [ast.Pass()]  # a node with a statement list
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def source_hashes() -> dict[str, str]:
    """Code digest (:func:`_code_digest`) of every arch source file (``archs/*.py`` that define layers)."""
    return {
        p.name: _code_digest(p.read_text(encoding="utf-8"))
        for p in sorted(ARCHS_DIR.glob("*.py"))
        if p.name not in _NOT_LAYERS
    }


def build_for_listing(name: str, scale: int) -> tuple[Any, bool]:
    """(``name`` built on the meta device at ``scale``, whether it takes a scale at all). Generators take
    ``scale`` or ``upscale``; discriminators take neither and are built as they are. Raises ValueError/TypeError
    when the arch cannot do ``scale``."""
    import torch

    from paragonsr.archs import build_arch

    with torch.device("meta"):
        for kw in ({"scale": scale}, {"upscale": scale}):
            try:
                return build_arch(name, **kw), True
            except TypeError as exc:
                if "unexpected keyword" not in str(exc):
                    raise
        return build_arch(name), False


def compute(name: str, scale: int) -> dict[str, Any]:
    """``{"params": n, "scale": model scale or None}`` or ``{"error": why}`` for one arch at one scale."""
    try:
        model, scaled = build_for_listing(name, scale)
    except (ValueError, TypeError, AssertionError) as exc:
        return {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    got = getattr(model, "scale", None) if scaled else None
    if got is not None and int(got) != scale:
        return {"error": f"builds x{got}, not x{scale}"}
    return {"params": count_params(model), "scale": got}


def build_table(names: list[str]) -> dict[str, Any]:
    return {
        "sources": source_hashes(),
        "archs": {n: {str(s): compute(n, s) for s in SCALES} for n in names},
    }


@cache
def _load() -> tuple[dict[str, Any], bool]:
    """(the table's arch entries, whether its sources still match the code)."""
    try:
        data = json.loads(TABLE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, False
    return data.get("archs", {}), sources_match(data.get("sources", {}))


def sources_match(recorded: dict[str, str]) -> bool:
    """True when ``recorded`` (file -> code digest) is exactly the current set of arch sources: an edited, added
    or removed arch file makes the table stale."""
    return recorded == source_hashes()


def lookup(name: str, scale: int) -> dict[str, Any]:
    """The entry for ``name`` at ``scale``: from the table when it is current, else computed now."""
    archs, fresh = _load()
    entry = archs.get(name, {}).get(str(scale)) if fresh else None
    return entry if entry is not None else compute(name, scale)


def table_is_fresh() -> bool:
    return _load()[1]
