"""A model card (`model.json`) as inference reads it: a frozen, validated record.

The card is written by training as plain JSON (`training.train.model_card`); the loader
reads it once into a `ModelCard`, which checks what prediction needs and keeps the whole
JSON (`data`) for everything else (history, metrics, licences, command).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mer_plugin.emotion import MOODS
from mer_plugin.errors import MerError
from mer_plugin.frontend import FrontEndSpec

FORMAT = 1  # of model folders: bump when the layout changes


class Method(StrEnum):
    """How a model was trained, and so how it predicts a song."""

    CLIP = "clip"  # one prediction over the whole clip's frames
    SEGMENT = "segment"  # segments inherit their clip's label; the song is their mean
    SSSL = "sssl"  # semi-supervised self-learning on segments, song classifier on top


class CardError(MerError):
    """A model card lacks or misstates what prediction needs."""


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    pretrained: bool
    weights_in_model: bool
    weights_sha256: str | None
    spec: FrontEndSpec
    plugin: str | None = None  # "distribution version" of a third-party backbone


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    method: Method
    classes: tuple[str, ...]
    moods: dict[str, str]
    backbone: BackboneInfo
    song_window: int  # segments per training clip (median): stage 2's song length
    song_extractors: tuple[dict, ...] = ()
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def release(self) -> str:
        """What tags (MER_MODEL) and caches call this model: "name version"."""
        return f"{self.name} {self.version}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """The card of a `model.json`; `CardError` names what is missing or wrong."""
        if data.get("format") != FORMAT:
            raise CardError(f"model format {data.get('format')!r}, expected {FORMAT}")
        try:
            info, used = data["backbone"], data["training_data"]
            per_clip = used.get("segments_per_clip") or used["segments"] / max(1, used["clips"])
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                method=Method(data["method"]),
                classes=tuple(data["classes"]),
                moods=dict(data.get("moods", MOODS)),
                backbone=BackboneInfo(
                    name=info["name"],
                    pretrained=bool(info["pretrained"]),
                    weights_in_model=bool(info["weights_in_model"]),
                    weights_sha256=info.get("weights_sha256"),
                    spec=FrontEndSpec.from_dict(info["frontend"]),
                    plugin=info.get("plugin"),
                ),
                song_window=max(1, round(per_clip)),
                song_extractors=tuple(data.get("song_extractors") or ()),
                data=data,
            )
        except KeyError as error:
            raise CardError(f"the card has no {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise CardError(f"the card is malformed: {error}") from None


class CardFacts:
    """What a model's card says, the same for a loaded model and one not loaded yet."""

    card: ModelCard

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    @property
    def method(self) -> Method:
        return self.card.method

    @property
    def spec(self) -> FrontEndSpec:
        return self.card.backbone.spec

    @property
    def release(self) -> str:
        return self.card.release

    @property
    def song_window(self) -> int:
        """Segments per training clip (median): the length stage 2 learned songs at."""
        return self.card.song_window
