"""The policy: what to do with a file before anything is decoded (results cache, tags
this model wrote, a mood the user set, a read-only file), and whether it changed since."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mer_plugin.audio import audio_info
from mer_plugin.errors import MerError
from mer_plugin.files import lock, mode_reason
from mer_plugin.safe_write import FileChange, file_change, read_only_reason
from mer_plugin.tagging.outcomes import (
    BUSY,
    CACHED,
    CHANGED,
    HARD_LINKED,
    OWN_MOOD,
    SAME_MODEL,
    VANISHED,
    HardLinks,
    Outcome,
    Status,
    TagOptions,
)
from mer_plugin.tagging.results_cache import ResultCache
from mer_plugin.tags import (
    AROUSAL,
    CONFIDENCE,
    MODEL,
    MOOD,
    QUADRANT,
    VALENCE,
    TagError,
    foreign_mood,
    read_tags,
)


@dataclass
class Planned:
    """A file that passed the checks, with what it looked like then."""

    path: Path
    key: bytes  # its real path: the cache's key
    info: os.stat_result
    previous_mood: str | None


class Policy:
    """Decides, per file, before decoding: skip (cached, already tagged, a user's mood),
    fail (unreadable, read-only) or go ahead (`Planned`)."""

    def __init__(self, release: str, model_id: str, options: TagOptions, cache: ResultCache | None):
        self.release = release  # what MER_MODEL says of this model
        self.model_id = model_id  # what the cache calls it
        self.options = options
        self.cache = cache
        self.seconds: Counter = Counter()
        self.locks: dict[Path, int] = {}  # the files this run works on, locked

    def unlock(self, path: Path) -> None:
        """Let other mer runs have the file again."""
        fd = self.locks.pop(path, None)
        if fd is not None:
            os.close(fd)

    def unlock_all(self) -> None:
        for path in list(self.locks):
            self.unlock(path)

    def check(self, path: Path) -> Planned | Outcome:
        start = time.perf_counter()
        try:
            return self._check(path)
        finally:
            self.seconds["check"] += time.perf_counter() - start

    def _check(self, path: Path) -> Planned | Outcome:
        planned = plan(path)
        if isinstance(planned, Outcome):
            return planned
        key, info = planned.key, planned.info
        if not self.options.force and (hit := self._cached(key, info)) is not None:
            return Outcome(path, Status.SKIPPED, CACHED, **hit, previous_mood=hit["mood"])
        try:
            tags = read_tags(path)
        except TagError as error:
            return Outcome(path, Status.FAILED, _unreadable(path, error))
        previous = tags.get(MOOD)
        skip = skip_reason(tags, self.release, self.options.force)
        if skip == SAME_MODEL:
            return self._already_tagged(path, key, info, tags)
        if skip:
            return Outcome(path, Status.SKIPPED, skip, previous_mood=previous)
        if reason := read_only(path):
            return Outcome(path, Status.FAILED, reason, previous_mood=previous)
        if info.st_nlink > 1 and self.options.hard_links == HardLinks.SKIP:
            return Outcome(path, Status.SKIPPED, HARD_LINKED, previous_mood=previous)
        if not self._claim(path):
            return Outcome(path, Status.SKIPPED, BUSY, previous_mood=previous)
        return Planned(path, key, info, previous)

    def _claim(self, path: Path) -> bool:
        """Lock the file for this run; False when another mer run holds it."""
        try:
            held = lock(path)
        except OSError:  # vanished or unreadable: the analysis will say which
            return True
        if held is not None:
            self.locks[path] = held
        return held is not None

    def _cached(self, key: bytes, info: os.stat_result) -> dict | None:
        if self.cache is None:
            return None
        try:
            return self.cache.lookup(key, info, self.model_id)
        except sqlite3.Error:
            return None

    def _already_tagged(self, path: Path, key: bytes, info: os.stat_result, tags: dict) -> Outcome:
        """Skipped: tagged by this model in a run whose cache row is missing; record it."""
        outcome = Outcome(path, Status.SKIPPED, SAME_MODEL, previous_mood=tags.get(MOOD))
        outcome.mood, outcome.quadrant = tags.get(MOOD), tags.get(QUADRANT)
        for name, tag in (("valence", VALENCE), ("arousal", AROUSAL), ("confidence", CONFIDENCE)):
            with contextlib.suppress(KeyError, ValueError):
                setattr(outcome, name, float(tags[tag]))
        self.store(key, info, outcome)
        return outcome

    def store(self, key: bytes, info: os.stat_result, outcome: Outcome) -> None:
        """Cache a file's result (not in a dry run); a cache error loses only the row."""
        if self.cache is None or self.options.dry_run:
            return
        with contextlib.suppress(sqlite3.Error):  # the tags are written; a rerun sees them
            self.cache.store(key, info, self.model_id, outcome)


def plan(path: Path) -> Planned | Outcome:
    """The file as it is now, ready to be analysed; or why not (vanished, unreadable)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return Outcome(path, Status.SKIPPED, VANISHED)
    except OSError as error:
        return Outcome(path, Status.FAILED, f"cannot read: {error.strerror or error}")
    if reason := mode_reason(info.st_mode):  # replaced by a FIFO or a folder since the walk
        return Outcome(path, Status.FAILED, reason)
    return Planned(path, os.fsencode(os.path.realpath(path)), info, None)


def skip_reason(fields: Mapping[str, str], release: str, force: bool = False) -> str | None:
    """Why a song whose mer fields are `fields` (logical names, as `read_tags` returns
    them, or as a music library holds them) is left alone: SAME_MODEL when `release`
    wrote them, OWN_MOOD for a mood mer did not write; None to analyse it, always so
    when forced."""
    if force:
        return None
    if fields.get(MODEL) == release:
        return SAME_MODEL
    if foreign_mood(fields):
        return OWN_MOOD
    return None


def _unreadable(path: Path, error: TagError) -> str:
    """Why a file's tags cannot be read: the decoder's reason when it cannot read the file
    either (clearer: "empty file", "not a recognised audio file"), else mutagen's."""
    try:
        audio_info(path)
    except MerError as audio_error:
        return getattr(audio_error, "reason", str(audio_error))
    return error.reason


def moved(planned: Planned) -> str | None:
    """VANISHED or CHANGED when the file is not as `check` saw it, else None."""
    change = file_change(planned.path, planned.info)
    return {FileChange.VANISHED: VANISHED, FileChange.CHANGED: CHANGED}.get(change)


def read_only(path: Path) -> str | None:
    """Why the file cannot be rewritten, or None; checked before decoding so a read-only
    library costs no decoding."""
    try:
        return read_only_reason(Path(os.path.realpath(path)))
    except OSError:
        return None  # vanished: the write will say so
