"""Interrupts and worker processes: Ctrl-C / SIGTERM stop a multi-process command within seconds, quietly.

- :func:`terminate_as_interrupt` (installed by ``paragonsr``'s main): SIGTERM raises :class:`Terminated`, a
  ``KeyboardInterrupt``, so the cleanup that runs on Ctrl-C (pools terminated, temp files removed, training state
  kept) runs on ``kill`` too. The CLI prints one line and exits 130 (SIGINT) or 143 (SIGTERM).
- :func:`quiet_worker` (called first in every worker process): the worker ignores SIGINT (a terminal's Ctrl-C
  reaches the whole process group; only the parent acts on it, so no ``KeyboardInterrupt`` tracebacks from the
  workers), dies with its parent (Linux ``PR_SET_PDEATHSIG`` plus a watcher thread that polls the parent pid, so
  no worker outlives a killed parent and none prints ``BrokenPipeError`` tracebacks into a closed pipe).
- :func:`worker_pool`: a ``multiprocessing`` pool whose workers run :func:`quiet_worker` first; leaving the
  ``with`` block through an exception (Ctrl-C included) terminates the workers instead of waiting for them.
"""

from __future__ import annotations

import contextlib
import multiprocessing.context as _mpc
import multiprocessing.pool as _mpp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

# exit statuses of a command stopped by a signal, as shells report them (128 + signal number)
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM (after :func:`terminate_as_interrupt`); a ``KeyboardInterrupt`` so
    every interrupt cleanup runs for it too."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _redeliver(unraisable: Any) -> None:
    """``sys.unraisablehook``: an interrupt raised while a finalizer (``__del__``) ran would be printed as
    "Exception ignored in ..." with a traceback and then lost; it is sent again instead, to be raised where it
    counts. Everything else goes to the previous hook."""
    exc = unraisable.exc_value
    if isinstance(exc, KeyboardInterrupt):
        sig = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        # from another thread, a moment later: sent from here, the handler would raise inside this hook (or inside
        # Thread.start's wait) and be dropped again
        timer = threading.Timer(0.05, os.kill, args=(os.getpid(), sig))
        timer.daemon = True
        timer.start()
        return
    _PREVIOUS_HOOK[0](unraisable)


_PREVIOUS_HOOK: list[Any] = [sys.unraisablehook]


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (no-op elsewhere, e.g. in a worker thread), and
    an interrupt that lands inside a finalizer be raised again rather than printed and lost."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
        if sys.unraisablehook is not _redeliver:
            _PREVIOUS_HOOK[0] = sys.unraisablehook
            sys.unraisablehook = _redeliver


def interrupt_exit(exc: BaseException) -> tuple[str, int]:
    """The one line and exit status for an interrupt: ('terminated', 143) for SIGTERM, ('interrupted', 130)."""
    return ("terminated", EXIT_SIGTERM) if isinstance(exc, Terminated) else ("interrupted", EXIT_SIGINT)


def _die_with_parent_linux() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)


def _watch_parent(parent: int, period_s: float) -> None:
    ev = threading.Event()
    while not ev.wait(period_s):
        if os.getppid() != parent:  # re-parented: the parent is gone
            os._exit(0)


TERM_GRACE_S = 2.0  # a DataLoader worker outlives a SIGTERM by this long (see quiet_worker)


