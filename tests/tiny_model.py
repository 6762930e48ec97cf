"""A model folder trained in about a second on generated quadrant audio, for tagging tests.

Its backbone is the built-in short-chunk CNN (no shipped weights: they travel in the
folder), so a `mer` subprocess can load it without any test plugin."""

from __future__ import annotations

from pathlib import Path

from synthetic_music import make_dataset

from mer_plugin.datasets import load_dataset
from mer_plugin.training.settings import Settings
from mer_plugin.training.train import train_model

QUICK = Settings(epochs=4, warmup_epochs=2, clip_epochs=4, rampup_epochs=2, stage2_folds=0, views=1)


def train_tiny_model(root: Path, backbone: str = "shortchunk-cnn", method: str = "segment") -> Path:
    """root/model: a model of `backbone` trained by `method`, named "tiny-tagger"."""
    data = make_dataset(root / "data", per_class=2, seconds=4.0)
    dataset = load_dataset(data, "Artist")
    out, cache = root / "model", root / "cache"
    return train_model(dataset, backbone, method, QUICK, out, cache, name="tiny-tagger")
