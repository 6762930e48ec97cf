"""The 50 MSD tags of a file over time, from the shipped MSD-musicnn: a quick sanity check.

    >>> timeline = predict_tags("song.mp3")
    >>> timeline.top(5)  # [("rock", 0.61), ...] by mean probability over the song
    >>> timeline.probs.shape  # (segments, 50), one row per 3 s segment

Decoding and log-mel are streamed (`mer_plugin.features.iter_segments`); segments go to
the model in batches as soon as they are complete.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mer_plugin.backbones import create_backbone, get_backbone, weights_card
from mer_plugin.features import iter_segments

BACKBONE = "musicnn-msd"


@dataclass(frozen=True)
class TagTimeline:
    """Tag probabilities per segment: `probs[i, j]` is tag `tags[j]` in segment `i`,
    which starts at `starts[i]` seconds and lasts `segment_seconds`."""

    tags: tuple[str, ...]
    starts: np.ndarray  # (n,) seconds
    probs: np.ndarray  # (n, len(tags)) float32
    segment_seconds: float

    def mean(self) -> np.ndarray:
        """Mean probability of each tag over the file."""
        return self.probs.mean(axis=0) if len(self.probs) else np.zeros(len(self.tags))

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The k tags with the highest mean probability, best first."""
        mean = self.mean()
        return [(self.tags[i], float(mean[i])) for i in np.argsort(-mean, kind="stable")[:k]]


@functools.cache
def _model(device: str) -> torch.nn.Module:
    return create_backbone(BACKBONE).to(device)


def _batches(segments: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup a stream of segment batches into batches of `size` (the last may be short)."""
    pending: list[np.ndarray] = []
    count = 0
    for batch in segments:
        pending.append(batch)
        count += len(batch)
        while count >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            pending, count = [joined[size:]], count - size
    if count:
        yield np.concatenate(pending)


def predict_tags(path: str | Path, *, device: str = "cpu", batch_size: int = 64) -> TagTimeline:
    """MSD tag probabilities of every segment of an audio file.

    Raises `mer_plugin.errors.AudioError` for files that cannot be decoded.
    """
    spec = get_backbone(BACKBONE).spec
    model = _model(device)
    rows = []
    with torch.inference_mode():
        for batch in _batches(iter_segments(path, spec), batch_size):
            rows.append(model.tag_probs(torch.from_numpy(batch).to(device)).cpu().numpy())
    probs = np.concatenate(rows) if rows else np.empty((0, 50), np.float32)
    return TagTimeline(
        tags=tuple(weights_card(BACKBONE)["tags"]),
        starts=np.arange(len(probs)) * spec.segment_hop_seconds,
        probs=probs,
        segment_seconds=spec.segment_seconds,
    )
