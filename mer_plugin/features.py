"""File → log-mel segments, streamed: decode, log-mel and segmenting overlap block by block.

Only the frames of the segment being filled are held, so memory does not grow with a
track's length; a caller that keeps every segment (e.g. `mer features`) pays for the
output alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mer_plugin.audio import open_stream
from mer_plugin.errors import AudioError
from mer_plugin.frontend import FrontEndSpec
from mer_plugin.kernels.segments import cut_segments, pad_to_segment, segment_count
from mer_plugin.logmel import LogMelStream


class SegmentStream:
    """Turns a stream of log-mel frames into whole segments as soon as each is complete.

    Segments start every `segment_hop_frames` frames; trailing frames that do not fill a
    segment are dropped, except that audio shorter than one segment gives one segment
    padded with the spec's silence level (so every file with audio yields a prediction).
    """

    def __init__(self, spec: FrontEndSpec) -> None:
        self.spec = spec
        self._pending = np.empty((0, spec.n_mels), dtype=np.float32)
        self._skip = 0  # frames still to drop before the next segment starts (hop > length)
        self._emitted = 0

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Add frames (n, n_mels); return the segments they complete (k, length, n_mels)."""
        if self._skip:
            dropped = min(self._skip, len(frames))
            frames, self._skip = frames[dropped:], self._skip - dropped
        pending = np.concatenate([self._pending, frames]) if len(self._pending) else frames
        spec = self.spec
        segments = cut_segments(pending, spec.segment_frames, spec.segment_hop_frames)
        consumed = len(segments) * spec.segment_hop_frames
        self._skip += max(0, consumed - len(pending))
        self._pending = np.array(pending[consumed:], dtype=np.float32)  # own copy, small
        self._emitted += len(segments)
        return segments

    def finish(self) -> np.ndarray:
        """The padded single segment of audio shorter than one segment, else nothing."""
        spec = self.spec
        if self._emitted or not len(self._pending):
            return np.empty((0, spec.segment_frames, spec.n_mels), dtype=np.float32)
        padded = pad_to_segment(self._pending, spec.segment_frames, spec.silence_level)
        self._emitted = 1
        return padded[None, : spec.segment_frames]


def iter_segments(
    path: str | Path,
    spec: FrontEndSpec,
    *,
    strict: bool = True,
    stride: int = 1,
    rest: bool = False,
) -> Iterator[np.ndarray]:
    """Yield batches of log-mel segments (k, segment_frames, n_mels) of a file, as decoded:
    every `stride`-th segment (the first, then every stride-th after it), or with `rest`
    the others (those a first pass with that stride skipped).

    Raises `AudioError` for unreadable files and for files that decode to no samples;
    a file that stops decoding part way raises too unless `strict=False` (then an
    `audio.AudioWarning` says how much decoded, as `open_stream` does).
    """
    log_mel = LogMelStream(spec)
    segments = SegmentStream(spec)
    n_samples = n_segments = 0

    def kept(batch: np.ndarray) -> np.ndarray:
        nonlocal n_segments
        start = -n_segments % stride  # the batch's first segment whose index is a multiple
        n_segments += len(batch)
        if not rest:
            return batch[start::stride]
        return np.delete(batch, np.arange(start, len(batch), stride), axis=0)

    for block in open_stream(path, spec.sample_rate, strict=strict):
        n_samples += len(block)
        batch = kept(segments.push(log_mel.push(block)))
        if len(batch):
            yield batch
    if n_samples == 0:
        raise AudioError(path, "contains no audio samples")
    for batch in (segments.push(log_mel.finish()), segments.finish()):
        if len(batch := kept(batch)):
            yield batch


def segments_of(duration: float, spec: FrontEndSpec) -> int:
    """How many whole segments `duration` seconds of audio make (frames centred)."""
    frames = int(duration * spec.sample_rate) // spec.hop_length + 1
    return segment_count(frames, spec.segment_frames, spec.segment_hop_frames)


def file_segments(path: str | Path, spec: FrontEndSpec) -> np.ndarray:
    """All log-mel segments of a file as one float32 array (n_segments, segment_frames, n_mels)."""
    batches = list(iter_segments(path, spec))
    if not batches:  # samples, but too few for one frame (center=False)
        return np.empty((0, spec.segment_frames, spec.n_mels), dtype=np.float32)
    return np.concatenate(batches)


def clip_frames(path: str | Path, spec: FrontEndSpec) -> np.ndarray:
    """Every log-mel frame of a file (n_frames, n_mels), padded with silence to at least
    one segment. Raises `AudioError` for unreadable or empty files."""
    stream = LogMelStream(spec)
    parts: list[np.ndarray] = []
    n_samples = 0
    for block in open_stream(path, spec.sample_rate):
        n_samples += len(block)
        parts.append(stream.push(block))
    if n_samples == 0:
        raise AudioError(path, "contains no audio samples")
    parts.append(stream.finish())
    frames = np.concatenate(parts).astype(np.float32, copy=False)
    if len(frames) < spec.segment_frames:
        frames = pad_to_segment(frames, spec.segment_frames, spec.silence_level)
    return frames
