"""Fault injection (issue 26): each long-running command is interrupted (Ctrl-C to its process group, SIGTERM or
SIGKILL to the parent) at a seeded random moment, capped by ``RLIMIT_FSIZE`` (EFBIG), run on a full tmpfs
(ENOSPC) or run twice at once into one folder. After each: a clean message (no raw traceback, 130 / 143 for an
interrupt), no process left, no partial or corrupt file, everything reported written still there, and a rerun
that completes with outputs identical to an uninterrupted run (byte-identical images, bit-identical training).
All inputs are generated here. ``bench/fault_soak.py`` runs the same faults hundreds of times."""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import signal
from pathlib import Path

import pytest
import torch
import yaml

from fault_helpers import all_decode, check_clean, hidden_files, images, run, small_tmpfs, visible_files
from paragonsr.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _degrade_args(inp: Path, out: Path, workers: int = 1) -> list[str]:
    return ["degrade", "--pipeline", "bicubic", "-i", str(inp), "-o", str(out), "--workers", str(workers)]


@pytest.fixture(scope="module")
def degrade_ref(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("degrade")
    inp = images(root / "in", 10)
    assert main(_degrade_args(inp, root / "ref")) == 0
    return inp, visible_files(root / "ref")


def _pairs_complete(out: Path) -> None:
    lq = {p.relative_to(out / "lq") for p in (out / "lq").rglob("*.png")} if (out / "lq").is_dir() else set()
    gt = {p.relative_to(out / "gt") for p in (out / "gt").rglob("*.png")} if (out / "gt").is_dir() else set()
    assert lq <= gt, f"lq/ files without their gt/ twin: {sorted(map(str, lq - gt))}"


def _reported(out: Path) -> list[str]:
    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        return []
    entries = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by the kill: not reported
    return [e["file"] for e in entries if "error" not in e]


def _manifest_entries_of(files: dict[str, bytes]) -> list[dict[str, object]]:
    lines = files["manifest.jsonl"].decode("utf-8").splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda e: str(e["file"]))


def _manifest_entries(out: Path) -> list[dict[str, object]]:
    lines = []
    for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # cut by a kill: that image was redone
    return sorted((e for e in lines if "error" not in e), key=lambda e: str(e["file"]))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["int", "term", "kill"])
def test_degrade_workers_interrupted_then_rerun_is_identical(
    tmp_path: Path, degrade_ref: tuple[Path, dict[str, bytes]], sig: int
) -> None:
    inp, ref = degrade_ref
    out = tmp_path / "out"
    delay = random.Random(sig).uniform(0.0, 1.5)
    o = run(_degrade_args(inp, out, workers=2), sig=sig, after=r"to degrade with", delay=delay, timeout=180)
    check_clean(o, sig)
    if o.signalled:
        _pairs_complete(out)
        all_decode(out)
        for rel in _reported(out):  # reported written = in the manifest: both files there
            stem = Path(rel).with_suffix(".png").as_posix()
            assert (out / "lq" / stem).is_file() and (out / "gt" / stem).is_file()
    assert main(_degrade_args(inp, out)) == 0  # the rerun resumes
    got = visible_files(out)
    assert {k: v for k, v in got.items() if k != "manifest.jsonl"} == {
        k: v for k, v in ref.items() if k != "manifest.jsonl"
    }
    # each image reported exactly once over both runs, with the entry an uninterrupted run writes
    assert _manifest_entries(out) == _manifest_entries_of(ref)
    assert not [h for h in hidden_files(out) if h.endswith(".claim")]


def test_upscale_killed_at_a_random_point_then_rerun_is_identical(tmp_path: Path) -> None:
    inp = images(tmp_path / "in", 8)
    args = ["upscale", str(inp), "-o", str(tmp_path / "ref"), "--resampler", "lanczos3", "-q"]
    assert main(args) == 0
    ref = visible_files(tmp_path / "ref")
    out = tmp_path / "out"
    args[3] = str(out)
    o = run(args, sig=signal.SIGKILL, delay=random.Random(7).uniform(1.0, 4.0), timeout=120)
    check_clean(o, signal.SIGKILL)
    if out.is_dir():
        all_decode(out)
    assert main(args) == 0
    assert visible_files(out) == ref


