"""Safe rewrite of a file in place: a copy in its own folder, edited, swapped in atomically.

Safe write (`safe_rewrite`): the file is copied to a temporary file in its own folder,
the copy is edited in place (by a tag writer, say), the copy
gets the original's owner, permission bits and extended attributes (and its times with
``keep_mtime``), is fsynced, and `os.replace` swaps it in atomically; then the folder is
fsynced. Any failure removes the copy, leaves the original untouched and raises
`TagError` with a one-line reason. A file or folder without any write permission bit
is read-only, even for root (who ignores permission bits otherwise); a file that
vanished or changed while its copy was edited is left alone. Symlinks are followed, so a
link stays a link. A rename would split a hard link (other names keep the old file), so
for a file with several names `in_place=True` writes the synced copy back into the
file's own inode instead: the copy is first renamed to ``.<name>.mer-journal<ext>``, the
bytes are written back and synced, and the journal is removed; a crash in between
leaves the journal, which `replay_journals(folder)` (called by the walker) writes back
again. mer's temporary copies (below) are only clean-up candidates, never audio.

Temporary copies are named ``.<name>.mer-tmp-<random><ext>`` (hidden, recognisable, the
extension kept so mutagen knows the format) and hold an exclusive `flock` while in use.
A process killed mid-write can leave one behind: `clean_temp_files(folder)` removes the
unlocked ones older than a minute (a walker calls it once per folder; `is_temp_file`
tells it which names to skip). Test hook: with the environment
variable ``MER_TEST_CRASH_BEFORE_RENAME=1`` the process calls ``os._exit(1)`` right
before the rename, when the copy is complete and synced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import mutagen

from mer_plugin.errors import TagError

try:
    import fcntl
except ImportError:  # not POSIX: no locks on temporary copies
    fcntl = None


CRASH_BEFORE_RENAME_ENV = "MER_TEST_CRASH_BEFORE_RENAME"
TEMP_MARKER = ".mer-tmp-"
_RANDOM_CHARS = 8  # tempfile's random part


def safe_rewrite(
    path: Path, edit: Callable[[Path], None], *, keep_mtime: bool = False, in_place: bool = False
) -> None:
    """Apply `edit` (in place) to a copy of `path`, then swap the copy in atomically; or,
    `in_place`, write the copy's bytes back into the file itself through a journal (a
    file with several names, hard links, stays one file)."""
    before = _check_writable(path)
    fd, temp = _make_temp(path)
    try:
        shutil.copyfile(path, temp)
        edit(Path(temp))
        _finish_copy(path, temp, fd, before, keep_mtime)
        _check_unchanged(path, before)
        if os.environ.get(CRASH_BEFORE_RENAME_ENV) == "1":
            os._exit(1)  # test hook: die with the finished copy beside the original
        if in_place:
            os.replace(temp, journal_of(path))
            temp = None
            _fsync_folder(path.parent)
            replay_journal(path, keep_mtime=keep_mtime)
        else:
            os.replace(temp, path)
            temp = None
            _fsync_folder(path.parent)
    except TagError as error:
        raise TagError(path, error.reason) from error
    except Exception as error:  # OSError, mutagen, a plugin's writer
        raise TagError(path, error_reason(error, temp, path)) from error
    finally:
        os.close(fd)
        if temp is not None:
            _remove(temp)


# ------------------------------------------------------------------ in place

JOURNAL_MARKER = ".mer-journal"
CRASH_IN_WRITE_BACK_ENV = "MER_TEST_CRASH_IN_WRITE_BACK"  # test hook: die halfway


def journal_of(path: Path) -> Path:
    """``.<name>.mer-journal<ext>``: the complete, synced tagged bytes of `path`, present
    only while they are being written back into it."""
    return path.with_name(f".{path.name}{JOURNAL_MARKER}{path.suffix}")


def replay_journal(path: Path, *, keep_mtime: bool = False) -> None:
    """Write the journal's bytes into `path`'s own inode, sync, and remove the journal.
    Idempotent: after a crash in the middle, replaying again completes the file."""
    journal = journal_of(path)
    with open(journal, "rb") as source, open(path, "r+b") as target:
        crash = os.environ.get(CRASH_IN_WRITE_BACK_ENV) == "1"
        size = os.fstat(source.fileno()).st_size
        while chunk := source.read(1 << 20 if not crash else max(1, size // 2)):
            target.write(chunk)
            if crash:
                target.flush()
                os._exit(1)
        target.truncate()
        target.flush()
        os.fsync(target.fileno())
        if keep_mtime:
            times = os.fstat(source.fileno())
            os.utime(target.fileno(), ns=(times.st_atime_ns, times.st_mtime_ns))
    os.unlink(journal)
    _fsync_folder(path.parent)


def replay_journals(folder: Path) -> list[Path]:
    """Finish the in-place writes a killed mer left unfinished in `folder`; return the
    files completed. A journal whose file is gone is removed."""
    done = []
    with os.scandir(folder) as entries:
        journals = [e.name for e in entries if _JOURNAL_NAME.fullmatch(e.name)]
    for name in journals:
        original = folder / _JOURNAL_NAME.fullmatch(name).group(1)
        if original.is_file():
            replay_journal(original)
            done.append(original)
        else:
            _remove(str(folder / name))
    return done


def _check_writable(path: Path) -> os.stat_result:
    """The file's stat; TagError when it or its folder is read-only."""
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise TagError(path, "file vanished (no such file)") from None
    if reason := read_only_reason(path):
        raise TagError(path, reason)
    return before