def _exit_after_grace(signum: int, frame: Any) -> None:
    timer = threading.Timer(TERM_GRACE_S, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def quiet_worker(period_s: float = 0.5, term_grace: bool = False) -> None:
    """Call first in a worker process: ignore SIGINT, exit when the parent dies (within ``period_s`` seconds where
    ``PR_SET_PDEATHSIG`` is unavailable). SIGTERM keeps its default (a pool's ``terminate()`` sends it) unless
    ``term_grace``: a torch ``DataLoader`` worker then exits quietly (status 0) :data:`TERM_GRACE_S` seconds after
    it. A stop that signals the whole process group (``kill -- -PGID``, a service manager stopping its unit) would
    otherwise kill it before the parent's handler runs, and the parent would report "DataLoader worker ... killed by
    signal" with a traceback instead of "terminated" and exit 143; the grace lets the parent act first, while a
    ``terminate()`` (e.g. multiprocessing's exit handler) still ends the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_after_grace if term_grace else signal.SIG_DFL)
    parent = os.getppid()
    if os.name == "posix":
        _die_with_parent_linux()
    if os.getppid() != parent or parent == 1:
        os._exit(0)
    threading.Thread(target=_watch_parent, args=(parent, period_s), daemon=True, name="watch-parent").start()


def _init(initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    quiet_worker()
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def term_blocked_for_children() -> Iterator[None]:
    """SIGTERM blocked in the main thread while worker processes are started (e.g. ``iter(DataLoader)``): the
    workers inherit the block until :func:`quiet_worker` has set their own disposition, so a stop that signals the
    whole process group during a worker's start-up cannot kill it (torch's "worker killed by signal") or raise in
    it; a SIGTERM that reached this process meanwhile is delivered when the block ends. No-op off the main thread
    and where ``pthread_sigmask`` is missing (Windows)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def torch_worker_init(worker_id: int) -> None:
    """``worker_init_fn`` piece for torch ``DataLoader`` workers: quiet on Ctrl-C and a group SIGTERM, gone with
    the parent."""
    quiet_worker(term_grace=True)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored for the few milliseconds of a fork/exec: an ignored signal stays ignored across exec and
    Python then installs no KeyboardInterrupt handler, so a Ctrl-C during a worker's start-up (before
    :func:`quiet_worker` runs) cannot print a traceback from it. Only in the main thread (elsewhere: as is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[list[int]]:
    """SIGINT / SIGTERM recorded instead of raised while a pool is being made (an exception halfway through
    ``Pool()`` would leave started workers without an owner); the caller acts on the recorded signals after."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    olds = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
            for sig in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    try:
        yield caught
    finally:
        for sig, old in olds.items():
            signal.signal(sig, old)


class _QuietStart:
    """Mixin for ``multiprocessing`` process classes: ``start()`` with SIGINT ignored (see
    :func:`_sigint_ignored`)."""

    def start(self) -> None:
        with _sigint_ignored():
            super().start()  # type: ignore[misc]


# module-level classes: a spawned child unpickles its process object by class name
class QuietSpawnProcess(_QuietStart, _mpc.SpawnProcess):
    pass


_QUIET_PROCESS: dict[str, type] = {"spawn": QuietSpawnProcess}
if hasattr(_mpc, "ForkProcess"):

    class QuietForkProcess(_QuietStart, _mpc.ForkProcess):
        pass

    class QuietForkServerProcess(_QuietStart, _mpc.ForkServerProcess):
        pass

    _QUIET_PROCESS.update(fork=QuietForkProcess, forkserver=QuietForkServerProcess)


def _quiet_process(ctx: Any, *args: Any, **kwds: Any) -> Any:
    return _QUIET_PROCESS[ctx.get_start_method()](*args, **kwds)


class _QuietPool(_mpp.Pool):
    Process = staticmethod(_quiet_process)


def _start_tracker_quietly() -> None:
    """Start multiprocessing's resource tracker (spawn/forkserver pools use one) with warnings off: when the
    parent is killed outright, it would otherwise print a "leaked semaphore objects" warning as it cleans up."""
    from multiprocessing import resource_tracker

    flag = "ignore::UserWarning"
    sys.warnoptions.append(flag)  # passed to the tracker's interpreter as -W
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions.remove(flag)


@contextlib.contextmanager
def worker_pool(
    processes: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
    start_method: str | None = None,
) -> Iterator[Any]:
    """A ``multiprocessing.Pool`` of ``processes`` quiet workers (see :func:`quiet_worker`). On normal exit the
    pool is closed and joined; on any exception (``KeyboardInterrupt``/:class:`Terminated` included) the workers
    are terminated at once and the exception propagates."""
    import multiprocessing as mp

    ctx = mp.get_context(start_method)
    with _deferred_interrupts() as caught:
        if ctx.get_start_method() != "fork":
            with _sigint_ignored():
                _start_tracker_quietly()
        pool = _QuietPool(processes, _init, (initializer, initargs), context=ctx)
    if caught:  # Ctrl-C / SIGTERM while the pool was being made: stop it whole, then raise
        pool.terminate()
        pool.join()
        raise Terminated() if caught[-1] == signal.SIGTERM else KeyboardInterrupt()
    try:
        yield pool
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()


__all__ = [
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "Terminated",
    "interrupt_exit",
    "quiet_worker",
    "terminate_as_interrupt",
    "torch_worker_init",
    "worker_pool",
]
