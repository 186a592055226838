"""A stop request from Ctrl-C or SIGTERM as a flag that long work checks between its steps.

Raising from a signal handler can land anywhere, including inside the cleanup that saves finished
work; a flag cannot. The trainer checks it between optimiser steps, the built-in labelling between
finished structures, and both save before they return.

>>> import os, signal
>>> with StopFlag() as stop:
...     os.kill(os.getpid(), signal.SIGTERM)
...     os.kill(os.getpid(), signal.SIGTERM)   # a second request changes nothing
>>> stop.raised, stop.signum == signal.SIGTERM
(True, True)
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["StopFlag"]


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag while the ``with`` block runs; the old handlers come back after.

    Args:
        second_interrupt_aborts: a second Ctrl-C raises ``KeyboardInterrupt`` at once (the trainer: a
            person who presses it twice wants out now, and the last checkpoint is on disk). False
            (the labelling build): every further signal is ignored, so that saving the finished
            structures is never cut short.
    """

    def __init__(self, second_interrupt_aborts: bool = True) -> None:
        self.second_interrupt_aborts = second_interrupt_aborts
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if self.signum is not None and signum == signal.SIGINT and self.second_interrupt_aborts:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @property
    def raised(self) -> bool:
        """True once a stop was requested."""
        return self.signum is not None
