"""A TensorBoard event file that cannot be written (full disk, write error) turns TB logging off with one line;
training's own files and the periodic log go on."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from paragonsr.train.logger import LOGGER_NAME, MessageLogger, close_tb


class _FullDiskWriter:
    def __init__(self) -> None:
        self.calls = 0
        self.closed = 0

    def add_scalar(self, *args: Any) -> None:
        self.calls += 1
        raise OSError(28, "No space left on device")

    def add_image(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("TB is off: no further writes")

    def close(self) -> None:
        self.closed += 1
        raise OSError(28, "No space left on device")  # the last flush fails too


def test_tb_write_error_turns_tb_off_once(caplog: pytest.LogCaptureFixture) -> None:
    tb = _FullDiskWriter()
    msg = MessageLogger(total_iter=10, start_iter=0, tb=tb)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        msg(1, 0, [1e-4], {"l_pix": 0.5})
        msg(2, 0, [1e-4], {"l_pix": 0.4})
        msg.image("val/x", np.zeros((4, 4, 3), "uint8"), 2)
    assert msg.tb is None and tb.calls == 1 and tb.closed == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1 and "No space left on device" in warnings[0] and "TB logging is off" in warnings[0]
    )
    assert sum("iter:" in r.getMessage() for r in caplog.records) == 2  # the periodic line goes on
    close_tb(None)
    close_tb(tb)  # a failing close is swallowed
