"""The trained parts on top of a backbone: the classification head, stage 2 (song
features aggregated from segment probabilities, and a logistic-regression song classifier
kept as plain tensors so a model file never needs pickle), and the song's embedding
classifier (the same logistic regression on the mean and standard deviation of the song's
segment embeddings, `EmbeddingMoments`). Training fits them (`training.methods`,
`training.stage2`); inference only applies them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mer_plugin.kernels.confidence import confidence

SONG_FEATURES = ("mean", "std", "max", "min", "confidence_weighted_mean", "share")


class Head(nn.Module):
    """Standardise -> Linear -> ReLU -> Dropout -> Linear: class logits.

    The standardisation (`shift`, `scale`) is fitted on the training embeddings when they
    are cached (frozen backbone); with a backbone in training it stays the identity.
    """

    def __init__(self, dim: int, n_classes: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.layers = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def standardise_like(self, x: torch.Tensor) -> None:
        self.shift.copy_(x.mean(dim=0))
        self.scale.copy_(x.std(dim=0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.shift) / self.scale)

    @classmethod
    def merged(cls, heads: Sequence[Head]) -> Head:
        """Heads of one standardisation as one head: their hidden layers side by side, its
        logits exactly the mean of theirs (an ensemble in one pass, saved as one head).
        A single head is returned as it is."""
        first = heads[0]
        if len(heads) == 1:
            return first
        if any(not (torch.equal(h.shift, first.shift) and torch.equal(h.scale, first.scale))
               for h in heads):  # fmt: skip
            raise ValueError("only heads with one standardisation can be merged")
        inputs, outputs = first.layers[0], first.layers[3]
        merged = cls(inputs.in_features, outputs.out_features,
                     len(heads) * inputs.out_features, first.layers[2].p)  # fmt: skip
        with torch.no_grad():
            merged.shift.copy_(first.shift)
            merged.scale.copy_(first.scale)
            merged.layers[0].weight.copy_(torch.cat([h.layers[0].weight for h in heads]))
            merged.layers[0].bias.copy_(torch.cat([h.layers[0].bias for h in heads]))
            second = torch.cat([h.layers[3].weight for h in heads], dim=1) / len(heads)
            merged.layers[3].weight.copy_(second)
            merged.layers[3].bias.copy_(torch.stack([h.layers[3].bias for h in heads]).mean(0))
        return merged


def song_features(probs: np.ndarray) -> np.ndarray:
    """Fixed-length song feature (6 * n_classes) from segment probabilities (n, n_classes):
    mean, std, max, min, confidence-weighted mean (1 - normalised entropy, the confidence
    kernel's score) and the share of segments each class wins, in `SONG_FEATURES` order."""
    probs = np.asarray(probs, dtype=np.float64)
    weights = confidence(probs) + 1e-6
    weighted = weights @ probs / weights.sum()
    share = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / len(probs)
    stats = (probs.mean(0), probs.std(0), probs.max(0), probs.min(0), weighted, share)
    return np.concatenate(stats)


def stage2_features(probs: Iterable[np.ndarray], extras: np.ndarray | None) -> np.ndarray:
    """Stage 2's input: a row of `song_features` per song (or window) of segment
    probabilities, followed by its extractor features (one row each) when there are any."""
    features = np.stack([song_features(p) for p in probs])
    return features if extras is None else np.hstack([features, extras])


class EmbeddingMoments:
    """A song's segment embeddings as running sums (float64), added a batch at a time:
    their mean and standard deviation without holding the segments."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.sum = np.zeros(dim)
        self.squares = np.zeros(dim)

    def add(self, embeddings: np.ndarray) -> None:
        e = np.asarray(embeddings, dtype=np.float64)
        self.count += len(e)
        self.sum += e.sum(axis=0)
        self.squares += np.square(e).sum(axis=0)

    def merged(self, other: EmbeddingMoments) -> EmbeddingMoments:
        """The moments of both sets of embeddings."""
        both = EmbeddingMoments(len(self.sum))
        both.count = self.count + other.count
        both.sum, both.squares = self.sum + other.sum, self.squares + other.squares
        return both

    def features(self) -> np.ndarray:
        """The song's embedding feature: mean, then standard deviation (ddof 0)."""
        mean = self.sum / max(self.count, 1)
        variance = np.maximum(self.squares / max(self.count, 1) - np.square(mean), 0.0)
        return np.concatenate([mean, np.sqrt(variance)])

    @classmethod
    def of(cls, embeddings: np.ndarray) -> EmbeddingMoments:
        moments = cls(embeddings.shape[1])
        moments.add(embeddings)
        return moments


@dataclass
class SongClassifier:
    """Standardise, then multinomial logistic regression (fitted by
    `training.stage2.fit_classifier`); numpy only at predict time."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (n_classes, n_features)
    intercept: np.ndarray  # (n_classes,)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(features) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def tensors(self, prefix: str = "song.") -> dict[str, torch.Tensor]:
        names = ("mean", "scale", "coef", "intercept")
        return {
            prefix + n: torch.from_numpy(np.asarray(getattr(self, n), np.float64)) for n in names
        }

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], prefix: str = "song."
    ) -> SongClassifier:
        names = ("mean", "scale", "coef", "intercept")
        return cls(*(tensors[prefix + n].numpy() for n in names))
