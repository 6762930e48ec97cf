"""Inference: a trained model folder, loaded and applied to songs. Never imports training.

    from mer_plugin.inference import load_model, predict_file, resolve_model

    model = load_model(resolve_model(None))  # the shipped default model
    result = predict_file(model, "song.flac")
    result.quadrant, result.mood, result.valence, result.arousal, result.timeline[0]

card.py     the model card (`ModelCard`, `Method`)
heads.py    the head and stage 2 (song features, song classifier) as trained
find.py     finding a model folder (`resolve_model`) and reading its card, without torch
folder.py   model folders: save, load, weight digests
predict.py  `predict_file`, `predict_segments`, `Prediction`
device.py   `--device`: where the backbone runs
msd_tags.py the 50 MSD tags of MSD-musicnn over time (`mer predict --tags`)
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> its module; resolved on first use, so that the torch-free modules (card)
# import without torch: `mer tag`'s workers use them and never load torch
_EXPORTS = {
    "Method": "card",
    "ModelCard": "card",
    "DEFAULT_MODEL": "find",
    "Model": "folder",
    "ModelError": "find",
    "load_model": "folder",
    "read_card": "find",
    "resolve_model": "find",
    "save_model": "folder",
    "Prediction": "predict",
    "SegmentResult": "predict",
    "predict_file": "predict",
    "predict_segments": "predict",
}
__all__ = [
    "DEFAULT_MODEL",
    "Method",
    "Model",
    "ModelCard",
    "ModelError",
    "Prediction",
    "SegmentResult",
    "load_model",
    "predict_file",
    "predict_segments",
    "read_card",
    "resolve_model",
    "save_model",
]

if TYPE_CHECKING:
    from mer_plugin.inference.card import Method, ModelCard
    from mer_plugin.inference.find import DEFAULT_MODEL, ModelError, read_card, resolve_model
    from mer_plugin.inference.folder import Model, load_model, save_model
    from mer_plugin.inference.predict import (
        Prediction,
        SegmentResult,
        predict_file,
        predict_segments,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
