"""The `mer` command line (typer). `main` is the console script: Ctrl-C or SIGTERM at any
moment, even during the imports (a second or two), ends it with one line and the
shell's status for the signal; `mer tag` finishes the file it is writing first.

A signal that arrives while a module is being imported, or inside a callback from C
(`mer_plugin.signals.unsafe_to_raise`), waits until that is over, then is sent again, to
whichever handler is then in place (a run's own, or the one that stops the command)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from mer_plugin.signals import SIGNALS, unsafe_to_raise

RETRY_S = 0.05  # how often a held signal checks whether it may be sent again
_held: list[int] = []  # the signal waiting for an import or callback to end


class _Stopped(BaseException):
    """A signal outside a run's own handling (click would make a KeyboardInterrupt
    "Aborted!" with status 1)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    if unsafe_to_raise(frame):
        _held[:] = [signum]
        signal.signal(signal.SIGALRM, _send_held)
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    raise _Stopped(signum)


def _send_held(_alarm: int, frame: FrameType | None) -> None:
    if unsafe_to_raise(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
    elif _held:
        signal.raise_signal(_held.pop())


def main() -> None:
    for signum in SIGNALS:
        signal.signal(signum, _stop)
    try:
        from mer_plugin.cli.app import app

        app()
    except _Stopped as stopped:
        sys.stderr.write("interrupted\n")
        sys.exit(128 + stopped.signum)
