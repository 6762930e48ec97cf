"""The `mer` command line: a thin typer layer over functions a Python user can call."""

from __future__ import annotations

import typer

from mer_plugin import __version__

app = typer.Typer(
    name="mer",
    help="Recognise the emotion of music and write it into your library's tags.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Recognise the emotion of music and write it into your library's tags."""


def main() -> None:
    app()
