"""A trained mer model: a folder with `model.safetensors` (weights) and `model.json` (card).

The safetensors file holds the head (`head.*`), stage 2's song classifier (`song.*`:
scaler and logistic regression), the song's embedding classifier (`song_embedding.*`,
the same kind) and, only when the backbone was trained or has no shipped weights, the
backbone (`backbone.*`); otherwise the card names the shipped backbone and
the digest of its weights. Never pickle. Class order is data: the card's `classes`.

    model = load_model(resolve_model(None))  # the shipped default, or a folder, or a name
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from mer_plugin.backbones import BackboneError, get_backbone
from mer_plugin.errors import MerError
from mer_plugin.files import written_whole
from mer_plugin.inference.card import FORMAT, CardFacts, ModelCard
from mer_plugin.inference.find import (  # noqa: F401  (re-exported: found here before)
    DEFAULT_MODEL,
    ModelError,
    model_files,
    read_card,
    resolve_model,
    shipped_models_dir,
)
from mer_plugin.inference.heads import Head, SongClassifier
from mer_plugin.plugins import get_plugins
from mer_plugin.song_extras import SongExtras


@dataclass
class Model(CardFacts):
    folder: Path
    card: ModelCard
    backbone: nn.Module  # eval mode
    head: nn.Module  # eval mode
    song: SongClassifier | None  # stage 2, when the model has one
    extras: SongExtras | None = None  # song-level extractors stage 2 takes
    # on the song's embedding moments, averaged with the song's probabilities, when it has one
    song_embedding: SongClassifier | None = None


# ------------------------------------------------------------------------------ saving


def save_model(folder: str | Path, card: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write the folder whole or not at all (`files.written_whole`): a folder already there
    is replaced."""
    folder = Path(folder)
    try:
        with written_whole(folder, replace_folder=True) as part:
            part.mkdir(parents=True)
            contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
            # bytes written by Python, so the file gets the umask's mode like model.json
            # (safetensors' save_file creates it readable by its owner only)
            weights = save(contiguous, metadata={"format": str(FORMAT)})
            (part / "model.safetensors").write_bytes(weights)
            meta = json.dumps({"format": FORMAT, **card}, indent=2) + "\n"
            (part / "model.json").write_text(meta)
    except OSError as error:
        raise ModelError(f"{folder}: cannot write the model: {error.strerror or error}") from None
    return folder


# ------------------------------------------------------------------------------ loading


def load_model(folder: str | Path) -> Model:
    """Load a model folder; the backbone comes from the folder or from the shipped weights."""
    folder = Path(folder)
    card, tensors = _read(folder)
    info = card.backbone
    if info.plugin and info.name not in get_plugins().backbones():
        raise ModelError(
            f"{folder}: the model needs backbone {info.name!r} from the plugin {info.plugin}, "
            f"which is not installed (pip install {info.plugin.split()[0]})"
        )
    try:
        backbone = get_backbone(info.name)
        module = backbone.create(info.pretrained and not info.weights_in_model)
    except (BackboneError, ValueError) as error:
        raise ModelError(f"{folder}: backbone {info.name}: {error}") from None
    if info.weights_in_model:
        module.load_state_dict(_prefixed(tensors, "backbone."))
    elif state_digest(module) != info.weights_sha256:
        raise ModelError(f"{folder}: the installed {info.name} weights differ from the trained")
    head_state = _prefixed(tensors, "head.")
    dim, hidden = head_state["layers.0.weight"].shape[1], head_state["layers.0.weight"].shape[0]
    head = Head(dim, len(card.classes), hidden, 0.0)
    head.load_state_dict(head_state)
    song, song_embedding = (_song_classifier(tensors, p) for p in ("song.", "song_embedding."))
    try:
        extras = SongExtras.from_card(list(card.song_extractors))
    except MerError as error:
        raise ModelError(f"{folder}: {error}") from None
    return Model(folder, card, module.eval(), head.eval(), song, extras or None, song_embedding)


def _song_classifier(tensors: dict[str, torch.Tensor], prefix: str) -> SongClassifier | None:
    """The song classifier saved under `prefix`, if the model has one."""
    return SongClassifier.from_tensors(tensors, prefix) if f"{prefix}coef" in tensors else None


def _read(folder: Path) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    _, weights_path = model_files(folder)
    try:
        tensors = load_file(weights_path)
    except (OSError, ValueError, SafetensorError) as error:
        raise ModelError(f"{folder}: cannot read the model: {error}") from None
    return read_card(folder), tensors


def state_digest(module: nn.Module) -> str:
    """SHA-256 over a module's state (names, shapes and float32 bytes), in key order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
