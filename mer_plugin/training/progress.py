"""A rich progress bar that can be silenced (tests, JSON output)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """One task of a progress display; does nothing when quiet."""

    def __init__(self, progress: Progress | None, total: int, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total) if progress else None

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=steps, description=description)

    def close(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)


class Reporter:
    """Hands out bars; `quiet` turns every bar off."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress: Progress | None = None

    @contextmanager
    def bar(self, total: int, description: str) -> Iterator[Bar]:
        if self.quiet:
            yield Bar(None, total, description)
            return
        if self._progress is None:
            console = Console(stderr=True)
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._progress = Progress(*columns, console=console, transient=True)
            self._progress.start()
        bar = Bar(self._progress, total, description)
        try:
            yield bar
        finally:
            bar.close()
            if not self._progress.tasks:
                self._progress.stop()
                self._progress = None

    def log(self, message: str) -> None:
        if not self.quiet:
            Console(stderr=True).print(message, highlight=False)
