"""Predicting a song's emotion with a loaded model: segments -> backbone -> head ->
song (clip head, stage 2 or the mean of segments, averaged with the song's embedding
classifier when the model has one), with a timeline of the segments. Segments stream
through the backbone a batch at a time (`SegmentBatcher`); a song keeps only its
segments' probabilities and the running moments of their embeddings.

    model = load_model(resolve_model(None))
    result = predict_file(model, "song.flac")
    result.quadrant, result.valence, result.arousal, result.timeline[0]
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mer_plugin.audio import audio_info
from mer_plugin.budget import FULL, Budget
from mer_plugin.emotion import valence_arousal
from mer_plugin.errors import SilentTrack
from mer_plugin.features import clip_frames, iter_segments, segments_of
from mer_plugin.frontend import FrontEndSpec
from mer_plugin.heap import RELEASE_EVERY, release_free_memory
from mer_plugin.inference.card import Method
from mer_plugin.inference.device import batch_size
from mer_plugin.inference.folder import Model, ModelError
from mer_plugin.inference.heads import EmbeddingMoments, stage2_features
from mer_plugin.kernels.confidence import confidence
from mer_plugin.kernels.segments import cut_segments
from mer_plugin.logmel import SILENCE_DBFS, silent_segments


@dataclass(frozen=True)
class SegmentResult:
    start: float  # seconds
    end: float
    probabilities: dict[str, float]
    confidence: float
    silent: bool = False  # left out of the song's emotion (`logmel.silent_segments`)


@dataclass(frozen=True)
class Prediction:
    """A song's emotion: class probabilities, quadrant and mood, valence and arousal in
    [0, 1] (None unless the classes are the four quadrants), confidence, and timeline."""

    probabilities: dict[str, float]
    label: str
    mood: str | None
    valence: float | None  # P(Q1) + P(Q4)
    arousal: float | None  # P(Q1) + P(Q2)
    confidence: float  # 1 - normalised entropy of the song probabilities
    timeline: list[SegmentResult]
    model: str

    @property
    def quadrant(self) -> str:
        return self.label

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SongSegments:
    """What a song's segments gave: their class probabilities (n, classes), in order,
    which of them are silent (None: none), and the moments of the embeddings of those
    that are not, when the model's song level takes them."""

    probs: np.ndarray
    moments: EmbeddingMoments | None = None
    silent: np.ndarray | None = None

    def silent_mask(self) -> np.ndarray:
        """Which segments are silent, as one boolean per segment."""
        return np.zeros(len(self.probs), bool) if self.silent is None else self.silent

    def heard(self) -> np.ndarray:
        """The probabilities of the segments that are not silent."""
        return self.probs[~self.silent_mask()]


class SegmentBatcher:
    """Log-mel segments of one or more songs in, their class probabilities out (and the
    running moments of their embeddings, when the model's song level takes them).

    Segments are gathered across songs into batches of `size` for the backbone (on a
    GPU, the segments of several files fill one batch); each song's probabilities come
    back in its order. Only one batch of segments is ever held. A segment's numbers
    can differ, at float32 rounding, with the other segments of its batch. Silent
    segments (`logmel.silent_segments`) are marked, and left out of the moments.
    """

    def __init__(self, model: Model, size: int | None = None) -> None:
        self.model = model
        self.size = size or batch_size(model)
        spec = model.spec
        self.batch = np.empty((self.size, spec.segment_frames, spec.n_mels), np.float32)
        self.batch_silent = np.empty(self.size, bool)
        self.owners: list[tuple[Hashable, int]] = []  # (song, rows) in the batch, in order
        self.fill = 0
        self.probs: dict[Hashable, list[np.ndarray]] = {}
        self.silent: dict[Hashable, list[np.ndarray]] = {}
        self.moments: dict[Hashable, EmbeddingMoments] = {}
        self.keeps_moments = model.song_embedding is not None
        self.runs = 0  # backbone calls so far

    def add(self, song: Hashable, segments: np.ndarray) -> None:
        """Segments (k, segment_frames, n_mels) of `song`, after those it had."""
        self.probs.setdefault(song, [])
        self.silent.setdefault(song, [])
        silent = silent_segments(segments, self.model.spec)
        done = 0
        while done < len(segments):
            take = min(self.size - self.fill, len(segments) - done)
            self.batch[self.fill : self.fill + take] = segments[done : done + take]
            self.batch_silent[self.fill : self.fill + take] = silent[done : done + take]
            self.owners.append((song, take))
            self.fill += take
            done += take
            if self.fill == self.size:
                self._run()

    def finish(self, song: Hashable) -> SongSegments:
        """The song's segment probabilities (n, classes), in order, and their embeddings'
        moments when kept; the song is forgotten."""
        if any(owner == song for owner, _ in self.owners):
            self._run()  # a partial batch (with other songs' segments, if any)
        parts, silent = self.probs.pop(song, []), self.silent.pop(song, [])
        moments = self.moments.pop(song, None)
        if not parts:
            return SongSegments(np.empty((0, len(self.model.classes))), moments)
        return SongSegments(np.concatenate(parts), moments, np.concatenate(silent))

    def discard(self, song: Hashable) -> None:
        """Forget a song that failed part way (its segments still in the batch are run
        with the others', their probabilities dropped)."""
        self.probs.pop(song, None)
        self.silent.pop(song, None)
        self.moments.pop(song, None)

    def _run(self) -> None:
        self.runs += 1
        if self.runs % RELEASE_EVERY == 0:  # else a long file's peak varied by up to 0.8 GB
            release_free_memory()
        probs, embedded = _outputs(self.model, self.batch[: self.fill])
        embeddings = embedded.double().numpy() if self.keeps_moments else None
        start = 0
        for song, rows in self.owners:
            if song in self.probs:
                silent = self.batch_silent[start : start + rows].copy()
                self.probs[song].append(probs[start : start + rows])
                self.silent[song].append(silent)
                if embeddings is not None:
                    moments = self.moments.setdefault(song, EmbeddingMoments(embeddings.shape[1]))
                    moments.add(embeddings[start : start + rows][~silent])
            start += rows
        self.owners, self.fill = [], 0


