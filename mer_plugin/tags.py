"""Tags: mer's fields, declared once, written safely into every container mutagen knows.

`FIELDS` is the one table of what mer writes (cf. mediafile's ``MediaField``): each
logical field with its key in every container, as docs/design.md specifies. Writers are
plugins (`mer_tag_writers` hook), chosen per extension by priority; this module only
looks them up, mer's own are in `mer_plugin.builtin.tag_writers`.

    write_tags("song.flac", format_fields(mood="Happy", valence=0.73, arousal=0.61,
                                          quadrant="Q1", confidence=0.9, model="mer 1.0"))
    read_tags("song.flac")  # {"mood": "Happy", "MER_VALENCE": "0.730", ..., "mood_source": "mer"}

Writing is safe: `mer_plugin.safe_write` swaps a tagged copy in atomically; the audio
stream is never decoded or rewritten.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mer_plugin.emotion import MOODS, QUADRANTS
from mer_plugin.errors import TagError
from mer_plugin.files import irregular_reason, mode_reason
from mer_plugin.hookspecs import TagWriter
from mer_plugin.plugins import get_plugins
from mer_plugin.safe_write import error_reason, safe_rewrite

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
# derived by read_tags, never written: "mer" while the file's mood is the one mer wrote
# (`mer_wrote_mood`), "other" for a mood a user or another tagger set
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
    """True when a song's fields (as `read_tags` or a music library holds them) have a
    mood that is not the one mer wrote."""
    return bool(tags.get(MOOD)) and not mer_wrote_mood(tags)


# ------------------------------------------------------------------ public API


def read_tags(path: str | bytes | os.PathLike) -> dict[str, str]:
    """mer's fields found in a file, plus `MOOD_SOURCE` ("mer" or "other") with a mood."""
    path = _as_path(path)
    writer = _writer_for(path)
    try:
        if reason := irregular_reason(path):  # a FIFO would block the writer's open
            raise TagError(path, reason)
    except OSError as error:
        raise TagError(path, error_reason(error)) from error
    found = _field_names(writer, path, _guarded(writer, writer.read, path, path))
    if MOOD in found:
        found[MOOD_SOURCE] = "mer" if mer_wrote_mood(found) else "other"
    return found


def mer_wrote_mood(tags: Mapping[str, str]) -> bool:
    """True while a file's mood is exactly the one mer wrote: beside a MER_MODEL, the
    mood word of its MER_QUADRANT. A mood a user corrected by hand is theirs."""
    quadrant = tags.get(QUADRANT)
    return MODEL in tags and quadrant in MOODS and tags.get(MOOD) == MOODS[quadrant]


_BY_LOWER = {field.name.lower(): field.name for field in FIELDS}


def _field_names(writer: TagWriter, path: Path, read: Mapping[str, str]) -> dict[str, str]:
    """A writer's `read` result by mer's field names (case-insensitively: `MOOD` is
    `mood`); any other key is the writer's error, refused so no mood is misjudged."""
    found: dict[str, str] = {}
    unknown = []
    for key, value in read.items():
        name = _BY_LOWER.get(str(key).lower())
        if name is None:
            unknown.append(str(key))
        else:
            found[name] = value
    if unknown:
        raise TagError(
            path,
            f"{_writer_named(writer)} read unknown field names {', '.join(sorted(unknown))} "
            f"(a writer returns {', '.join(FIELD_NAMES)}: see docs/plugins.md)",
        )
    return found


def _writer_named(writer: TagWriter) -> str:
    """'tag writer NAME', with its plugin where it is not a built-in."""
    plugins = get_plugins()
    if plugins.is_builtin("mer_tag_writers", writer.name):
        return f"tag writer {writer.name!r}"
    return f"tag writer {writer.name!r} of plugin {plugins.owner('mer_tag_writers', writer.name)}"


def _guarded(writer: TagWriter, call, file: Path, shown: Path, *args):
    """`call(file, *args)`; an unexpected error becomes one TagError line about `shown`,
    naming a plugin's writer (mer's own writers speak for themselves)."""
    try:
        return call(file, *args)
    except TagError:
        raise
    except Exception as error:  # mutagen or a plugin: one line for the user
        reason = error_reason(error, str(file), shown)
        if not get_plugins().is_builtin("mer_tag_writers", writer.name):
            reason = f"{_writer_named(writer)} failed: {reason}"
        raise TagError(shown, reason) from error


def write_tags(
    path: str | bytes | os.PathLike,
    fields: Mapping[str, str | float],
    *,
    keep_mtime: bool = False,
    writer: TagWriter | None = None,
    in_place: bool = False,
) -> None:
    """Write mer's fields into a file safely (see the module docstring); other fields
    of the file are left alone. `writer` defaults to the plugins' choice for the
    extension; `in_place` keeps the file's inode (its hard links) through a journal.
    Raises `TagError`, the file unchanged, if anything fails."""
    values = check_fields(fields)
    target = _real_file(_as_path(path))
    chosen = writer or _writer_for(target)
    safe_rewrite(
        target,
        lambda copy: _guarded(chosen, chosen.write, copy, target, values),
        keep_mtime=keep_mtime,
        in_place=in_place,
    )


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
        raise TagError(path, error_reason(error)) from error
    if reason := mode_reason(info.st_mode):
        raise TagError(path, reason)
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
