"""Walk a music library: the audio files mer can both decode and tag, each once, in order.

    found = walk([Path("~/Music").expanduser()])
    found.files     # sorted, depth first; every real file once
    found.problems  # (path, reason): unreadable folders, unsupported files named directly
    found.ignored   # {".wv": 3}: audio files a decoder or a tag writer is missing for

Rules: folders are walked recursively and in sorted order; only extensions that a decoder
and a tag writer both handle are kept (`taggable_extensions`); hidden files and folders
(a leading dot, which covers mer's temporary copies and macOS ``._`` files) and a few
system folders are skipped; symlinks are followed, but a folder already walked (a loop,
or a second route to it) is not walked again and a file already found (a symlink, a hard
link) is not listed twice. A path named directly is taken as it is, hidden or not.
`clean_temp_files` runs once in every folder walked (unless `clean=False`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mer_plugin.audio import supported_extensions
from mer_plugin.safe_write import clean_temp_files, is_temp_file, replay_journals
from mer_plugin.tags import writable_extensions

# system folders that hold no music of the user's (NAS thumbnails, recycle bins, fsck)
SYSTEM_FOLDERS = frozenset({"@eaDir", "$RECYCLE.BIN", "System Volume Information", "lost+found"})


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str


@dataclass
class Library:
    files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # files left out under the folders walked, by extension, where mer can decode or tag
    # that extension but not both (`missing_component` says which is missing)
    ignored: dict[str, int] = field(default_factory=dict)


def taggable_extensions() -> frozenset[str]:
    """Lower-case extensions (".flac") that mer can decode and tag."""
    return frozenset(supported_extensions()) & frozenset(writable_extensions())


def missing_component(extension: str) -> str | None:
    """ "decoder" or "tag writer" when only the other handles `extension`, else None."""
    decodable = extension in supported_extensions()
    if decodable == (extension in writable_extensions()):
        return None
    return "tag writer" if decodable else "decoder"


def is_taggable(path: str | os.PathLike, extensions: frozenset[str] | None = None) -> bool:
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    return suffix in (extensions if extensions is not None else taggable_extensions())


def walk(
    paths: Iterable[str | os.PathLike], *, clean: bool = True, decodable: bool = False
) -> Library:
    """The taggable files under `paths` (files or folders); see the module docstring.
    `decodable`: every file a decoder reads, tag writer or not (`mer analyse`)."""
    walker = _Walker(clean, decodable)
    for path in paths:
        walker.add(Path(os.fsdecode(path)))
    return walker.found


class _Walker:
    def __init__(self, clean: bool, decodable: bool = False) -> None:
        self.clean = clean
        decoded = frozenset(supported_extensions())
        self.extensions = decoded if decodable else taggable_extensions()
        self.half_supported = set() if decodable else decoded ^ set(writable_extensions())
        self.found = Library()
        self._files: set[tuple[int, int]] = set()
        self._folders: set[tuple[int, int]] = set()

    def add(self, path: Path) -> None:
        try:
            info = os.stat(path)
        except OSError as error:
            self._problem(path, f"cannot read: {error.strerror or error}")
            return
        if stat.S_ISDIR(info.st_mode):
            self._folder(path, info)
        elif not stat.S_ISREG(info.st_mode):
            self._problem(path, "not a regular file or folder")
        elif not is_taggable(path, self.extensions):
            shown = " ".join(sorted(self.extensions))
            self._problem(
                path, f"unsupported format {path.suffix or '(none)'} (supported: {shown})"
            )
        else:
            self._file(path, info)

    def _folder(self, folder: Path, info: os.stat_result) -> None:
        key = (info.st_dev, info.st_ino)
        if key in self._folders:  # a symlink loop, or a second route to a folder
            return
        self._folders.add(key)
        if self.clean:
            with contextlib.suppress(OSError):
                replay_journals(folder)  # in-place writes a killed run left unfinished
                clean_temp_files(folder)
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as error:
            self._problem(folder, f"cannot read folder: {error.strerror or error}")
            return
        for entry in entries:
            self._entry(entry)

    def _entry(self, entry: os.DirEntry) -> None:
        if entry.name.startswith(".") or is_temp_file(entry.name):
            return
        try:
            info = entry.stat()  # follows symlinks
        except OSError:  # a dangling symlink, or gone since the listing
            return
        if stat.S_ISDIR(info.st_mode):
            if entry.name not in SYSTEM_FOLDERS:
                self._folder(Path(entry.path), info)
        elif stat.S_ISREG(info.st_mode):
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix in self.extensions:
                self._file(Path(entry.path), info)
            elif suffix in self.half_supported:
                self.found.ignored[suffix] = self.found.ignored.get(suffix, 0) + 1

    def _file(self, path: Path, info: os.stat_result) -> None:
        key = (info.st_dev, info.st_ino)
        if key not in self._files:
            self._files.add(key)
            self.found.files.append(path)

    def _problem(self, path: Path, reason: str) -> None:
        self.found.problems.append(Problem(path, reason))
