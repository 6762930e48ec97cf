"""Contract checks for decoder and tag-writer plugins, for their authors' own tests (mer
runs them against its built-ins and its example plugins):

    from mer_plugin.testing import check_decoder, check_tag_writer

    def test_my_decoder(tmp_path):
        check_decoder(my_decoder, Path("tests/data/song.wv"), tmp_path)

    def test_my_writer(tmp_path):
        check_tag_writer(my_writer, Path("tests/data/song.wv"), tmp_path)

`sample` is a real file of the plugin's format (a second or more of audio; for a writer,
ideally with tags of its own, an artist or a cover, to check they are kept). Each check
raises AssertionError naming the rule that was broken; docs/plugins.md states the rules.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import mutagen
import numpy as np

from mer_plugin.audio import open_stream, supported_extensions
from mer_plugin.errors import AudioError, TagError
from mer_plugin.hookspecs import AudioInfo, Decoder, TagWriter
from mer_plugin.tags import CONTAINERS, FIELD_NAMES, FIELDS, MODEL, MOOD, format_fields

NOT_AUDIO = b"This is a text file, not audio.\n" * 64
BLOCK_SIZES = (1000, 65536)  # `open`'s block_frames hint: any works, the samples are the same


# ------------------------------------------------------------------ decoders


def check_decoder(decoder: Decoder, sample: Path, scratch: Path) -> None:
    """`decoder` reads `sample` by the rules of `mer_plugin.hookspecs.Decoder`, and refuses
    an empty file and a text file with an `AudioError` (files made in `scratch`)."""
    _check_extensions(decoder.extensions, sample, decoder.name)
    info = decoder.info(sample)
    _check_info(decoder, info, sample)
    decoded = [_decode(decoder, sample, block_frames, info) for block_frames in BLOCK_SIZES]
    assert np.array_equal(decoded[0], decoded[1]), "samples depend on the block_frames hint"
    frames = len(decoded[0])
    assert frames > 0, f"{decoder.name}: no samples decoded from {sample}"
    if info.duration is not None:
        assert abs(info.duration - frames / info.sample_rate) < 0.1, (
            f"info's duration {info.duration:.3f} s, decoded {frames / info.sample_rate:.3f} s"
        )
    for name, content in (("empty", b""), ("text", NOT_AUDIO)):
        bad = scratch / f"{name}{sample.suffix}"
        bad.write_bytes(content)
        _check_refused(decoder, bad)


def _check_extensions(extensions: tuple[str, ...], sample: Path, name: str) -> None:
    assert extensions, f"{name}: no extensions"
    for extension in extensions:
        assert extension.startswith(".") and extension == extension.lower(), (
            f"{name}: extension {extension!r} must be lower case with the dot ('.wv')"
        )
    assert sample.suffix.lower() in extensions, f"{name} does not claim {sample.suffix}"


def _check_info(decoder: Decoder, info: AudioInfo, sample: Path) -> None:
    assert isinstance(info, AudioInfo), f"info() returned {type(info).__name__}, not AudioInfo"
    assert info.path == sample, "AudioInfo.path must be the path asked about"
    assert info.sample_rate > 0 and info.channels > 0, "AudioInfo: rate and channels > 0"
    assert info.decoder == decoder.name, "AudioInfo.decoder must be the decoder's name"
    assert info.codec and info.container, "AudioInfo: codec and container must be named"
    assert info.duration is None or info.duration > 0, "AudioInfo.duration: seconds, or None"


def _decode(decoder: Decoder, sample: Path, block_frames: int, info: AudioInfo) -> np.ndarray:
    blocks = []
    with decoder.open(sample, block_frames) as source:
        assert (source.sample_rate, source.channels) == (info.sample_rate, info.channels), (
            "open() and info() disagree on sample rate or channels"
        )
        for block in source.blocks:
            assert block.dtype == np.float32 and block.ndim == 2, (
                f"a block must be float32 (frames, channels), not {block.dtype} {block.shape}"
            )
            assert block.shape[1] == source.channels, "a block's columns are the channels"
            assert np.isfinite(block).all(), "a block holds NaN or infinity"
            blocks.append(block.copy())  # a decoder may reuse a block's memory
        expected = source.expected_frames
    decoded = np.concatenate(blocks) if blocks else np.zeros((0, info.channels), np.float32)
    assert expected is None or expected == len(decoded), (
        f"expected_frames says {expected}, {len(decoded)} frames decoded"
    )
    return decoded


def _check_refused(decoder: Decoder, bad: Path) -> None:
    """Refused by raising: an `AudioError`'s reason reaches the user, any other error
    becomes mer's "not a recognised audio file" (and the next decoder is tried)."""
    for call in (lambda: decoder.info(bad), lambda: _drain(decoder, bad)):
        try:
            call()
        except AudioError as error:
            assert error.reason, "an AudioError needs a reason a user can read"
        except Exception:
            pass
        else:
            raise AssertionError(f"{decoder.name} accepted {bad.name} ({bad.stat().st_size} B)")


