"""Folder runs with decoding and encoding overlapped with compute: a reader thread and a writer thread.

While image *k* is upscaled, a reader thread decodes image *k + 1* and a writer thread encodes and writes image
*k − 1* (OpenCV's decoders and encoders release the GIL, so they run beside torch / ONNX Runtime). The writer
calls the project's one write function (:func:`paragonsr.io.image_io.write_image`, atomic); animations take the
plain synchronous path (:func:`paragonsr.infer.upscale.upscale_file`).

Memory stays bounded: at most one decoded input ahead and one result waiting to be written; a result larger than
``max_pending_bytes`` is written before the next image starts, so two large outputs are never alive at once.
Errors stay per file: a failure to read or compute raises from :meth:`OverlappedFiles.upscale` for that file; a
write error is handed to that file's ``on_written`` callback, in order, in the caller's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from paragonsr.infer.upscale import upscale_file, upscale_samples
from paragonsr.io.animation import read_animation
from paragonsr.io.image_io import ImageInfo, output_format, read_image, write_image

OnWritten = Callable[[BaseException | None], None]
Progress = Callable[[int, int], None]
MAX_PENDING_BYTES = (
    256 * 2**20
)  # a float32 result up to ~22 MP may wait for the writer while the next computes


def _load(src: Path, first_frame: bool) -> tuple[np.ndarray, ImageInfo] | None:
    """A still image (or an animation's first frame with ``first_frame``), or None for an animation. 8/16-bit
    files come as their samples (``read_image(..., integer=True)``): no full-size float copy of the input."""
    if not first_frame and read_animation(src) is not None:
        return None
    return read_image(src, integer=True)


class OverlappedFiles:
    """Upscale files one after another with the next decode and the previous write running alongside.

    Args:
        upscaler: ``Upscaler``-like callable ``(img, info, outscale, progress=...) -> (result, info)``.
        sources: the inputs in the order they will be asked for (the next one is decoded ahead; a file that is
            then skipped costs one wasted decode, nothing else).
        max_pending_bytes: a result larger than this is written before :meth:`upscale` returns.

    Use as a context manager; leaving it waits for the last write and delivers its callback.
    """

    def __init__(
        self,
        upscaler: Callable[..., tuple[np.ndarray, ImageInfo]],
        sources: Sequence[str | Path] = (),
        *,
        outscale: float | None = None,
        quality: int = 95,
        first_frame: bool = False,
        progress: Progress | None = None,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.upscaler, self.outscale, self.quality = upscaler, outscale, quality
        self.first_frame, self.progress, self.max_pending_bytes = first_frame, progress, max_pending_bytes
        self._order = [Path(s) for s in sources]
        self._next = {a: b for a, b in zip(self._order, self._order[1:])}
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="paragonsr-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="paragonsr-write")
        self._ahead: tuple[Path, Future[Any]] | None = None
        self._pending: tuple[Future[Any], OnWritten] | None = None

    def _prefetch(self, src: Path) -> None:
        if self._ahead is None or self._ahead[0] != src:
            self._ahead = (src, self._reader.submit(_load, src, self.first_frame))

    def _take(self, src: Path) -> tuple[np.ndarray, ImageInfo] | None:
        ahead, self._ahead = self._ahead, None
        loaded = ahead[1].result() if ahead is not None and ahead[0] == src else _load(src, self.first_frame)
        nxt = self._next.get(src)
        if nxt is not None:
            self._prefetch(nxt)
        return loaded

    def _finish_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            future, on_written = pending
            on_written(future.exception())

    def upscale(self, src: str | Path, dst: str | Path, on_written: OnWritten) -> None:
        """Upscale ``src`` into ``dst``. Reading or computing errors raise here (``on_written`` is then never
        called); otherwise ``on_written(None)`` or ``on_written(write_error)`` follows, from this call or a later
        one, or from :meth:`close`."""
        src = Path(src)
        loaded = self._take(src)
        if loaded is None:  # an animation: frames are encoded together, synchronously
            self._finish_pending()
            upscale_file(src, dst, self.upscaler, self.outscale, self.quality, False, self.progress)
            on_written(None)
            return
        img, info = loaded
        fmt = output_format(dst)
        result, out_info = upscale_samples(self.upscaler, img, info, fmt, self.outscale, self.progress)
        del img, loaded  # the input is not needed while the output is encoded (peak memory)
        self._finish_pending()  # at most one write in flight
        # consume: the result is ours, so the encoder may reorder its samples in place (no full-size copy)
        future = self._writer.submit(write_image, dst, result, out_info, quality=self.quality, consume=True)
        self._pending = (future, on_written)
        if result.nbytes > self.max_pending_bytes:
            future.exception()  # wait: the next image must not allocate its result beside this one
            self._finish_pending()

    def close(self) -> None:
        """Wait for the last write, deliver its callback, stop the threads (a pending read is dropped)."""
        try:
            if self._pending is not None:
                self._pending[0].exception()
            self._finish_pending()
        finally:
            self._ahead = None
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._writer.shutdown(wait=True)

    def __enter__(self) -> OverlappedFiles:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["MAX_PENDING_BYTES", "OverlappedFiles"]
