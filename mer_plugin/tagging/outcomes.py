"""What a `mer tag` run says: its options, each file's outcome, the run, the report."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from mer_plugin.budget import DEFAULT_BUDGET, Budget
from mer_plugin.files import written_whole

if TYPE_CHECKING:
    from mer_plugin.inference.predict import SegmentResult


class HardLinks(StrEnum):
    """What `mer tag` does with a file that has several names (hard links)."""

    SKIP = "skip"  # leave it, say why: its other names (a download folder) stay as they are
    IN_PLACE = "in-place"  # write the tags into the one file, through a journal


class Status(StrEnum):
    """What happened to a file."""

    TAGGED = "tagged"
    WOULD_TAG = "would tag"  # a dry run's prediction
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_DONE = "not done"  # the run was interrupted first


# reasons to skip
CACHED = "already tagged by this model (cached)"
SAME_MODEL = "already tagged by this model"
OWN_MOOD = "has a mood mer did not write (--force replaces it)"
VANISHED = "vanished during the run"
CHANGED = "changed while being analysed (still being written?)"
BUSY = "being tagged by another mer run"
HARD_LINKED = "has other names (hard links): --hard-links in-place tags the one file"
# a reason to fail
WORKER_DIED = "the decoding process died on this file (decoder crash or out of memory)"

RESULT_FIELDS = ("quadrant", "mood", "valence", "arousal", "confidence")  # of an outcome


@dataclass(frozen=True)
class TagOptions:
    force: bool = False  # replace moods mer did not write, re-tag what this model tagged
    dry_run: bool = False  # write nothing (tags, cache); outcomes say what would change
    keep_mtime: bool = False
    jobs: int = 1  # decoding processes; 1 decodes in this process
    cache_dir: Path | None = None  # None: the user cache folder (`cache_folder`)
    use_cache: bool = True
    hard_links: HardLinks = HardLinks.SKIP
    # seconds a decoding worker may go without progress on a file before the file fails
    # and the worker is replaced (a decoder stuck on a network share, a stopped process)
    stall_timeout: float = 120.0
    # which segments of a track are analysed (`features.FULL`: all of them)
    budget: Budget = DEFAULT_BUDGET
    # keep each analysed file's segment timeline in its outcome (`mer analyse --timeline`)
    timeline: bool = False


@dataclass
class Outcome:
    """What happened to one file; the prediction's numbers where there is one."""

    path: Path
    status: Status
    reason: str = ""
    quadrant: str | None = None
    mood: str | None = None
    valence: float | None = None
    arousal: float | None = None
    confidence: float | None = None
    previous_mood: str | None = None  # the mood the file had before this run
    timeline: list[SegmentResult] | None = None  # only when asked (`TagOptions.timeline`)

    def row(self) -> dict:
        """The report's row: plain values, the path printable whatever its bytes."""
        values = {k: v for k, v in vars(self).items() if k not in ("path", "timeline")}
        return {"path": shown(self.path), **values}


@dataclass
class TagRun:
    model: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    stop_signal: int | None = None  # what interrupted it: SIGINT (Ctrl-C) or SIGTERM
    # check, analyse, model, write, wall; audio: the length of the files analysed
    seconds: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(o.status == status for o in self.outcomes)

    def reasons(self, status: Status) -> Counter:
        return Counter(o.reason for o in self.outcomes if o.status == status)

    def moods(self) -> Counter:
        done = (Status.TAGGED, Status.WOULD_TAG)
        return Counter(o.mood or o.quadrant for o in self.outcomes if o.status in done)

    def summary(self) -> dict:
        return {
            "tagged": self.count(Status.TAGGED),
            "would tag": self.count(Status.WOULD_TAG),
            "skipped": dict(self.reasons(Status.SKIPPED)),
            "failed": dict(self.reasons(Status.FAILED)),
            "not done": self.count(Status.NOT_DONE),
            "moods": dict(self.moods()),
        }


def shown(path: str | os.PathLike) -> str:
    """A path as text that can be printed: undecodable bytes as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


REPORT_COLUMNS = ("path", "status", "reason", *RESULT_FIELDS, "previous_mood")
REPORT_SUFFIXES = (".json", ".csv")


def write_report(run: TagRun, path: Path) -> None:
    """Every file with its result or error, as JSON or CSV (by the extension), written
    whole or not at all (`files.written_whole`)."""
    rows = [outcome.row() for outcome in run.outcomes]
    if path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        meta = {"model": run.model, "dry_run": run.dry_run, "interrupted": run.interrupted}
        text = json.dumps({**meta, "summary": run.summary(), "files": rows}, indent=1) + "\n"
    with written_whole(path) as part:
        part.write_text(text, encoding="utf-8")
