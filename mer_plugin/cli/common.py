"""What every `mer` command shares: one-line errors, the --verbose option."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mer_plugin.errors import MerError

USAGE_EXIT = 2  # as typer and click report a bad option


def fail(error: MerError, code: int = 1) -> typer.Exit:
    """Report a user-facing error as one line on stderr; the caller raises the result."""
    typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


MaxSegments = Annotated[
    int | None,
    typer.Option(
        min=1,
        metavar="N",
        help="Analyse at most N 3-s segments of a track, evenly spread (faster; the song's "
        "mood can differ: see docs/performance.md). Default: every segment.",
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Details on stderr: the decoder that read each file, fallbacks."
    ),
]


def library_paths(values: list[Path]) -> list[Path]:
    """Paths that exist, or at least their name does (a symlink loop, a dangling link: the
    run reports that one path as failed and goes on)."""
    missing = [str(v) for v in values if not os.path.lexists(v)]
    if missing:
        raise typer.BadParameter(f"no such file or folder: {', '.join(missing)}")
    return values
