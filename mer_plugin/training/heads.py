"""The trained parts on top of a backbone: the classification head, and SSSL's stage 2
(song features aggregated from segment probabilities, and a logistic-regression song
classifier kept as plain tensors so a model file never needs pickle)."""

from __future__ import annotations

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


SONG_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
SONG_C_FOLDS = 4


def pick_c(features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, seed: int) -> float:
    """The inverse L2 strength of `SONG_C_GRID` with the best mean macro-F1 over grouped
    stratified folds of the songs (the smallest C on ties); 1.0 when the songs are too few
    to split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    groups = np.arange(len(labels)) if groups is None else groups
    counts = np.bincount(labels)
    k = min(SONG_C_FOLDS, len(set(groups.tolist())), int(counts[counts > 0].min()))
    if k < 2 or len(np.unique(labels)) < 2:
        return 1.0
    splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    folds = list(splitter.split(features, labels, groups))
    scores = []
    for c in SONG_C_GRID:
        fold_scores = []
        for train, test in folds:
            model = make_pipeline(
                StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed)
            ).fit(features[train], labels[train])
            predicted = model.predict(features[test])
            fold_scores.append(f1_score(labels[test], predicted, average="macro"))
        scores.append(np.mean(fold_scores))
    return SONG_C_GRID[int(np.argmax(scores))]


@dataclass
class SongClassifier:
    """Standardise, then multinomial logistic regression; numpy/torch only at predict time."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (n_classes, n_features)
    intercept: np.ndarray  # (n_classes,)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        c: float,
        seed: int,
        groups: np.ndarray | None = None,
    ) -> SongClassifier:
        """Fit on song `features`; `c` <= 0 picks C from `SONG_C_GRID` by grouped
        cross-validation on these songs (macro-F1)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        if c <= 0:
            c = pick_c(features, labels, groups, seed)
        scaler = StandardScaler().fit(features)
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        model.fit(scaler.transform(features), labels)
        coef = np.zeros((n_classes, features.shape[1]))
        intercept = np.full(n_classes, -1e9)  # a class absent from training is never chosen
        if len(model.classes_) == 2:  # sklearn keeps one row for two classes
            coef[model.classes_[1]], intercept[model.classes_[1]] = (
                model.coef_[0],
                model.intercept_[0],
            )
            intercept[model.classes_[0]] = 0.0
            coef[model.classes_[0]] = 0.0
        else:
            coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
        return cls(scaler.mean_, scaler.scale_, coef, intercept)

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
