"""``paragonsr archs`` lists from a precomputed parameter table (no model building) that matches real builds and
is refreshed whenever an arch source changes; every scale gives a valid listing."""

from __future__ import annotations

import pytest

from paragonsr.archs import ARCH_REGISTRY, build_arch
from paragonsr.archs import param_table as pt
from paragonsr.cli import main


def test_table_is_current_for_the_arch_sources() -> None:
    assert pt.table_is_fresh(), "arch sources changed: run python scripts/gen_arch_params.py"


def test_an_added_or_removed_arch_file_makes_the_table_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = pt.source_hashes()
    assert pt.sources_match(recorded)
    real = pt.source_hashes
    monkeypatch.setattr(pt, "source_hashes", lambda: {**real(), "new_arch.py": "0" * 64})
    assert not pt.sources_match(recorded)  # a new arch file (new layers) is not covered by the table
    monkeypatch.setattr(pt, "source_hashes", lambda: {k: v for k, v in real().items() if k != "compact.py"})
    assert not pt.sources_match(recorded)


@pytest.mark.parametrize(("name", "kw"), [("paragonsr2_nano", "scale"), ("srvggnetcompact", "upscale")])
@pytest.mark.parametrize("scale", [2, 3])
def test_table_counts_equal_real_builds(name: str, kw: str, scale: int) -> None:
    model = build_arch(name, **{kw: scale})
    assert pt.lookup(name, scale) == {"params": sum(p.numel() for p in model.parameters()), "scale": scale}


def test_listing_builds_nothing_and_is_valid_for_every_scale(capsys, monkeypatch) -> None:
    def no_build(*a, **k):
        raise AssertionError("a listing must not build models when the table is current")

    monkeypatch.setattr(pt, "build_for_listing", no_build)
    for scale in pt.SCALES:
        assert main(["archs", "--scale", str(scale)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [ln.split()[0] for ln in lines] == ARCH_REGISTRY.names()
        rrdb = next(ln for ln in lines if ln.startswith("rrdbnet"))
        if scale == 3:
            assert rrdb.split(None, 1)[1] == "no x3: RRDBNet supports scale (1, 2, 4, 8), got 3"
        else:
            assert f"scale={scale} " in rrdb


def test_unknown_or_changed_entries_are_computed(monkeypatch) -> None:
    monkeypatch.setattr(pt, "_load", lambda: ({}, False))  # stale/missing table
    assert pt.lookup("paragonsr2_nano", 16) == {"error": "ParagonSR2 scale must be an integer 1-4, got 16"}
    real = sum(p.numel() for p in build_arch("paragonsr2_nano", scale=3).parameters())
    assert pt.lookup("paragonsr2_nano", 3) == {"params": real, "scale": 3}


def test_docstring_and_comment_edits_keep_the_table_current() -> None:
    code = 'def f(x):\n    """Doc."""\n    return x * 2  # twice\n'
    assert pt._code_digest(code) == pt._code_digest(
        code.replace("Doc.", "Other words.").replace("twice", "2x")
    )
    assert pt._code_digest(code) != pt._code_digest(code.replace("x * 2", "x * 3"))
