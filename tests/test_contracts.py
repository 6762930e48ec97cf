"""The plugin contract checks (`mer_plugin.testing`) hold for every built-in decoder and
tag writer on real files of each format it handles, and for the example WavPack plugin;
and they catch a decoder and a writer that break the rules."""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import mutagen
import numpy as np
import pytest
from audio_factory import write_audio
from example_packages import installed
from mutagen.apev2 import APEv2
from mutagen.id3 import ID3, TPE1

from mer_plugin.errors import AudioError
from mer_plugin.hookspecs import Decoder, Source, TagWriter
from mer_plugin.plugins import get_plugins
from mer_plugin.testing import check_decoder, check_tag_writer

DECODED = {
    "soundfile": ("wav", "aiff", "flac", "ogg", "opus"),
    "pyav": ("mp3", "m4a", "mp4"),
    "pyav-fallback": ("wav", "flac", "ogg"),
}
WRITTEN = {
    "id3": ("mp3", "wav", "aiff"),
    "vorbis": ("flac", "ogg", "opus"),
    "mp4": ("m4a",),
    "ape": ("wv",),
    "asf": ("wma",),
}


def sample(folder: Path, fmt: str, artist: bool = False) -> Path:
    rate = 48000 if fmt == "opus" else 44100
    path = write_audio(folder / f"sample ü.{fmt}", 2.0, sample_rate=rate, channels=2, kind="noise")
    if artist:
        _add_artist(path)
    return path


def _add_artist(path: Path) -> None:
    """An artist tag of the container's own kind, the way other taggers leave one."""
    audio = mutagen.File(path, easy=path.suffix != ".wv")
    if audio.tags is None:
        audio.add_tags()
    if isinstance(audio.tags, ID3):  # WAV and AIFF: no easy interface
        audio.tags.add(TPE1(encoding=3, text=["Zoë"]))
    elif isinstance(audio.tags, APEv2):
        audio.tags["Artist"] = "Zoë"
    else:
        audio["artist" if path.suffix != ".wma" else "Author"] = ["Zoë"]
    audio.save()


@pytest.mark.parametrize(
    ("name", "fmt"), [(name, fmt) for name, fmts in DECODED.items() for fmt in fmts]
)
def test_builtin_decoders_keep_the_contract(name: str, fmt: str, tmp_path: Path) -> None:
    check_decoder(get_plugins().components("mer_decoders")[name], sample(tmp_path, fmt), tmp_path)


@pytest.mark.parametrize(
    ("name", "fmt"), [(name, fmt) for name, fmts in WRITTEN.items() for fmt in fmts]
)
def test_builtin_tag_writers_keep_the_contract(name: str, fmt: str, tmp_path: Path) -> None:
    writer = get_plugins().components("mer_tag_writers")[name]
    original = sample(tmp_path, fmt, artist=True)
    before = original.read_bytes()
    check_tag_writer(writer, original, tmp_path)
    assert original.read_bytes() == before


def test_the_example_wavpack_plugin_keeps_the_contract(tmp_path: Path) -> None:
    with installed("mer-example-wavpack"):
        importlib.invalidate_caches()
        hooks = importlib.import_module("mer_example_wavpack.hooks")
        (decoder,), (writer,) = hooks.mer_decoders(), hooks.mer_tag_writers()
        check_decoder(decoder, sample(tmp_path, "wv"), tmp_path)
        check_tag_writer(writer, sample(tmp_path, "wv", artist=True), tmp_path)


# ------------------------------------------------------------------ the checks catch


@contextmanager
def _int16_source(path: Path, block_frames: int):
    if path.stat().st_size < 1000:
        raise AudioError(path, "too short")
    blocks = iter([np.zeros((100, 1), np.int16)])
    yield Source(8000, 1, blocks, None)


def test_the_decoder_check_catches_int_samples(tmp_path: Path) -> None:
    good = get_plugins().components("mer_decoders")["soundfile"]
    bad = Decoder("ints", (".wav",), _int16_source, lambda p: replace(good.info(p), decoder="ints"))
    with pytest.raises(AssertionError, match="disagree|float32"):
        check_decoder(bad, sample(tmp_path, "wav"), tmp_path)


def test_the_writer_check_catches_upper_case_names(tmp_path: Path) -> None:
    good = get_plugins().components("mer_tag_writers")["vorbis"]

    def shouting_read(path: Path) -> dict[str, str]:
        return {key.upper(): value for key, value in good.read(path).items()}

    bad = TagWriter("shouting", (".flac",), good.write, shouting_read)
    with pytest.raises(AssertionError, match="MER_MODEL.*MOOD|names"):
        check_tag_writer(bad, sample(tmp_path, "flac"), tmp_path)
