"""Files as mer meets them in a library: is a path a regular file, asked without ever
blocking (a FIFO named like a song must not hang a run); and a lock on a file, so two
mer runs never work on the same one."""

from __future__ import annotations

import os
import stat

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
