"""Several backbones side by side: one segment in, their embeddings concatenated out.

Built by name through the backbone lookup (`mer_plugin.backbones.fused_backbone`:
"musicnn-msd+mtt" is musicnn-msd and musicnn-mtt), each part with its own shipped weights.
"""

from __future__ import annotations

import torch
from torch import nn


class FusedBackbone(nn.Module):
    """(B, T, n_mels) -> (B, sum of the parts' embedding sizes), parts in the order given.

    The parts must name the same layer groups. The module's children are those groups,
    one `ModuleDict` each holding every part's group of that name (`frontend["musicnn-msd"]`
    is musicnn-msd's front-end), so a group names the same stage in every part and
    fine-tuning the last k groups fine-tunes the last k of each part. The part modules
    themselves are kept in `parts`, unregistered: every parameter and buffer of theirs
    belongs to one of their groups (checked), so nothing is registered twice.
    """

    embedding_size: int

    def __init__(
        self, parts: dict[str, nn.Module], groups: tuple[str, ...], embedding_size: int
    ) -> None:
        super().__init__()
        for group in groups:
            modules = {name: part.get_submodule(group) for name, part in parts.items()}
            self.add_module(group, nn.ModuleDict(modules))
        self.parts = tuple(parts.items())
        self.embedding_size = embedding_size  # the parts' sizes, summed
        for name, part in parts.items():
            outside = [k for k in part.state_dict() if k.split(".", 1)[0] not in groups]
            if outside:
                raise ValueError(f"{name}: state outside its layer groups: {outside}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(x) for _, part in self.parts], dim=1)
