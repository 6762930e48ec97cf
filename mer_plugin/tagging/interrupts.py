"""Ctrl-C or SIGTERM during a run: never inside a file's tag write and its cache row."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from mer_plugin.signals import SIGNALS, unsafe_to_raise


class Interrupts:
    """SIGINT or SIGTERM sets a flag that the run checks between steps (`check`); only
    inside `interruptible()` (decoding inline, predicting: no state shared with anything
    else) it raises KeyboardInterrupt at once. A tag write and its cache row are never
    cut. `received` is the signal that stopped the run."""

    def __init__(self) -> None:
        self.pending = False
        self.raising = False
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *_: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.pending = True
        self.received = self.received or signum
        if self.raising and not unsafe_to_raise(frame):  # else `check` raises after it
            self.raising = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self.check()
        self.raising = True
        try:
            yield
        finally:
            self.raising = False

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt
