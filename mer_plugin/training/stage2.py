"""Fitting stage 2's song classifier: logistic regression on song features, its
regularisation picked by grouped cross-validation when asked."""

from __future__ import annotations

import numpy as np

from mer_plugin.inference.heads import SongClassifier

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


def fit_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    c: float,
    seed: int,
    groups: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> SongClassifier:
    """Fit on song `features`, each song's loss (and its part in the standardisation)
    weighted by `weights` where given; `c` <= 0 picks C from `SONG_C_GRID` by grouped
    cross-validation on these songs (macro-F1, unweighted)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if c <= 0:
        c = pick_c(features, labels, groups, seed)
    scaler = StandardScaler().fit(features, sample_weight=weights)
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit(scaler.transform(features), labels, sample_weight=weights)
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
    return SongClassifier(scaler.mean_, scaler.scale_, coef, intercept)
