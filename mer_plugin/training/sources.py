"""Where a head's input comes from: cached embeddings (frozen backbone), or a backbone
that learns, run on the fly whole or from its frozen groups' cached output (fine-tuning).
All hand out features of items (segments or whole clips) under a view (0 clean, > 0
augmented), so the methods' code is the same for all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mer_plugin.training.backbone import BuiltBackbone, Stage
from mer_plugin.training.cache import (
    FrameCache,
    SegmentTable,
    stack_shortest,
    view_clip,
    view_segments,
)
from mer_plugin.training.frozen_cache import FrozenOutputs
from mer_plugin.training.settings import AugmentSettings


@dataclass
class CachedSource:
    """Features from a cached array (views, items, dim); nothing here trains."""

    embeddings: np.ndarray
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def n_views(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[2]

    def features(self, ids: np.ndarray, views: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.embeddings[views, ids]).to(self.device)

    def parameters(self) -> list[nn.Parameter]:
        return []

    def set_mode(self, train: bool) -> None:
        pass

    def reset(self) -> None:
        pass

    def snapshot(self) -> dict[str, torch.Tensor] | None:
        return None

    def load(self, state: dict[str, torch.Tensor] | None) -> None:
        pass


class _LearningBackbone:
    """What a source whose backbone learns shares: its weights, modes and precision."""

    built: BuiltBackbone
    device: torch.device
    amp: bool  # bfloat16 autocast of the backbone on CUDA
    initial: dict[str, torch.Tensor]

    def __post_init__(self) -> None:  # the dataclasses below call it
        self.built.module.to(self.device)
        self.initial = self.snapshot()

    @property
    def dim(self) -> int:
        return self.built.backbone.embedding_size

    def _run(self, network: Stage, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(batch).to(self.device)
        amp = self.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, torch.bfloat16, enabled=amp):
            return network(x).float()

    def parameters(self) -> list[nn.Parameter]:
        return self.built.trainable_parameters()

    def set_mode(self, train: bool) -> None:
        self.built.set_mode(train)

    def reset(self) -> None:
        """Back to the weights it started from (each fold and method trains afresh)."""
        self.load(self.initial)

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.built.module.state_dict().items()}

    def load(self, state: dict[str, torch.Tensor] | None) -> None:
        if state is not None:
            self.built.module.load_state_dict(state)


@dataclass
class OnlineSource(_LearningBackbone):
    """Features computed by the whole backbone on the fly; each view > 0 is a fresh
    augmentation.

    Items are segment ids of `table`, or clip rows when `table` is None (whole clips; a
    batch of clips is cut to its shortest clip).
    """

    built: BuiltBackbone
    cache: FrameCache
    table: SegmentTable | None
    augmentation: AugmentSettings
    rng: np.random.Generator
    n_views: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: bool = True
    initial: dict[str, torch.Tensor] = field(init=False)

    def features(self, ids: np.ndarray, views: np.ndarray) -> torch.Tensor:
        if self.table is not None:
            batch = view_segments(self.cache, self.table, ids, views, self.augmentation, self.rng)
        else:
            clips = [
                view_clip(self.cache, r, v, self.augmentation, self.rng)
                for r, v in zip(ids, views, strict=True)
            ]
            batch = stack_shortest(clips)
        return self._run(self.built.module, batch)


@dataclass
class FrozenCacheSource(_LearningBackbone):
    """Features from the cached output of the backbone's frozen groups, run through the
    groups that learn (mer_plugin/training/frozen_cache.py): fine-tuning at the cost of
    its trainable part. Views are the cached ones."""

    built: BuiltBackbone
    outputs: FrozenOutputs
    trainable: Stage
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: bool = True
    initial: dict[str, torch.Tensor] = field(init=False)

    @property
    def n_views(self) -> int:
        return self.outputs.n_views

    def features(self, ids: np.ndarray, views: np.ndarray) -> torch.Tensor:
        return self._run(self.trainable, self.outputs.batch(ids, views))


FeatureSource = CachedSource | OnlineSource | FrozenCacheSource


@contextmanager
def compute_threads(source: FeatureSource) -> Iterator[None]:
    """One torch thread while only a small head trains on cached embeddings: its tiny
    matrix products run several times faster than with threads contending for 2 cores."""
    before = torch.get_num_threads()
    if isinstance(source, CachedSource) and source.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
