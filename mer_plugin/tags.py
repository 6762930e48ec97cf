"""Tags: mer's fields, declared once, written safely into every container mutagen knows.

`FIELDS` is the one table of what mer writes (cf. mediafile's ``MediaField``): each
logical field with its key in every container, as docs/design.md specifies. Writers are
plugins (`mer_tag_writers` hook), chosen per extension by priority; this module only
looks them up, mer's own are in `mer_plugin.builtin.tag_writers`.

    write_tags("song.flac", format_fields(mood="Happy", valence=0.73, arousal=0.61,
                                          quadrant="Q1", confidence=0.9, model="mer 1.0"))
    read_tags("song.flac")  # {"mood": "Happy", "MER_VALENCE": "0.730", ..., "mood_source": "mer"}

Safe write (`safe_rewrite`): the file is copied to a temporary file in its own folder,
the tags are written into the copy (by the container's `TagWriter`, in place), the copy
gets the original's owner, permission bits and extended attributes (and its times with
``keep_mtime``), is fsynced, and `os.replace` swaps it in atomically; then the folder is
fsynced. Any failure removes the copy, leaves the original untouched and raises
`TagError` with a one-line reason. A file or folder without any write permission bit
is read-only, even for root (who ignores permission bits otherwise); a file that
vanished or changed while its copy was tagged is left alone. The audio stream is never
decoded or rewritten. Symlinks
are followed, so a link stays a link; a hard link is split: other names keep the old
file. mer's temporary copies (below) are only clean-up candidates, never audio.

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
import math
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import mutagen

from mer_plugin.emotion import QUADRANTS
from mer_plugin.errors import MerError
from mer_plugin.hookspecs import TagWriter
from mer_plugin.plugins import get_plugins

try:
    import fcntl
except ImportError:  # not POSIX: no locks on temporary copies
    fcntl = None

# ------------------------------------------------------------------ the fields

MOOD = "mood"
VALENCE = "MER_VALENCE"
AROUSAL = "MER_AROUSAL"
QUADRANT = "MER_QUADRANT"
CONFIDENCE = "MER_CONFIDENCE"
MODEL = "MER_MODEL"
# derived by read_tags, never written: "mer" when the file's mood came with a MER_MODEL
MOOD_SOURCE = "mood_source"

DECIMALS = 3  # numbers in [0, 1] are written as "0.734"
ITUNES = "----:com.apple.iTunes:"
CONTAINERS = ("id3v24", "id3v23", "vorbis", "mp4", "ape", "asf")


@dataclass(frozen=True)
class Field:
    """One logical field and its key in each container (`CONTAINERS`)."""

    name: str
    id3v24: str
    id3v23: str
    vorbis: str  # FLAC, Ogg Vorbis, Opus, Speex (case-insensitive keys)
    mp4: str
    ape: str  # case-insensitive keys
    asf: str
    unit_interval: bool = False  # a number in [0, 1], written with DECIMALS decimals

    def key(self, container: str) -> str:
        return getattr(self, container)


def _mer(name: str, unit_interval: bool = False) -> Field:
    return Field(
        name, f"TXXX:{name}", f"TXXX:{name}", name, ITUNES + name, name, name, unit_interval
    )


FIELDS: tuple[Field, ...] = (
    Field(MOOD, "TMOO", "TXXX:MOOD", "MOOD", ITUNES + "MOOD", "Mood", "WM/Mood"),
    _mer(VALENCE, unit_interval=True),
    _mer(AROUSAL, unit_interval=True),
    _mer(QUADRANT),
    _mer(CONFIDENCE, unit_interval=True),
    _mer(MODEL),
)
FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in FIELDS)
_BY_NAME = {field.name: field for field in FIELDS}


def field_named(name: str) -> Field:
    """The `Field` of a logical name (`FIELD_NAMES`); KeyError for another name."""
    return _BY_NAME[name]


class TagError(MerError):
    """Tags could not be read or written; the file is left as it was."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def format_fields(
    *, mood: str, valence: float, arousal: float, quadrant: str, confidence: float, model: str
) -> dict[str, str]:
    """mer's fields for one song, as the strings `write_tags` writes."""
    values = {
        MOOD: mood,
        VALENCE: valence,
        AROUSAL: arousal,
        QUADRANT: quadrant,
        CONFIDENCE: confidence,
        MODEL: model,
    }
    return check_fields(values)


def check_fields(fields: Mapping[str, str | float]) -> dict[str, str]:
    """Validated field strings; numbers become fixed-decimal text. `MOOD_SOURCE` is
    dropped (read-only); an unknown name or a bad value raises ValueError."""
    checked: dict[str, str] = {}
    for name, value in fields.items():
        if name == MOOD_SOURCE:
            continue
        if name not in _BY_NAME:
            raise ValueError(f"unknown tag field {name!r}: one of {', '.join(FIELD_NAMES)}")
        checked[name] = _check_value(_BY_NAME[name], value)
    return checked


def _check_value(field: Field, value: str | float) -> str:
    if field.unit_interval:
        number = float(value)
        if not (math.isfinite(number) and 0.0 <= number <= 1.0):
            raise ValueError(f"{field.name} must be in [0, 1], not {value!r}")
        return f"{number:.{DECIMALS}f}"
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ValueError(f"{field.name} must be non-empty text, not {value!r}")
    if field.name == QUADRANT and value not in QUADRANTS:
        raise ValueError(f"{QUADRANT} must be one of {', '.join(QUADRANTS)}, not {value!r}")
    return value


