"""The local engine: the files under some paths, analysed by `mer tag`'s pipeline
(decoding workers, the model in this process), into a results table that a rerun
resumes: rows of unchanged files are kept, only new and changed files are analysed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mer_plugin.budget import DEFAULT_BUDGET, Budget
from mer_plugin.catalog.table import (
    FAILED,
    OK,
    SKIPPED,
    Key,
    file_key,
    key_of,
    read_rows,
    write_rows,
)
from mer_plugin.emotion import valence_arousal
from mer_plugin.library import walk
from mer_plugin.tagging import CHANGED, VANISHED, Outcome, Status, predict_files, shown

if TYPE_CHECKING:
    from mer_plugin.inference import Model
    from mer_plugin.inference.predict import SegmentResult


@dataclass
class AnalyseRun:
    rows: list[dict] = field(default_factory=list)
    kept: int = 0  # rows of unchanged files taken from the existing table
    analysed: int = 0  # files analysed now, with a result
    interrupted: bool = False

    @property
    def failed(self) -> int:
        """Rows of files that failed, now or before."""
        return sum(row["status"] == FAILED for row in self.rows)

    @property
    def skipped(self) -> int:
        """Rows of silent tracks, now or before."""
        return sum(row["status"] == SKIPPED for row in self.rows)


def analyse_to_table(
    paths: Iterable[Path],
    out: Path,
    model: Model,
    jobs: int = 1,
    on_file: Callable[[], None] | None = None,
    timeline: bool = False,
    budget: Budget = DEFAULT_BUDGET,
) -> AnalyseRun:
    """Analyse the files under `paths` that `out` has no current row for, and write the
    whole table to `out` (also when interrupted: what was done is kept); with `timeline`,
    each track's segment timeline too. The `budget` picks the segments, as for `mer tag`."""
    run, todo = split_done(paths, read_rows(out, timeline), model, timeline)

    def advance(_: Outcome) -> None:
        if on_file is not None:
            on_file()

    predicted = predict_files(list(todo), model, jobs, advance, timeline, budget)
    run.interrupted = predicted.interrupted
    for outcome in predicted.outcomes:  # not done (interrupted), vanished, changed: no row
        if outcome.status != Status.NOT_DONE and outcome.reason not in (VANISHED, CHANGED):
            run.rows.append(result_row(todo[outcome.path], outcome))
            run.analysed += outcome.status == Status.WOULD_TAG
    run.rows.sort(key=lambda row: row["path"])
    write_rows(out, run.rows, timeline)
    return run


def split_done(
    paths: Iterable[Path], previous_rows: list[dict], model: Model, timeline: bool = False
) -> tuple[AnalyseRun, dict[Path, Key]]:
    """A run holding the rows still good (unchanged files; with `timeline`, only those
    that have one, or no result) and the listing's problems as failed rows; and the files
    left to analyse, with their keys as listed (a file that changes while it is analysed
    then gets a row its next run will not trust)."""
    library = walk(paths, clean=False, decodable=True)
    previous = {
        key_of(row): row
        for row in previous_rows
        if not timeline or row["status"] != OK or row["timeline"] is not None
    }
    run = AnalyseRun()
    todo: dict[Path, Key] = {}
    for path in library.files:
        key = file_key(path, model.release)
        if key in previous:
            run.rows.append(previous[key])
            run.kept += 1
        else:
            todo[path] = key or (shown(path), None, None, model.release)
    for problem in library.problems:
        key = (shown(problem.path), None, None, model.release)
        run.rows.append(result_row(key, Outcome(problem.path, Status.FAILED, problem.reason)))
    return run, todo


def result_row(key: Key, outcome: Outcome) -> dict:
    """The table's row of a file (its key as listed) from its outcome: "would tag" with
    the prediction (a note in `reason`; the timeline, when the outcome has one), or
    "skipped" (a silent track) or "failed" with the reason."""
    path, size, mtime_ns, model = key
    ok = outcome.status == Status.WOULD_TAG
    timeline = outcome.timeline
    return {
        "path": path,
        "size": size,
        "mtime_ns": mtime_ns,
        "model": model,
        "status": OK if ok else SKIPPED if outcome.status == Status.SKIPPED else FAILED,
        "reason": outcome.reason or None,
        "quadrant": outcome.quadrant,
        "mood": outcome.mood,
        "valence": outcome.valence,
        "arousal": outcome.arousal,
        "confidence": outcome.confidence,
        "timeline": None if timeline is None else [segment_row(s) for s in timeline],
    }


def segment_row(segment: SegmentResult) -> dict:
    """A timeline's record of one analysed segment."""
    probs = segment.probabilities
    valence, arousal = valence_arousal(probs) or (None, None)
    quadrant = max(probs, key=probs.__getitem__)
    times = {"start": segment.start, "end": segment.end, "quadrant": quadrant}
    return {**times, "valence": valence, "arousal": arousal, "confidence": segment.confidence}
