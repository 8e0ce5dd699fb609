"""Rerunning ``upscale d -o d --suffix _x2`` leaves its own outputs alone, and temp files of a killed run (our
own ``.NAME.PID.XXXXXXXX.tmp`` pattern, dead PID) are cleaned at the next start - nothing else is touched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from conftest import imread
from paragonsr.cli import main
from paragonsr.utils.atomic import atomic_output, clean_stale_temps


def _png(path: Path) -> None:
    cv2.imwrite(str(path), (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))


def test_second_run_into_the_same_folder_skips_its_own_outputs(tmp_path: Path, capsys) -> None:
    _png(tmp_path / "a.png")
    _png(
        tmp_path / "b_x2.png"
    )  # a user file of that name, with no a-like source beside it, is still an input
    args = ["upscale", str(tmp_path), "-o", str(tmp_path), "--suffix", "_x2", "--resampler", "bicubic", "-q"]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x2.png", "b_x2.png", "b_x2_x2.png"]
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x2.png", "b_x2.png", "b_x2_x2.png"]
    assert "skip: 2 input(s) are outputs of this naming scheme (--suffix _x2)" in capsys.readouterr().err
    assert imread(str(tmp_path / "a_x2.png")).shape[:2] == (32, 32)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_our_pattern_only(tmp_path: Path) -> None:
    dead = _dead_pid()
    old = time.time() - 600
    stale = tmp_path / f".a.png.{dead}.abcd_123.tmp"
    fresh = tmp_path / f".b.png.{dead}.abcd_123.tmp"  # just written (maybe by a live writer elsewhere)
    live = tmp_path / f".c.png.{os.getpid()}.abcd_123.tmp"  # our own process is alive
    other = tmp_path / ".notes.tmp"  # not our naming pattern
    for p in (stale, fresh, live, other):
        p.write_bytes(b"x")
    for p in (stale, live, other):
        os.utime(p, (old, old))
    assert clean_stale_temps(tmp_path) == [stale]
    assert fresh.exists() and live.exists() and other.exists()


def test_temp_of_a_killed_writer_is_removed_by_the_next_run(tmp_path: Path, capsys) -> None:
    code = (
        "import sys, time\nfrom paragonsr.utils.atomic import atomic_output\n"
        f"with atomic_output({str(tmp_path / 'a_x2.png')!r}) as t:\n"
        "    t.write_bytes(b'half'); print(t.name, flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    name = proc.stdout.readline().strip()
    proc.kill()
    proc.wait()
    left = tmp_path / name
    assert left.is_file()  # what a killed run leaves
    old = time.time() - 600
    os.utime(left, (old, old))
    with atomic_output(tmp_path / "x.txt") as t:  # our own pattern, as atomic_output writes it
        assert t.name.startswith(f".x.txt.{os.getpid()}.")
        t.write_text("ok")
    _png(tmp_path / "a.png")
    assert (
        main(
            ["upscale", str(tmp_path), "-o", str(tmp_path), "--suffix", "_x2", "--resampler", "bicubic", "-q"]
        )
        == 0
    )
    assert not left.exists()
    assert "removed 1 temp file(s) left by an interrupted run" in capsys.readouterr().err
