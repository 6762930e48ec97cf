"""Proof of safety for tag writing: real files, real mutagen, a second real reader.

For every format: a generated file gets unrelated tags, a picture (and, in MP3,
chapters) with mutagen, then mer's fields through `write_tags`. The fields are read
back with mutagen and with tinytag (its own parser) or mediafile (mer's keys declared
as a custom `MediaField`); the decoded audio is sample-identical; the audio bytes and
FLAC's STREAMINFO (with its MD5) are unchanged; unrelated ID3 frames and FLAC blocks
are byte-identical, other containers' values equal. Then the odd cases: permissions,
times, read-only file and folder, a vanished file, a full disk, odd names, a crash.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import av
import mediafile
import mutagen
import numpy as np
import pytest
import soundfile as sf
from audio_factory import ffmpeg_or_skip
from mutagen.apev2 import APEValue
from mutagen.asf import ASFByteArrayAttribute
from mutagen.flac import FLAC, Picture
from mutagen.id3 import (
    APIC,
    CHAP,
    CTOC,
    ID3,
    RVAD,
    TDAT,
    TIT2,
    TMOO,
    TPE1,
    TXXX,
    TYER,
    CTOCFlags,
)
from mutagen.mp4 import MP4Cover, MP4FreeForm
from tinytag import TinyTag

from mer_plugin import safe_write, tags
from mer_plugin.builtin import tag_writers
from mer_plugin.hookspecs import TagWriter
from mer_plugin.plugins import get_plugins
from mer_plugin.safe_write import clean_temp_files, is_temp_file
from mer_plugin.tags import (
    FIELDS,
    TagError,
    format_fields,
    read_tags,
    write_tags,
)

FIELDS_IN = format_fields(
    mood="Happy", valence=0.7345, arousal=0.25, quadrant="Q1", confidence=0.9, model="mer 1.0"
)
MAKE = Callable[..., Path]


def _tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1 RGB
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = _tiny_png()


# ------------------------------------------------------------------ making files

# case name -> (extension, ID3 version for the unrelated tags)
CASES = {
    "wav": ("wav", 4),
    "aiff": ("aiff", 3),
    "flac": ("flac", None),
    "mp3-v2.3": ("mp3", 3),
    "mp3-v2.4": ("mp3", 4),
    "ogg": ("ogg", None),
    "opus": ("opus", None),
    "m4a": ("m4a", None),
    "wma": ("wma", None),  # ASF, through ffmpeg's wmav2 encoder
    "wv": ("wv", None),  # WavPack with APEv2, through ffmpeg's wavpack encoder
}
FFMPEG_ONLY = {"wma": "wmav2", "wv": "wavpack"}


def make_file(make_audio: MAKE, tmp_path: Path, case: str, name: str = "song") -> Path:
    ext, _ = CASES[case]
    if ext not in FFMPEG_ONLY:
        return make_audio(f"{name}.{ext}", seconds=1.0, sample_rate=48000, channels=2)
    path = tmp_path / f"{name}.{ext}"
    source = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=44100"]
    cmd = [ffmpeg_or_skip(), "-hide_banner", "-loglevel", "error", "-y", *source]
    subprocess.run([*cmd, "-c:a", FFMPEG_ONLY[ext], str(path)], check=True)
    return path


def add_unrelated(path: Path, id3_version: int | None) -> None:
    """Title, artist, a custom field and a picture (MP3: chapters too), with mutagen."""
    audio = mutagen.File(path)
    kind = type(audio).__name__
    if kind in ("MP3", "WAVE", "AIFF"):
        _add_id3(path, audio, id3_version or 4, chapters=kind == "MP3")
    elif kind == "FLAC":
        _add_vorbis(audio)
        audio.add_picture(_picture())
        audio.save()
    elif kind in ("OggVorbis", "OggOpus"):
        _add_vorbis(audio)
        audio["METADATA_BLOCK_PICTURE"] = [base64.b64encode(_picture().write()).decode()]
        audio.save()
    elif kind == "MP4":
        audio.tags.update({"\xa9nam": ["Title ü"], "\xa9ART": ["Artist"]})
        audio.tags["----:com.apple.iTunes:MY_CUSTOM"] = [MP4FreeForm(b"keep me")]
        audio.tags["covr"] = [MP4Cover(PNG, MP4Cover.FORMAT_PNG)]
        audio.save()
    elif kind == "ASF":
        audio.tags.update({"Title": ["Title ü"], "Author": ["Artist"], "MY_CUSTOM": ["keep me"]})
        audio.tags["WM/Picture"] = [ASFByteArrayAttribute(_wm_picture())]
        audio.save()
    elif kind == "WavPack":
        if audio.tags is None:
            audio.add_tags()
        audio.tags.update({"Title": "Title ü", "Artist": "Artist", "MY_CUSTOM": "keep me"})
        audio.tags["Cover Art (Front)"] = APEValue(b"cover.png\x00" + PNG, 1)  # binary
        audio.save()
    else:
        raise AssertionError(kind)


def _add_id3(path: Path, audio, version: int, chapters: bool) -> None:
    enc = 1 if version == 3 else 3
    if audio.tags is None:
        audio.add_tags()
    frames = [
        TIT2(encoding=enc, text=["Title ü"]),
        TPE1(encoding=enc, text=["Artist"]),
        TXXX(encoding=enc, desc="MY_CUSTOM", text=["keep me"]),
        APIC(encoding=enc, mime="image/png", type=3, desc="cover", data=PNG),
    ]
    if version == 3:  # v2.3-only frames, which a translation to v2.4 merges or drops
        frames += [TYER(encoding=enc, text=["2001"]), TDAT(encoding=enc, text=["0304"])]
        frames.append(RVAD(adjustments=[12, -12]))
    if chapters:
        intro = [TIT2(encoding=enc, text=["Intro"])]
        frames.append(CHAP(element_id="ch0", start_time=0, end_time=500, sub_frames=intro))
        flags = CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED
        frames.append(CTOC(element_id="toc", flags=flags, child_element_ids=["ch0"]))
    for frame in frames:
        audio.tags.add(frame)
    audio.save(v2_version=version)


def _add_vorbis(audio) -> None:
    audio.update({"TITLE": ["Title ü"], "ARTIST": ["Artist"], "MY_CUSTOM": ["keep me"]})


def _wm_picture() -> bytes:
    """An ASF WM/Picture value: type, size, MIME and description (UTF-16), data."""
    text = "image/png\0".encode("utf-16-le") + "cover\0".encode("utf-16-le")
    return struct.pack("<BI", 3, len(PNG)) + text + PNG


def _picture() -> Picture:
    picture = Picture()
    picture.type, picture.mime, picture.desc, picture.data = 3, "image/png", "cover", PNG
    picture.width = picture.height = 1
    picture.depth = 24
    return picture


# ------------------------------------------------------------------ what must not change


def decoded(path: Path) -> np.ndarray:
    """All samples, as the decoder gives them (soundfile, or PyAV where it cannot)."""
    if path.suffix in (".m4a", ".wma", ".wv"):
        with av.open(str(path)) as container:
            frames = [f.to_ndarray() for f in container.decode(audio=0)]
        return np.concatenate(frames, axis=-1)
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return data


def audio_bytes(path: Path) -> bytes | None:
    """The coded audio itself, where it is easy to cut out: FLAC frames, MP3 frames."""
    data = path.read_bytes()
    if path.suffix == ".flac":
        return flac_blocks(data)[1]
    if path.suffix == ".mp3":
        start = 10 + _syncsafe(data[6:10]) if data.startswith(b"ID3") else 0
        end = len(data) - 128 if data[-128:-125] == b"TAG" else len(data)
        return data[start:end]
    return None


def _syncsafe(b: bytes) -> int:
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def id3_raw_frames(data: bytes) -> tuple[int, list[bytes]]:
    """(version, raw frames (header and body)) of the first ID3v2 tag in the bytes."""
    start = min(i for i in (data.find(b"ID3\x03"), data.find(b"ID3\x04")) if i >= 0)
    version, end = data[start + 3], start + 10 + _syncsafe(data[start + 6 : start + 10])
    pos, frames = start + 10, []
    while pos + 10 <= end and data[pos : pos + 4] != b"\x00\x00\x00\x00":
        raw_size = data[pos + 4 : pos + 8]
        size = _syncsafe(raw_size) if version == 4 else struct.unpack(">I", raw_size)[0]
        frames.append(data[pos : pos + 10 + size])
        pos += 10 + size
    return version, frames


def _is_mer_frame(frame: bytes) -> bool:
    if frame[:4] == b"TMOO":
        return True
    if frame[:4] != b"TXXX":
        return False
    encoding, body = frame[10], frame[11:]
    codec, nul = {0: ("latin-1", b"\0"), 1: ("utf-16", b"\0\0"), 3: ("utf-8", b"\0")}[encoding]
    cut = (
        body.find(nul)
        if nul == b"\0"
        else next(i for i in range(0, len(body), 2) if body[i : i + 2] == nul)
    )
    desc = body[:cut].decode(codec)
    return desc == "MOOD" or desc.startswith("MER_")


def flac_blocks(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(metadata blocks as (type, body), the audio frames after them)."""
    assert data[:4] == b"fLaC"
    pos, blocks = 4, []
    while True:
        header, size = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big")
        blocks.append((header & 0x7F, data[pos + 4 : pos + 4 + size]))
        pos += 4 + size
        if header & 0x80:
            return blocks, data[pos:]


