"""Streaming decode: formats, resampling, down-mix, block shape and bad input.

Every file is written by a real encoder (tests/conftest.py) and read by the
real decoders; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from mer_plugin.audio import (
    AudioInfo,
    AudioWarning,
    Source,
    audio_info,
    decoders_for,
    open_stream,
)
from mer_plugin.errors import AudioError
from mer_plugin.hookspecs import Decoder, hookimpl
from mer_plugin.plugins import get_plugins

RATE = 16000
SECONDS = 2.0
# decoded length vs written length, in seconds (codec priming/padding)
LENGTH_TOLERANCE = {"aac": 0.1}  # ADTS has no edit list: priming and padding stay
DEFAULT_TOLERANCE = 0.01


def decode(path: Path, rate: int = RATE, block_frames: int = 4096, **options) -> np.ndarray:
    """All blocks joined, after checking each one's type, shape and size."""
    blocks = list(open_stream(path, rate, block_frames, **options))
    for block in blocks:
        assert block.dtype == np.float32 and block.ndim == 1
    assert all(len(b) == block_frames for b in blocks[:-1])
    assert 1 <= len(blocks[-1]) <= block_frames
    return np.concatenate(blocks)


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# ------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "fmt", ["wav", "aiff", "aif", "flac", "ogg", "opus", "mp3", "m4a", "mp4", "aac"]
)
def test_every_format_decodes_to_its_length_and_pitch(make_audio, fmt: str) -> None:
    rate = 48000 if fmt == "opus" else 44100
    path = make_audio(f"tone.{fmt}", SECONDS, sample_rate=rate, channels=2)
    x = decode(path)
    tolerance = LENGTH_TOLERANCE.get(fmt, DEFAULT_TOLERANCE)
    assert abs(len(x) / RATE - SECONDS) <= tolerance
    assert dominant_hz(x, RATE) == pytest.approx(440, abs=2)
    assert rms(x[RATE // 4 : -RATE // 4]) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)

    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (rate, 2)
    assert info.duration == pytest.approx(SECONDS, abs=tolerance)


@pytest.mark.parametrize("fmt", ["wav", "aiff", "flac", "ogg", "opus", "mp3"])
def test_block_decoding_matches_a_whole_file_read(make_audio, fmt: str) -> None:
    # libsndfile 1.2.2 reads VBR mp3 wrongly in blocks (runs of zeros) but
    # rightly in one read: every format's blocks must equal that one read
    rate = 48000 if fmt == "opus" else 44100
    path = make_audio(f"noise.{fmt}", 2.0, sample_rate=rate, channels=2, kind="noise")
    whole = sf.read(path, dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(decode(path, rate, block_frames=1000), whole, atol=1e-5)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000, 192000])
def test_resampling_keeps_length_pitch_and_level(make_audio, rate: int) -> None:
    path = make_audio(f"tone{rate}.flac", 1.0, sample_rate=rate, freq=440)
    x = decode(path)
    assert abs(len(x) - RATE) <= 1
    assert dominant_hz(x, RATE) == pytest.approx(440, abs=1)
    assert rms(x[2000:-2000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_streamed_resampling_matches_one_shot(make_audio) -> None:
    path = make_audio("noise.wav", 1.0, sample_rate=44100, kind="noise")
    streamed = decode(path, block_frames=1000)  # hundreds of block boundaries
    whole, rate = sf.read(path, dtype="float32")
    reference = soxr.resample(whole, rate, RATE, quality="HQ")
    assert len(streamed) == len(reference)
    np.testing.assert_allclose(streamed, reference, atol=1e-5)


def test_matching_rate_is_passed_through_unchanged(make_audio) -> None:
    path = make_audio("native.wav", 1.0, sample_rate=RATE, kind="noise")
    np.testing.assert_array_equal(decode(path), sf.read(path, dtype="float32")[0])


# --------------------------------------------------------------- down-mix


@pytest.mark.parametrize("channels", [2, 6])
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_multichannel_is_the_mean_of_channels(make_audio, fmt: str, channels: int) -> None:
    freqs = [220.0 * (c + 1) for c in range(channels)]
    path = make_audio(f"multi.{fmt}", 1.0, sample_rate=RATE, channels=channels, freq=freqs)
    expected = sf.read(path, dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(decode(path), expected, atol=1e-6)


def test_six_channel_aac_downmixes(make_audio) -> None:
    path = make_audio("surround.m4a", 1.0, sample_rate=48000, channels=6)
    x = decode(path)
    assert abs(len(x) - RATE) <= 0.01 * RATE
    assert dominant_hz(x, RATE) == pytest.approx(440, abs=2)


def test_opposite_channels_cancel(make_audio, tmp_path: Path) -> None:
    left = make_audio("left.wav", 1.0, sample_rate=RATE)
    mono = sf.read(left, dtype="float32")[0]
    path = tmp_path / "cancel.wav"
    sf.write(path, np.stack([mono, -mono], axis=1), RATE, subtype="FLOAT")
    assert np.abs(decode(path)).max() == 0


# ------------------------------------------------------------ block shape


@pytest.mark.parametrize("name", ["blocks.flac", "blocks.m4a"])
def test_blocks_are_fixed_size_float32(make_audio, name: str) -> None:
    path = make_audio(name, 3.0, sample_rate=44100, channels=2)
    blocks = list(open_stream(path, RATE, block_frames=5000))
    assert {len(b) for b in blocks[:-1]} == {5000}
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert sum(len(b) for b in blocks) == pytest.approx(3 * RATE, abs=0.01 * RATE)


def test_blocks_are_independent_arrays(make_audio) -> None:
    path = make_audio("own.wav", 1.0, sample_rate=RATE, kind="noise")
    blocks = list(open_stream(path, RATE, block_frames=2000))
    assert not any(np.shares_memory(a, b) for a, b in zip(blocks, blocks[1:], strict=False))


# ---------------------------------------------------------- content cases


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_silence_decodes_to_zeros(make_audio, fmt: str) -> None:
    x = decode(make_audio(f"silence.{fmt}", 1.0, kind="silence"))
    assert abs(len(x) - RATE) <= 0.01 * RATE
    assert np.abs(x).max() < 1e-4


@pytest.mark.parametrize("name", ["über café 音楽.flac", "Björk – Jóga ♫.mp3", "ñandú 声.m4a"])
def test_unicode_paths(make_audio, name: str) -> None:
    path = make_audio(name, 1.0)
    assert dominant_hz(decode(path), RATE) == pytest.approx(440, abs=2)
    assert audio_info(path).channels == 1


def test_wrong_extension_falls_back_to_pyav(make_audio) -> None:
    path = make_audio("really-aac.mp3", 1.0, fmt="m4a")  # AAC in MP4 named .mp3
    assert dominant_hz(decode(path), RATE) == pytest.approx(440, abs=2)
    assert audio_info(path).codec == "aac"


def test_wav_named_flac_is_read_by_content(make_audio) -> None:
    path = make_audio("really-wav.flac", 1.0, fmt="wav")
    assert audio_info(path).container == "wav"
    assert len(decode(path)) == RATE


# ------------------------------------------------------------- bad input


def assert_one_line_error(path: Path, match: str, *, eager: bool = False) -> AudioError:
    """The error is an AudioError naming the file, one line; `eager`: raised on call."""
    if eager:
        with pytest.raises(AudioError, match=match) as caught:
            open_stream(path, RATE)
    else:
        with pytest.raises(AudioError, match=match) as caught:
            list(open_stream(path, RATE))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return caught.value


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "nope.mp3", "no such file", eager=True)


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "album.flac"
    folder.mkdir()
    assert_one_line_error(folder, "is a directory", eager=True)


def test_zero_byte_file(make_broken) -> None:
    assert_one_line_error(make_broken("empty.mp3", "empty"), r"empty file \(0 bytes\)", eager=True)


@pytest.mark.parametrize("ext", ["mp3", "wav", "flac", "ogg", "m4a"])
def test_text_file_with_an_audio_name(make_broken, ext: str) -> None:
    assert_one_line_error(make_broken(f"notes.{ext}", "text"), "not a recognised audio file")


def test_file_with_zero_samples(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 44100)  # a valid header, no data
    assert_one_line_error(path, "no audio samples in the file")


def test_unsupported_extension(make_audio, tmp_path: Path) -> None:
    path = tmp_path / "song.xyz"
    path.write_bytes(make_audio("song.wav", 0.1).read_bytes())  # audio, but an unknown name
    assert_one_line_error(path, r"unsupported file type \.xyz \(supported: .*\.flac", eager=True)


def test_truncated_mp3_is_an_error(make_broken) -> None:
    # LAME's Info/Xing header declares the length; the stream ends at half of it
    error = assert_one_line_error(make_broken("cut.mp3", "truncated"), "truncated")
    assert "of the 3.00 s declared by its header" in error.reason


def test_truncated_mp3_decodes_partially_when_not_strict(make_broken) -> None:
    path = make_broken("cut.mp3", "truncated")
    with pytest.warns(AudioWarning, match="truncated"):
        x = decode(path, strict=False)
    assert 0.5 * RATE < len(x) < 2.5 * RATE


@pytest.mark.parametrize("channels", [1, 2])
def test_mp3_with_trailing_junk_decodes_to_its_declared_length(make_audio, channels) -> None:
    # more bytes after the audio than the Info header counts: FFmpeg would estimate the
    # length from the bitrate (and call the file truncated) and stop at the first bad packet
    clean = make_audio("clean.mp3", 5.0, sample_rate=44100, channels=channels)
    junk = clean.with_name("junk.mp3")
    junk.write_bytes(clean.read_bytes() + np.random.default_rng(0).bytes(200_000))
    assert audio_info(junk).duration == pytest.approx(5.0, abs=1e-3)
    np.testing.assert_array_equal(decode(junk), decode(clean))


def test_truncated_flac_is_an_error(make_broken) -> None:
    assert_one_line_error(make_broken("cut.flac", "truncated"), "corrupt or truncated")


def test_truncated_m4a_is_an_error(make_broken) -> None:
    # ffmpeg writes the MP4 index (moov) last: a cut file has none
    assert_one_line_error(make_broken("cut.m4a", "truncated"), "not a recognised audio file")


@pytest.mark.parametrize("name", ["cut.wav", "cut.aiff"])
def test_truncated_wav_and_aiff_are_errors(make_broken, name: str) -> None:
    # libsndfile counts the frames a cut file still holds; its header declares all six
    path = make_broken(name, "truncated", seconds=6.0)
    assert_one_line_error(path, "truncated: audio stops at 3.00 s of the 6.00 s declared by")
    assert audio_info(path).duration == pytest.approx(6.0, abs=1e-3)


@pytest.mark.parametrize("placeholder", [0xFFFFFFFF, 0x7FFFF000])
def test_wav_with_a_placeholder_length_decodes_whole(make_audio, tmp_path, placeholder) -> None:
    # written to a pipe, a WAV's data chunk keeps the size its writer put there first
    clean = make_audio("clean.wav", 3.0, kind="noise")
    data = bytearray(clean.read_bytes())
    size_at = data.index(b"data") + 4
    data[size_at : size_at + 4] = placeholder.to_bytes(4, "little")
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(data)
    np.testing.assert_array_equal(decode(streamed), decode(clean))


@pytest.mark.parametrize("decoder", ["soundfile", "pyav-fallback"])
@pytest.mark.parametrize("name", ["cut.ogg", "cut.opus"])
def test_truncated_ogg_is_an_error(make_broken, name: str, decoder: str) -> None:
    # Ogg declares no length: the file ends inside a page, before the end-of-stream one
    path = make_broken(name, "truncated", seconds=6.0, kind="noise", sample_rate=48000)
    with pytest.raises(AudioError, match=r"after \d.* \(the file ends inside an Ogg page\)"):
        list(open_stream(path, RATE, decoder=decoder))
    # the length the last page gives is the cut file's, not the song's
    assert audio_info(path, decoder=decoder).duration is None


def test_ogg_cut_between_pages_is_an_error(make_audio, tmp_path: Path) -> None:
    whole = make_audio("whole.ogg", 6.0, kind="noise").read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole[: whole.index(b"OggS", len(whole) // 2)])  # at a page's start
    assert_one_line_error(cut, "the Ogg stream stops before its last page")


def test_truncated_ogg_decodes_partially_when_not_strict(make_broken) -> None:
    path = make_broken("cut.ogg", "truncated", seconds=6.0, kind="noise")
    with pytest.warns(AudioWarning, match="inside an Ogg page"):
        x = decode(path, strict=False)
    assert 1.0 * RATE < len(x) < 5.0 * RATE


def test_ogg_with_a_tag_appended_after_its_last_page_decodes_whole(make_audio) -> None:
    clean = make_audio("clean.ogg", 3.0, kind="noise")
    appended = clean.with_name("appended.ogg")
    appended.write_bytes(clean.read_bytes() + b"TAG" + bytes(125))  # an ID3v1 tag
    assert audio_info(appended).duration == audio_info(clean).duration
    np.testing.assert_array_equal(decode(appended), decode(clean))


def test_file_without_audio_stream(make_video_only) -> None:
    path = make_video_only("clip.m4a")
    assert_one_line_error(path, r"no audio stream \(the file holds only video\)")
    with pytest.raises(AudioError, match="no audio stream"):
        audio_info(path)


@pytest.mark.parametrize("how", ["empty", "text", "truncated"])
def test_audio_info_raises_audio_error_only(make_broken, how: str) -> None:
    path = make_broken(f"bad-{how}.flac", how)
    try:
        audio_info(path)  # a truncated file's header may still be read
    except AudioError as e:
        assert "\n" not in str(e)


def test_invalid_arguments_are_value_errors(make_audio) -> None:
    path = make_audio("ok.wav", 0.1)
    with pytest.raises(ValueError):
        open_stream(path, 0)
    with pytest.raises(ValueError):
        open_stream(path, RATE, decoder="no-such-decoder")


# ---------------------------------------------------------------- registry


@contextmanager
def _open_raw(path: Path, block_frames: int) -> Iterator[Source]:
    """A real decoder for headerless float32 mono at 8 kHz."""
    with open(path, "rb") as fh:

        def blocks() -> Iterator[np.ndarray]:
            while chunk := fh.read(4 * block_frames):
                yield np.frombuffer(chunk, "<f4").reshape(-1, 1)

        yield Source(8000, 1, blocks())


def _raw_info(path: Path) -> AudioInfo:
    frames = path.stat().st_size // 4
    return AudioInfo(path, frames / 8000, 8000, 1, "f32le", "raw", "raw-f32")


class RawPlugin:
    """A plugin providing a decoder for headerless float32 (and, eagerly, for .flac)."""

    def __init__(self, extensions: tuple[str, ...], priority: int) -> None:
        self.decoder = Decoder("raw-f32", extensions, _open_raw, _raw_info, priority)

    @hookimpl
    def mer_decoders(self) -> list[Decoder]:
        return [self.decoder]


def test_plugin_decoder_is_used_by_priority(tmp_path: Path) -> None:
    path = tmp_path / "tone.f32"
    t = np.arange(8000) / 8000
    (0.5 * np.sin(2 * np.pi * 440 * t)).astype("<f4").tofile(path)
    plugins = get_plugins()
    plugin = RawPlugin((".f32", ".flac"), priority=100)
    plugins.register(plugin, name="raw-f32-test")
    try:
        assert [d.name for d in decoders_for(path)] == ["raw-f32"]
        x = decode(path)
        assert len(x) == RATE and dominant_hz(x, RATE) == pytest.approx(440, abs=1)
        assert audio_info(path).decoder == "raw-f32"
        assert decoders_for("a.flac")[0].name == "raw-f32"
    finally:
        plugins.unregister("raw-f32-test")
    assert decoders_for("a.flac")[0].name == "soundfile"
    assert not decoders_for(path)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts open files via /proc")
@pytest.mark.parametrize("name", ["early.flac", "early.mp3", "early.m4a"])
def test_stopping_early_releases_the_file(make_audio, name: str) -> None:
    path = make_audio(name, 3.0)
    before = len(list(Path("/proc/self/fd").iterdir()))
    stream = open_stream(path, RATE, block_frames=1000)
    next(stream)
    stream.close()
    assert len(list(Path("/proc/self/fd").iterdir())) == before
