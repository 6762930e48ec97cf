"""`mer predict FILE`: a song's emotion and its timeline, or the 50 MSD tags over time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mer_plugin.budget import FULL, Budget
from mer_plugin.cli.common import (
    MaxSegments,
    ModelOpt,
    Precision,
    PrecisionOpt,
    Verbose,
    budget_of,
    fail,
)
from mer_plugin.errors import MerError
from mer_plugin.logs import show_logs


def predict(
    file: Annotated[Path, typer.Argument(help="Audio file to analyse.")],
    model: ModelOpt = None,
    tags: Annotated[
        bool, typer.Option("--tags", help="Print the 50 MSD tags over time (MSD-musicnn).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    top: Annotated[int, typer.Option(help="With --tags: how many tags to show.")] = 5,
    plot: Annotated[
        Path | None,
        typer.Option(
            metavar="IMAGE", help="Also draw the song's emotion over time into IMAGE (.png, .svg)."
        ),
    ] = None,
    max_segments: MaxSegments = None,
    precision: PrecisionOpt = Precision.auto,
    verbose: Verbose = False,
) -> None:
    """Print FILE's emotion (quadrant, mood, valence, arousal) and its segment timeline."""
    show_logs(verbose)
    try:
        if tags:
            _print_tags(file, top, as_json)
        else:
            budget = budget_of(max_segments, False, FULL)
            _print_emotion(file, model, as_json, plot, budget, precision.value)
    except MerError as error:
        raise fail(error) from None


def _print_tags(file: Path, top: int, as_json: bool) -> None:
    from mer_plugin.inference.msd_tags import predict_tags

    timeline = predict_tags(file)
    if as_json:
        rows = [
            {"start": float(start), "end": float(start + timeline.segment_seconds), "tags": tags}
            for start, tags in zip(timeline.starts, _top_rows(timeline, top), strict=True)
        ]
        song = dict(timeline.top(top))
        typer.echo(json.dumps({"file": str(file), "song": song, "segments": rows}))
        return
    typer.echo(f"{file}: " + ", ".join(f"{tag} {p:.2f}" for tag, p in timeline.top(top)))
    for start, row in zip(timeline.starts, _top_rows(timeline, top), strict=True):
        end = start + timeline.segment_seconds
        shown = ", ".join(f"{tag} {p:.2f}" for tag, p in row.items())
        typer.echo(f"  {start:7.1f}-{end:7.1f} s  {shown}")


def _top_rows(timeline, top: int) -> list[dict[str, float]]:
    order = (-timeline.probs).argsort(axis=1, kind="stable")[:, :top]
    return [
        {timeline.tags[j]: float(timeline.probs[i, j]) for j in row} for i, row in enumerate(order)
    ]


def _print_emotion(
    file: Path,
    model_name: str | None,
    as_json: bool,
    plot: Path | None,
    budget: Budget,
    precision: str,
) -> None:
    from mer_plugin.inference import load_model, predict_file, resolve_model
    from mer_plugin.inference.device import with_precision
    from mer_plugin.inference.plot import check_plot_target, plot_prediction

    if plot is not None:
        check_plot_target(plot)
    model = with_precision(load_model(resolve_model(model_name)), precision)
    result = predict_file(model, file, budget)
    if plot is not None:
        plot_prediction(result, file.name, plot)
    if as_json:
        typer.echo(json.dumps({"file": str(file), **result.to_dict()}))
        return
    va = ""
    if result.valence is not None:
        va = f", valence {result.valence:.2f}, arousal {result.arousal:.2f}"
    mood = f" ({result.mood})" if result.mood else ""
    typer.echo(f"{file}: {result.label}{mood}{va}, confidence {result.confidence:.2f}")
    for segment in result.timeline:
        span = f"  {segment.start:7.1f}-{segment.end:7.1f} s  "
        if segment.silent:
            typer.echo(span + "silent (left out)")
            continue
        best = max(segment.probabilities, key=segment.probabilities.get)
        typer.echo(
            f"{span}{best} {segment.probabilities[best]:.2f}  confidence {segment.confidence:.2f}"
        )
