"""Two runs at once into one folder (issue 26) for the data tools, ``eval`` and ``export``: every output is
computed by exactly one run, none replaces the other's, and what is left equals one uninterrupted run.

Per-image tools (``data extract-tiles``, ``data multiscale``) run as two processes started together, each slowed
per image (:func:`fault_helpers.slowed`) so they surely overlap: the counts they report add up to the work of one
run, at least one image was left to the other run, and the folder equals one run's. Whole-output tools (a filter
report, a meta_info file, a NIQE model, an eval report folder, an export of one name) are claimed for the whole
run: a second run started while the first holds the claim says so in one line (exit 1) and computes nothing
(``filter`` and ``export`` with a real first run; the others against a claim of a live stand-in process, the same
code path, to keep CI short). ``data subset`` leaves a file another live run is placing."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fault_helpers import env, hidden_files, images, slowed, visible_files, wait_for
from paragonsr.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _together(*cmds: list[str]) -> list[tuple[int, str, str]]:
    procs = [
        subprocess.Popen(c, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in cmds
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs)]


def _count(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    assert m, f"no match for {pattern!r} in:\n{text}"
    return int(m.group(1))


# (args after 'data', function slowed per image, pattern of the count of outputs a run made, outputs of one run)
PER_IMAGE = {
    "extract-tiles": (
        ["extract-tiles", "--crop", "32", "--step", "32", "--workers", "1"],
        "paragonsr.data.tiles:read_image_native",
        r"wrote (\d+) tiles",
        6 * 4,
    ),
    "multiscale": (
        ["multiscale", "--scales", "1", "0.5", "--min-size", "8"],
        "paragonsr.data.multiscale:read_image",
        r"wrote (\d+) copies",
        6 * 2,
    ),
}


@pytest.mark.parametrize("tool", sorted(PER_IMAGE))
def test_two_data_runs_into_one_folder_split_the_work(tmp_path: Path, tool: str) -> None:
    args, target, made, total = PER_IMAGE[tool]
    inp = images(tmp_path / "in", 6, size=64)
    io = ["--input", str(inp), "--out"]
    assert main(["data", *args, *io, str(tmp_path / "ref")]) == 0
    ref = visible_files(tmp_path / "ref")
    out = tmp_path / "out"
    # the first run slow per image, the second quick: however late the second starts (imports on a loaded
    # machine take seconds), it arrives while the first still has images to claim
    runs = _together(*(slowed(target, secs, "data", *args, *io, str(out)) for secs in (2.0, 0.1)))
    for rc, _, stderr in runs:
        assert rc == 0 and "Traceback" not in stderr, stderr[-2000:]
    # each output made by exactly one run; the runs overlapped (so the claims were put to the test)
    assert sum(_count(made, o) for _, o, _ in runs) == total, runs
    assert any("left to another run" in o for _, o, _ in runs), runs
    assert visible_files(out) == ref  # byte-identical to one run, meta_info.txt complete
    assert hidden_files(out) == []  # no claim or temp file left


def _filter_args(inp: Path, out: Path) -> list[str]:
    return ["data", "filter", "--input", str(inp), "--out", str(out / "r.csv"), "--tile", "64", "--no-plots",
            "--workers", "1"]  # fmt: skip


# (argv of a run into OUT, claim file under OUT while it runs, what a second run says)
WHOLE = {
    "meta-info": (
        lambda inp, out: ["data", "meta-info", "--input", str(inp), "--out", str(out / "meta_info.txt")],
        ".meta_info.txt.claim",
        "this meta_info is being written by another run",
    ),
    "niqe-fit": (
        lambda inp, out: [
            "data",
            "niqe-fit",
            "--input",
            str(inp),
            "--out",
            str(out / "m.npz"),
            "--patch",
            "16",
        ],
        ".m.npz.claim",
        "this NIQE model is being written by another run",
    ),
    "filter": (
        _filter_args,
        ".r.csv.claim",
        "this filter report is being written by another run",
    ),
    "eval": (
        lambda inp, out: ["eval", "--gt", str(inp), "--scale", "2", "--no-crops", "-o", str(out)],
        ".report.md.claim",
        "this report folder is being written by another run",
    ),
}


def test_a_second_filter_into_a_report_being_written_computes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, claim, said = WHOLE["filter"]
    inp = images(tmp_path / "in", 2, size=64)
    out = tmp_path / "out"
    assert main(argv(inp, tmp_path / "ref")) == 0
    capsys.readouterr()
    first = subprocess.Popen(slowed("paragonsr.data.filter.pipeline:_score_image", 0.5, *argv(inp, out)),
                             env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(out / claim, first)
        assert main(argv(inp, out)) == 1  # the second run, while the first holds the report
    finally:
        _, stderr = first.communicate(timeout=300)
    captured = capsys.readouterr().err
    err = [ln for ln in captured.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and said in err[0] and f"(pid {first.pid} on " in err[0], captured
    assert first.returncode == 0 and "Traceback" not in captured + stderr, stderr[-2000:]
    assert (out / "r.csv").read_bytes() == (tmp_path / "ref" / "r.csv").read_bytes()
    assert hidden_files(out) == []


@contextlib.contextmanager
def _held_by_another_process(claim: Path) -> Iterator[int]:
    """``claim`` written for a live process other than this one (a run that is busy with that output)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        claim.parent.mkdir(parents=True, exist_ok=True)
        claim.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "time": time.time()}))
        yield other.pid
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("tool", sorted(set(WHOLE) - {"filter"}))
def test_an_output_another_live_run_holds_is_not_computed(
    tmp_path: Path, tool: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, claim, said = WHOLE[tool]
    inp = images(tmp_path / "in", 2, size=64)
    out = tmp_path / "out"
    with _held_by_another_process(out / claim) as pid:
        assert main(argv(inp, out)) == 1
        assert visible_files(out) == {}  # nothing computed or written
    captured = capsys.readouterr().err
    err = [ln for ln in captured.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and said in err[0] and f"(pid {pid} on " in err[0], captured
    (out / claim).unlink()
    assert main(argv(inp, out)) == 0  # once the other run is gone, the output is computed


def test_subset_leaves_files_another_live_run_places(tmp_path: Path, capsys) -> None:
    inp = images(tmp_path / "in", 3, size=32)
    out = tmp_path / "out"
    with _held_by_another_process(out / "in" / ".img001.png.claim"):
        assert (
            main(["data", "subset", "--input", str(inp), "--n", "3", "--mode", "copy", "--out", str(out)])
            == 0
        )
    assert "copy: 2 new, 0 already there, 1 left to another run placing them" in capsys.readouterr().out
    assert sorted(visible_files(out)) == ["in/img000.png", "in/img002.png"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(path, build_arch("compact", num_feat=8, num_conv=2, upscale=2))
    return path


def test_two_exports_into_one_folder(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    out = tmp_path / "rel"
    fast = ["--latency-size", "0", "--crop", "24"]
    args = ["export", str(tiny_checkpoint), "-o", str(out), *fast]
    first = subprocess.Popen(slowed("paragonsr.deploy.release:export_release", 0.5, *args, "--name", "a"),
                             env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(out / ".a_fp32.onnx.claim", first)
        assert main([*args, "--name", "a"]) == 1  # the same export: left to the first run, not computed twice
        assert not (out / "a_fp32.onnx").exists()
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert err == [f"error: {out / 'a'}_*: being exported by another run (pid {first.pid} on {socket.gethostname()}); not "
                   "exported twice (wait for it, or use another --name/--output)"]  # fmt: skip
    card_a = (out / "MODEL_CARD.md").read_bytes()
    # another model into the same folder: its own card beside the first one's, which stays as it was
    assert main([*args, "--name", "b"]) == 0
    assert f"model card: {out / 'b_MODEL_CARD.md'}" in capsys.readouterr().out
    assert (out / "MODEL_CARD.md").read_bytes() == card_a
    assert json.loads((out / "model_card.json").read_text())["name"] == "a"
    assert json.loads((out / "b_model_card.json").read_text())["name"] == "b"
    assert {"a_fp32.onnx", "b_fp32.onnx"} <= set(visible_files(out)) and hidden_files(out) == []
