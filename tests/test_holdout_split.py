"""The photos2 hold-out split (scripts/split_holdout.py): stable by name, stratified by content, disjoint from
training, and what the committed meta_info files say. Runs on the committed content table only (no images)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import split_holdout as sh  # noqa: E402

META = REPO / "configs" / "meta_info"
TABLE = META / "photos2_content.tsv"


def _lines(p: Path) -> list[str]:
    return [s for s in p.read_text(encoding="utf-8").splitlines() if s]


def test_committed_split_is_the_rule_applied_to_the_table() -> None:
    table = sh.read_table(TABLE)
    train, val = sh.split(table)
    assert _lines(META / "photos2_train.txt") == train
    assert _lines(META / "photos2_val.txt") == val
    groups = {g: _lines(META / f"photos2_val_{g.replace('-', '')}.txt") for g in set(sh.GROUPS.values())}
    assert sorted(n for names in groups.values() for n in names) == val
    for g, names in groups.items():
        assert names and all(sh.group_of(table, n) == g for n in names)


def test_split_never_overlaps_and_covers_every_content_class() -> None:
    table = sh.read_table(TABLE)
    train, val = sh.split(table)
    assert not set(train) & set(val) and sorted(train + val) == sorted(table)
    assert {table[n] for n in val} == set(table.values())  # every class held out, rare ones included
    old = set(_lines(META / "photos_train.txt")) | set(_lines(META / "photos_val.txt"))
    assert not {Path(n).name for n in table} & old  # photos2 names never collide with the old set


def test_split_is_independent_of_order_and_of_other_photos() -> None:
    table = sh.read_table(TABLE)
    _, val = sh.split(table)
    rev = dict(reversed(list(table.items())))
    assert sh.split(rev)[1] == val
    # adding a photo to one class moves nothing in the other classes
    more = {**table, "new/zzz.jpg": "aerial"}
    _, val2 = sh.split(more)
    assert [n for n in val2 if table.get(n, "aerial") != "aerial"] == [n for n in val if table[n] != "aerial"]


def test_bad_table_and_fraction_are_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "t.tsv"
    bad.write_text("a.jpg\tarchitecture\nb.jpg\tspaceships\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.tsv:2: expected"):
        sh.read_table(bad)
    with pytest.raises(ValueError, match="fraction"):
        sh.split({"a.jpg": "animal"}, 1.5)


def test_credits_parsing(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "CREDITS.md").write_text(
        "## sub/ — 2 images — from x\n\n| file | src | author | licence | link | content | notes |\n"
        "|---|---|---|---|---|---|---|\n| a.jpg | p | me | CC0 | — | interior |  |\n"
        "| b.jpg | p | me | CC0 | — | animal |  |\n",
        encoding="utf-8",
    )
    assert sh.read_credits(tmp_path) == [("sub/a.jpg", "interior"), ("sub/b.jpg", "animal")]
    (tmp_path / "CREDITS.md").write_text(
        "## sub/ — x\n| c.jpg | p | me | CC0 | — | ufo |  |\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"CREDITS\.md:2: content 'ufo'"):
        sh.read_credits(tmp_path)
