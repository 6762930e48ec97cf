"""Backbones: log-mel segments (B, frames, n_mels) -> embeddings (B, embedding_size).

Every backbone, mer's own and third-party ones alike, is a `Backbone` record returned by
some plugin's `mer_backbones` hook (mer's are in `mer_plugin.builtin.backbones`); this
module looks them up and builds them. The networks mer ships live in this package
(`musicnn.py`, `shortchunk.py`), their weights in `mer_plugin/models/<folder>/`
(`model.safetensors` + `model.json`) inside the package: nothing is downloaded.

    >>> list_backbones()
    ['musicnn-msd', 'musicnn-msd-pool', 'shortchunk-cnn']
    >>> model = create_backbone("musicnn-msd")  # shipped weights, eval mode
    >>> get_backbone("musicnn-msd").spec  # the features it eats
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mer_plugin.errors import MerError
from mer_plugin.hookspecs import Backbone
from mer_plugin.models import SHIPPED_MODELS
from mer_plugin.plugins import get_plugins

if TYPE_CHECKING:
    from torch import nn


class BackboneError(MerError):
    """A backbone is unknown or cannot be built as asked."""


def get_backbone(name: str) -> Backbone:
    """The backbone registered under `name`, built-in or from a plugin."""
    found = get_plugins().backbones()
    if name not in found:
        raise BackboneError(f"unknown backbone {name!r} (known: {', '.join(sorted(found))})")
    return found[name]


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names (built-in and plugins') matching a shell-style pattern."""
    return sorted(n for n in get_plugins().backbones() if fnmatch.fnmatchcase(n, pattern))


def create_backbone(name: str, pretrained: bool = True) -> nn.Module:
    """Build a backbone in eval mode; `pretrained` loads its weights (no network).

    A backbone that ships no weights must be asked for with `pretrained=False`.
    """
    return get_backbone(name).create(pretrained)


def shipped_folder(folder: str) -> Path:
    """A model folder shipped inside the installed package (`mer_plugin/models/<folder>`)."""
    return SHIPPED_MODELS / folder


def weights_card(folder: str) -> dict:
    """The `model.json` card of shipped backbone weights (tags, licence, digest…)."""
    path = shipped_folder(folder) / "model.json"
    if not path.is_file():
        raise BackboneError(f"no shipped weights named {folder!r}")
    return json.loads(path.read_text(encoding="utf-8"))


def build(
    name: str, factory: Callable[[], nn.Module], weights: str | None, pretrained: bool
) -> nn.Module:
    """`factory()` in eval mode; `pretrained` loads the shipped `weights` folder into it.
    A backbone without weights asked for `pretrained` raises ValueError."""
    from safetensors.torch import load as load_safetensors  # torch only when building

    model = factory()
    if pretrained:
        if weights is None:
            raise ValueError(f"{name!r} ships no weights")
        state = load_safetensors((shipped_folder(weights) / "model.safetensors").read_bytes())
        model.load_state_dict(state)
    return model.eval()


__all__ = [
    "BackboneError",
    "build",
    "create_backbone",
    "get_backbone",
    "list_backbones",
    "shipped_folder",
    "weights_card",
]
