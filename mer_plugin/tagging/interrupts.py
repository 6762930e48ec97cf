"""Ctrl-C during a run: never inside a file's tag write and its cache row."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupts:
    """SIGINT sets a flag that the run checks between steps (`check`); only inside
    `interruptible()` (decoding inline, predicting: no state shared with anything else) it
    raises KeyboardInterrupt at once. A tag write and its cache row are never cut."""

    def __init__(self) -> None:
        self.pending = False
        self.raising = False
        self._previous: object = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        self.pending = True
        if self.raising:
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