def foreign_mood(tags: Mapping[str, str]) -> bool:
    """True when `read_tags` found a mood that mer did not write (no MER_MODEL beside it)."""
    return tags.get(MOOD_SOURCE) == "other"


# ------------------------------------------------------------------ public API


def read_tags(path: str | bytes | os.PathLike) -> dict[str, str]:
    """mer's fields found in a file, plus `MOOD_SOURCE` ("mer" or "other") with a mood."""
    path = _as_path(path)
    try:
        found = dict(_writer_for(path).read(path))
    except TagError:
        raise
    except Exception as error:  # mutagen or a plugin: one line for the user
        raise TagError(path, _reason(error)) from error
    if MOOD in found:
        found[MOOD_SOURCE] = "mer" if MODEL in found else "other"
    return found


def write_tags(
    path: str | bytes | os.PathLike,
    fields: Mapping[str, str | float],
    *,
    keep_mtime: bool = False,
    writer: TagWriter | None = None,
) -> None:
    """Write mer's fields into a file safely (see the module docstring); other fields
    of the file are left alone. `writer` defaults to the plugins' choice for the
    extension. Raises `TagError`, the file unchanged, if anything fails."""
    values = check_fields(fields)
    target = _real_file(_as_path(path))
    chosen = writer or _writer_for(target)
    safe_rewrite(target, lambda copy: chosen.write(copy, values), keep_mtime=keep_mtime)


def _as_path(path: str | bytes | os.PathLike) -> Path:
    return Path(os.fsdecode(path))  # bytes names round-trip through surrogateescape


def _real_file(path: Path) -> Path:
    """The file a path names, symlinks resolved, so the rename replaces the file itself."""
    real = Path(os.path.realpath(path))
    try:
        info = os.stat(real)
    except FileNotFoundError:
        raise TagError(path, "file vanished (no such file)") from None
    except OSError as error:
        raise TagError(path, _reason(error)) from error
    if not stat.S_ISREG(info.st_mode):
        raise TagError(path, "not a regular file")
    return real


def writable_extensions() -> list[str]:
    """The extensions some tag writer (built-in or plugin) handles, sorted."""
    writers = get_plugins().components("mer_tag_writers").values()
    return sorted({ext for writer in writers for ext in writer.extensions})


def _writer_for(path: Path) -> TagWriter:
    writers = get_plugins().tag_writers(path.suffix)
    if not writers:
        raise TagError(
            path,
            f"unsupported format: no tag writer for {path.suffix or 'files without extension'}",
        )
    return writers[0]


# ------------------------------------------------------------------ safe rewrite

CRASH_ENV = "MER_TEST_CRASH_BEFORE_RENAME"
TEMP_MARKER = ".mer-tmp-"
_RANDOM_CHARS = 8  # tempfile's random part


def safe_rewrite(path: Path, edit: Callable[[Path], None], *, keep_mtime: bool = False) -> None:
    """Apply `edit` (in place) to a copy of `path`, then swap the copy in atomically."""
    before = _check_writable(path)
    fd, temp = _make_temp(path)
    try:
        shutil.copyfile(path, temp)
        edit(Path(temp))
        _finish_copy(path, temp, fd, before, keep_mtime)
        _check_unchanged(path, before)
        if os.environ.get(CRASH_ENV) == "1":
            os._exit(1)  # test hook: die with the finished copy beside the original
        os.replace(temp, path)
        temp = None
        _fsync_folder(path.parent)
    except TagError as error:
        raise TagError(path, error.reason) from error
    except Exception as error:  # OSError, mutagen, a plugin's writer
        raise TagError(path, _reason(error, temp, path)) from error
    finally:
        os.close(fd)
        if temp is not None:
            _remove(temp)


def _check_writable(path: Path) -> os.stat_result:
    """The file's stat; TagError when it or its folder is read-only."""
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise TagError(path, "file vanished (no such file)") from None
    if reason := read_only_reason(path):
        raise TagError(path, reason)
    return before


def read_only_reason(path: Path) -> str | None:
    """Why a (real) file cannot be rewritten by a rename over it, or None. A file or folder
    without any write permission bit counts as read-only even for root."""
    for target, access, what in (
        (path, os.W_OK, "file"),
        (path.parent, os.W_OK | os.X_OK, "folder"),
    ):
        if not (os.stat(target).st_mode & 0o222 and os.access(target, access)):
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
        raise TagError(path, f"cannot create a file in its folder: {_reason(error)}") from error
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
    if change == "vanished":
        raise TagError(path, "file vanished while its tags were written")
    if change == "changed":
        raise TagError(path, "file changed while its tags were written (still being written?)")


def file_change(path: Path, before: os.stat_result) -> str | None:
    """ "vanished", "changed" (another file, size or mtime) or None since `before`."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return "vanished"
    fields = ("st_dev", "st_ino", "st_size", "st_mtime_ns")
    same = all(getattr(now, f) == getattr(before, f) for f in fields)
    return None if same else "changed"


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


def _reason(error: BaseException, temp: str | None = None, path: Path | None = None) -> str:
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
