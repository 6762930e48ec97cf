"""`mer analyse PATH... --out TABLE`: every track's emotion as a row of a table, nothing
written to the audio files; a rerun keeps the rows of unchanged files."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mer_plugin.budget import DEFAULT_BUDGET
from mer_plugin.cli.common import (
    USAGE_EXIT,
    Full,
    ModelOpt,
    Precision,
    PrecisionOpt,
    Verbose,
    budget_of,
    fail,
    library_paths,
)
from mer_plugin.errors import MerError
from mer_plugin.logs import show_logs


class Engine(StrEnum):
    local = "local"
    ray = "ray"


def analyse(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Audio files or folders (walked recursively).", callback=library_paths),
    ],
    out: Annotated[
        Path, typer.Option(help="The results table: FILE.parquet, FILE.csv or FILE.jsonl.")
    ],
    model: ModelOpt = None,
    device: Annotated[str, typer.Option(help="Where the model runs: auto, cpu or cuda.")] = "auto",
    precision: PrecisionOpt = Precision.auto,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Decoding processes (default: CPU cores).")
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help='local: this machine; ray: Ray Data (pip install ".[ray]").')
    ] = Engine.local,
    address: Annotated[
        str | None, typer.Option(help="With --engine ray: the cluster (default: a local Ray).")
    ] = None,
    timeline: Annotated[
        bool,
        typer.Option(
            help="Also a timeline column: each analysed 3 s segment's start, end, quadrant, "
            "valence, arousal and confidence."
        ),
    ] = False,
    full: Full = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    verbose: Verbose = False,
) -> None:
    """Write every track's emotion under PATHS to a table (resumable; audio untouched)."""
    budget = budget_of(None, full, DEFAULT_BUDGET)
    from mer_plugin.catalog import analyse_to_table
    from mer_plugin.catalog.ray_engine import analyse_on_ray, ray_module
    from mer_plugin.catalog.table import check_target
    from mer_plugin.tagging import load_for_tagging

    show_logs(verbose)
    try:
        check_target(out)
        if engine == Engine.ray:
            if out.suffix != ".parquet":
                raise MerError(f"{out}: Ray writes a Parquet dataset: name it FOLDER.parquet")
            ray_module()
        loaded = load_for_tagging(model, device, precision.value)
    except MerError as error:
        raise fail(error, USAGE_EXIT) from None
    try:
        if engine == Engine.ray:
            run = analyse_on_ray(
                paths, out, loaded, device, address, timeline, budget, precision.value
            )
        else:
            jobs = jobs or os.cpu_count() or 1
            run = analyse_to_table(paths, out, loaded, jobs, timeline=timeline, budget=budget)
    except MerError as error:
        raise fail(error) from None
    if not quiet:
        typer.echo(
            f"{out}: {len(run.rows)} rows ({run.analysed} analysed, {run.kept} kept from "
            f"before, {run.skipped} skipped (silent), {run.failed} failed)"
            + (", interrupted" if run.interrupted else "")
        )
    raise typer.Exit(130 if run.interrupted else (1 if run.failed else 0))
