"""From a dataset and a backbone to a method `Context`: frames cached, segments listed,
features cached (frozen backbone) or computed by the learning groups, from the frozen
groups' cached output where the backbone names its stages, else by the whole network on
the fly (fine-tuning)."""

from __future__ import annotations

import time
from dataclasses import dataclass
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
) -> Prepared:
    """Cache what can be cached and build the sources of every method; with `extras`,
    the song-level extractor features of every clip (`ctx.extras`) for stage 2.

    Unreadable clips are dropped (listed in `ctx.dataset.skipped` with the reason); the
    context's dataset holds the readable clips in cache-row order.
    """
    reporter = reporter or Reporter(quiet=True)
    started = time.perf_counter()
    info = resolve_backbone(backbone)
    built = build_backbone(info, settings.pretrained, settings.finetune, settings.seed)
    device = pick_device(settings.device)
    frames = frame_cache(dataset, info.spec, cache_dir, reporter)
    usable = dataset.subset(np.flatnonzero(frames.rows >= 0))
    usable.skipped = [*dataset.skipped, *frames.skipped]
    if not usable.clips:
        raise DatasetError(f"{dataset.name}: no readable clips ({len(frames.skipped)} skipped)")
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
    ctx = Context(usable, table, segments, clips, settings, reporter, features)
    return Prepared(ctx, built, frames, time.perf_counter() - started, extras or None)
