"""The local engine: the files under some paths, analysed by `mer tag`'s pipeline
(decoding workers, the model in this process), into a results table that a rerun
resumes: rows of unchanged files are kept, only new and changed files are analysed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mer_plugin.catalog.table import FAILED, OK, file_key, key_of, read_rows, write_rows
from mer_plugin.library import walk
from mer_plugin.tagging import Outcome, Status, predict_files, shown

if TYPE_CHECKING:
    from mer_plugin.inference import Model


@dataclass
class AnalyseRun:
    rows: list[dict] = field(default_factory=list)
    kept: int = 0  # rows of unchanged files taken from the existing table
    analysed: int = 0  # files analysed now, with a result
    failed: int = 0  # rows of files that failed, now or before
    interrupted: bool = False


def analyse_to_table(
    paths: Iterable[Path],
    out: Path,
    model: Model,
    jobs: int = 1,
    on_file: Callable[[], None] | None = None,
) -> AnalyseRun:
    """Analyse the files under `paths` that `out` has no current row for, and write the
    whole table to `out` (also when interrupted: what was done is kept)."""
    run, todo = split_done(paths, read_rows(out), model)
    predicted = predict_files(todo, model, jobs, on_outcome=lambda _: on_file and on_file())
    run.interrupted = predicted.interrupted
    for outcome in predicted.outcomes:  # not done (interrupted), vanished: no row
        if outcome.status in (Status.WOULD_TAG, Status.FAILED):
            run.rows.append(_row(outcome, model.release))
            run.analysed += outcome.status == Status.WOULD_TAG
    run.failed = sum(row["status"] == FAILED for row in run.rows)
    run.rows.sort(key=lambda row: row["path"])
    write_rows(out, run.rows)
    return run


def split_done(
    paths: Iterable[Path], previous_rows: list[dict], model: Model
) -> tuple[AnalyseRun, list[Path]]:
    """A run holding the rows still good (unchanged files) and the listing's problems as
    failed rows; and the files left to analyse."""
    library = walk(paths, clean=False, decodable=True)
    previous = {key_of(row): row for row in previous_rows}
    run = AnalyseRun()
    todo = []
    for path in library.files:
        key = file_key(path, model.release)
        if key in previous:
            run.rows.append(previous[key])
            run.kept += 1
        else:
            todo.append(path)
    run.rows += [_problem_row(p.path, p.reason, model.release) for p in library.problems]
    return run, todo


def _row(outcome: Outcome, model: str) -> dict:
    key = file_key(outcome.path, model)
    size, mtime_ns = (key[1], key[2]) if key else (None, None)
    ok = outcome.status == Status.WOULD_TAG
    return {
        "path": shown(outcome.path),
        "size": size,
        "mtime_ns": mtime_ns,
        "model": model,
        "status": OK if ok else FAILED,
        "reason": outcome.reason or None,
        "quadrant": outcome.quadrant,
        "mood": outcome.mood,
        "valence": outcome.valence,
        "arousal": outcome.arousal,
        "confidence": outcome.confidence,
    }


def _problem_row(path: Path, reason: str, model: str) -> dict:
    return _row(Outcome(path, Status.FAILED, reason), model)
