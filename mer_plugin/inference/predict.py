"""Predicting a song's emotion with a loaded model: segments -> backbone -> head ->
song (clip head, stage 2 or the mean of segments), with a timeline of the segments.

    model = load_model(resolve_model(None))
    result = predict_file(model, "song.flac")
    result.quadrant, result.valence, result.arousal, result.timeline[0]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mer_plugin.emotion import valence_arousal
from mer_plugin.features import clip_frames, file_segments
from mer_plugin.frontend import FrontEndSpec
from mer_plugin.inference.card import Method
from mer_plugin.inference.folder import Model, ModelError
from mer_plugin.inference.heads import stage2_features
from mer_plugin.kernels.confidence import confidence
from mer_plugin.kernels.segments import cut_segments

BATCH = 16  # segments per backbone call: as fast as 64 on CPU, a quarter of the activations


@dataclass(frozen=True)
class SegmentResult:
    start: float  # seconds
    end: float
    probabilities: dict[str, float]
    confidence: float


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


@torch.no_grad()
def _embed(model: Model, x: np.ndarray) -> torch.Tensor:
    chunks = [
        torch.from_numpy(np.ascontiguousarray(x[i : i + BATCH])) for i in range(0, len(x), BATCH)
    ]
    return torch.cat([model.backbone(chunk) for chunk in chunks])


@torch.no_grad()
def _probs(model: Model, embeddings: torch.Tensor) -> np.ndarray:
    return torch.softmax(model.head(embeddings), dim=1).double().numpy()


def predict_segments(
    model: Model,
    segments: np.ndarray,
    clip_frames: np.ndarray | None = None,
    extras: np.ndarray | None = None,
) -> Prediction:
    """Prediction from log-mel segments (n, segment_frames, n_mels) of one song, and the
    song's extractor features (`model.extras` of the file) when the model takes them.

    The clip method classifies the whole clip: `clip_frames` (all frames) when given, else
    the segments joined in time (the same frames when segments do not overlap). Its
    timeline applies the clip head to each segment, an approximation.
    """

    if len(segments) == 0:
        raise ModelError("no audio segments to predict from")
    segment_probs = _probs(model, _embed(model, segments))
    if model.method == Method.CLIP:
        frames = clip_frames if clip_frames is not None else _join(segments, model.spec)
        song = _probs(model, _embed(model, frames[None]))[0]
    elif model.song is not None:
        song = _stage2(model, segment_probs, extras)
    else:
        song = segment_probs.mean(axis=0)
    return _prediction(model, song, segment_probs)


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


def predict_file(model: Model, path: str | Path) -> Prediction:
    """Predict a file's emotion; raises `AudioError` when it cannot be read."""
    spec = model.spec
    if model.method == Method.CLIP:
        frames = clip_frames(path, spec)
        segments = cut_segments(frames, spec.segment_frames, spec.segment_hop_frames)
        return predict_segments(model, segments, frames)
    segments = file_segments(path, spec)
    return predict_segments(model, segments, extras=model.extras(path) if model.extras else None)


def _prediction(model: Model, song: np.ndarray, segment_probs: np.ndarray) -> Prediction:
    classes, spec = model.classes, model.spec
    song_conf = float(confidence(song[None])[0])
    seg_conf = confidence(segment_probs)
    timeline = [
        SegmentResult(
            start=i * spec.segment_hop_seconds,
            end=i * spec.segment_hop_seconds + spec.segment_seconds,
            probabilities=_named(classes, p),
            confidence=float(c),
        )
        for i, (p, c) in enumerate(zip(segment_probs, seg_conf, strict=True))
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
