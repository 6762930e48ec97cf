"""Shared fixtures: real audio files, written on the fly by real encoders.

    def test_something(make_audio):
        path = make_audio("song.flac", seconds=2, sample_rate=22050, channels=2)
        path = make_audio("über café.m4a", kind="noise")       # AAC through ffmpeg
        path = make_audio("mislabelled.mp3", fmt="m4a")         # AAC data, .mp3 name

    def test_failures(make_broken, make_video_only):
        make_broken("empty.mp3", "empty")       # 0 bytes
        make_broken("notes.mp3", "text")        # a text file with an audio name
        make_broken("cut.flac", "truncated")    # a real file cut in half
        make_video_only("clip.m4a")             # an MP4 holding only a video stream

Formats by the name's extension (or `fmt=`): wav, aiff/aif, flac, ogg (vorbis),
opus, mp3 through soundfile (libsndfile); wv (WavPack, 16-bit, lossless from the same
samples as a 16-bit wav: `wavpack_from_wav`) through PyAV; m4a, mp4, aac and wma
(which mer tags but does not decode) through Debian's `ffmpeg`. A test that needs
ffmpeg where it is missing is skipped, with the reason. Files are written block by
block, so hour-long files cost little memory (`write_audio` is importable for
benchmarks).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pytest
import soundfile as sf

Kind = Literal["tone", "noise", "silence"]
Broken = Literal["empty", "text", "truncated"]

# extension -> (libsndfile format, subtype)
SOUNDFILE_FORMATS: dict[str, tuple[str, str | None]] = {
    "wav": ("WAV", "PCM_16"),
    "aiff": ("AIFF", "PCM_16"),
    "aif": ("AIFF", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# extension -> ffmpeg arguments for the output
FFMPEG_FORMATS: dict[str, list[str]] = {
    "m4a": ["-c:a", "aac", "-b:a", "128k", "-f", "ipod"],
    "mp4": ["-c:a", "aac", "-b:a", "128k", "-f", "mp4"],
    "aac": ["-c:a", "aac", "-b:a", "128k", "-f", "adts"],
    "wma": ["-c:a", "wmav2", "-b:a", "128k", "-f", "asf"],
}
# what the encoders accept (anything else: a ValueError that says so)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
WAVPACK = "wv"
AUDIO_FORMATS = (*SOUNDFILE_FORMATS, WAVPACK, *FFMPEG_FORMATS)

_BLOCK_SECONDS = 10.0


def ffmpeg_or_skip() -> str:
    """The ffmpeg executable, or skip the calling test."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg): needed for m4a/mp4/aac")
    return exe


