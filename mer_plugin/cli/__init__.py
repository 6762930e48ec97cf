"""The `mer` command line (typer). `main` is the console script: Ctrl-C or SIGTERM at any
moment, even during the imports (a second or two), ends it with one line and the
shell's status for the signal; `mer tag` finishes the file it is writing first."""

from __future__ import annotations

import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stopped(BaseException):
    """A signal outside a run's own handling (click would make a KeyboardInterrupt
    "Aborted!" with status 1)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def main() -> None:
    for signum in SIGNALS:
        signal.signal(signum, _stop)
    try:
        from mer_plugin.cli.app import app

        app()
    except _Stopped as stopped:
        sys.stderr.write("interrupted\n")
        sys.exit(128 + stopped.signum)
