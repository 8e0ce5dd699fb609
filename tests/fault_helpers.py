"""Fault injection for ``paragonsr`` commands: run one in its own session, then interrupt it (SIGINT to the whole
process group, as a terminal's Ctrl-C does; SIGTERM or SIGKILL to the parent, as ``kill`` does) at a chosen moment,
cap its file size (``RLIMIT_FSIZE``: EFBIG on the first write past the cap), or run it on a small tmpfs (ENOSPC),
and check what it leaves behind. Used by ``tests/test_faults_injection.py`` and ``bench/fault_soak.py``."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
# what a clean stop must never print: raw tracebacks, worker noise
NOISE = ("Traceback", "BrokenPipeError", "KeyboardInterrupt", "--- Logging error ---", "leaked semaphore")


@dataclass
class Outcome:
    rc: int
    out: str
    err: str
    signalled: bool  # the fault was delivered while the command still ran
    survivors: list[int]  # processes of its session still alive after it ended


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(SRC) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    return e


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "paragonsr", *args]


def slowed(target: str, secs: float, *args: str) -> list[str]:
    """``paragonsr *args`` with ``target`` (``module:function``) made ``secs`` slower per call, in-process (use
    ``--workers 1``): two runs started together then surely overlap, so a test of concurrent runs can fail."""
    mod, fn = target.split(":")
    code = (
        "import importlib, sys, time\n"
        f"m = importlib.import_module({mod!r}); f = getattr(m, {fn!r})\n"
        f"def slow(*a, **k):\n    time.sleep({secs!r}); return f(*a, **k)\n"
        f"setattr(m, {fn!r}, slow)\n"
        "from paragonsr.cli import main\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    return [sys.executable, "-c", code]


def wait_for(path: Path, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Wait until ``path`` exists (e.g. a claim file: the other run ``proc`` has started its work)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"exit {proc.returncode} before {path} appeared:\n{out[-1000:]}{err[-2000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.02)


def _session_pids(sid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # session id; zombies are already dead
            pids.append(int(d.name))
    return pids


def run(
    args: list[str],
    *,
    sig: int | None = None,
    after: str | None = None,
    delay: float = 0.0,
    fsize: int | None = None,
    timeout: float = 300.0,
    cwd: Path | None = None,
    group: bool = False,
) -> Outcome:
    """Run ``paragonsr *args``; with ``sig``: deliver it ``delay`` s after the line matching regex ``after``
    appeared on stdout/stderr (or after the start), to the parent, or with ``group`` (and always for SIGINT, as a
    terminal's Ctrl-C) to its whole process group, as a service manager's stop does. ``fsize``: RLIMIT_FSIZE in
    bytes (EFBIG past it)."""

    def limits() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    proc = subprocess.Popen(
        command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env(), cwd=cwd, start_new_session=True, preexec_fn=limits, text=True,
    )  # fmt: skip
    out_lines: list[str] = []
    err_lines: list[str] = []
    signalled = False
    import threading

    seen = threading.Event() if after else None

    def pump(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line)
            if seen is not None and after is not None and re.search(after, line):
                seen.set()

    threads = [threading.Thread(target=pump, args=(s, k), daemon=True)
               for s, k in ((proc.stdout, out_lines), (proc.stderr, err_lines))]  # fmt: skip
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    if sig is not None:
        if seen is not None:
            while not seen.wait(0.05):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
        time.sleep(delay)
        if proc.poll() is None:
            signalled = True
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGINT or group:
                    os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole foreground group
                else:
                    os.kill(proc.pid, sig)
    try:
        proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"paragonsr {' '.join(args)} still ran after {timeout:.0f} s") from None
    for t in threads:
        t.join(5)
    survivors: list[int] = []
    for _ in range(40):  # workers get up to 4 s to notice their parent is gone
        survivors = _session_pids(proc.pid)
        if not survivors:
            break
        time.sleep(0.1)
    for pid in survivors:  # never leave them running, whatever the test says
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return Outcome(proc.returncode, "".join(out_lines), "".join(err_lines), signalled, survivors)


def check_clean(o: Outcome, sig: int | None = None, finished: str | None = None) -> None:
    """A clean stop: no raw traceback or worker noise, no process left; an interrupted run exits 130 / 143 and
    says so in one line. ``finished``: the line a run prints when its work is complete; a signal that lands after
    it, while the interpreter shuts down (its handlers already reset), may end the process by that signal."""
    for word in NOISE:
        assert word not in o.err, f"'{word}' on stderr:\n{o.err[-3000:]}"
    assert not o.survivors, f"processes outlived the command: {o.survivors}"
    late = finished is not None and finished in o.out + o.err and sig is not None and o.rc == -sig
    if sig in (signal.SIGINT, signal.SIGTERM) and o.signalled and o.rc not in (0,) and not late:
        want = (130, "interrupted") if sig == signal.SIGINT else (143, "terminated")
        assert o.rc == want[0], f"exit {o.rc}, expected {want[0]}:\n{o.err[-2000:]}"
        assert o.err.strip().splitlines()[-1] == want[1], o.err[-2000:]
    if sig == signal.SIGKILL and o.signalled:
        assert o.rc == -signal.SIGKILL


def visible_files(root: Path) -> dict[str, bytes]:
    """Every non-hidden file under ``root`` (relative POSIX path -> bytes); hidden names are temp/claim files."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def hidden_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*") if p.is_file())


def images(folder: Path, n: int, size: int = 48, seed: int = 0) -> Path:
    """``n`` textured RGB PNGs of ``size``² in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3)).astype(np.uint8), (0, 0), 1.2)
        assert cv2.imwrite(str(folder / f"img{i:03d}.png"), img)
    return folder


def all_decode(root: Path) -> None:
    """Every visible image under ``root`` decodes completely (no half-written file)."""
    from paragonsr.io.image_io import read_image

    for rel in visible_files(root):
        if rel.endswith((".png", ".jpg", ".tif", ".webp")):
            read_image(root / rel)


@contextlib.contextmanager
def small_tmpfs(path: Path, size_kb: int) -> Iterator[Path | None]:
    """A ``size_kb`` tmpfs mounted at ``path`` (root only), or None when it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
