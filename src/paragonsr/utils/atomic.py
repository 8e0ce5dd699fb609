"""Atomic file output: write a temp file in the target folder, then ``os.replace`` it over the target.

Readers (a waiting training run, a file browser, a second batch job) never see a half-written file, a crash
leaves the previous version in place, and no temp file is left behind on error. Finished files get the mode a
plain ``open(path, "w")`` would give (0666 minus the umask) rather than mkstemp's private 0600.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paragonsr.errors import ParagonSRError


def _current_umask() -> int:
    """The process umask. Linux shows it in /proc (no side effect); elsewhere the only portable way to read it is
    to set it and put it back, which briefly leaves 0 in place for other threads creating files."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """Permission bits a plain ``open(path, "w")`` would give (0666 minus the umask)."""
    return 0o666 & ~_current_umask()


def _fsync(path: Path, directory: bool) -> None:
    if directory and os.name == "nt":
        return  # Windows cannot open a folder for fsync; NTFS journals the rename
    try:
        flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return  # some file systems (network, FUSE) refuse to open folders; the data itself was synced
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write to; on normal exit it replaces ``path``, on error it is deleted.

    ``suffix`` ends the temp name, for writers that pick the format from the file name
    (e.g. ``suffix=".tmp.png"`` for matplotlib's ``savefig``). Parent folders are created.
    """
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # The writer's pid is in the name, so a later run can tell a killed run's leftovers from a live write.
        # The name is chosen before the file is created, so an interrupt at any point still removes it below.
        prefix = temp_prefix(target)
        for _ in range(100):
            tmp = target.parent / f"{prefix}{_token()}{suffix}"
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                break
            except FileExistsError:
                tmp = None
        if tmp is None:
            raise FileExistsError(errno.EEXIST, "no free temporary name", str(target))
        yield tmp
        os.chmod(tmp, file_mode())
        # Data on disk before the rename makes it visible: after a crash the target is the old or the new file,
        # never a new name over empty blocks (ext4/xfs delayed allocation).
        _fsync(tmp, directory=False)
        os.replace(tmp, target)
        _fsync(target.parent, directory=True)  # and the rename itself is durable
    except OSError as exc:
        raise _as_write_error(exc, target) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)  # no-op after a successful replace


def temp_path(target: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """A fresh temp name beside ``target`` in this module's pattern (``.NAME.PID.XXXXXXXX.tmp``), for writers that
    make the file themselves (a link, a copy) and replace ``target`` with it; :func:`clean_stale_temps` removes
    it when its process was killed. Nothing is created."""
    target = Path(target)
    return target.parent / f"{temp_prefix(target)}{_token()}{suffix}"


def _token() -> str:
    """8 random characters of ``[a-z0-9_]`` (as ``tempfile`` names them, and :data:`_TEMP_RE` expects)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_"
    return "".join(secrets.choice(alphabet) for _ in range(8))


# errors that mean "this write cannot complete" (full disk, file size limit, quota, I/O error, read-only fs)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS}


class WriteError(ParagonSRError, OSError):
    """A file could not be written (full disk, ``ulimit -f``, quota, I/O error): one line naming the file; the
    previous version of the file (if any) is still in place and no temp file is left."""

    def __str__(self) -> str:
        return str(self.strerror)


def _as_write_error(exc: OSError, target: Path) -> OSError:
    if isinstance(exc, WriteError) or exc.errno not in _WRITE_ERRNOS:
        return exc
    reason = exc.strerror or str(exc)
    return WriteError(exc.errno, f"{target}: cannot write ({reason}); the previous version, if any, is kept")


def write_error(exc: OSError, target: str | os.PathLike[str]) -> OSError:
    """``exc`` as a :class:`WriteError` naming ``target`` when it is a disk-full/size-limit/I/O error, else
    ``exc`` itself (for writers that append to a file, e.g. a manifest or a log)."""
    return _as_write_error(exc, Path(target))


def temp_prefix(target: Path, room: int = 40) -> str:
    """``.NAME.PID.`` for a temp file of ``target``, NAME cut (on a UTF-8 character boundary) so that the temp
    name stays within the file system's 255-byte name limit with ``room`` bytes for the random part and suffix:
    every legal output name gets a legal temp name."""
    pid = f".{os.getpid()}."
    limit = 255 - room - len(pid) - 1
    raw = target.name.encode("utf-8", "surrogateescape")
    if len(raw) > limit:
        raw = raw[:limit]
        name = raw.decode("utf-8", "ignore")  # drops a character cut in half
    else:
        name = target.name
    return f".{name}{pid}"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


# `.NAME.PID.XXXXXXXX.tmp` (and `.tmp.png` / `.tmp.npz` / `.onnx.tmp` / `.part`), as atomic_output names its temp
# files (NAME cut short for long names).
_TEMP_RE = re.compile(r"^\..+\.(\d+)\.[a-z0-9_]{8}(?:\.tmp|\.tmp\.png|\.tmp\.npz|\.onnx\.tmp|\.part)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or cannot be asked): leave its files alone
    return True


def clean_stale_temps(
    folder: str | os.PathLike[str], recursive: bool = False, min_age_s: float = 60.0
) -> list[Path]:
    """Delete temp files that :func:`atomic_output` left behind in ``folder`` when its process was killed.

    Only names of our own pattern (``.NAME.PID.XXXXXXXX.tmp``) are touched, and only when the process ``PID``
    no longer runs here and the file has not been modified for ``min_age_s`` seconds (a file shared over a
    network by another machine's live writer is still being written to), or when it is a day old. Returns the
    removed paths; files that cannot be removed are left."""
    root = Path(folder)
    if not root.is_dir():
        return []
    now = time.time()
    removed = []
    for p in root.rglob(".*") if recursive else root.glob(".*"):
        m = _TEMP_RE.match(p.name)
        if m is None or not p.is_file() or p.is_symlink():
            continue
        try:
            age = now - p.stat().st_mtime
            if (age >= min_age_s and not _alive(int(m.group(1)))) or age >= 86400:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


__all__ = [
    "WriteError",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_stale_temps",
    "file_mode",
    "temp_prefix",
    "write_error",
]
