"""From a dataset and a backbone to a method `Context`: frames cached, segments listed,
features cached (frozen backbone) or computed by the learning groups, from the frozen
groups' cached output where the backbone names its stages, else by the whole network on
the fly (fine-tuning)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mer_plugin.backbones import get_backbone
from mer_plugin.datasets import Dataset, DatasetError
from mer_plugin.hookspecs import Backbone
from mer_plugin.inference.device import pick_device
from mer_plugin.song_extras import SongExtras
from mer_plugin.training.backbone import BuiltBackbone, build_backbone, frozen_split
from mer_plugin.training.cache import (
    FrameCache,
    SegmentTable,
    embedding_cache,
    extras_cache,
    frame_cache,
)
from mer_plugin.training.frozen_cache import frozen_cache
from mer_plugin.training.methods import Context
from mer_plugin.training.progress import Reporter
from mer_plugin.training.settings import Settings
from mer_plugin.training.sources import CachedSource, FrozenCacheSource, OnlineSource


@dataclass
class Prepared:
    ctx: Context
    built: BuiltBackbone
    frames: FrameCache
    seconds: float  # spent on caches (log-mel, embeddings, extractor features)
    extras: SongExtras | None = None  # the extractors behind `ctx.extras`
    more_data: dict = field(default_factory=dict)  # train-only sets and unlabelled music


def _with_train_only(dataset: Dataset, more: Sequence[Dataset]) -> Dataset:
    """`dataset` followed by the clips of `more`, whose groups are prefixed by their
    dataset's name (no group is shared across datasets by accident)."""
    clips = list(dataset.clips)
    skipped = list(dataset.skipped)
    for extra in more:
        if extra.classes != dataset.classes:
            raise DatasetError(
                f"{extra.name}: classes {', '.join(extra.classes)}, not those of "
                f"{dataset.name} ({', '.join(dataset.classes)})"
            )
        clips += [replace(c, group=f"{extra.name}/{c.group}") for c in extra.clips]
        skipped += extra.skipped
    return Dataset(dataset.name, clips, dataset.classes, skipped)


def resolve_backbone(backbone: str | Backbone) -> Backbone:
    return get_backbone(backbone) if isinstance(backbone, str) else backbone


def prepare(
    dataset: Dataset,
    backbone: str | Backbone,
    settings: Settings,
    cache_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    clip_level: bool = True,
    extras: SongExtras | None = None,
    train_only: Sequence[Dataset] = (),
    unlabelled: Dataset | None = None,
) -> Prepared:
    """Cache what can be cached and build the sources of every method; with `extras`,
    the song-level extractor features of every clip (`ctx.extras`) for stage 2.
    `train_only` datasets (same classes) join every training set and no test fold;
    `unlabelled` music feeds sssl's unlabelled branch.

    Unreadable clips are dropped (listed in `ctx.dataset.skipped` with the reason); the
    context's dataset holds the readable labelled clips in cache-row order, those of
    `dataset` first; the unlabelled ones follow it (`ctx.unlabelled`).
    """
    reporter = reporter or Reporter(quiet=True)
    started = time.perf_counter()
    info = resolve_backbone(backbone)
    built = build_backbone(info, settings.pretrained, settings.finetune, settings.seed)
    device = pick_device(settings.device)
    labelled = _with_train_only(dataset, train_only)
    everything = labelled.clips + (unlabelled.clips if unlabelled else [])
    sources = [dataset, *train_only, *([unlabelled] if unlabelled else [])]
    frames = frame_cache(
        replace(labelled, clips=everything), info.spec, cache_dir, reporter,
        part_sizes=[len(source.clips) for source in sources],
    )  # fmt: skip
    readable = frames.rows >= 0
    usable = labelled.subset(np.flatnonzero(readable[: len(labelled.clips)]))
    usable.skipped = [*labelled.skipped, *frames.skipped]
    evaluated = int(readable[: len(dataset.clips)].sum())
    if not evaluated:
        raise DatasetError(f"{dataset.name}: no readable clips ({len(frames.skipped)} skipped)")
    more_rows = np.arange(evaluated, len(usable.clips))
    unlabelled_rows = np.arange(len(usable.clips), int(readable.sum()))
    table = SegmentTable.of(frames.lengths, info.spec)
    s = settings
    if s.finetune == 0:

        def cached(level_table: SegmentTable | None) -> CachedSource:
            array = embedding_cache(
                frames, level_table, built, s.views, s.augment, s.seed, device, cache_dir, reporter
            )
            return CachedSource(array, device)

        segments, clips = cached(table), cached(None) if clip_level else None
    elif (split := frozen_split(built)) and s.frozen_cache != "off":

        def from_frozen(level_table: SegmentTable | None) -> FrozenCacheSource:
            outputs = frozen_cache(
                frames, level_table, built, split, s.views, s.augment, s.seed, device,
                s.frozen_cache, cache_dir, reporter,
            )  # fmt: skip
            return FrozenCacheSource(built, outputs, split.trainable, device, s.amp)

        segments, clips = from_frozen(table), from_frozen(None) if clip_level else None
    else:
        rng = np.random.default_rng([s.seed, 7])
        segments = OnlineSource(built, frames, table, s.augment, rng, s.views, device, s.amp)
        clips = OnlineSource(built, frames, None, s.augment, rng, s.views, device, s.amp)
    features = extras_cache(usable, extras, cache_dir, reporter) if extras else None
    ctx = Context(
        usable, table, segments, clips, settings, reporter, features, more_rows, unlabelled_rows
    )
    more = _added_data(train_only, more_rows, unlabelled, unlabelled_rows)
    return Prepared(ctx, built, frames, time.perf_counter() - started, extras or None, more)


def _added_data(
    train_only: Sequence[Dataset],
    train_rows: np.ndarray,
    unlabelled: Dataset | None,
    unlabelled_rows: np.ndarray,
) -> dict:
    """What a card or report says of the clips besides the evaluated dataset."""
    more: dict = {}
    if train_only:
        names = [d.name for d in train_only]
        more["train_only"] = {"datasets": names, "clips": len(train_rows)}
    if unlabelled is not None:
        more["unlabelled"] = {"folder": unlabelled.name, "clips": len(unlabelled_rows)}
    return more
