"""Fixed, content-stratified hold-out split of a photo folder, by name.

Reads a content table (``name<TAB>content``, one photo per line, e.g. ``configs/meta_info/photos2_content.tsv``,
made from a folder's ``CREDITS.md`` with ``--from-credits``), and writes two meta_info files: the training list and
the validation list. The rule is deterministic and independent of file order, so the split is stable as long as
the table is: within each content class, photos are ordered by the SHA-1 of their relative path and the first
``ceil(fraction · n)`` (at least one) are held out. Every class is represented in validation, the rare man-made
ones (signage, interiors, fabric) included.

Content groups for reporting (:data:`GROUPS`): ``man-made`` (architecture, streets, interiors, signs, machinery,
fabric), ``nature`` (landscapes, animals, aerials) and ``objects`` (objects / food, patterns / textures).

Usage (from the repository root)::

    python scripts/split_holdout.py --from-credits ../shared/data/photos2 --table configs/meta_info/photos2_content.tsv
    python scripts/split_holdout.py --table configs/meta_info/photos2_content.tsv \
        --train configs/meta_info/photos2_train.txt --val configs/meta_info/photos2_val.txt \
        --val-groups configs/meta_info/photos2_val
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

from paragonsr.utils.atomic import atomic_write_text

GROUPS: dict[str, str] = {
    "architecture": "man-made",
    "city/street": "man-made",
    "interior": "man-made",
    "signage/text": "man-made",
    "machinery/tech": "man-made",
    "fabric/textile": "man-made",
    "nature/landscape": "nature",
    "animal": "nature",
    "aerial": "nature",
    "objects/food": "objects",
    "pattern/texture": "objects",
}
DEFAULT_FRACTION = 0.15

_SECTION = re.compile(r"^## (\S+?)/? ")
_ROW = re.compile(r"^\| (\S+\.(?:jpe?g|png|webp|tiff?)) \|")


def read_credits(folder: Path) -> list[tuple[str, str]]:
    """``(relative path, content)`` for every photo row of ``folder/CREDITS.md``.

    The file has one ``## subfolder/ — ...`` section per subfolder and a table whose sixth column is the content
    class. Raises ``ValueError`` naming the line when a row's content is not a known class (:data:`GROUPS`).
    """
    credits = folder / "CREDITS.md"
    rows: list[tuple[str, str]] = []
    section = ""
    for lineno, line in enumerate(credits.read_text(encoding="utf-8").splitlines(), start=1):
        if m := _SECTION.match(line):
            section = m.group(1).rstrip("/")
            continue
        if m := _ROW.match(line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            content = cells[5] if len(cells) > 5 else ""
            if content not in GROUPS:
                raise ValueError(f"{credits}:{lineno}: content {content!r} is not one of {sorted(GROUPS)}")
            rows.append((f"{section}/{m.group(1)}" if section else m.group(1), content))
    return rows


def read_table(path: Path) -> dict[str, str]:
    """``{relative path: content}`` from a ``name<TAB>content`` table; one clear error per bad line."""
    table: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or parts[1] not in GROUPS:
            raise ValueError(f"{path}:{lineno}: expected 'name<TAB>content' with content in {sorted(GROUPS)}")
        if parts[0] in table:
            raise ValueError(f"{path}:{lineno}: {parts[0]} is listed twice")
        table[parts[0]] = parts[1]
    return table


def split(table: dict[str, str], fraction: float = DEFAULT_FRACTION) -> tuple[list[str], list[str]]:
    """``(train, val)`` sorted name lists: per content class, the ``ceil(fraction·n)`` (≥ 1) names with the
    smallest SHA-1 go to validation. Raises ``ValueError`` unless ``0 < fraction < 1``."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    by_class: dict[str, list[str]] = defaultdict(list)
    for name, content in table.items():
        by_class[content].append(name)
    val: list[str] = []
    for names in by_class.values():
        names.sort(key=lambda n: hashlib.sha1(n.encode("utf-8")).hexdigest())
        val += names[: max(1, math.ceil(fraction * len(names)))]
    held = set(val)
    return sorted(n for n in table if n not in held), sorted(val)


def group_of(table: dict[str, str], name: str) -> str:
    """Reporting group (``man-made``, ``nature``, ``objects``) of a photo in the table."""
    return GROUPS[table[name]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=Path, required=True, help="name<TAB>content table (read, or written)")
    ap.add_argument("--from-credits", type=Path, help="photo folder whose CREDITS.md makes the table")
    ap.add_argument("--train", type=Path, help="training meta_info to write")
    ap.add_argument("--val", type=Path, help="validation meta_info to write")
    ap.add_argument(
        "--val-groups",
        metavar="PREFIX",
        help="also write PREFIX_<group>.txt: the validation list of each group",
    )
    ap.add_argument("--fraction", type=float, default=DEFAULT_FRACTION)
    args = ap.parse_args(argv)
    try:
        if args.from_credits:
            rows = read_credits(args.from_credits)
            missing = [n for n, _ in rows if not (args.from_credits / n).is_file()]
            if missing:
                raise ValueError(
                    f"{args.from_credits}: CREDITS.md lists files that are not there: {missing[:5]}"
                )
            atomic_write_text(args.table, "".join(f"{n}\t{c}\n" for n, c in sorted(rows)))
            print(f"wrote {args.table}: {len(rows)} photos")
        table = read_table(args.table)
        train, val = split(table, args.fraction)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outputs = [(args.train, train), (args.val, val)]
    if args.val_groups:
        for g in sorted(set(GROUPS.values())):
            names = [n for n in val if group_of(table, n) == g]
            outputs.append((Path(f"{args.val_groups}_{g.replace('-', '')}.txt"), names))
    for path, names in outputs:
        if path:
            atomic_write_text(path, "".join(f"{n}\n" for n in names))
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for n in table:
        counts[group_of(table, n)][n in set(val)] += 1
    for g, (t, v) in sorted(counts.items()):
        print(f"{g:9s} train {t:3d}  val {v:3d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