def writable(target: Path) -> bool:
    """A file (or a folder: entries added, removed) this process may write: some write
    permission bit set, and access granted. Root is refused where no bit is set."""
    access = os.W_OK | os.X_OK if target.is_dir() else os.W_OK
    return bool(os.stat(target).st_mode & 0o222) and os.access(target, access)


def read_only_reason(path: Path) -> str | None:
    """Why a (real) file cannot be rewritten by a rename over it, or None. A file or folder
    without any write permission bit counts as read-only even for root."""
    for target, what in ((path, "file"), (path.parent, "folder")):
        if not writable(target):
            if hasattr(os, "statvfs") and os.statvfs(path).f_flag & os.ST_RDONLY:
                return "read-only file system"
            return f"{what} is read-only (permission denied)"
    return None


def temp_prefix(path: Path) -> str:
    """``.<name>.mer-tmp-``, the name shortened to fit the file system's name limit."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    name = path.name
    room = limit - len(os.fsencode(f".{TEMP_MARKER}{path.suffix}")) - _RANDOM_CHARS
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}{TEMP_MARKER}"


def _make_temp(path: Path) -> tuple[int, str]:
    try:
        fd, temp = tempfile.mkstemp(suffix=path.suffix, prefix=temp_prefix(path), dir=path.parent)
    except OSError as error:
        raise TagError(
            path, f"cannot create a file in its folder: {error_reason(error)}"
        ) from error
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # clean_temp_files leaves a locked copy alone
    return fd, temp


def _finish_copy(path: Path, temp: str, fd: int, before: os.stat_result, keep_mtime: bool) -> None:
    """The original's owner, permissions, extended attributes (and times); then fsync."""
    if (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
        _copy_owner(temp, before)
    os.chmod(temp, stat.S_IMODE(before.st_mode))
    _copy_xattrs(path, temp)
    if keep_mtime:
        os.utime(temp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.fsync(fd)


def _copy_owner(temp: str, before: os.stat_result) -> None:
    try:
        os.chown(temp, before.st_uid, before.st_gid)
    except PermissionError:  # not root: keep at least the group where we belong to it
        with contextlib.suppress(PermissionError):
            os.chown(temp, -1, before.st_gid)


def _copy_xattrs(path: Path, temp: str) -> None:
    try:
        names = os.listxattr(path)
    except OSError:  # no xattr support here
        return
    for name in names:
        with contextlib.suppress(OSError):  # e.g. security.* needs privileges: best effort
            os.setxattr(temp, name, os.getxattr(path, name))


def _check_unchanged(path: Path, before: os.stat_result) -> None:
    """Refuse to replace a file that vanished or changed while its copy was tagged."""
    change = file_change(path, before)
    if change == FileChange.VANISHED:
        raise TagError(path, "file vanished while its tags were written")
    if change == FileChange.CHANGED:
        raise TagError(path, "file changed while its tags were written (still being written?)")


class FileChange(Enum):
    VANISHED = "vanished"
    CHANGED = "changed"  # another file, size or mtime


def file_change(path: Path, before: os.stat_result) -> FileChange | None:
    """How the file at `path` differs from `before`, or None when it is as it was."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return FileChange.VANISHED
    fields = ("st_dev", "st_ino", "st_size", "st_mtime_ns")
    same = all(getattr(now, f) == getattr(before, f) for f in fields)
    return None if same else FileChange.CHANGED


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the rename is done
        pass
    finally:
        os.close(fd)


def _remove(temp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


_TEMP_NAME = re.compile(r"\..*\.mer-tmp-[a-z0-9_]{8}(\.[^.]*)?", re.DOTALL)
_JOURNAL_NAME = re.compile(r"\.(.+)\.mer-journal(?:\.[^./]*)?", re.DOTALL)


def is_temp_file(path: str | os.PathLike) -> bool:
    """Whether a name is one of mer's temporary copies (``.<name>.mer-tmp-<random><ext>``)."""
    return _TEMP_NAME.fullmatch(os.fsdecode(os.path.basename(path))) is not None


def clean_temp_files(folder: str | os.PathLike, *, min_age_s: float = 60.0) -> list[Path]:
    """Remove the temporary copies that a killed mer left in a folder; return them.

    A copy still locked by a running writer, or younger than `min_age_s`, is kept."""
    removed = []
    with os.scandir(folder) as entries:
        candidates = [Path(e.path) for e in entries if is_temp_file(e.name) and e.is_file()]
    for candidate in candidates:
        if _remove_if_stale(candidate, min_age_s):
            removed.append(candidate)
    return removed


def _remove_if_stale(path: Path, min_age_s: float) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        if time.time() - os.fstat(fd).st_mtime < min_age_s:
            return False
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.path.samestat(os.fstat(fd), os.lstat(path)):
            os.unlink(path)
            return True
        return False
    except OSError:  # locked by a live writer, or gone
        return False
    finally:
        os.close(fd)


_ERRNO_REASONS = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (file size limit reached)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied (read-only file or folder)",
    errno.EPERM: "operation not permitted (immutable or protected file or folder)",
    errno.ENOENT: "file vanished (no such file)",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error (failing disk or removed drive?)",
}


def error_reason(error: BaseException, temp: str | None = None, path: Path | None = None) -> str:
    """One line for the user: errno meanings for OS errors, the message otherwise."""
    cause = _os_error(error)
    if cause is not None and cause.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[cause.errno]
    if cause is not None:
        return cause.strerror or str(cause)
    if isinstance(error, mutagen.MutagenError):
        text = f"unreadable or corrupt file or tags: {error}"
    else:
        text = f"{type(error).__name__}: {error}"
    if temp is not None and path is not None:
        text = text.replace(temp, str(path))
    return " ".join(text.split())


def _os_error(error: BaseException | None) -> OSError | None:
    """The OSError behind an error (mutagen wraps them in its own errors)."""
    for _ in range(5):
        if error is None or isinstance(error, OSError):
            return error
        inner = error.args[0] if error.args else None
        error = inner if isinstance(inner, BaseException) else error.__cause__
    return None
