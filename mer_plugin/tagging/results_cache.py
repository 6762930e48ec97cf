"""The results cache: which files a model tagged, as they were right after.

A SQLite file (`tag-results.sqlite3`) in the user cache folder (``$MER_CACHE_DIR``,
``$XDG_CACHE_HOME/mer``, ``~/.cache/mer``), one row per tagged file keyed by its real
path, size, mtime and the model (name, version and a digest of its files); each row is
its own transaction, committed right after the file's rename.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from mer_plugin.tagging.outcomes import RESULT_FIELDS, Outcome, TagOptions, shown
from mer_plugin.user_cache import cache_folder

CACHE_FILE = "tag-results.sqlite3"

SCHEMA = """CREATE TABLE IF NOT EXISTS tagged (
    path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    model TEXT NOT NULL, quadrant TEXT, mood TEXT, valence REAL, arousal REAL,
    confidence REAL, tagged_at REAL NOT NULL)"""


class ResultCache:
    """Which files this model tagged, as they were right after: real path, size, mtime."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if read_only:
            self.db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30)
            with self.db:
                self.db.execute(SCHEMA)

    def lookup(self, key: bytes, info: os.stat_result, model: str) -> dict | None:
        """The cached result when the file is as this model left it, else None."""
        row = self.db.execute(
            f"SELECT {', '.join(RESULT_FIELDS)} FROM tagged"
            " WHERE path = ? AND size = ? AND mtime_ns = ? AND model = ?",
            (key, info.st_size, info.st_mtime_ns, model),
        ).fetchone()
        return dict(zip(RESULT_FIELDS, row, strict=True)) if row else None

    def store(self, key: bytes, info: os.stat_result, model: str, outcome: Outcome) -> None:
        values = [getattr(outcome, name) for name in RESULT_FIELDS]
        with self.db:  # one transaction
            self.db.execute(
                "INSERT OR REPLACE INTO tagged VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, info.st_size, info.st_mtime_ns, model, *values, time.time()),
            )

    def close(self) -> None:
        self.db.close()


def open_cache(options: TagOptions, warnings: list[str]) -> ResultCache | None:
    """The results cache (read-only for a dry run), or None with a warning if unusable."""
    if not options.use_cache:
        return None
    path = cache_folder(options.cache_dir) / CACHE_FILE
    if options.dry_run and not path.is_file():
        return None
    try:
        return ResultCache(path, read_only=options.dry_run)
    except (OSError, sqlite3.Error) as error:
        if options.dry_run or not _corrupt(error):
            warnings.append(f"results cache {shown(path)} unusable ({error}); running without it")
            return None
    # not a database (the disk's doing, not mer's: rows are committed one at a time)
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, aside)
        cache = ResultCache(path)
    except (OSError, sqlite3.Error) as error:
        warnings.append(f"results cache {shown(path)} unusable ({error}); running without it")
        return None
    warnings.append(f"results cache {shown(path)} was corrupt: moved to {aside.name}, started anew")
    return cache


def _corrupt(error: Exception) -> bool:
    return getattr(error, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT")
