"""mer's log lines on stderr: warnings always, details (a decoder falling back to the
next one, for instance) with ``--verbose``, in worker processes too."""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "MER_VERBOSE"  # "1": details; spawned workers inherit it
_PACKAGE = "mer_plugin"


def show_logs(verbose: bool = False) -> None:
    """Print mer's log records on stderr, one line each; details too when `verbose` (or
    when MER_VERBOSE=1, which a worker process inherits from the command)."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    logger = logging.getLogger(_PACKAGE)
    if not any(isinstance(h, _Handler) for h in logger.handlers):
        logger.addHandler(_Handler())
        logger.propagate = False
    detailed = os.environ.get(VERBOSE_ENV) == "1"
    logger.setLevel(logging.INFO if detailed else logging.WARNING)


class _Handler(logging.StreamHandler):
    def __init__(self) -> None:
        super().__init__()  # sys.stderr
        self.setFormatter(logging.Formatter("%(message)s"))
