"""Backbones: log-mel segments (B, frames, n_mels) -> embeddings (B, embedding_size).

A plain registry in the style of timm's: one decorator to add a backbone, one call to list
them, one to build one.

    >>> list_backbones()
    ['musicnn-msd', 'shortchunk-cnn']
    >>> model = create_backbone("musicnn-msd")  # shipped weights, no download
    >>> backbone_info("musicnn-msd").frontend  # the features it eats

Every backbone module has `embed(x)` (also its `forward`), an `embedding_size` attribute and
`layer_groups()` (fine-tunable child modules, input to output). Shipped weights live in
`mer_plugin/models/<name>/` (`model.safetensors` + `model.json`) inside the package.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from safetensors.torch import load as load_safetensors
from torch import nn

from mer_plugin.backbones import musicnn, shortchunk
from mer_plugin.frontend import MUSICNN, FrontEndSpec

Factory = Callable[[], nn.Module]


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone is: how to build it, what it eats, what it gives, what can be tuned."""

    name: str
    factory: Factory  # builds the module with random weights
    frontend: FrontEndSpec
    embedding_size: int
    layer_groups: tuple[str, ...]  # fine-tunable groups, input to output
    weights: str | None = None  # folder under mer_plugin/models with shipped weights
    description: str = ""


_REGISTRY: dict[str, BackboneInfo] = {}


def register_backbone(
    name: str,
    *,
    frontend: FrontEndSpec,
    embedding_size: int,
    layer_groups: tuple[str, ...],
    weights: str | None = None,
    description: str = "",
) -> Callable[[Factory], Factory]:
    """Decorator: register a factory (no arguments, random weights) under `name`."""

    def decorator(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        info = BackboneInfo(
            name, factory, frontend, embedding_size, tuple(layer_groups), weights, description
        )
        _REGISTRY[name] = info
        return factory

    return decorator


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def backbone_info(name: str) -> BackboneInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_backbones())
        raise KeyError(f"unknown backbone {name!r} (known: {known})") from None


def model_dir(folder: str) -> Traversable:
    """A shipped model folder inside the installed package."""
    return files("mer_plugin") / "models" / folder


def model_card(name: str) -> dict:
    """The `model.json` card of a backbone's shipped weights."""
    folder = backbone_info(name).weights
    if folder is None:
        raise ValueError(f"backbone {name!r} ships no weights")
    return json.loads((model_dir(folder) / "model.json").read_text(encoding="utf-8"))


def create_backbone(name: str, pretrained: bool = True) -> nn.Module:
    """Build a backbone in eval mode; `pretrained` loads its shipped weights (no network).

    A backbone that ships no weights must be asked for with `pretrained=False`.
    """
    info = backbone_info(name)
    model = info.factory()
    if pretrained:
        if info.weights is None:
            raise ValueError(f"backbone {name!r} ships no weights; use pretrained=False")
        state = load_safetensors((model_dir(info.weights) / "model.safetensors").read_bytes())
        model.load_state_dict(state)
    return model.eval()


def set_trainable(model: nn.Module, groups: Iterable[str]) -> list[nn.Parameter]:
    """Freeze every parameter except those of the named layer groups; return the trainable."""
    chosen = set(groups)
    available = model.layer_groups()
    if unknown := chosen - set(available):
        raise ValueError(f"unknown layer groups {sorted(unknown)}; have {list(available)}")
    model.requires_grad_(False)
    for name in chosen:
        available[name].requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


@register_backbone(
    "musicnn-msd",
    frontend=MUSICNN,
    embedding_size=200,
    layer_groups=musicnn.LAYER_GROUPS,
    weights="musicnn-msd",
    description="MSD_musicnn (Pons & Serra 2019) ported from musicnn 0.1.0 (ISC); "
    "200-d penultimate embedding, 50 MSD tags via tag_probs()",
)
def _musicnn_msd() -> nn.Module:
    return musicnn.MusiCNN()


@register_backbone(
    "shortchunk-cnn",
    frontend=MUSICNN,
    embedding_size=256,
    layer_groups=shortchunk.LAYER_GROUPS,
    description="small 3x3 short-chunk CNN for training from scratch",
)
def _shortchunk_cnn() -> nn.Module:
    return shortchunk.ShortChunkCNN(embedding_size=256)


__all__ = [
    "BackboneInfo",
    "backbone_info",
    "create_backbone",
    "list_backbones",
    "model_card",
    "register_backbone",
    "set_trainable",
]