def _drain(decoder: Decoder, path: Path) -> None:
    with decoder.open(path, BLOCK_SIZES[0]) as source:
        for _ in source.blocks:
            pass


# ------------------------------------------------------------------ tag writers

FIELDS_ONE = format_fields(
    mood="Happy", valence=0.75, arousal=0.625, quadrant="Q1", confidence=0.5, model="check 1"
)
FIELDS_TWO = format_fields(
    mood="Sad", valence=0.25, arousal=0.125, quadrant="Q3", confidence=0.875, model="check 2"
)
# every container's key of mer's fields, lower case: what "other tags" leaves out
MER_KEYS = frozenset(f.key(c).lower() for f in FIELDS for c in CONTAINERS)


def check_tag_writer(writer: TagWriter, sample: Path, scratch: Path) -> None:
    """`writer` reads and writes mer's fields in copies of `sample` (made in `scratch`) by
    the rules of `mer_plugin.hookspecs.TagWriter`, keeps the audio and the other tags, and
    refuses a text file with its extension; `sample` itself is never changed."""
    _check_extensions(writer.extensions, sample, writer.name)
    copy = scratch / f"contract{sample.suffix}"
    shutil.copyfile(sample, copy)
    before = _snapshot(copy)
    assert set(_read(writer, copy)) <= set(FIELD_NAMES), "read() returns mer's field names"
    for fields in (FIELDS_ONE, FIELDS_TWO):  # written, then replaced (not appended)
        writer.write(copy, fields)
        assert _read(writer, copy) == fields, f"read() after write({fields}) differs"
    assert _snapshot(copy) == before, "the audio or another tag changed"

    users = scratch / f"users{sample.suffix}"
    shutil.copyfile(sample, users)
    writer.write(users, {MOOD: "Melancholy"})  # as a user's tagger leaves it: no MER_MODEL
    found = _read(writer, users)
    assert found.get(MOOD) == "Melancholy" and MODEL not in found, "a user's mood reads back"

    text = scratch / f"text{sample.suffix}"
    text.write_bytes(NOT_AUDIO)
    try:
        writer.write(text, FIELDS_ONE)
    except TagError as error:
        assert error.reason, "a TagError needs a reason a user can read"
    except Exception:
        pass  # mer reports it as the writer's failure, naming the plugin
    else:
        raise AssertionError(f"{writer.name} wrote mer's fields into a text file")


def _read(writer: TagWriter, path: Path) -> dict[str, str]:
    found = writer.read(path)
    assert isinstance(found, Mapping), f"read() returned {type(found).__name__}, not a dict"
    unknown = set(found) - set(FIELD_NAMES)
    assert not unknown, f"read() returned {sorted(unknown)}: names are {FIELD_NAMES}"
    return dict(found)


def _snapshot(path: Path) -> tuple[bytes | None, dict[str, str] | None]:
    """The decoded audio (where a decoder reads the format) and the other tags (where
    mutagen reads the file)."""
    audio = None
    if path.suffix.lower() in supported_extensions():
        audio = np.concatenate(list(open_stream(path, 16000))).tobytes()
    tags = None
    parsed = mutagen.File(path)
    if parsed is not None and parsed.tags is not None:
        tags = {k: repr(v) for k, v in parsed.tags.items() if k.lower() not in MER_KEYS}
    return audio, tags
