"""Backbones for training: look one up by name, build it, freeze or unfreeze its last groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mer_plugin.backbones import BackboneError
from mer_plugin.hookspecs import Backbone


@dataclass
class BuiltBackbone:
    """A backbone module with how it was built."""

    backbone: Backbone
    module: nn.Module
    pretrained: bool
    trainable_groups: tuple[str, ...]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def set_mode(self, train: bool) -> None:
        """Train mode only for the unfrozen groups (frozen batch norms keep their statistics)."""
        self.module.eval()
        if train:
            for name in self.trainable_groups:
                self.module.get_submodule(name).train()


def build_backbone(
    backbone: Backbone, pretrained: bool | None, finetune: int, seed: int
) -> BuiltBackbone:
    """Build the module: shipped weights when `pretrained` (None: when it has them), else a
    seeded random start; every parameter frozen except the last `finetune` layer groups."""
    torch.manual_seed(seed)
    if pretrained is None:
        try:
            module, pretrained = backbone.create(True), True
        except ValueError:  # ships no weights
            torch.manual_seed(seed)
            module, pretrained = backbone.create(False), False
    else:
        try:
            module = backbone.create(pretrained)
        except ValueError as error:
            raise BackboneError(
                f"backbone {backbone.name!r} cannot start pretrained ({error}): "
                "leave pretrained unset, or --set pretrained=false to train from scratch"
            ) from None
    groups = _embedding_groups(module, backbone) if finetune else backbone.finetune_groups
    if finetune > len(groups):
        raise BackboneError(
            f"backbone {backbone.name} has {len(groups)} layer groups; cannot fine-tune {finetune}"
        )
    chosen = groups[len(groups) - finetune :] if finetune else ()
    module.requires_grad_(False)
    for name in chosen:
        module.get_submodule(name).requires_grad_(True)
    built = BuiltBackbone(backbone, module, pretrained, tuple(chosen))
    built.set_mode(False)
    return built


Stage = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FrozenSplit:
    """The embedding cut where training starts: `frozen` (the groups that do not learn, in
    eval mode) then `trainable`; `at` names the first trainable group."""

    at: str
    frozen: Stage
    trainable: Stage


def frozen_split(built: BuiltBackbone) -> FrozenSplit | None:
    """Where a fine-tuned module's frozen groups end, when it names its stages
    (`stages()`: (group, function) from input to output, composing the embedding) and at
    least its first stage is frozen; None otherwise (the whole network runs every step)."""
    stages = getattr(built.module, "stages", None)
    if stages is None or not built.trainable_groups:
        return None
    named = tuple(stages())
    names = [name for name, _ in named]
    first = built.trainable_groups[0]
    cut = names.index(first) if first in names else 0
    if cut == 0:
        return None
    return FrozenSplit(first, _chain(named[:cut]), _chain(named[cut:]))


def _chain(stages: tuple[tuple[str, Stage], ...]) -> Stage:
    def run(x: torch.Tensor) -> torch.Tensor:
        for _, stage in stages:
            x = stage(x)
        return x

    return run


def _embedding_groups(module: nn.Module, backbone: Backbone) -> tuple[str, ...]:
    """The layer groups the embedding depends on (musicnn's tag layer, say, is not one)."""
    module.requires_grad_(True)
    module.zero_grad(set_to_none=True)
    spec = backbone.spec
    module.eval()
    module(torch.randn(2, spec.segment_frames, spec.n_mels)).sum().backward()
    used = tuple(
        name
        for name in backbone.finetune_groups
        if any(p.grad is not None for p in module.get_submodule(name).parameters())
    )
    module.zero_grad(set_to_none=True)
    return used
