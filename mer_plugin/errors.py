"""Errors a user sees: each carries one clear line, never a traceback."""

from __future__ import annotations

from pathlib import Path

# what a decoder says of bytes it cannot make sense of
UNRECOGNISED = "not a recognised audio file (unknown format or corrupt data)"


class MerError(Exception):
    """Base of every error mer reports to a user as one line."""


class SilentTrack(MerError):
    """A track holds nothing to hear: every analysed segment is silent."""


class AudioError(MerError):
    """A file could not be read as audio."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class TagError(MerError):
    """Tags could not be read or written; the file is left as it was."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
