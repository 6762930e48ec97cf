"""Backbones: log-mel segments (B, frames, n_mels) -> embeddings (B, embedding_size).

A registry in the style of timm's: one decorator to add a backbone, one call to list them,
one to build one. The built-ins reach mer through the `mer_backbones` plugin hook, like
any third-party backbone, and lookups go through the plugins, so they see both.

    >>> list_backbones()
    ['musicnn-msd', 'shortchunk-cnn']
    >>> model = create_backbone("musicnn-msd")  # shipped weights, no download
    >>> get_backbone("musicnn-msd").spec  # the features it eats

Every backbone module has `embed(x)` (also its `forward`), an `embedding_size` attribute and
`layer_groups()` (fine-tunable child modules, input to output). Shipped weights live in
`mer_plugin/models/<name>/` (`model.safetensors` + `model.json`) inside the package.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable
from functools import partial
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

from mer_plugin.errors import MerError
from mer_plugin.frontend import MUSICNN, FrontEndSpec
from mer_plugin.hookspecs import Backbone, hookimpl

if TYPE_CHECKING:
    from torch import nn

# torch is imported when a backbone is built, not when the plugins load (it takes ~2 s)
Factory = Callable[[], "nn.Module"]

_REGISTRY: dict[str, Backbone] = {}
_SHIPPED: dict[str, str] = {}  # backbone name -> folder under mer_plugin/models


class BackboneError(MerError):
    """A backbone is unknown or cannot be built as asked."""


def register_backbone(
    name: str,
    *,
    spec: FrontEndSpec,
    embedding_size: int,
    finetune_groups: tuple[str, ...],
    weights: str | None = None,
    description: str = "",
) -> Callable[[Factory], Factory]:
    """Decorator: register a factory (no arguments, random weights) under `name`;
    `weights` names its shipped folder under `mer_plugin/models`."""

    def decorator(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        create = partial(_build, name, factory, weights)
        _REGISTRY[name] = Backbone(
            name, create, spec, embedding_size, tuple(finetune_groups), description
        )
        if weights:
            _SHIPPED[name] = weights
        return factory

    return decorator


@hookimpl
def mer_backbones() -> list[Backbone]:
    """The built-in backbones, registered like any plugin's."""
    return list(_REGISTRY.values())


def _build(name: str, factory: Factory, weights: str | None, pretrained: bool) -> nn.Module:
    """A backbone in eval mode; `pretrained` loads its shipped weights (no network)."""
    from safetensors.torch import load as load_safetensors

    model = factory()
    if pretrained:
        if weights is None:
            raise ValueError(f"backbone {name!r} ships no weights; use pretrained=False")
        state = load_safetensors((model_dir(weights) / "model.safetensors").read_bytes())
        model.load_state_dict(state)
    return model.eval()


def get_backbone(name: str) -> Backbone:
    """The backbone registered under `name`, built-in or from a plugin."""
    from mer_plugin.plugins import get_plugins

    found = get_plugins().backbones()
    if name not in found:
        raise BackboneError(f"unknown backbone {name!r} (known: {', '.join(sorted(found))})")
    return found[name]


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names (built-in and plugins') matching a shell-style pattern."""
    from mer_plugin.plugins import get_plugins

    return sorted(n for n in get_plugins().backbones() if fnmatch.fnmatchcase(n, pattern))


def create_backbone(name: str, pretrained: bool = True) -> nn.Module:
    """Build a backbone in eval mode; `pretrained` loads its weights (no network).

    A backbone that ships no weights must be asked for with `pretrained=False`.
    """
    return get_backbone(name).create(pretrained)


def model_dir(folder: str) -> Traversable:
    """A shipped model folder inside the installed package."""
    return files("mer_plugin") / "models" / folder


def model_card(name: str) -> dict:
    """The `model.json` card of a built-in backbone's shipped weights."""
    folder = _SHIPPED.get(name)
    if folder is None:
        raise BackboneError(f"backbone {name!r} ships no weights")
    return json.loads((model_dir(folder) / "model.json").read_text(encoding="utf-8"))


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
    spec=MUSICNN,
    embedding_size=200,
    finetune_groups=("frontend", "midend", "backend", "head"),  # = musicnn.LAYER_GROUPS
    weights="musicnn-msd",
    description="MSD_musicnn (Pons & Serra 2019) ported from musicnn 0.1.0 (ISC); "
    "200-d penultimate embedding, 50 MSD tags via tag_probs()",
)
def _musicnn_msd() -> nn.Module:
    from mer_plugin.backbones.musicnn import MusiCNN

    return MusiCNN()


@register_backbone(
    "musicnn-msd-pool",
    spec=MUSICNN,
    embedding_size=1506,
    finetune_groups=("frontend", "midend", "backend", "head"),  # backend: its pool_bn
    weights="musicnn-msd",
    description="MSD_musicnn's pooled mid-end features (1506-d temporal max and mean "
    "below the penultimate layer): the same network, a richer embedding for mood",
)
def _musicnn_msd_pool() -> nn.Module:
    from mer_plugin.backbones.musicnn import MusiCNN

    return MusiCNN(embedding="pool")


@register_backbone(
    "shortchunk-cnn",
    spec=MUSICNN,
    embedding_size=256,
    finetune_groups=("stem", "body", "embedding"),  # = shortchunk.LAYER_GROUPS
    description="small 3x3 short-chunk CNN for training from scratch",
)
def _shortchunk_cnn() -> nn.Module:
    from mer_plugin.backbones.shortchunk import ShortChunkCNN

    return ShortChunkCNN(embedding_size=256)


__all__ = [
    "BackboneError",
    "get_backbone",
    "create_backbone",
    "list_backbones",
    "model_card",
    "register_backbone",
    "set_trainable",
]
