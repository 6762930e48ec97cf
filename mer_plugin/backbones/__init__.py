"""Backbones: log-mel segments (B, frames, n_mels) -> embeddings (B, embedding_size).

Every backbone, mer's own and third-party ones alike, is a `Backbone` record returned by
some plugin's `mer_backbones` hook (mer's are in `mer_plugin.builtin.backbones`); this
module looks them up and builds them. The networks mer ships live in this package
(`musicnn.py`, `shortchunk.py`), their weights in `mer_plugin/models/<folder>/`
(`model.safetensors` + `model.json`) inside the package: nothing is downloaded.

Names joined by "+" fuse backbones (`fused.py`: their embeddings concatenated); a part
that is not a backbone's name takes the family of the part before it, so
"musicnn-msd+mtt" is musicnn-msd with musicnn-mtt, and "vgg-msd-layers+mtt-layers" is
vgg-msd-layers with vgg-mtt-layers.

    >>> list_backbones("vgg*")
    ['vgg-msd', 'vgg-msd-layers', 'vgg-mtt', 'vgg-mtt-layers']
    >>> model = create_backbone("musicnn-msd")  # shipped weights, eval mode
    >>> get_backbone("musicnn-msd").spec  # the features it eats
    >>> get_backbone("musicnn-msd+mtt+vgg-mtt").embedding_size  # 200 + 200 + 256
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping
from functools import partial
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


FUSE = "+"  # joins the names of fused backbones
CALIBRATION_FILE = "int8.safetensors"  # beside shipped weights: their int8 calibration
PRECISIONS = ("auto", "float32", "int8", "bfloat16")  # how a backbone computes (inference.device)


def get_backbone(name: str) -> Backbone:
    """The backbone registered under `name`, built-in or from a plugin, or the fusion of
    several ("a+b", see the module's docstring)."""
    found = get_plugins().backbones()
    if name not in found and FUSE in name:
        return fused_backbone(name, found)
    if name not in found:
        raise BackboneError(f"unknown backbone {name!r} (known: {', '.join(sorted(found))})")
    return found[name]


def fused_parts(name: str, known: Mapping[str, Backbone]) -> list[str]:
    """The full names of a fusion's parts: "musicnn-msd+mtt" -> musicnn-msd, musicnn-mtt."""
    parts: list[str] = []
    for piece in name.split(FUSE):
        if piece not in known and parts:
            piece = _in_family(piece, parts[-1], known)
        if piece not in known:
            raise BackboneError(f"{name}: unknown backbone {piece!r}")
        parts.append(piece)
    if len(set(parts)) != len(parts):
        raise BackboneError(f"{name}: a backbone is fused with itself")
    return parts


def _in_family(piece: str, before: str, known: Mapping[str, Backbone]) -> str:
    """`piece` completed by the longest family of `before` that makes a known name:
    "mtt" after "musicnn-msd" is musicnn-mtt, "mtt-layers" after "vgg-msd-layers" is
    vgg-mtt-layers; when none does, the nearest family's (for the error message)."""
    words = before.split("-")
    names = ["-".join([*words[:n], piece]) for n in range(len(words) - 1, 0, -1)]
    return next((n for n in names if n in known), names[0] if names else piece)


def backbone_parts(name: str) -> list[str]:
    """The backbones a name is made of: itself, or a fused name's parts."""
    found = get_plugins().backbones()
    return fused_parts(name, found) if name not in found and FUSE in name else [name]


def fused_backbone(name: str, known: Mapping[str, Backbone]) -> Backbone:
    """The record of backbones fused side by side: same front-end and layer groups required;
    the embedding is their embeddings concatenated, `--finetune k` unfreezes the last k
    groups of every part."""
    parts = [known[part] for part in fused_parts(name, known)]
    first = parts[0]
    for part in parts[1:]:
        if part.spec != first.spec or part.finetune_groups != first.finetune_groups:
            raise BackboneError(
                f"{name}: {part.name} and {first.name} differ in front-end or layer groups"
            )
    return Backbone(
        name,
        partial(_create_fused, tuple(parts)),
        first.spec,
        embedding_size=sum(part.embedding_size for part in parts),
        finetune_groups=first.finetune_groups,
        description="fused: " + ", ".join(part.name for part in parts),
    )


def _create_fused(parts: tuple[Backbone, ...], pretrained: bool) -> nn.Module:
    from mer_plugin.backbones.fused import FusedBackbone  # torch only when building

    modules = {part.name: part.create(pretrained) for part in parts}
    size = sum(part.embedding_size for part in parts)
    return FusedBackbone(modules, parts[0].finetune_groups, size).eval()


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
    """`factory()` in eval mode; `pretrained` loads the shipped `weights` folder into it,
    with its int8 calibration where it has one (`int8.py`). A backbone without weights
    asked for `pretrained` raises ValueError."""
    from safetensors.torch import load as load_safetensors  # torch only when building

    model = factory()
    if pretrained:
        if weights is None:
            raise ValueError(f"{name!r} ships no weights")
        state = load_safetensors((shipped_folder(weights) / "model.safetensors").read_bytes())
        model.load_state_dict(state)
        calibration = shipped_folder(weights) / CALIBRATION_FILE
        if calibration.is_file():
            from mer_plugin.backbones.int8 import attach_calibration

            attach_calibration(model, calibration)
    return model.eval()


__all__ = [
    "PRECISIONS",
    "BackboneError",
    "backbone_parts",
    "build",
    "create_backbone",
    "fused_backbone",
    "fused_parts",
    "get_backbone",
    "list_backbones",
    "shipped_folder",
    "weights_card",
]