@torch.no_grad()
def _outputs(model: Model, x: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """Class probabilities and embeddings of a batch of backbone inputs."""
    embeddings = model.backbone(torch.from_numpy(np.ascontiguousarray(x)))
    return torch.softmax(model.head(embeddings), dim=1).double().numpy(), embeddings


def predict_segments(
    model: Model,
    segments: np.ndarray,
    clip_frames: np.ndarray | None = None,
    extras: np.ndarray | None = None,
    stride: int = 1,
) -> Prediction:
    """Prediction from log-mel segments (n, segment_frames, n_mels) of one song (every
    `stride`-th of its segments, when a budget picked them), and the song's extractor
    features (`model.extras` of the file) when the model takes them.

    The clip method classifies the whole clip: `clip_frames` (all frames) when given, else
    the segments joined in time (the same frames when segments do not overlap). Its
    timeline applies the clip head to each segment, an approximation.
    """
    if model.method == Method.CLIP:
        if len(segments) == 0:
            raise ModelError("no audio segments to predict from")
        frames = clip_frames if clip_frames is not None else _join(segments, model.spec)
        song = _outputs(model, frames[None])[0][0]
        timeline = SongSegments(segment_probabilities(model, [segments]))  # none left out
        return _prediction(model, song, timeline, stride)
    return predict_stream(model, [segments], extras, stride)


def segment_probabilities(model: Model, batches: Iterable[np.ndarray]) -> np.ndarray:
    """Class probabilities (n, classes) of the segments in `batches`, a batch at a time."""
    return song_segments(model, batches).probs


def song_segments(model: Model, batches: Iterable[np.ndarray]) -> SongSegments:
    """What the segments in `batches` give the song, a batch at a time."""
    batcher = SegmentBatcher(model)
    for batch in batches:
        batcher.add(0, batch)
    return batcher.finish(0)


def predict_stream(
    model: Model,
    batches: Iterable[np.ndarray],
    extras: np.ndarray | None = None,
    stride: int = 1,
) -> Prediction:
    """`predict_segments` of segment batches as they come (a decoder's stream): the
    song's segments are never all held, only their probabilities. Not for clip models."""
    return song_prediction(model, song_segments(model, batches), extras, stride)


def song_prediction(
    model: Model, segments: SongSegments, extras: np.ndarray | None = None, stride: int = 1
) -> Prediction:
    """A song's prediction from what its segments gave (`song_probabilities`)."""
    return _prediction(model, song_probabilities(model, segments, extras), segments, stride)


def song_probabilities(
    model: Model, segments: SongSegments, extras: np.ndarray | None = None
) -> np.ndarray:
    """The song's class probabilities: stage 2 or the mean of its segments'
    probabilities, averaged with the embedding classifier's when the model has one;
    silent segments left out (`SilentTrack` when every one is)."""
    if len(segments.probs) == 0:
        raise ModelError("no audio segments to predict from")
    probs = segments.heard()
    if len(probs) == 0:
        raise SilentTrack(
            f"silent: nothing louder than {SILENCE_DBFS:.0f} dBFS, no emotion to hear"
        )
    song = _stage2(model, probs, extras) if model.song is not None else probs.mean(axis=0)
    if model.song_embedding is not None:
        if segments.moments is None:
            raise ModelError("the model's song level needs its segments' embeddings")
        song = (song + model.song_embedding.predict_proba(segments.moments.features())[0]) / 2
    return song


def near_tie(
    model: Model, segments: SongSegments, extras: np.ndarray | None, budget: Budget
) -> bool:
    """Whether a budget's first pass leaves the song's two likeliest classes within
    `budget.near_tie` of each other, or heard only silence: then the rest of the track
    is analysed too."""
    if not budget.near_tie or len(segments.probs) == 0:
        return False
    if len(segments.heard()) == 0:
        return True
    second, first = np.sort(song_probabilities(model, segments, extras))[-2:]
    return bool(first - second < budget.near_tie)


def both_passes(first: SongSegments, rest: SongSegments, stride: int) -> SongSegments:
    """A track's segments in order from a first pass (every `stride`-th) and the rest."""
    n = len(first.probs) + len(rest.probs)
    picked = np.arange(n) % stride == 0
    if picked.sum() != len(first.probs):  # the two passes decoded different lengths
        raise ModelError("the track decoded differently on its second pass")
    probs = np.empty((n, first.probs.shape[1]))
    probs[picked], probs[~picked] = first.probs, rest.probs
    silent = np.empty(n, bool)
    silent[picked], silent[~picked] = first.silent_mask(), rest.silent_mask()
    moments = first.moments
    if moments is not None and rest.moments is not None:
        moments = moments.merged(rest.moments)
    return SongSegments(probs, moments, silent)


def _stage2(model: Model, segment_probs: np.ndarray, extras: np.ndarray | None) -> np.ndarray:
    """The song classifier as it was trained: on clips of `model.song_window` segments. A
    longer song is cut into windows of about that length (one, below two windows), each
    classified; the song is their mean."""
    assert model.song is not None
    windows = np.array_split(segment_probs, max(1, len(segment_probs) // model.song_window))
    rows = None
    if model.extras:
        if extras is None:
            raise ModelError(f"the model needs the features of {', '.join(model.extras.names)}")
        rows = np.tile(extras, (len(windows), 1))
    return model.song.predict_proba(stage2_features(windows, rows)).mean(axis=0)


def _join(segments: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    hop = spec.segment_hop_frames
    if hop >= spec.segment_frames:
        return segments.reshape(-1, segments.shape[2])
    return np.concatenate([segments[:-1, :hop].reshape(-1, segments.shape[2]), segments[-1]])


def predict_file(model: Model, path: str | Path, budget: Budget = FULL) -> Prediction:
    """Predict a file's emotion, streaming (a long file costs no more memory than a short
    one, except for clip models, which take all frames at once), from every segment or
    those a `budget` picks. Raises `AudioError` when the file cannot be read, and
    `SilentTrack` when none of it is louder than `logmel.SILENCE_DBFS`."""
    spec = model.spec
    if model.method == Method.CLIP:
        frames = clip_frames(path, spec)
        segments = cut_segments(frames, spec.segment_frames, spec.segment_hop_frames)
        return predict_segments(model, segments, frames)
    duration = audio_info(path).duration if budget != FULL else None
    stride = budget.stride_for(segments_of(duration or 0.0, spec))
    extras = model.extras(path) if model.extras else None
    found = song_segments(model, iter_segments(path, spec, stride=stride))
    if stride > 1 and near_tie(model, found, extras, budget):
        rest = song_segments(model, iter_segments(path, spec, stride=stride, rest=True))
        found, stride = both_passes(found, rest, stride), 1
    try:
        return song_prediction(model, found, extras, stride)
    except SilentTrack as error:
        raise SilentTrack(f"{path}: {error}") from None


def _prediction(model: Model, song: np.ndarray, segments: SongSegments, stride: int) -> Prediction:
    classes, spec = model.classes, model.spec
    segment_probs, silent = segments.probs, segments.silent_mask()
    song_conf = float(confidence(song[None])[0])
    seg_conf = confidence(segment_probs)
    hop = stride * spec.segment_hop_seconds  # between the starts of analysed segments
    timeline = [
        SegmentResult(
            start=i * hop,
            end=i * hop + spec.segment_seconds,
            probabilities=_named(classes, p),
            confidence=float(c),
            silent=bool(s),
        )
        for i, (p, c, s) in enumerate(zip(segment_probs, seg_conf, silent, strict=True))
    ]
    named = _named(classes, song)
    label = classes[int(np.argmax(song))]
    valence, arousal = valence_arousal(named) or (None, None)
    return Prediction(
        probabilities=named,
        label=label,
        mood=model.card.moods.get(label),
        valence=valence,
        arousal=arousal,
        confidence=song_conf,
        timeline=timeline,
        model=model.release,
    )


def _named(classes: tuple[str, ...], probs: np.ndarray) -> dict[str, float]:
    return {name: float(p) for name, p in zip(classes, probs, strict=True)}