def test_two_upscale_runs_into_one_folder_never_compute_or_replace_twice(tmp_path: Path) -> None:
    import subprocess

    from fault_helpers import command, env

    inp = images(tmp_path / "in", 12)
    refs = {}
    for name in ("bicubic", "lanczos3"):
        assert main(["upscale", str(inp), "-o", str(tmp_path / name), "--resampler", name, "-q"]) == 0
        refs[name] = visible_files(tmp_path / name)
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            command("upscale", str(inp), "-o", str(out), "--resampler", name, "-q"),
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("bicubic", "lanczos3")
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    done = [int(r[0].split("upscaled ")[1].split()[0]) for r in results]
    assert sum(done) == 12, results  # each output computed by exactly one run
    got = visible_files(out)
    assert sorted(got) == sorted(refs["bicubic"])
    # every file is one run's complete result, and a run's result was never replaced by the other's
    owners = {k: [n for n in refs if refs[n][k] == v] for k, v in got.items()}
    assert all(len(v) == 1 for v in owners.values()), owners
    assert sorted(n for v in owners.values() for n in v).count("bicubic") == done[0]
    for r in results:
        assert "Traceback" not in r[1]
    assert hidden_files(out) == []


def _efbig(o_err: str, rc: int) -> str:
    lines = [ln for ln in o_err.strip().splitlines() if ln.startswith("error:")]
    assert rc != 0 and lines, o_err[-2000:]
    assert "File too large" in lines[-1] or "No space left" in lines[-1], lines
    return lines[-1]


def test_file_size_limit_upscale_and_degrade_fail_cleanly_and_resume(
    tmp_path: Path, degrade_ref: tuple[Path, dict[str, bytes]]
) -> None:
    inp = images(tmp_path / "in", 3, size=96)
    out = tmp_path / "up"
    args = ["upscale", str(inp), "-o", str(out), "--resampler", "bicubic", "-q"]
    o = run(args, fsize=4096, timeout=120)  # every 192x192 PNG is larger: EFBIG on each
    check_clean(o)
    assert o.rc == 1 and o.err.count("File too large") == 3, o.err
    assert all(str(out) in ln for ln in o.err.splitlines() if "File too large" in ln)
    assert visible_files(out) == {} and hidden_files(out) == []
    assert main(args) == 0 and len(visible_files(out)) == 3

    dinp, ref = degrade_ref
    dout = tmp_path / "deg"
    o = run(_degrade_args(dinp, dout, workers=2), fsize=2500, timeout=180)
    check_clean(o)
    line = _efbig(o.err, o.rc)
    assert str(dout) in line and "a rerun resumes" in line
    _pairs_complete(dout)
    all_decode(dout)
    assert not [h for h in hidden_files(dout)]
    assert main(_degrade_args(dinp, dout)) == 0
    got = visible_files(dout)
    assert {k: v for k, v in got.items() if k != "manifest.jsonl"} == {
        k: v for k, v in ref.items() if k != "manifest.jsonl"
    }


def test_real_full_disk_on_a_small_tmpfs(tmp_path: Path, degrade_ref: tuple[Path, dict[str, bytes]]) -> None:
    dinp, ref = degrade_ref
    with small_tmpfs(tmp_path / "mnt", 48) as mnt:
        if mnt is None:
            pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")
        out = mnt / "deg"
        o = run(_degrade_args(dinp, out), timeout=180)
        check_clean(o)
        line = _efbig(o.err, o.rc)
        assert "No space left" in line and str(out) in line
        _pairs_complete(out)
        all_decode(out)
        for rel in _reported(out):
            assert (out / "lq" / Path(rel).with_suffix(".png")).is_file()
        shutil.copytree(out, tmp_path / "moved")  # "free space": move the partial result to a bigger disk
        shutil.rmtree(out)
        # upscale on the full disk: one line naming the file, stops instead of failing every further image
        up_in = images(tmp_path / "up_in", 6, size=96)
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * 30_000)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["upscale", str(up_in), "-o", str(mnt / "up"), "--resampler", "bicubic", "-q"])
        errors = [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]
        assert rc == 1 and len(errors) == 1, err.getvalue()
        assert (
            "No space left on device" in errors[0] and str(mnt / "up") in errors[0] and "stopped" in errors[0]
        )
        assert hidden_files(mnt / "up") == []
        all_decode(mnt / "up")
    out = tmp_path / "moved"
    assert main(_degrade_args(dinp, out)) == 0
    got = visible_files(out)
    assert {k: v for k, v in got.items() if k != "manifest.jsonl"} == {
        k: v for k, v in ref.items() if k != "manifest.jsonl"
    }


