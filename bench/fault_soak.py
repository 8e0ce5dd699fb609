"""Fault soak (issue 26): inject hundreds of faults into ``upscale``, ``degrade``, ``train``, ``export``, ``data
extract-tiles`` and ``data multiscale`` and count how many the commands survive.

A fault is one of:
- ``efbig``: the file-size limit (``RLIMIT_FSIZE`` soft limit, raised again after) set to a random size, so a
  write past it fails with EFBIG somewhere in the run (a full disk for that file);
- ``int`` / ``term``: an interrupt at a random moment, raised in the command by a timer signal exactly as the
  SIGINT / SIGTERM handlers raise it (``KeyboardInterrupt`` / ``Terminated``);
- ``kill`` (every ``--kill-every``-th fault): a real SIGKILL of a separate ``paragonsr`` process at a random moment
  (``degrade`` and ``data extract-tiles`` with 2 worker processes, ``upscale``), which also checks that no worker
  outlives it.

Survived means: no exception escaped the command (no raw traceback) and its exit status and last line say what
happened (130 / 143 for an interrupt, an ``error: <path>: cannot write (File too large)`` line for EFBIG); no temp
or claim file is left (killed runs: the next run removes them); every visible output decodes (images, safetensors,
ONNX, training states with their networks); every ``degrade`` LQ has its GT twin; and a rerun without the fault
completes with outputs identical to an uninterrupted run (byte-identical files; training: bit-identical weights).

    python bench/fault_soak.py --faults 500            # prints a line per 25 faults and a summary
    python bench/fault_soak.py --faults 40 --seed 1     # a quick look

Faults are drawn from ``--seed``; each scenario's uninterrupted reference is computed once at the start.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402

from fault_helpers import hidden_files, images, run, visible_files  # noqa: E402
from paragonsr.cli import main  # noqa: E402
from paragonsr.utils.procs import Terminated  # noqa: E402


class Scenario:
    """One command on generated inputs: ``args(out)``, a reference output, and its own output checks."""

    def __init__(self, name: str, work: Path) -> None:
        self.name, self.work = name, work
        self.ref: dict[str, bytes] = {}

    def args(self, out: Path) -> list[str]:
        raise NotImplementedError

    def outputs(self, out: Path) -> dict[str, bytes]:
        return visible_files(out) if out.exists() else {}

    def check(self, out: Path) -> None:
        """Every visible output is whole."""

    def same(self, got: dict[str, bytes]) -> bool:
        return got == self.ref


class Upscale(Scenario):
    def __init__(self, work: Path) -> None:
        super().__init__("upscale", work)
        self.inp = images(work / "up_in", 6, size=64)

    def args(self, out: Path) -> list[str]:
        return ["upscale", str(self.inp), "-o", str(out), "--resampler", "lanczos3", "-q"]

    def check(self, out: Path) -> None:
        from fault_helpers import all_decode

        if out.exists():
            all_decode(out)


class Degrade(Scenario):
    def __init__(self, work: Path, workers: int = 1) -> None:
        super().__init__("degrade", work)
        self.inp = images(work / "deg_in", 6, size=64, seed=1)
        self.workers = workers

    def args(self, out: Path) -> list[str]:
        return ["degrade", "--pipeline", "realesrgan", "-i", str(self.inp), "-o", str(out), "--workers",
                str(self.workers)]  # fmt: skip

    def outputs(self, out: Path) -> dict[str, bytes]:  # the manifest's line order depends on the run history
        return {k: v for k, v in super().outputs(out).items() if k != "manifest.jsonl"}

    def check(self, out: Path) -> None:
        from fault_helpers import all_decode

        if not out.exists():
            return
        all_decode(out)
        lq = {p.name for p in (out / "lq").glob("*.png")} if (out / "lq").is_dir() else set()
        gt = {p.name for p in (out / "gt").glob("*.png")} if (out / "gt").is_dir() else set()
        assert lq <= gt, f"lq without gt: {sorted(lq - gt)}"


class DataTiles(Scenario):
    def __init__(self, work: Path, workers: int = 1) -> None:
        super().__init__("data-tiles", work)
        self.inp = images(work / "tiles_in", 6, size=64, seed=3)
        self.workers = workers

    def args(self, out: Path) -> list[str]:
        return ["data", "extract-tiles", "--input", str(self.inp), "--out", str(out), "--crop", "32", "--step",
                "16", "--workers", str(self.workers)]  # fmt: skip

    def check(self, out: Path) -> None:
        from fault_helpers import all_decode

        if out.exists():
            all_decode(out)


class DataMultiscale(Scenario):
    def __init__(self, work: Path) -> None:
        super().__init__("data-multiscale", work)
        self.inp = images(work / "ms_in", 4, size=64, seed=4)

    def args(self, out: Path) -> list[str]:
        return ["data", "multiscale", "--input", str(self.inp), "--out", str(out), "--scales", "1", "0.75", "0.5",
                "--min-size", "8"]  # fmt: skip

    def check(self, out: Path) -> None:
        from fault_helpers import all_decode

        if out.exists():
            all_decode(out)


class Train(Scenario):
    def __init__(self, work: Path) -> None:
        super().__init__("train", work)
        import cv2
        import yaml

        gt = images(work / "tr_gt", 4, size=32, seed=2)
        (work / "tr_lq").mkdir(exist_ok=True)
        for p in sorted(gt.glob("*.png")):
            img = cv2.imread(str(p))
            assert img is not None
            cv2.imwrite(str(work / "tr_lq" / p.name), cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA))
        self.opt = work / "train.yml"
        self.opt.write_text(yaml.safe_dump({
            "name": "soak", "scale": 2, "manual_seed": 5,
            "datasets": {"train": {"type": "PairedImageDataset", "dataroot_gt": str(gt),
                                   "dataroot_lq": str(work / "tr_lq"), "gt_size": 16, "batch_size_per_gpu": 2}},
            "network_g": {"type": "compact", "num_feat": 4, "num_conv": 1},
            "path": {"experiments_root": "EXP"},
            "train": {"total_iter": 6, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
            "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
        }))  # fmt: skip

    def args(self, out: Path) -> list[str]:
        return ["train", "-opt", str(self.opt), "--auto_resume", "--force", f"path.experiments_root={out}"]

    def outputs(self, out: Path) -> dict[str, bytes]:
        from paragonsr.checkpoint import load_state_dict

        final = out / "models" / "net_g_6.safetensors"
        if not final.is_file():
            return {}
        sd = load_state_dict(final)[0]
        return {k: v.numpy().tobytes() for k, v in sorted(sd.items())}

    def check(self, out: Path) -> None:
        from paragonsr.train.state import state_problem

        for st in sorted((out / "training_states").glob("*.state")) if out.exists() else []:
            why = state_problem(st, out / "models")
            assert why is None, f"{st}: {why}"


class Export(Scenario):
    def __init__(self, work: Path) -> None:
        super().__init__("export", work)
        from paragonsr.archs import build_arch
        from paragonsr.checkpoint import save_model

        torch.manual_seed(0)
        self.model = save_model(
            work / "m.safetensors", build_arch("compact", num_feat=8, num_conv=2, upscale=2)
        )

    def args(self, out: Path) -> list[str]:
        return ["export", str(self.model), "-o", str(out), "--latency-runs", "1"]

    def outputs(self, out: Path) -> dict[str, bytes]:  # weights and graphs; the card holds timings
        files = {k: v for k, v in super().outputs(out).items() if k.endswith((".onnx", ".safetensors"))}
        for k in [k for k in files if k.endswith(".safetensors")]:
            files[k] = _canonical_safetensors(files[k])
        return files

    def check(self, out: Path) -> None:
        import onnx

        from paragonsr.checkpoint import load_state_dict

        for p in sorted(out.glob("*")) if out.exists() else []:
            if p.suffix == ".onnx":
                onnx.checker.check_model(onnx.load(str(p)))
            elif p.suffix == ".safetensors":
                load_state_dict(p)


def _canonical_safetensors(data: bytes) -> bytes:
    """Tensors and metadata of a .safetensors file in a fixed order: the format writes its metadata map in hash
    order, so two saves of the same weights differ in their header bytes."""
    import json

    from safetensors.torch import load

    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    tensors = load(data)
    parts = [json.dumps(meta, sort_keys=True).encode()]
    parts += [k.encode() + tensors[k].numpy().tobytes() for k in sorted(tensors)]
    return b"\0".join(parts)


def _call(args: list[str], fault: str, at: float, fsize: int) -> tuple[int | None, str, str]:
    """Run ``paragonsr args`` in this process with the fault armed; (exit status or None when an exception
    escaped, stderr, traceback text)."""
    armed = {"on": fault in ("int", "term")}

    def alarm(signum: int, frame: object) -> None:
        if armed["on"]:
            armed["on"] = False
            raise Terminated() if fault == "term" else KeyboardInterrupt()

    old = signal.signal(signal.SIGALRM, alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    err = io.StringIO()
    try:
        if fault == "efbig":
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, hard))
        if armed["on"]:
            signal.setitimer(signal.ITIMER_REAL, max(at, 1e-3))
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(args)
        return rc, err.getvalue(), ""
    except BaseException:  # anything escaping main() is a raw traceback for the user
        return None, err.getvalue(), traceback.format_exc()
    finally:
        armed["on"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _verdict(rc: int | None, err: str, fault: str, tb: str) -> str | None:
    """Why the faulted run's end was not clean (None: clean)."""
    if rc is None:
        return f"exception escaped: {tb.strip().splitlines()[-1]}"
    if "Traceback" in err:
        return "traceback on stderr"
    last = err.strip().splitlines()[-1] if err.strip() else ""
    if rc in (130, 143):
        want = "interrupted" if rc == 130 else "terminated"
        return None if last == want else f"exit {rc} but last line {last!r}"
    if rc != 0 and fault == "efbig" and "File too large" not in err and "No space left" not in err:
        return f"exit {rc} without a file-size message: {last!r}"
    return None


