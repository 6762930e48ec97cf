"""The built-in tag writers, a plugin like any other (`mer_tag_writers` hook): one per
container family mutagen knows, each reading and writing the keys of `tags.FIELDS`.

ID3v2.3 has no ``TMOO`` frame (mutagen drops it when saving v2.3), so the mood word goes
to ``TXXX:MOOD`` there; a v2.3 tag stays v2.3, a v2.4 tag stays v2.4, a file without ID3
gets v2.4 (a v2.2 tag is upgraded to v2.4: mutagen cannot write v2.2). Other tags,
pictures and chapters are written back as mutagen read them (ID3 without v2.3→v2.4
translation; an MP3's ID3v1 tag kept as it was).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import mutagen
from mutagen.aiff import AIFF
from mutagen.apev2 import APEv2
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TXXX, Frames, ID3NoHeaderError, ID3v1SaveOptions
from mutagen.id3 import Encoding as ID3Encoding
from mutagen.monkeysaudio import MonkeysAudio
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, AtomDataType, MP4FreeForm
from mutagen.musepack import Musepack
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE
from mutagen.wavpack import WavPack

from mer_plugin.hookspecs import TagWriter, hookimpl
from mer_plugin.tags import FIELDS, Field, TagError, field_named


def _open(path: Path, kinds: tuple[type, ...], family: str) -> Any:
    """The file as mutagen reads it; TagError when it is not one of `kinds`."""
    audio = mutagen.File(path)
    if audio is None:
        raise TagError(path, f"not a {family} file that mutagen recognises")
    if not isinstance(audio, kinds):
        kind = type(audio).__name__
        raise TagError(path, f"content is {kind}, not what the {path.suffix} name says")
    return audio


def _values(fields: Mapping[str, str]) -> Iterable[tuple[Field, str]]:
    return ((field_named(name), value) for name, value in fields.items())


def _joined(values: Iterable[Any]) -> str | None:
    text = "; ".join(str(v) for v in values if str(v))
    return text or None


def _found(get: Callable[[Field], str | None]) -> dict[str, str]:
    found = {}
    for field in FIELDS:
        value = get(field)
        if value is not None:
            found[field.name] = value
    return found


# ID3: MP3 (tag at the head), WAV and AIFF (tag in an ``ID3 `` chunk)

ID3_KINDS = (MP3, WAVE, AIFF)


def _load_id3(path: Path) -> tuple[Any, ID3]:
    """(the file for WAV/AIFF or None for MP3, its ID3 tag) as written: no v2.3→v2.4
    translation (which drops frames such as RVAD), no merging of ID3v1 into v2."""
    kind = type(_open(path, ID3_KINDS, "MP3, WAV or AIFF"))
    if kind in (WAVE, AIFF):
        audio = kind(path, translate=False, load_v1=False)
        if audio.tags is None:
            audio.add_tags()
        return audio, audio.tags
    try:
        return None, ID3(path, translate=False, load_v1=False)
    except ID3NoHeaderError:
        return None, ID3()


def _id3_version(tags: ID3) -> int:
    if tags.version < (2, 3, 0):
        tags.update_to_v24()  # mutagen writes v2.3 and v2.4 only
        return 4
    return 3 if tags.version < (2, 4, 0) else 4


def _id3_get(tags: ID3, field: Field) -> str | None:
    for key in dict.fromkeys((field.id3v24, field.id3v23)):
        frame = tags.get(key)
        if frame is not None and _joined(frame.text):
            return _joined(frame.text)
    return None


def _id3_put(tags: ID3, field: Field, value: str, version: int) -> None:
    """The version's key, and the other version's key too where the file has it."""
    key = field.id3v23 if version == 3 else field.id3v24
    encoding = ID3Encoding.UTF16 if version == 3 else ID3Encoding.UTF8
    for each in dict.fromkeys([key, *(k for k in (field.id3v24, field.id3v23) if k in tags)]):
        if each.startswith("TXXX:"):
            tags.add(TXXX(encoding=encoding, desc=each[5:], text=[value]))
        else:
            tags.add(Frames[each](encoding=encoding, text=[value]))


def read_id3(path: Path) -> dict[str, str]:
    _, tags = _load_id3(path)
    return _found(lambda field: _id3_get(tags, field))


def write_id3(path: Path, fields: Mapping[str, str]) -> None:
    audio, tags = _load_id3(path)
    version = _id3_version(tags)
    for field, value in _values(fields):
        _id3_put(tags, field, value, version)
    if audio is not None:
        audio.save(v2_version=version)
    else:
        _save_mp3(tags, path, version)


_V1_SPAN = 128 + 3  # an ID3v1 tag and the bytes mutagen looks at before it


def _save_mp3(tags: ID3, path: Path, version: int) -> None:
    """Save the ID3v2 tag at the head; the file's last bytes (ID3v1) stay as they were.

    mutagen regenerates an existing ID3v1 tag from the v2 frames on save; its saving
    keeps the tail's length, so the original tail is written back over it."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        keep = max(0, min(_V1_SPAN, size - tags.size))
        f.seek(size - keep)
        tail = f.read()
    tags.save(path, v1=ID3v1SaveOptions.UPDATE, v2_version=version)
    if tail:
        with open(path, "r+b") as f:
            f.seek(-len(tail), os.SEEK_END)
            f.write(tail)