def _train_yaml(root: Path, total: int = 6) -> Path:
    images(root / "gt", 4, size=32)
    import cv2

    (root / "lq").mkdir(exist_ok=True)
    from conftest import imread

    for p in sorted((root / "gt").glob("*.png")):
        small = cv2.resize(imread(str(p)), (16, 16), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "lq" / p.name), small)
    opt = {
        "name": "f", "scale": 2, "manual_seed": 3,
        "datasets": {"train": {"type": "PairedImageDataset", "dataroot_gt": str(root / "gt"),
                               "dataroot_lq": str(root / "lq"), "gt_size": 16, "batch_size_per_gpu": 2,
                               "use_shuffle": True}},
        "network_g": {"type": "compact", "num_feat": 4, "num_conv": 1},
        "path": {"experiments_root": str(root / "exp")},
        "train": {"total_iter": total, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
    }  # fmt: skip
    path = root / "o.yml"
    path.write_text(yaml.safe_dump(opt))
    return path


def _final_weights(exp: Path, it: int) -> dict[str, torch.Tensor]:
    from paragonsr.checkpoint import load_state_dict

    return load_state_dict(exp / "models" / f"net_g_{it}.safetensors")[0]


@pytest.fixture(scope="module")
def train_ref(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    root = tmp_path_factory.mktemp("train_ref")
    # in a child process like the runs it is compared with: the same thread count and precision decision
    assert run(["train", "-opt", str(_train_yaml(root))], timeout=240).rc == 0
    return _final_weights(root / "exp", 6)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_training_interrupted_then_auto_resume_is_bit_identical(
    tmp_path: Path, train_ref: dict[str, torch.Tensor], sig: int
) -> None:
    opt = _train_yaml(tmp_path)
    delay = random.Random(sig).uniform(0.0, 1.0)
    o = run(["train", "-opt", str(opt)], sig=sig, after=r"start training", delay=delay, timeout=240)
    check_clean(o, sig, finished="end of training")
    for line in (o.out + o.err).splitlines():  # everything reported saved is there and loads
        if "saved checkpoint @ iter" in line:
            it = int(line.split("@ iter ")[1].split(":")[0])
            _final_weights(tmp_path / "exp", it)
    assert run(["train", "-opt", str(opt), "--auto_resume"], timeout=240).rc == 0
    got = _final_weights(tmp_path / "exp", 6)
    assert got.keys() == train_ref.keys() and all(torch.equal(got[k], train_ref[k]) for k in got)


def test_training_with_loader_workers_exits_at_its_end(tmp_path: Path) -> None:
    # the workers' SIGTERM handling must not keep the process alive: multiprocessing's exit handler terminates
    # and joins live workers, so a worker that ignored SIGTERM hung every run with workers after its last line
    opt = _train_yaml(tmp_path, total=6)
    cfg = yaml.safe_load(opt.read_text())
    cfg["datasets"]["train"]["num_worker_per_gpu"] = 2
    opt.write_text(yaml.safe_dump(cfg))
    o = run(["train", "-opt", str(opt)], timeout=120)
    assert o.rc == 0 and "end of training" in o.out + o.err
    check_clean(o)


def test_training_with_loader_workers_stopped_by_a_group_sigterm_exits_143(tmp_path: Path) -> None:
    # a stop that signals the whole process group reaches the DataLoader workers first or at once: they must exit
    # quietly, not die by the signal (torch would raise "DataLoader worker ... killed by signal" in the parent)
    opt = _train_yaml(tmp_path, total=400)
    cfg = yaml.safe_load(opt.read_text())
    cfg["datasets"]["train"]["num_worker_per_gpu"] = 2
    opt.write_text(yaml.safe_dump(cfg))
    o = run(["train", "-opt", str(opt)], sig=signal.SIGTERM, group=True, after=r"iter:\s+2\b", delay=0.2,
            timeout=240)  # fmt: skip
    assert o.signalled
    check_clean(o, signal.SIGTERM, finished="end of training")
    assert "killed by signal" not in o.err


def test_training_on_a_full_disk_stops_at_a_resumable_point(
    tmp_path: Path, train_ref: dict[str, torch.Tensor]
) -> None:
    opt = _train_yaml(tmp_path)
    o = run(["train", "-opt", str(opt)], fsize=6000, timeout=240)  # the networks fit, the training state not
    check_clean(o)
    line = _efbig(o.err, o.rc)
    assert ".state: cannot write (File too large)" in line and "--auto_resume point" in line, line
    models = tmp_path / "exp" / "models"
    states = tmp_path / "exp" / "training_states"
    # no half set: no network file without its training state, and no temp file
    assert {p.name.split("_")[-1].split(".")[0] for p in models.glob("net_g_*.safetensors")} <= {
        p.stem for p in states.glob("*.state")
    }
    assert hidden_files(tmp_path / "exp") == []
    assert run(["train", "-opt", str(opt), "--auto_resume"], timeout=240).rc == 0
    got = _final_weights(tmp_path / "exp", 6)
    assert all(torch.equal(got[k], train_ref[k]) for k in got)
