"""What every `mer` command shares: one-line errors, the --verbose option."""

from __future__ import annotations

from typing import Annotated

import typer

from mer_plugin.errors import MerError


def fail(error: MerError, code: int = 1) -> typer.Exit:
    """Report a user-facing error as one line on stderr; the caller raises the result."""
    typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Details on stderr: the decoder that read each file, fallbacks."
    ),
]
