"""Decoding WavPack with PyAV (FFmpeg): the `open` and `info` of a `Decoder` record.

mer asks a decoder for blocks of float32 samples, shaped (frames, channels), at the
file's own rate: it down-mixes, resamples and re-blocks them itself, so a block may have
any length. `expected_frames` is the length the headers declare (WavPack's block headers
state the total): mer compares it with what was decoded to tell a truncated file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from mer_plugin.errors import AudioError
from mer_plugin.hookspecs import AudioInfo, Source

NAME = "example-wavpack"


@contextmanager
def open_wavpack(path: Path, block_frames: int) -> Iterator[Source]:
    """The file as a `Source`; `block_frames` is a hint this decoder does not need."""
    with _opened(path) as (container, stream):
        ctx = stream.codec_context
        yield Source(ctx.sample_rate, ctx.channels, _blocks(container, stream), _frames(stream))


def info(path: Path) -> AudioInfo:
    """What the headers say, nothing decoded."""
    with _opened(path) as (_, stream):
        ctx = stream.codec_context
        frames = _frames(stream)
        duration = frames / ctx.sample_rate if frames else None
        return AudioInfo(path, duration, ctx.sample_rate, ctx.channels, "wavpack", "wv", NAME)


@contextmanager
def _opened(path: Path) -> Iterator[tuple[av.container.InputContainer, av.AudioStream]]:
    """The file's container and its audio stream; AudioError when it is not WavPack."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise AudioError(path, f"not a WavPack file FFmpeg can read ({error.strerror})") from error
    with container:
        yield container, _audio_stream(path, container)


def _audio_stream(path: Path, container: av.container.InputContainer) -> av.AudioStream:
    if container.format.name != "wv" or not container.streams.audio:
        raise AudioError(path, f"not a WavPack file (FFmpeg reads it as {container.format.name})")
    return container.streams.audio[0]


def _frames(stream: av.AudioStream) -> int | None:
    """The declared length in frames: WavPack states it in samples of the stream's rate."""
    if not stream.duration or stream.time_base is None:
        return None
    return round(stream.duration * stream.time_base * stream.codec_context.sample_rate)


def _blocks(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[np.ndarray]:
    """Each decoded frame as interleaved float32 (frames, channels)."""
    to_float = av.AudioResampler(format="flt", layout=stream.codec_context.layout)
    try:
        for frame in container.decode(stream):
            for out in to_float.resample(frame):
                yield out.to_ndarray().reshape(-1, out.layout.nb_channels)
    except av.FFmpegError as error:  # mer reports it against the file, one line
        raise AudioError(container.name, f"corrupt WavPack data ({error.strerror})") from error