def _vorbis_entries(body: bytes) -> list[bytes]:
    """A FLAC VORBIS_COMMENT block's vendor string and entries, raw."""
    (vendor_len,) = struct.unpack("<I", body[:4])
    pos = 4 + vendor_len
    (count,) = struct.unpack("<I", body[pos : pos + 4])
    entries, pos = [body[4 : 4 + vendor_len]], pos + 4
    for _ in range(count):
        (n,) = struct.unpack("<I", body[pos : pos + 4])
        entries.append(body[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return entries


MER_KEYS = {k.lower() for f in FIELDS for k in (f.key(c) for c in tags.CONTAINERS)}


def unrelated(path: Path) -> object:
    """Everything but mer's fields: raw ID3 frames and FLAC blocks, other tags' values."""
    data = path.read_bytes()
    if path.suffix in (".mp3", ".wav", ".aiff"):
        version, frames = id3_raw_frames(data)
        return version, sorted(f for f in frames if not _is_mer_frame(f))
    if path.suffix == ".flac":
        blocks = [(t, b) for t, b in flac_blocks(data)[0] if t != 1]  # padding may change
        return [
            (t, [e for e in _vorbis_entries(b) if not _is_mer_entry(e)] if t == 4 else b)
            for t, b in blocks
        ]
    audio = mutagen.File(path)
    if path.suffix in (".ogg", ".opus"):
        return [(k, v) for k, v in audio.tags if k.lower() not in MER_KEYS]
    plain = (lambda v: (v.kind, v.value)) if path.suffix == ".wv" else list  # APEv2 values
    return {k: plain(v) for k, v in audio.tags.items() if k.lower() not in MER_KEYS}


def _is_mer_entry(entry: bytes) -> bool:
    key = entry.split(b"=", 1)[0].decode().lower()
    return key in MER_KEYS


# ------------------------------------------------------------------ reading back


def mutagen_keys(path: Path) -> dict[str, str]:
    """mer's fields as plain mutagen sees them, under the keys docs/design.md §4 names."""
    audio = mutagen.File(path)
    if isinstance(audio.tags, ID3):
        version = ID3(path).version[1] if path.suffix == ".mp3" else audio.tags.version[1]
        column = "id3v24" if version == 4 else "id3v23"
        return {
            f.name: str(audio.tags[f.key(column)]) for f in FIELDS if f.key(column) in audio.tags
        }
    column = {"MP4": "mp4", "ASF": "asf", "WavPack": "ape"}.get(type(audio).__name__, "vorbis")
    found = {}
    for field in FIELDS:
        values = audio.tags.get(field.key(column))
        if values is not None:
            value = values if column == "ape" else values[0]
            found[field.name] = bytes(value).decode() if column == "mp4" else str(value)
    return found


class MerFile(mediafile.MediaFile):
    """mediafile with mer's fields declared from docs/design.md §4 (its own storage styles)."""


for _field in FIELDS:
    _styles = [
        mediafile.MP3StorageStyle("TMOO")
        if _field.id3v24 == "TMOO"
        else mediafile.MP3DescStorageStyle(_field.id3v24[5:]),
        mediafile.MP3DescStorageStyle(_field.id3v23[5:]),
        mediafile.MP4StorageStyle(_field.mp4),
        mediafile.StorageStyle(_field.vorbis),  # Vorbis comments and APEv2 (case-blind)
        mediafile.ASFStorageStyle(_field.asf),
    ]
    MerFile.add_field(_field.name.lower(), mediafile.MediaField(*_styles))


def second_reader(path: Path) -> dict[str, str]:
    """tinytag (its own parser) where it knows the format, else mediafile."""
    if path.suffix == ".wv":
        media = MerFile(path)
        return {f.name: getattr(media, f.name.lower()) for f in FIELDS}
    other = TinyTag.get(path).other
    # tinytag names ID3's TMOO by its frame id, every other key by its lower-case name
    mood = other.get("tmoo") or other.get("mood")
    found = {f.name: other[f.name.lower()][0] for f in FIELDS[1:] if f.name.lower() in other}
    return {"mood": mood[0], **found} if mood else found


# ------------------------------------------------------------------ the round trip


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_keeps_audio_and_other_tags(make_audio: MAKE, tmp_path: Path, case: str):
    path = make_file(make_audio, tmp_path, case)
    add_unrelated(path, CASES[case][1])
    samples, coded, others = decoded(path), audio_bytes(path), unrelated(path)
    picture_before = _picture_bytes(path)

    write_tags(path, FIELDS_IN)

    assert read_tags(path) == {**FIELDS_IN, "mood_source": "mer"}
    assert mutagen_keys(path) == FIELDS_IN
    assert second_reader(path) == FIELDS_IN
    assert np.array_equal(decoded(path), samples)
    assert audio_bytes(path) == coded
    assert unrelated(path) == others
    assert _picture_bytes(path) == picture_before == PNG
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary copy left


def _picture_bytes(path: Path) -> bytes | None:
    if path.suffix == ".wv":
        return bytes(mutagen.File(path).tags["Cover Art (Front)"].value).split(b"\0", 1)[1]
    if path.suffix == ".wma":  # tinytag skips WM/Picture: parse it here
        value = mutagen.File(path).tags["WM/Picture"][0].value
        (size,) = struct.unpack("<I", value[1:5])
        return value[-size:]
    image = TinyTag.get(path, image=True).images.any
    return image.data if image else None


def test_id3_versions_are_kept(make_audio: MAKE, tmp_path: Path):
    v23 = make_file(make_audio, tmp_path, "mp3-v2.3", "v23")
    v24 = make_file(make_audio, tmp_path, "mp3-v2.4", "v24")
    bare = make_file(make_audio, tmp_path, "mp3-v2.4", "bare")
    add_unrelated(v23, 3)
    add_unrelated(v24, 4)
    for path in (v23, v24, bare):
        write_tags(path, FIELDS_IN)
    assert ID3(v23).version == (2, 3, 0)
    assert "TXXX:MOOD" in ID3(v23) and "TMOO" not in ID3(v23)
    assert ID3(v24).version == ID3(bare).version == (2, 4, 0)
    assert "TMOO" in ID3(v24) and "TXXX:MOOD" not in ID3(v24)
    assert str(ID3(bare)["TMOO"]) == "Happy"


def test_id3v1_tag_is_kept_byte_for_byte(make_audio: MAKE, tmp_path: Path):
    path = make_file(make_audio, tmp_path, "mp3-v2.4")
    add_unrelated(path, 4)
    v1 = b"TAG" + b"v1 title".ljust(30, b"\0") + b"v1 artist".ljust(30, b"\0")
    v1 += b"v1 album only here".ljust(30, b"\0") + b"1999" + b"comment".ljust(30, b"\0") + b"\x0c"
    with open(path, "ab") as f:
        f.write(v1)
    write_tags(path, FIELDS_IN)
    assert path.read_bytes()[-128:] == v1
    assert "TALB" not in ID3(path, load_v1=False)  # the v1 album was not copied into the v2 tag


def test_foreign_mood_is_reported_then_replaced(make_audio: MAKE, tmp_path: Path):
    path = make_audio("theirs.mp3", seconds=0.5)
    theirs = ID3()
    theirs.add(TMOO(encoding=3, text=["Melancholic"]))
    theirs.add(TXXX(encoding=3, desc="MOOD", text=["Melancholic"]))
    theirs.save(path)
    assert read_tags(path) == {"mood": "Melancholic", "mood_source": "other"}
    assert tags.foreign_mood(read_tags(path))
    write_tags(path, FIELDS_IN)
    # both spellings of the mood now agree
    assert str(ID3(path)["TMOO"]) == str(ID3(path)["TXXX:MOOD"]) == "Happy"
    assert not tags.foreign_mood(read_tags(path))


def test_only_given_fields_change(make_audio: MAKE, tmp_path: Path):
    path = make_audio("partial.flac", seconds=0.5)
    write_tags(path, FIELDS_IN)
    write_tags(path, {"MER_CONFIDENCE": 0.5})
    assert read_tags(path) == {**FIELDS_IN, "MER_CONFIDENCE": "0.500", "mood_source": "mer"}
    assert FLAC(path)["MER_CONFIDENCE"] == ["0.500"]  # one value, not appended


def test_field_table_matches_the_design():
    expected = {
        "mood": ("TMOO", "TXXX:MOOD", "MOOD", "----:com.apple.iTunes:MOOD", "Mood", "WM/Mood"),
        **{
            n: (f"TXXX:{n}", f"TXXX:{n}", n, f"----:com.apple.iTunes:{n}", n, n)
            for n in ("MER_VALENCE", "MER_AROUSAL", "MER_QUADRANT", "MER_CONFIDENCE", "MER_MODEL")
        },
    }
    assert {f.name: tuple(f.key(c) for c in tags.CONTAINERS) for f in FIELDS} == expected


def test_fields_are_checked():
    assert FIELDS_IN["MER_VALENCE"] == "0.735" and FIELDS_IN["MER_CONFIDENCE"] == "0.900"
    assert tags.check_fields({"MER_AROUSAL": "0.5"}) == {"MER_AROUSAL": "0.500"}
    for bad in ({"MER_VALENCE": 1.5}, {"MER_QUADRANT": "Q5"}, {"GENRE": "x"}, {"mood": ""}):
        with pytest.raises(ValueError):
            tags.check_fields(bad)


def test_writers_are_plugins():
    plugins = get_plugins()
    chosen = {ext: plugins.tag_writers(ext)[0].name for ext in (".mp3", ".wav", ".opus", ".m4a")}
    assert chosen == {".mp3": "id3", ".wav": "id3", ".opus": "vorbis", ".m4a": "mp4"}
    assert {w.name for w in plugins.components("mer_tag_writers").values()} >= {"ape", "asf"}
    assert {".aiff", ".flac", ".m4a", ".mp3", ".ogg", ".opus", ".wav", ".wma", ".ape"} <= set(
        tags.writable_extensions()
    )


# ------------------------------------------------------------------ file system


def test_permissions_owner_and_symlinks_are_kept(make_audio: MAKE, tmp_path: Path):
    path = make_audio("perm.flac", seconds=0.5)
    os.chmod(path, 0o640)
    root = os.geteuid() == 0 and _bits_ignored(tmp_path)  # may give the file away
    if root:
        os.chown(path, 1234, 5678)
    link = tmp_path / "link.flac"
    link.symlink_to(path.name)
    write_tags(link, FIELDS_IN)
    assert link.is_symlink() and read_tags(path)["mood"] == "Happy"
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o640
    if root:
        assert (info.st_uid, info.st_gid) == (1234, 5678)


def test_keep_mtime(make_audio: MAKE):
    kept, bumped = make_audio("kept.ogg", seconds=0.5), make_audio("bumped.ogg", seconds=0.5)
    old = (1_000_000_000_000_000_000, 1_100_000_000_000_000_000)
    for path in (kept, bumped):
        os.utime(path, ns=old)
    write_tags(kept, FIELDS_IN, keep_mtime=True)
    write_tags(bumped, FIELDS_IN)
    assert os.stat(kept).st_mtime_ns == old[1]
    assert os.stat(bumped).st_mtime_ns > old[1]


def _bits_ignored(folder: Path) -> bool:
    """Whether this process can write a file whose permission bits say read-only."""
    probe = folder / "probe"
    probe.touch(mode=0o444)
    try:
        with open(probe, "ab"):
            return True
    except PermissionError:
        return False
    finally:
        probe.unlink()


def _immutable(path: Path, on: bool) -> bool:
    flag = "+i" if on else "-i"
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("how", ["chmod", "immutable"])
@pytest.mark.parametrize("what", ["file", "folder"])
def test_read_only_file_or_folder(make_audio: MAKE, tmp_path: Path, how: str, what: str):
    path = make_audio("locked.mp3", seconds=0.5)
    target = path if what == "file" else tmp_path
    before = path.read_bytes()
    if how == "chmod":  # no write bit at all: read-only even for root
        os.chmod(target, 0o444 if what == "file" else 0o555)
    elif shutil.which("chattr") is None or not _immutable(target, True):
        pytest.skip("chattr +i needs CAP_LINUX_IMMUTABLE and ext4/xfs/btrfs")
    try:
        with pytest.raises(TagError, match="read-only|permission|not permitted") as caught:
            write_tags(path, FIELDS_IN)
    finally:
        if how == "immutable":
            _immutable(target, False)
        else:
            os.chmod(target, 0o755)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked.mp3"]
    assert "\n" not in str(caught.value)


def test_vanished_file(tmp_path: Path):
    with pytest.raises(TagError, match="vanished"):
        write_tags(tmp_path / "gone.flac", FIELDS_IN)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_or_mislabelled_content(make_audio: MAKE, make_broken: MAKE, tmp_path: Path):
    text = make_broken("notes.mp3", "text")
    mislabelled = make_audio("aac.mp3", seconds=0.5, fmt="m4a")
    other = make_audio("song.xyz", seconds=0.5, fmt="wav")
    for path, reason in (
        (text, "corrupt"),
        (mislabelled, "content is MP4"),
        (other, "unsupported"),
    ):
        before = path.read_bytes()
        with pytest.raises(TagError, match=reason):
            write_tags(path, FIELDS_IN)
        assert path.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 3


def test_a_failing_writer_leaves_the_original(make_audio: MAKE, tmp_path: Path):
    """A (third-party) writer that scribbles on the copy, then raises."""
    path = make_audio("song.wav", seconds=0.5)
    before = path.read_bytes()

    def scribble(copy: Path, fields: dict[str, str]) -> None:
        copy.write_bytes(b"half-written")
        raise RuntimeError("the plugin broke")

    broken = TagWriter("broken", (".wav",), scribble, tag_writers.read_id3)
    with pytest.raises(TagError, match="RuntimeError: the plugin broke"):
        write_tags(path, FIELDS_IN, writer=broken)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["song.wav"]


@pytest.mark.parametrize("meanwhile", ["changed", "vanished"])
def test_file_changed_or_vanished_during_the_write(make_audio: MAKE, tmp_path: Path, meanwhile):
    """Another program appends to (or deletes) the original while mer tags its copy:
    mer must not put its copy in place of what that program did."""
    path = make_audio("busy.flac", seconds=0.5)

    def write_while_busy(copy: Path, fields: dict[str, str]) -> None:
        tag_writers.write_vorbis(copy, fields)
        if meanwhile == "changed":
            with open(path, "ab") as f:
                f.write(b"more")
        else:
            path.unlink()

    busy = TagWriter("busy", (".flac",), write_while_busy, tag_writers.read_vorbis)
    expected = path.read_bytes() + b"more"
    with pytest.raises(TagError, match=f"{meanwhile} while its tags were written"):
        write_tags(path, FIELDS_IN, writer=busy)
    if meanwhile == "changed":
        assert path.read_bytes() == expected
    else:
        assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["busy.flac"] if meanwhile == "changed" else [])


def test_unicode_long_and_undecodable_names(make_audio: MAKE, tmp_path: Path):
    unicode = make_audio("Ünïcødé 音楽 🎵 «x».opus", seconds=0.5, sample_rate=48000)
    longest = make_audio("é" * 124 + ".mp3", seconds=0.5)  # 253 bytes: near NAME_MAX
    raw = os.fsencode(tmp_path) + b"/caf\xe9 latin-1.flac"  # not UTF-8
    os.rename(make_audio("latin.flac", seconds=0.5), raw)
    for path in (unicode, longest, raw):
        write_tags(path, FIELDS_IN)
        assert read_tags(path)["MER_MODEL"] == "mer 1.0"
    assert len(os.fsencode(safe_write.temp_prefix(longest))) + 8 + 4 <= 255
    assert not [n for n in os.listdir(os.fsencode(tmp_path)) if b"mer-tmp" in n]


# ------------------------------------------------------------------ in another process


def run_python(
    code: str, *, env: dict[str, str] | None = None, **options
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, **options
    )


def test_crash_before_rename_leaves_the_original(make_audio: MAKE, tmp_path: Path):
    path = make_audio("crash.flac", seconds=0.5)
    add_unrelated(path, None)
    before = path.read_bytes()
    code = f"from mer_plugin.tags import write_tags; write_tags({str(path)!r}, {FIELDS_IN!r})"
    done = run_python(code, env={safe_write.CRASH_BEFORE_RENAME_ENV: "1"})
    assert done.returncode == 1, done.stderr
    assert path.read_bytes() == before
    (stray,) = [p for p in tmp_path.iterdir() if p != path]
    assert is_temp_file(stray) and stray.name.startswith(".crash.flac.mer-tmp-")
    assert clean_temp_files(tmp_path, min_age_s=0) == [stray]
    write_tags(path, FIELDS_IN)  # the next run works as usual
    assert [p.name for p in tmp_path.iterdir()] == ["crash.flac"]


def test_temp_file_names():
    assert is_temp_file(".song.flac.mer-tmp-ab_d1234.flac")
    assert is_temp_file(b"/x/.caf\xe9.mp3.mer-tmp-abcd1234.mp3")
    assert is_temp_file(".noext.mer-tmp-abcd1234")
    for name in (".mer-tmp-notes", "song.flac.mer-tmp-abcd1234.flac", ".a.mer-tmp-ABCD1234.x"):
        assert not is_temp_file(name)


def test_clean_temp_files_leaves_a_live_copy(tmp_path: Path):
    import fcntl

    live, dead = tmp_path / ".a.mp3.mer-tmp-abcd1234.mp3", tmp_path / ".b.mp3.mer-tmp-efgh5678.mp3"
    live.write_bytes(b"x")
    dead.write_bytes(b"x")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert clean_temp_files(tmp_path, min_age_s=0) == [dead]
    assert clean_temp_files(tmp_path) == []  # too young to be a leftover
    assert clean_temp_files(tmp_path, min_age_s=0) == [live]


_WRITE_AND_REPORT = """
import hashlib, json, os, resource, signal, sys
from mer_plugin.tags import TagError, write_tags
path = sys.argv[1]
digest = lambda: hashlib.sha256(open(path, "rb").read()).hexdigest()
before = digest()
{setup}
try:
    write_tags(path, {fields!r})
    reason = None
except TagError as error:
    reason = error.reason
names = sorted(os.listdir(os.path.dirname(path)))
print(json.dumps({{"reason": reason, "same": digest() == before, "names": names}}))
"""


def write_elsewhere(path: Path, setup: str, wrapper: tuple[str, ...] = ()):
    """`write_tags(path)` in a fresh process after `setup` (Python code); its TagError
    reason, whether the file is unchanged, and the folder's names, or the process."""
    script = _WRITE_AND_REPORT.format(setup=textwrap.dedent(setup), fields=FIELDS_IN)
    cmd = [*wrapper, sys.executable, "-c", script, str(path)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_full_disk(make_audio: MAKE, tmp_path: Path):
    """A real ENOSPC: a 1 MiB tmpfs, mounted in a private user and mount namespace, is
    filled until less room is left than a copy of the song needs."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot mount a small tmpfs")
    song = make_audio("song.flac", seconds=5.0, sample_rate=48000, channels=2)  # ~0.5 MB
    disk = tmp_path / "disk"
    disk.mkdir()
    fill = """
        filler = os.path.join(os.path.dirname(path), "filler")
        with open(filler, "wb") as f:
            try:
                f.write(bytes(1 << 20))
            except OSError:  # ENOSPC: the disk is full
                pass
        os.truncate(filler, os.path.getsize(filler) - os.path.getsize(path) // 2)
    """
    mount = f'mount -t tmpfs -o size=1m tmpfs {disk} && cp {song} {disk} && exec "$@"'
    namespace = ("unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, "sh")
    done = write_elsewhere(disk / song.name, fill, namespace)
    if not done.stdout and "Traceback" not in done.stderr:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {done.stderr.strip()}")
    assert json.loads(done.stdout) == {
        "reason": "disk full (no space left on device)",
        "same": True,
        "names": ["filler", "song.flac"],
    }, done.stderr


def test_file_size_limit(make_audio: MAKE, tmp_path: Path):
    """EFBIG, the other way a write runs out of room: RLIMIT_FSIZE below the file's size."""
    path = make_audio("big.mp3", seconds=2.0)
    limit = """
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        limit = os.path.getsize(path) // 2
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    """
    done = write_elsewhere(path, limit)
    assert json.loads(done.stdout) == {
        "reason": "file too large (file size limit reached)",
        "same": True,
        "names": ["big.mp3"],
    }, done.stderr


def test_kill_at_any_moment_leaves_old_or_new(make_audio: MAKE, tmp_path: Path):
    """SIGKILL a process that rewrites the tags in a loop, at a few moments: the file is
    always either the old one or a fully tagged one, never a mix."""
    path = make_audio("loop.flac", seconds=3.0, sample_rate=48000, channels=2, kind="noise")
    samples = decoded(path)
    code = f"""
        from mer_plugin.tags import write_tags
        for i in range(10**6):
            write_tags({str(path)!r}, {{**{FIELDS_IN!r}, "MER_MODEL": f"loop {{i}}"}})
            if i == 0:
                print("writing", flush=True)
    """
    models = set()
    for delay in (0.013, 0.05, 0.11, 0.2):
        with subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE
        ) as proc:
            assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
            time.sleep(delay)
            proc.kill()
        found = read_tags(path)
        assert found == {**FIELDS_IN, "MER_MODEL": found["MER_MODEL"], "mood_source": "mer"}
        assert np.array_equal(decoded(path), samples)
        models.add(found["MER_MODEL"])
        clean_temp_files(tmp_path, min_age_s=0)
    assert len(models) > 1  # the kills did land while it was writing
    assert [p.name for p in tmp_path.iterdir()] == ["loop.flac"]