def synth(
    start: int,
    frames: int,
    sample_rate: int,
    channels: int,
    kind: Kind = "tone",
    freq: float | Sequence[float] = 440.0,
    amplitude: float = 0.5,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frames [start, start + frames) of a signal, float32 (frames, channels).

    tone: a sine per channel (`freq`, or one frequency per channel), phase-continuous
    across calls; noise: uniform white noise; silence: zeros.
    """
    if kind == "silence":
        return np.zeros((frames, channels), np.float32)
    if kind == "noise":
        rng = rng or np.random.default_rng(0)
        return rng.uniform(-amplitude, amplitude, (frames, channels)).astype(np.float32)
    if kind != "tone":
        raise ValueError(f"unknown kind {kind!r}: tone, noise or silence")
    freqs = np.broadcast_to(np.asarray(freq, np.float64), (channels,))
    t = (start + np.arange(frames, dtype=np.float64))[:, None] / sample_rate
    return (amplitude * np.sin(2 * np.pi * freqs[None, :] * t)).astype(np.float32)


def _blocks(seconds: float, sample_rate: int, channels: int, **signal) -> Iterator[np.ndarray]:
    total = round(seconds * sample_rate)
    step = max(1, int(_BLOCK_SECONDS * sample_rate))
    rng = np.random.default_rng(signal.pop("seed", 0))
    for start in range(0, total, step):
        yield synth(start, min(step, total - start), sample_rate, channels, rng=rng, **signal)


def _check_encoder_limits(fmt: str, sample_rate: int, channels: int) -> None:
    if fmt == "opus" and sample_rate not in OPUS_RATES:
        raise ValueError(f"opus needs a sample rate in {OPUS_RATES}, not {sample_rate}")
    if fmt == "mp3" and (sample_rate not in MP3_RATES or channels > 2):
        raise ValueError(f"mp3 needs 1-2 channels and a rate in {MP3_RATES}")


def write_audio(
    path: str | Path,
    seconds: float = 1.0,
    *,
    sample_rate: int = 44100,
    channels: int = 1,
    kind: Kind = "tone",
    freq: float | Sequence[float] = 440.0,
    amplitude: float = 0.5,
    seed: int = 0,
    fmt: str | None = None,
) -> Path:
    """Write a real audio file at `path` and return it (format from `fmt` or the extension)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    signal = {"kind": kind, "freq": freq, "amplitude": amplitude, "seed": seed}
    blocks = _blocks(seconds, sample_rate, channels, **signal)
    if fmt in SOUNDFILE_FORMATS:
        _check_encoder_limits(fmt, sample_rate, channels)
        container, subtype = SOUNDFILE_FORMATS[fmt]
        with sf.SoundFile(path, "w", sample_rate, channels, subtype, format=container) as f:
            for block in blocks:
                f.write(block)
    elif fmt == WAVPACK:
        wav = path.with_name(f"{path.name}.wav")
        write_audio(wav, seconds, sample_rate=sample_rate, channels=channels, **signal)
        wavpack_from_wav(wav, path)
        wav.unlink()
    elif fmt in FFMPEG_FORMATS:
        _ffmpeg_encode(path, blocks, sample_rate, channels, FFMPEG_FORMATS[fmt])
    else:
        raise ValueError(f"cannot write {fmt!r}: one of {', '.join(AUDIO_FORMATS)}")
    return path


def wavpack_from_wav(wav: str | Path, path: str | Path) -> Path:
    """A 16-bit wav's samples, losslessly as WavPack at `path` (PyAV's encoder)."""
    pcm, sample_rate = sf.read(wav, dtype="int16", always_2d=True)
    layout = {1: "mono", 2: "stereo"}.get(pcm.shape[1], f"{pcm.shape[1]}c")
    with av.open(str(path), "w", format="wv") as out:
        stream = out.add_stream("wavpack", rate=sample_rate, layout=layout)
        stream.format = "s16p"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T), "s16p", layout)
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return Path(path)


def write_audio_once(path: str | Path, seconds: float, **options) -> Path:
    """`write_audio` unless `path` exists: written under a temporary name and renamed, so
    a kept file (benchmarks' inputs) is never half written."""
    path = Path(path)
    if not path.exists():
        partial = path.with_name(f"partial-{path.name}")
        write_audio(partial, seconds, **options)
        partial.replace(path)
    return path


def _ffmpeg_encode(
    path: Path, blocks: Iterator[np.ndarray], sample_rate: int, channels: int, args: list[str]
) -> None:
    raw_input = ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]
    cmd = [ffmpeg_or_skip(), "-hide_banner", "-loglevel", "error", "-y", *raw_input, *args]
    with subprocess.Popen([*cmd, str(path)], stdin=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdin is not None and p.stderr is not None
        for block in blocks:
            p.stdin.write(block.astype("<f4").tobytes())
        p.stdin.close()
        err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {err.strip()}")


def write_video_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An MP4-family file (any extension ffmpeg maps to MP4) with a video stream only."""
    path = Path(path)
    source = ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x64:rate=10"]
    cmd = [ffmpeg_or_skip(), "-hide_banner", "-loglevel", "error", "-y", *source]
    cmd += ["-c:v", "mpeg4", "-f", "mp4", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def write_broken(path: str | Path, how: Broken, keep: float = 0.5, **audio) -> Path:
    """A file that must fail: empty, text with an audio name, or real audio cut short.

    truncated: `write_audio(path, **audio)` (3 s by default), then only the first
    `keep` fraction of its bytes is kept.
    """
    path = Path(path)
    if how == "empty":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("This is a text file, not audio.\n" * 20, encoding="utf-8")
    elif how == "truncated":
        write_audio(path, **{"seconds": 3.0, **audio})
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    else:
        raise ValueError(f"unknown breakage {how!r}: empty, text or truncated")
    return path
