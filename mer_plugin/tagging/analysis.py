"""Analysis: a file decoded into what the model eats (log-mel segments, all frames for
clip models, extractor features for stage 2), in a worker process or inline."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from mer_plugin.audio import AudioWarning, audio_info
from mer_plugin.budget import FULL, Budget
from mer_plugin.errors import AudioError, MerError
from mer_plugin.features import clip_frames, iter_segments, segments_of
from mer_plugin.frontend import FrontEndSpec
from mer_plugin.kernels.segments import cut_segments
from mer_plugin.song_extras import SongExtras

if TYPE_CHECKING:  # workers import this module: torch (under inference) stays out
    from mer_plugin.inference import ModelCard


@dataclass
class Analysis:
    """What a file was analysed into: its log-mel segments (every `stride`-th), all
    frames for clip models, and the song's extractor features for models whose stage 2
    takes them."""

    segments: np.ndarray | None  # None when its batches went ahead, streamed (`send`)
    seconds: float
    frames: np.ndarray | None = None
    extras: np.ndarray | None = None
    note: str | None = None  # the file decoded only in part: how much was analysed, why
    stride: int = 1  # the segments are every stride-th of the file's (an analysis budget)
    rest: bool = False  # or those a first pass with that stride skipped
    duration: float = 0.0  # the file's length by its header, seconds (0: not declared)


# a file that stops decoding (trailing junk, a lost sync) is analysed from what decoded
# when that is at least this share of its length, and the outcome says so
MIN_DECODED = 0.9


ExtrasKey = tuple[tuple[str, tuple[str, ...]], ...]  # (extractor, features used) pairs


def extras_key(card: ModelCard) -> ExtrasKey:
    """What a worker needs to compute the model's extractor features (picklable)."""
    return tuple((entry["name"], tuple(entry["features"])) for entry in card.song_extractors)


@cache
def _song_extras(key: ExtrasKey) -> SongExtras:
    return SongExtras.of([name for name, _ in key], dict(key))


def analyse(
    path: str,
    spec: FrontEndSpec,
    clip: bool,
    extras: ExtrasKey = (),
    budget: Budget = FULL,
    rest: bool = False,
    send: Callable[[np.ndarray], None] | None = None,
) -> Analysis | str:
    """Decode a file into what the model eats (the segments the `budget` picks first, or
    with `rest` the others; every frame of a clip model's); a failure's reason. With
    `send`, segment batches go to it as they are made (to the model, or from a worker to
    the main process), so a long file's segments are never all held, and the analysis
    has none. The song's extractor features come with the first pass."""
    start = time.perf_counter()
    try:
        frames = song = note = None
        stride = 1
        duration = audio_info(path).duration or 0.0
        if clip:
            frames, segments = _clip_input(path, spec)
        else:
            segments, note, stride = _segments(path, duration, spec, budget, send, rest)
        if extras and not rest:
            song = _song_extras(extras)(path)
    except MerError as error:
        return getattr(error, "reason", str(error))
    except Exception as error:  # a decoder's bug must not stop the run
        return f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - start
    return Analysis(segments, seconds, frames, song, note, stride, rest, duration)


def _segments(
    path: str,
    duration: float,
    spec: FrontEndSpec,
    budget: Budget,
    send: Callable[[np.ndarray], None] | None = None,
    rest: bool = False,
) -> tuple[np.ndarray | None, str | None, int]:
    """The file's segments (every stride-th, or the rest) sent batch by batch, or without
    `send` gathered into one array sized from the header's duration (held once rather
    than as batches plus their copy); the note of a file that decoded only in part
    (`MIN_DECODED`); the stride. `duration`: the header's (0 when it declares none)."""
    total = segments_of(duration, spec)  # 0 when the header gives no duration
    stride = budget.stride_for(total)
    first = math.ceil(total / stride)
    expected = (total - first if rest else first) + 2 if duration else 0
    gather = Gather(expected, spec) if send is None else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AudioWarning)
        for batch in iter_segments(path, spec, strict=False, stride=stride, rest=rest):
            if gather is None:
                send(batch)
            else:
                gather.add(batch)
    partial = [w.message for w in caught if isinstance(w.message, AudioWarning)]
    note = _partial(path, partial[0], duration) if partial else None
    return (None if gather is None else gather.array()), note, stride


def _partial(path: str, warning: AudioWarning, duration: float) -> str:
    """The note for a file that stopped decoding part way; AudioError when too little of
    it decoded (or its length is unknown)."""
    if not duration or warning.decoded_s < MIN_DECODED * duration:
        raise AudioError(path, warning.reason)
    return (
        f"analysed the {warning.decoded_s:.1f} s of {duration:.1f} s that decode ({warning.reason})"
    )


class Gather:
    """Segment batches into one array allocated for the expected count (grown, doubling,
    if the header said less); untouched rows of the allocation never become resident."""

    def __init__(self, expected: int, spec: FrontEndSpec) -> None:
        self.shape = (spec.segment_frames, spec.n_mels)
        self.out = np.empty((expected, *self.shape), np.float32)
        self.n = 0

    def add(self, batch: np.ndarray) -> None:
        k = len(batch)
        if self.n + k > len(self.out):
            grown = np.empty((max(self.n + k, 2 * len(self.out)), *self.shape), np.float32)
            grown[: self.n] = self.out[: self.n]
            self.out = grown
        self.out[self.n : self.n + k] = batch
        self.n += k

    def array(self) -> np.ndarray:
        return self.out[: self.n]


def _clip_input(path: str, spec: FrontEndSpec) -> tuple[np.ndarray, np.ndarray]:
    """All frames and their segments, as `predict_file` builds them for clip models."""
    frames = clip_frames(path, spec)
    return frames, cut_segments(frames, spec.segment_frames, spec.segment_hop_frames)
