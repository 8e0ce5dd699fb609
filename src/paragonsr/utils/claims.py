"""Output claims: two runs writing into one folder never compute the same output twice or replace each other's.

Before computing an output, a run *claims* it: it creates a small claim file beside the output exclusively (a
hard link of a complete temp file, which fails if the name exists; ``O_EXCL`` where there are no hard links),
holding its pid, host name and the process start time. Another run
that finds the claim skips the output while the claimant lives. A claim whose process is gone (same host, pid
not running or running a different process since the claim was made) is stale and taken over, under a
``flock`` on the folder so two runs cannot both take it over. A claim made on another host is honoured
until it is ``stale_after_s`` old (its owner cannot be asked).

Claim files are named ``.NAME.claim`` or, where that would exceed the file system's name limit,
``.claim-<sha1 of NAME>`` (legal output names always have a legal claim name).

API: ``with claim_output(path) as owned: if owned: ...compute and write...`` (the claim is released on exit),
``with hold_output(path, "report"):`` (raises :class:`OutputBusy` when another run holds it), or
:class:`OutputClaim` with ``acquire()`` / ``release()`` for writers that finish an output elsewhere (a writer
thread). :func:`claim_holder` tells who holds a claim, for messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOST = socket.gethostname()


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux, clock ticks since boot) or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, someone else's
    now = _start_time(pid)
    return started is None or now is None or now == started  # a reused pid is another process


def claim_path(path: str | os.PathLike[str]) -> Path:
    """The claim file of output ``path`` (see module doc for the name)."""
    p = Path(path)
    name = f".{p.name}.claim"
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        name = ".claim-" + hashlib.sha1(p.name.encode("utf-8", "surrogateescape")).hexdigest()
    return p.with_name(name)


def claim_holder(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the claim file of output ``path`` says (``pid``, ``host``, ``time``), or None when unclaimed or
    unreadable."""
    try:
        data = json.loads(claim_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another run"
    return f"another run (pid {holder.get('pid')} on {holder.get('host')})"


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGALRM (which the fault soak uses to inject interrupts) held back for the few
    microseconds of a claim's publication; they are delivered, and raise, right after."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no pthread_sigmask (Windows)
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_EXCL alone
        yield
        return
    try:  # the folder itself is locked (Linux flock works on a directory): no lock file is left behind
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class OutputClaim:
    """A claim on one output file (see module doc). ``acquire()`` -> True when this process now owns it."""

    def __init__(self, path: str | os.PathLike[str], stale_after_s: float = 86400.0) -> None:
        self.path = Path(path)
        self.file = claim_path(self.path)
        self.stale_after_s = stale_after_s
        self.owned = False
        self.holder: dict[str, Any] | None = None  # who held it when acquire() failed

    def _record(self) -> bytes:
        return json.dumps(
            {
                "pid": os.getpid(),
                "host": HOST,
                "started": _start_time(os.getpid()),
                "time": time.time(),
                "output": self.path.name,
            }
        ).encode("utf-8")

    def _create(self) -> bool:
        """Publish the claim file with its record already in it: written to a temp file, then hard-linked to the
        claim name (``link`` fails if the name exists, like ``O_EXCL``, and is atomic on NFS too), so a claimant
        killed at any point never leaves an empty claim that others would have to wait out. File systems without
        hard links: ``O_EXCL`` create, then the record. Interrupt signals are held while the file appears and
        ``owned`` is set, so an interrupt cannot leave a claim that ``release()`` does not know is ours."""
        from paragonsr.utils.atomic import _token, temp_prefix

        tmp = self.file.with_name(
            f"{temp_prefix(self.file)}{_token()}.tmp"
        )  # cleaned like any temp if killed
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                os.write(fd, self._record())
            finally:
                os.close(fd)
            with _signals_held():
                try:
                    os.link(tmp, self.file)
                except FileExistsError:
                    return False
                except OSError:  # no hard links here: O_EXCL create, then the record
                    return self._create_excl()
                self.owned = True  # at once: release() removes the file whatever interrupts us from here on
            return True
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _create_excl(self) -> bool:
        try:
            fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        self.owned = True
        try:
            os.write(fd, self._record())
        except OSError:
            self.release()
            raise
        finally:
            os.close(fd)
        return True

    def _stale(self, holder: dict[str, Any] | None) -> bool:
        try:
            age = time.time() - self.file.stat().st_mtime
        except FileNotFoundError:
            return True
        if holder is None:  # unreadable: a claimant killed between create and write, or garbage
            return age > 10.0
        if holder.get("host") != HOST:
            return age > self.stale_after_s
        pid = holder.get("pid")
        return not isinstance(pid, int) or (pid != os.getpid() and not _alive(pid, holder.get("started")))

    def acquire(self) -> bool:
        """Claim the output; False when a live process holds it (``self.holder`` says which). Creates the output
        folder. A stale claim is taken over. Raises OSError (naming the claim file) when the folder is not
        writable."""
        if self.owned:
            return True
        self.file.parent.mkdir(parents=True, exist_ok=True)
        if self._create():
            self.owned = True
            return True
        with _folder_lock(self.file.parent):
            holder = claim_holder(self.path)
            if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == HOST:
                self.holder = holder  # this process claimed it through another object: still one computation
                return False
            if self._stale(holder):
                self.file.unlink(missing_ok=True)
                if self._create():
                    self.owned = True
                    return True
            self.holder = claim_holder(self.path) or holder
            return False

    def release(self) -> None:
        """Remove the claim if this object owns it (the output is written or abandoned)."""
        if self.owned:
            self.owned = False
            with contextlib.suppress(OSError):
                self.file.unlink()

    def __enter__(self) -> bool:
        try:
            return self.acquire()
        except BaseException:  # an interrupt inside acquire(): __exit__ will not run, release here
            self.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_output(path: str | os.PathLike[str], stale_after_s: float = 86400.0) -> OutputClaim:
    """``with claim_output(path) as owned:`` (see :class:`OutputClaim`)."""
    return OutputClaim(path, stale_after_s)


class OutputBusy(Exception):
    """An output (a file, or a report folder through its main file) is claimed by another live run."""


@contextlib.contextmanager
def hold_output(path: str | os.PathLike[str], what: str = "output") -> Iterator[OutputClaim]:
    """Hold the claim on ``path`` for the whole ``with`` block (a report, a model card, a folder's main file).

    Raises :class:`OutputBusy` with one line naming ``path`` and the holder when another live run holds it, so
    two runs never compute the same output; a stale claim (dead run) is taken over. Released on exit."""
    claim = OutputClaim(path)
    if not claim.acquire():
        raise OutputBusy(
            f"{path}: this {what} is being written by {describe_holder(claim.holder)}; not computed twice "
            "(wait for it, or choose another output)"
        )
    try:
        yield claim
    finally:
        claim.release()


def clean_claims(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Remove stale claim files (dead claimant on this host) under ``folder``; returns them."""
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for p in root.rglob(".*claim*") if recursive else root.glob(".*claim*"):
        if not (p.name.endswith(".claim") or p.name.startswith(".claim-")) or not p.is_file():
            continue
        try:
            holder = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(holder, dict) or holder.get("host") != HOST:
            continue
        pid = holder.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and not _alive(pid, holder.get("started")):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


__all__ = [
    "OutputBusy",
    "OutputClaim",
    "claim_holder",
    "claim_output",
    "claim_path",
    "clean_claims",
    "describe_holder",
    "hold_output",
]