# Vorbis comments: FLAC, Ogg Vorbis, Opus, Speex, Ogg FLAC

VORBIS_KINDS = (FLAC, OggVorbis, OggOpus, OggSpeex, OggFLAC)


def read_vorbis(path: Path) -> dict[str, str]:
    tags = _open(path, VORBIS_KINDS, "FLAC or Ogg").tags or {}
    return _found(lambda field: _joined(tags.get(field.vorbis, [])))


def write_vorbis(path: Path, fields: Mapping[str, str]) -> None:
    audio = _open(path, VORBIS_KINDS, "FLAC or Ogg")
    if audio.tags is None:
        audio.add_tags()
    for field, value in _values(fields):
        audio.tags[field.vorbis] = [value]
    audio.save()


# MP4: iTunes freeform atoms


def read_mp4(path: Path) -> dict[str, str]:
    tags = _open(path, (MP4,), "MP4").tags or {}
    return _found(lambda field: _joined(_utf8(v) for v in tags.get(field.mp4, [])))


def _utf8(value: bytes) -> str:
    return bytes(value).decode("utf-8", "replace")


def write_mp4(path: Path, fields: Mapping[str, str]) -> None:
    audio = _open(path, (MP4,), "MP4")
    if audio.tags is None:
        audio.add_tags()
    for field, value in _values(fields):
        audio.tags[field.mp4] = [MP4FreeForm(value.encode(), AtomDataType.UTF8)]
    audio.save()


# APEv2: Monkey's Audio, WavPack, Musepack

APE_KINDS = (MonkeysAudio, WavPack, Musepack)


def read_ape(path: Path) -> dict[str, str]:
    tags = _open(path, APE_KINDS, "APE, WavPack or Musepack").tags or {}
    return _found(lambda field: _joined(tags[field.ape]) if field.ape in tags else None)


def write_ape(path: Path, fields: Mapping[str, str]) -> None:
    audio = _open(path, APE_KINDS, "APE, WavPack or Musepack")
    if audio.tags is None:
        audio.add_tags()
    tags: APEv2 = audio.tags
    for field, value in _values(fields):
        tags[field.ape] = value
    audio.save()


# ASF: WMA


def read_asf(path: Path) -> dict[str, str]:
    tags = _open(path, (ASF,), "ASF").tags
    return _found(lambda field: _joined(a.value for a in tags.get(field.asf, [])))


def write_asf(path: Path, fields: Mapping[str, str]) -> None:
    audio = _open(path, (ASF,), "ASF")
    for field, value in _values(fields):
        audio.tags[field.asf] = [value]
    audio.save()


# ------------------------------------------------------------------ the hook

ID3_EXTS = (".mp3", ".wav", ".wave", ".aif", ".aiff", ".aifc")
VORBIS_EXTS = (".flac", ".ogg", ".oga", ".opus", ".spx")
MP4_EXTS = (".m4a", ".m4b", ".mp4")
APE_EXTS = (".ape", ".wv", ".mpc")
ASF_EXTS = (".wma", ".asf")


@hookimpl
def mer_tag_writers() -> list[TagWriter]:
    """The built-in writers, one per container family, registered like any plugin's.

    A writer's `write(path, fields)` edits the file at `path` in place: `write_tags`
    calls it on the temporary copy (same extension) and renames that over the original.
    `read(path)` returns the logical fields found (`FIELD_NAMES`)."""
    return [
        TagWriter("id3", ID3_EXTS, write_id3, read_id3, priority=10),
        TagWriter("vorbis", VORBIS_EXTS, write_vorbis, read_vorbis, priority=10),
        TagWriter("mp4", MP4_EXTS, write_mp4, read_mp4, priority=10),
        TagWriter("ape", APE_EXTS, write_ape, read_ape, priority=10),
        TagWriter("asf", ASF_EXTS, write_asf, read_asf, priority=10),
    ]
