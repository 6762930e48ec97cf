"""The `mer` command line: a thin typer layer over functions a Python user can call."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from mer_plugin import __version__
from mer_plugin.cli.common import fail
from mer_plugin.errors import MerError
from mer_plugin.logs import show_logs

app = typer.Typer(
    name="mer",
    help="Recognise the emotion of music and write it into your library's tags.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Recognise the emotion of music and write it into your library's tags."""
    show_logs()  # warnings (a plugin skipped) as plain lines on stderr


@app.command()
def features(
    file: Annotated[Path, typer.Argument(help="Audio file: wav, aiff, flac, mp3, ogg, opus, m4a.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the segments (.npy).")],
) -> None:
    """Write the log-mel segments of FILE (segments x frames x mels, float32) to a .npy file."""
    from mer_plugin.features import file_segments
    from mer_plugin.frontend import MUSICNN

    try:
        segments = file_segments(file, MUSICNN)
    except MerError as error:
        raise fail(error) from None
    try:
        _save_atomically(out, segments)
    except OSError as error:
        raise fail(MerError(f"{out}: cannot write: {error.strerror or error}")) from None
    seconds = MUSICNN.segment_seconds
    typer.echo(f"{out}: {len(segments)} segments of {seconds:.2f} s, shape {segments.shape}")


def _save_atomically(out: Path, array: np.ndarray) -> None:
    """Write `array` as .npy to exactly `out`; a failed write leaves no partial file."""
    part = out.with_name(out.name + ".part")
    try:
        with open(part, "wb") as handle:
            np.save(handle, array)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)


from mer_plugin.cli import analyse, plugins, predict, tag, training  # noqa: E402

app.command("tag")(tag.tag)
app.command("analyse")(analyse.analyse)
app.command("predict")(predict.predict)
app.command("train")(training.train)
app.command("eval")(training.eval_)
app.command("score")(training.score)
app.command("plugins")(plugins.plugins)
app.command("settings")(training.settings)
