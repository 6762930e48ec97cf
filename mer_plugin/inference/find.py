"""Finding a model folder and reading its card, without torch: enough to know which
model a run would use (its release, what MER_MODEL says) before loading it."""

from __future__ import annotations

import json
from pathlib import Path

from mer_plugin.errors import MerError
from mer_plugin.inference.card import CardError, ModelCard
from mer_plugin.models import SHIPPED_MODELS

DEFAULT_MODEL = "default"  # the folder under mer_plugin/models that `mer tag` uses


class ModelError(MerError):
    """A model folder is missing, incomplete or inconsistent."""


def shipped_models_dir() -> Path:
    """The folder of the models shipped inside the package."""
    return SHIPPED_MODELS


def resolve_model(name_or_folder: str | Path | None = None) -> Path:
    """A model folder from a path, the name of a shipped model, or None for the default."""
    wanted = str(name_or_folder or DEFAULT_MODEL)
    folder = Path(wanted).expanduser()
    if (folder / "model.json").is_file():
        return folder
    shipped = shipped_models_dir() / wanted
    if (shipped / "model.json").is_file() and (shipped / "model.safetensors").is_file():
        return shipped
    if name_or_folder is None:
        raise ModelError("no default model is installed with mer; pass --model FOLDER")
    raise ModelError(f"{wanted}: not a model folder (model.json) nor a shipped model name")


def model_files(folder: Path) -> tuple[Path, Path]:
    """A model folder's card and weights; ModelError unless both are there."""
    card_path, weights_path = folder / "model.json", folder / "model.safetensors"
    if not card_path.is_file() or not weights_path.is_file():
        raise ModelError(f"{folder}: not a model folder (needs model.json and model.safetensors)")
    return card_path, weights_path


def read_card(folder: str | Path) -> ModelCard:
    """The card (`model.json`) of a model folder; ModelError says what is wrong."""
    folder = Path(folder)
    card_path, _ = model_files(folder)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{folder}: cannot read the model: {error}") from None
    try:
        return ModelCard.from_dict(data)
    except CardError as error:
        raise ModelError(f"{folder}: {error}") from None
