"""What every `mer` command shares: one-line errors, the --verbose option."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mer_plugin.backbones import PRECISIONS
from mer_plugin.budget import FULL, Budget
from mer_plugin.errors import MerError

USAGE_EXIT = 2  # as typer and click report a bad option


def fail(error: MerError, code: int = 1) -> typer.Exit:
    """Report a user-facing error as one line on stderr; the caller raises the result."""
    typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


ModelOpt = Annotated[
    str | None,
    typer.Option(
        help="Model folder, or a shipped model's name: default, or fast (one backbone, about "
        "a quarter of the default's compute, less accurate: see docs/model.md).",
    ),
]


Precision = StrEnum("Precision", {name: name for name in PRECISIONS})

PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        help="How the backbone computes on the CPU: auto takes int8 (x86 with AVX2) for the "
        "convolutions that ship a calibration and bfloat16 (AVX-512 BF16 or AMX) for the "
        "rest, where the CPU has them: faster, the song's mood as float's on nearly every "
        "track; int8 or bfloat16 alone, or float32 (see docs/performance.md).",
    ),
]
MaxSegments = Annotated[
    int | None,
    typer.Option(
        min=1,
        metavar="N",
        help="Analyse at most N 3-s segments of a track, evenly spread (faster; the song's "
        "mood can differ: see docs/performance.md).",
    ),
]
Full = Annotated[
    bool,
    typer.Option(
        "--full",
        help="Analyse every 3-s segment of each track (default: every third, and all of "
        "them when the song is a near tie between two moods or the track is under about a "
        "minute: see docs/performance.md).",
    ),
]


def budget_of(max_segments: int | None, full: bool, default: Budget) -> Budget:
    """The analysis budget the options ask for; a usage error for both at once."""
    if max_segments and full:
        raise typer.BadParameter("--full and --max-segments exclude each other")
    if full:
        return FULL
    return Budget(max_segments=max_segments) if max_segments else default


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
