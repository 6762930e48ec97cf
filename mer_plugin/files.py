"""Files as mer meets them in a library: is a path a regular file, asked without ever
blocking (a FIFO named like a song must not hang a run); a lock on a file, so two mer
runs never work on the same one; and files and folders mer writes (caches, models,
reports) written whole or not at all; a file's digest."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no file locks
    fcntl = None

# opened to look, never to wait: a FIFO does not block, a terminal is not taken over
_LOOK = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes (OSError when it cannot be read)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def irregular_reason(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file mer may open ("not a regular file (a FIFO)"), or
    None when it is. The file is stat'ed, then opened non-blocking and stat'ed again, so
    a file swapped for a FIFO in between is caught without blocking; OSError (a vanished
    file, no permission) is left to the caller."""
    if (reason := mode_reason(os.stat(path).st_mode)) is not None:
        return reason  # a device is never opened: opening some has side effects
    fd = os.open(path, _LOOK)
    try:
        return mode_reason(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def lock(path: str | os.PathLike) -> int | None:
    """An open descriptor of `path` holding an exclusive advisory lock (flock), or None
    when another process holds one. Close it to release. Where locks are not supported
    (some network file systems), the descriptor comes back unlocked."""
    fd = os.open(path, _LOOK)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:  # ENOLCK, EINVAL: no locks here
        pass
    return fd


def mode_reason(mode: int) -> str | None:
    """What a stat's `st_mode` says is wrong ("not a regular file (a FIFO)"), or None."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


@contextlib.contextmanager
def written_whole(path: Path, *, replace_folder: bool = False) -> Iterator[Path]:
    """A temporary sibling of `path` (``.NAME.part-PID``) to write a file or a folder
    into; renamed onto `path` when the block ends, removed if it fails (Ctrl-C included).
    A folder already at `path` is replaced with `replace_folder`, else kept (another
    process published the same first). The siblings of processes no longer running
    (killed while writing) are removed first."""
    _remove_dead_parts(path)
    part = path.with_name(f".{path.name}.part-{os.getpid()}")
    _remove(part)
    try:
        yield part
        if replace_folder and path.is_dir():
            shutil.rmtree(path)
        try:
            os.replace(part, path)
        except OSError:
            if not (part.is_dir() and path.is_dir()):  # else: the folder published first
                raise
    finally:
        _remove(part)


def _remove_dead_parts(path: Path) -> None:
    for part in path.parent.glob(f".{glob.escape(path.name)}.part-*"):
        pid = part.name.rpartition(".part-")[2]
        if pid.isdigit() and not _running(int(pid)):
            _remove(part)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