def soak(n: int, seed: int, kill_every: int, progress: Callable[[str], None]) -> Counter[str]:
    rng = random.Random(seed)
    stats: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="fault_soak_") as tmp:
        work = Path(tmp)
        scenarios: list[Scenario] = [Upscale(work), Degrade(work), Train(work), Export(work), DataTiles(work),
                                     DataMultiscale(work)]  # fmt: skip
        weights = [4, 4, 1, 2, 2, 2]  # training runs take longest: fewer of them
        durations = {}
        for sc in scenarios:  # uninterrupted references and how long a run takes
            out = work / f"ref_{sc.name}"
            t0 = time.perf_counter()
            rc, err, tb = _call(sc.args(out), "none", 0.0, 0)
            assert rc == 0, f"reference {sc.name} failed: {err}{tb}"
            durations[sc.name] = time.perf_counter() - t0
            sc.ref = sc.outputs(out)
            assert sc.ref, f"reference {sc.name} wrote nothing"
        kill_targets = [Degrade(work, workers=2), Upscale(work), DataTiles(work, workers=2)]
        for sc in kill_targets:
            sc.ref = next(s.ref for s in scenarios if s.name == sc.name)
        t_start = time.perf_counter()
        for i in range(1, n + 1):
            kill = kill_every > 0 and i % kill_every == 0
            sc = rng.choice(kill_targets) if kill else rng.choices(scenarios, weights)[0]
            fault = "kill" if kill else rng.choice(["efbig", "efbig", "int", "term"])
            out = work / f"run{i}_{sc.name}"
            at = rng.uniform(0.0, durations[sc.name])
            fsize = int(rng.choice([rng.uniform(200, 4000), rng.uniform(4000, 60000)]))
            problem: str | None = None
            try:
                if kill:
                    o = run(sc.args(out), sig=signal.SIGKILL, delay=at + 2.0, timeout=300)
                    problem = "processes outlived the killed command" if o.survivors else None
                    stats["hit"] += o.signalled  # killed while it still ran
                    if o.rc not in (0, -signal.SIGKILL) or "Traceback" in o.err:
                        problem = problem or f"killed run: exit {o.rc}, traceback: {'Traceback' in o.err}"
                else:
                    rc, err, tb = _call(sc.args(out), fault, at, fsize)
                    stats["hit"] += (
                        rc != 0
                    )  # the fault changed the run's outcome (else it came too late / fit)
                    problem = _verdict(rc, err, fault, tb)
                    if problem:  # what the user would have seen
                        problem += "\n    | " + "\n    | ".join((err + tb).strip().splitlines()[-8:])
                    left = hidden_files(out) if out.exists() else []
                    if not problem and left:
                        problem = f"left behind: {left[:3]}"
                if not problem:
                    sc.check(out)
                    rc, err, tb = _call(sc.args(out), "none", 0.0, 0)  # the rerun
                    if rc != 0:
                        problem = f"rerun failed ({rc}): {(err + tb).strip().splitlines()[-1:]}"
                    elif not sc.same(sc.outputs(out)):
                        problem = "rerun output differs from the uninterrupted run"
            except Exception as exc:  # a check that found a corrupt file
                problem = f"{type(exc).__name__}: {exc}"
            stats["faults"] += 1
            stats[f"{sc.name}/{fault}"] += 1
            if problem:
                stats["failed"] += 1
                progress(f"FAILED fault {i} ({sc.name}/{fault}, at {at:.2f}s, fsize {fsize}): {problem}")
            else:
                stats["survived"] += 1
            shutil.rmtree(out, ignore_errors=True)
            if i % 25 == 0 or i == n:
                rate = (time.perf_counter() - t_start) / i
                progress(f"{i}/{n} faults, {stats['survived']} survived, {stats['failed']} failed, {stats['hit']} hit "
                         f"a running command ({rate:.1f} s per fault)")  # fmt: skip
    return stats


def cli() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", type=int, default=500, help="how many faults to inject (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kill-every", type=int, default=10, help="every Nth fault is a real SIGKILL (0: none)")
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    stats = soak(a.faults, a.seed, a.kill_every, lambda s: print(s, flush=True))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.items()) if "/" in k)
    print(f"fault soak: {stats['survived']} of {stats['faults']} injected faults survived, {stats['failed']} failed; "
          f"{stats['hit']} of them hit a running command ({kinds}); {time.perf_counter() - t0:.0f} s")  # fmt: skip
    return 1 if stats["failed"] else 0


if __name__ == "__main__":
    sys.exit(cli())
