"""`mer tag PATH...`: write the emotion of every track of a library into its tags.

Exit status: 0 all done (skipped files included); 1 some files failed, each named on
stderr with its reason, one line each; 2 usage error; 130 interrupted (Ctrl-C) or 143
(SIGTERM), after the summary: every file is fully tagged or untouched, the results
cache has every row, and a rerun resumes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mer_plugin.budget import DEFAULT_BUDGET
from mer_plugin.cli.common import (
    USAGE_EXIT,
    Full,
    MaxSegments,
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


class HardLinksChoice(StrEnum):  # tagging.HardLinks, without importing tagging for --help
    skip = "skip"
    in_place = "in-place"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _report_path(value: Path | None) -> Path | None:
    from mer_plugin.safe_write import writable
    from mer_plugin.tagging import REPORT_SUFFIXES

    if value is None:
        return None
    if value.suffix.lower() not in REPORT_SUFFIXES:
        raise typer.BadParameter(f"must end in {' or '.join(REPORT_SUFFIXES)}")
    folder = value.parent
    if not folder.is_dir():
        raise typer.BadParameter(f"no such folder {folder}")
    if not writable(folder) or (value.exists() and not writable(value)):
        raise typer.BadParameter(f"cannot write {value} (permission denied)")
    return value


def tag(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Audio files or folders (walked recursively).", callback=library_paths),
    ],
    model: ModelOpt = None,
    device: Annotated[Device, typer.Option(help="Where the model runs.")] = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Decoding processes (default: CPU cores).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace moods mer did not write; re-tag tagged files."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write nothing; show what would change.")
    ] = False,
    keep_mtime: Annotated[
        bool, typer.Option("--keep-mtime", help="Keep the files' modification times.")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write every file's result to FILE.json or FILE.csv.", callback=_report_path
        ),
    ] = None,
    hard_links: Annotated[
        HardLinksChoice,
        typer.Option(
            help="A file with several names: skip it (its other names stay untouched), or "
            "tag the one file in place."
        ),
    ] = HardLinksChoice.skip,
    stall_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="A file whose decoding makes no progress this long fails; the run goes on.",
        ),
    ] = 120.0,
    full: Full = False,
    max_segments: MaxSegments = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    verbose: Verbose = False,
) -> None:
    """Tag every track under PATHS with its mood (MOOD) and valence/arousal (MER_*)."""
    show_logs(verbose)
    budget = budget_of(max_segments, full, DEFAULT_BUDGET)
    from mer_plugin.inference import ModelError
    from mer_plugin.library import walk
    from mer_plugin.tagging import HardLinks, ModelOnDemand, TagOptions, tag_library, write_report

    try:  # torch and the weights wait until a file needs analysis, unless a GPU is asked for
        on_demand = ModelOnDemand(model, device.value, precision.value)
        if device == Device.cuda:
            on_demand.load()
    except MerError as error:  # a model or device that cannot be had: a usage error
        raise fail(error, USAGE_EXIT) from None
    jobs = jobs or os.cpu_count() or 1
    options = TagOptions(
        force,
        dry_run,
        keep_mtime,
        jobs,
        hard_links=HardLinks(hard_links.value),
        stall_timeout=stall_timeout,
        budget=budget,
    )
    library = walk(paths, clean=not dry_run)
    try:
        with _progress(quiet, len(library.files) + len(library.problems)) as advance:
            run = tag_library(library, on_demand, options, advance)
    except ModelError as error:  # loaded on demand: nothing was written yet
        raise fail(error, USAGE_EXIT) from None
    for warning in run.warnings:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    if report is not None:
        try:
            write_report(run, report)
        except OSError as error:
            raise fail(MerError(f"{report}: cannot write: {error.strerror or error}")) from None
    if not quiet:
        _print_summary(run)
        _print_ignored(library.ignored)
    raise typer.Exit(_exit_code(run))


def _print_ignored(ignored: dict[str, int]) -> None:
    """The audio files left out for want of a decoder or a tag writer, per extension."""
    from mer_plugin.library import missing_component

    for extension, n in sorted(ignored.items()):
        files = "file" if n == 1 else "files"
        missing = missing_component(extension)
        typer.echo(
            f"not tagged: {n} {extension} {files} (no {missing} for {extension}; "
            "a plugin can add one: `mer plugins` lists the formats)"
        )


def _exit_code(run) -> int:
    from mer_plugin.tagging import Status, shown

    failed = [o for o in run.outcomes if o.status == Status.FAILED]
    for outcome in failed:
        typer.secho(f"failed: {shown(outcome.path)}: {outcome.reason}", err=True, fg="red")
    if run.interrupted:
        return 128 + (run.stop_signal or signal.SIGINT)  # as shells report a signal
    return 1 if failed else 0


@contextmanager
def _progress(quiet: bool, total: int) -> Iterator[Callable | None]:
    """A progress bar on stderr (files, tracks/s, ETA); yields the per-file callback."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("tagging"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("tag", total=total, rate="")

        def advance(_outcome) -> None:
            progress.advance(task)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:.1f} tracks/s" if speed else "")

        yield advance


def _print_summary(run) -> None:
    """What would change (dry run), then counts by status and reason, and the moods."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from mer_plugin.tagging import Status, shown

    for o in run.outcomes:  # plain lines, never wrapped: one per file
        if o.status == Status.WOULD_TAG:
            was = o.previous_mood or "no mood"
            typer.echo(f"would tag {shown(o.path)}: {was} -> {o.mood} ({o.quadrant})")
        if o.status in (Status.TAGGED, Status.WOULD_TAG) and o.reason:
            typer.echo(f"partly decoded: {shown(o.path)}: {o.reason}")
    console = Console(highlight=False)
    table = Table("", "files", title=f"mer tag ({run.model})", title_justify="left")
    table.add_row(
        "would tag" if run.dry_run else "tagged",
        str(run.count(Status.WOULD_TAG if run.dry_run else Status.TAGGED)),
    )
    for status in (Status.SKIPPED, Status.FAILED):
        table.add_row(status, str(run.count(status)))
        for reason, n in sorted(run.reasons(status).items(), key=lambda kv: -kv[1]):
            table.add_row(Text(f"  {reason}"), str(n))
    if run.interrupted:
        table.add_row("not done (interrupted)", str(run.count(Status.NOT_DONE)))
    moods = run.moods()
    if moods:
        table.add_row("mood", "")
        for mood, n in sorted(moods.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            table.add_row(Text(f"  {mood}"), f"{n} ({n / sum(moods.values()):.0%})")
    console.print(table)
    if run.interrupted:
        console.print("interrupted: run `mer tag` again to resume")
    _print_timing(console, run)


def _print_timing(console, run) -> None:
    """'12 tracks analysed in 22.3 s (1.9 s a track, 48.0 min of audio, 129x realtime)'."""
    from mer_plugin.tagging import Status

    done = run.count(Status.TAGGED) + run.count(Status.WOULD_TAG)
    wall = run.seconds["wall"]
    if not done or wall <= 0:
        return
    notes = []
    if done > 1:
        notes.append(
            f"{done / wall:.1f} tracks/s" if done >= wall else f"{wall / done:.1f} s a track"
        )
    if audio := run.seconds["audio"]:
        notes.append(f"{_length(audio)} of audio, {audio / wall:.0f}x realtime")
    tracks = "1 track" if done == 1 else f"{done} tracks"
    console.print(
        f"{tracks} analysed in {wall:.1f} s" + (f" ({', '.join(notes)})" if notes else "")
    )


def _length(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"
