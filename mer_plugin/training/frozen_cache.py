"""The output of a fine-tuned backbone's frozen groups, cached per item and view.

Fine-tuning musicnn's mid-end and back-end (`--finetune 2`) leaves its front-end frozen,
~95 % of the network's arithmetic. Its output for every segment (or whole clip) and view
is computed once, stored in half precision and memory-mapped; every training step then
runs only the groups that learn. Views are the embedding cache's (view 0 clean, view v of
clip row r drawn from the seed (seed, v, r)), so each is what the whole network would
have been given on the fly for those draws.

One folder per (frames, backbone weights, split, views' augmentation and seed, level,
dtype) under ``<cache root>/frozen``; a view is complete once its offsets file exists
(written last), so an interrupted build is redone, never read half-written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mer_plugin.files import written_whole
from mer_plugin.training.backbone import BuiltBackbone, FrozenSplit
from mer_plugin.training.cache import (
    FrameCache,
    SegmentTable,
    cache_key,
    run_frozen,
    stack_shortest,
    view_batches,
    views_depend_on,
)
from mer_plugin.training.progress import Reporter
from mer_plugin.training.settings import AugmentSettings
from mer_plugin.user_cache import cache_folder

DTYPES = ("float16", "float32")


@dataclass
class FrozenOutputs:
    """Per view: every item's frozen output, (time, channels) rows back to back."""

    views: list[np.ndarray]  # (total time, channels), memory-mapped
    offsets: list[np.ndarray]  # (items + 1,): item i is rows offsets[i]:offsets[i + 1]

    @property
    def n_views(self) -> int:
        return len(self.views)

    def batch(self, ids: np.ndarray, views: np.ndarray) -> np.ndarray:
        """Items `ids` under `views` as float32 (B, channels, time), cut to the shortest."""
        pieces = [
            self.views[v][self.offsets[v][i] : self.offsets[v][i + 1]]
            for i, v in zip(ids, views, strict=True)
        ]
        return stack_shortest(pieces).astype(np.float32).transpose(0, 2, 1)


def frozen_cache(
    cache: FrameCache,
    table: SegmentTable | None,
    built: BuiltBackbone,
    split: FrozenSplit,
    views: int,
    augmentation: AugmentSettings,
    seed: int,
    device: torch.device,
    dtype: str = "float16",
    root: str | Path | None = None,
    reporter: Reporter | None = None,
) -> FrozenOutputs:
    """The frozen groups' output of every segment in `table` (every whole clip when None)
    under `views` views, built on first use."""
    if dtype not in DTYPES:
        raise ValueError(f"frozen cache dtype {dtype!r}: one of {', '.join(DTYPES)}")
    level = "clips" if table is None else "segments"
    depends = views_depend_on(cache.key, built, augmentation, seed, level)
    key = cache_key({**depends, "at": split.at, "dtype": dtype})
    folder = cache_folder(root) / "frozen" / key
    folder.mkdir(parents=True, exist_ok=True)
    reporter = reporter or Reporter(quiet=True)
    built.module.to(device)
    arrays, offsets = [], []
    for view in range(views):
        index = folder / f"view{view}.offsets.npy"
        if not index.is_file():
            label = f"{built.backbone.name} {level} before its {split.at}, view {view}"
            with reporter.bar(len(cache.lengths), label) as bar:
                draws = (view, augmentation, seed)
                _build_view(cache, table, split, draws, device, dtype, folder, bar.advance)
        channels, *starts = np.load(index)
        offsets.append(np.array(starts, dtype=np.int64))
        shape = (int(starts[-1]), int(channels))
        arrays.append(np.memmap(folder / f"view{view}.{dtype}", dtype, "r", shape=shape))
    return FrozenOutputs(arrays, offsets)


def _build_view(
    cache: FrameCache,
    table: SegmentTable | None,
    split: FrozenSplit,
    draws: tuple[int, AugmentSettings, int],
    device: torch.device,
    dtype: str,
    folder: Path,
    advance: Callable[[int], None],
) -> None:
    """Write view `draws[0]` (drawn with `draws`' augmentation and seed): the items' rows,
    then "channels, offsets..." as the view's index."""
    view = draws[0]
    offsets, channels = [0], 0
    with written_whole(folder / f"view{view}.{dtype}") as part, open(part, "wb") as out:
        for rows, batch in view_batches(cache, table, *draws):
            outputs = run_frozen(split.frozen, batch, device)  # (B, channels, time)
            channels = outputs.shape[1]
            for item in outputs:
                out.write(np.ascontiguousarray(item.T, dtype=dtype).tobytes())
                offsets.append(offsets[-1] + item.shape[1])
            advance(rows)
    with written_whole(folder / f"view{view}.offsets.npy") as part, open(part, "wb") as out:
        np.save(out, np.array([channels, *offsets], dtype=np.int64))
