"""A trained model scored on a labelled dataset it did not learn from (`mer score`): every
clip analysed as `mer predict` does, then the metrics cross-validation reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_plugin.datasets import Dataset, DatasetError
from mer_plugin.errors import AudioError, SilentTrack
from mer_plugin.inference import Model, Prediction, predict_file
from mer_plugin.training.evaluate import metrics
from mer_plugin.training.progress import Reporter


def score_model(model: Model, dataset: Dataset, reporter: Reporter | None = None) -> dict:
    """The report of `model` on every readable clip of `dataset`: metrics, the clips it
    could not read, and each clip's prediction. The dataset's classes must be the model's."""
    if set(dataset.classes) != set(model.classes):
        raise DatasetError(
            f"{dataset.name}: classes {', '.join(dataset.classes)}; the model "
            f"{model.release} predicts {', '.join(model.classes)}"
        )
    reporter = reporter or Reporter(quiet=True)
    rows, probs, labels, skipped = [], [], [], list(dataset.skipped)
    with reporter.bar(len(dataset.clips), f"{model.release} on {dataset.name}") as bar:
        for clip, label in zip(dataset.clips, dataset.labels, strict=True):
            try:
                result = predict_file(model, clip.path)
            except AudioError as error:
                skipped.append(f"{clip.path}: {error.reason}")
            except SilentTrack as error:  # names the clip
                skipped.append(str(error))
            else:
                probs.append([result.probabilities[c] for c in dataset.classes])
                labels.append(label)
                rows.append(_clip_row(clip.path, clip.label, result))
            bar.advance()
    if not rows:
        raise DatasetError(f"{dataset.name}: no clip could be read")
    return {
        "dataset": dataset.name,
        "model": model.release,
        "classes": list(dataset.classes),
        "clips": len(rows),
        "metrics": metrics(np.array(probs), np.array(labels), dataset.classes),
        "skipped": skipped,
        "predictions": rows,
    }


def _clip_row(path: Path, label: str, result: Prediction) -> dict:
    return {
        "path": str(path),
        "label": label,
        "predicted": result.label,
        "probabilities": result.probabilities,
        "valence": result.valence,
        "arousal": result.arousal,
    }
