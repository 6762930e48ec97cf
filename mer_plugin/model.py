"""A trained mer model: a folder with `model.safetensors` (weights) and `model.json` (card).

The safetensors file holds the head (`head.*`), SSSL's song classifier (`song.*`: scaler
and logistic regression) and, only when the backbone was trained or has no shipped
weights, the backbone (`backbone.*`); otherwise the card names the shipped backbone and
the digest of its weights. Never pickle. Class order is data: the card's `classes`.

    model = load_model("models/4q-sssl")
    result = predict_file(model, "song.flac")
    result.quadrant, result.valence, result.arousal, result.timeline[0]
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mer_plugin.errors import MerError
from mer_plugin.frontend import FrontEndSpec
from mer_plugin.kernels.confidence import confidence
from mer_plugin.song_extras import SongExtras

FORMAT = 1
MOODS = {"Q1": "Happy", "Q2": "Angry", "Q3": "Sad", "Q4": "Calm"}
BATCH = 16  # segments per backbone call: as fast as 64 on CPU, a quarter of the activations


class ModelError(MerError):
    """A model folder is missing, incomplete or inconsistent."""


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


@dataclass
class Model:
    folder: Path
    card: dict
    backbone: nn.Module  # eval mode
    head: nn.Module  # eval mode
    song: object | None  # heads.SongClassifier
    extras: SongExtras | None = None  # song-level extractors stage 2 takes

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.card["classes"])

    @property
    def method(self) -> str:
        return self.card["method"]

    @property
    def spec(self) -> FrontEndSpec:
        return FrontEndSpec.from_dict(self.card["backbone"]["frontend"])

    @property
    def label(self) -> str:
        return f"{self.card['name']} {self.card['version']}"

    @property
    def song_window(self) -> int:
        """Segments per training clip (median): the length stage 2 learned songs at."""
        data = self.card["training_data"]
        per_clip = data.get("segments_per_clip") or data["segments"] / max(1, data["clips"])
        return max(1, round(per_clip))


# ------------------------------------------------------------------------------ saving


def save_model(folder: str | Path, card: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write the folder atomically (a temporary sibling renamed into place)."""
    folder = Path(folder)
    part = folder.with_name(f".{folder.name}.part-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(contiguous, part / "model.safetensors", metadata={"format": str(FORMAT)})
        (part / "model.json").write_text(json.dumps({"format": FORMAT, **card}, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(part, folder)
    except OSError as error:
        raise ModelError(f"{folder}: cannot write the model: {error.strerror or error}") from None
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return folder


# ------------------------------------------------------------------------------ loading


def load_model(folder: str | Path) -> Model:
    """Load a model folder; the backbone comes from the folder or from the shipped weights."""
    from mer_plugin.backbones import BackboneError, get_backbone
    from mer_plugin.training.backbone import state_digest
    from mer_plugin.training.heads import Head, SongClassifier

    folder = Path(folder)
    card, tensors = _read(folder)
    info = card["backbone"]
    try:
        backbone = get_backbone(info["name"])
        module = backbone.create(bool(info["pretrained"]) and not info["weights_in_model"])
    except (BackboneError, ValueError) as error:
        raise ModelError(f"{folder}: backbone {info['name']}: {error}") from None
    if info["weights_in_model"]:
        module.load_state_dict(_prefixed(tensors, "backbone."))
    elif state_digest(module) != info["weights_sha256"]:
        raise ModelError(f"{folder}: the installed {info['name']} weights differ from the trained")
    head_state = _prefixed(tensors, "head.")
    dim, hidden = head_state["layers.0.weight"].shape[1], head_state["layers.0.weight"].shape[0]
    head = Head(dim, len(card["classes"]), hidden, 0.0)
    head.load_state_dict(head_state)
    song = SongClassifier.from_tensors(tensors) if "song.coef" in tensors else None
    try:
        extras = SongExtras.from_card(card.get("song_extractors") or [])
    except MerError as error:
        raise ModelError(f"{folder}: {error}") from None
    return Model(folder, card, module.eval(), head.eval(), song, extras or None)


def _read(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    card_path, weights_path = folder / "model.json", folder / "model.safetensors"
    if not card_path.is_file() or not weights_path.is_file():
        raise ModelError(f"{folder}: not a model folder (needs model.json and model.safetensors)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        tensors = load_file(weights_path)
    except (OSError, ValueError, SafetensorError) as error:
        raise ModelError(f"{folder}: cannot read the model: {error}") from None
    if card.get("format") != FORMAT:
        raise ModelError(f"{folder}: model format {card.get('format')!r}, expected {FORMAT}")
    return card, tensors


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ------------------------------------------------------------------------------ predicting


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
    if model.method == "clip":
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
    from mer_plugin.training.heads import song_features

    windows = np.array_split(segment_probs, max(1, len(segment_probs) // model.song_window))
    features = np.stack([song_features(w) for w in windows])
    if model.extras:
        if extras is None:
            raise ModelError(f"the model needs the features of {', '.join(model.extras.names)}")
        features = np.hstack([features, np.tile(extras, (len(windows), 1))])
    return model.song.predict_proba(features).mean(axis=0)  # type: ignore[attr-defined]


def _join(segments: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    hop = spec.segment_hop_frames
    if hop >= spec.segment_frames:
        return segments.reshape(-1, segments.shape[2])
    return np.concatenate([segments[:-1, :hop].reshape(-1, segments.shape[2]), segments[-1]])


def predict_file(model: Model, path: str | Path) -> Prediction:
    """Predict a file's emotion; raises `AudioError` when it cannot be read."""
    from mer_plugin.features import clip_frames, file_segments

    spec = model.spec
    if model.method == "clip":
        frames = clip_frames(path, spec)
        starts = range(0, len(frames) - spec.segment_frames + 1, spec.segment_hop_frames)
        segments = np.stack([frames[s : s + spec.segment_frames] for s in starts])
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
    quadrants = all(q in named for q in MOODS)
    moods = model.card.get("moods", MOODS)
    return Prediction(
        probabilities=named,
        label=label,
        mood=moods.get(label),
        valence=named["Q1"] + named["Q4"] if quadrants else None,
        arousal=named["Q1"] + named["Q2"] if quadrants else None,
        confidence=song_conf,
        timeline=timeline,
        model=model.label,
    )


def _named(classes: tuple[str, ...], probs: np.ndarray) -> dict[str, float]:
    return {name: float(p) for name, p in zip(classes, probs, strict=True)}


# ----------------------------------------------------------------------------- finding

DEFAULT_MODEL = "default"  # the folder under mer_plugin/models that `mer tag` uses


def shipped_models_dir() -> Path:
    """The folder of the models shipped inside the package."""
    return Path(__file__).resolve().parent / "models"


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
