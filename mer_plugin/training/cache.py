"""On-disk caches: the log-mel frames of every clip, and frozen-backbone embeddings.

Frames are computed once per (clips, front-end spec) and memory-mapped, so epochs never
decode audio again. With a frozen backbone its embeddings of every segment (and of every
whole clip) are cached too, for `views` views (view 0 clean, the others augmented): every
method then trains a small head in seconds.

A cache folder is named by a hash of what it depends on (the clips' contents, not where
they lie, and what their decoder renders them with (a MIDI file's SoundFont), the spec; plus the
backbone's weights, the views and their augmentation settings for embeddings). The
frames and embeddings of a dataset joined by train-only sets or unlabelled music are
cached per source dataset (`FramePart`; the joined frames are the sources' caches read side
by side, never copied), so `--add` decodes and embeds the added clips only. The root is
`--cache-dir`, else ``$MER_CACHE_DIR``, else ``$XDG_CACHE_HOME/mer``, else
``~/.cache/mer``. Files and folders are written under a temporary name (`written_whole`)
and renamed into place, so an interrupted run leaves no half cache: a run stopped with
Ctrl-C removes its temporary copy, and one killed outright leaves it for the next build
of that cache to remove.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from mer_plugin.audio import decoders_for
from mer_plugin.backbones import get_backbone
from mer_plugin.backbones.fused import FusedBackbone
from mer_plugin.datasets import Dataset
from mer_plugin.errors import AudioError, MerError
from mer_plugin.features import clip_frames
from mer_plugin.files import sha256_of, written_whole
from mer_plugin.frontend import FrontEndSpec
from mer_plugin.inference.folder import state_digest
from mer_plugin.song_extras import SongExtras
from mer_plugin.training.augment import augment, crop, jitter_starts
from mer_plugin.training.backbone import BuiltBackbone, Stage
from mer_plugin.training.progress import Reporter
from mer_plugin.training.settings import AugmentSettings
from mer_plugin.user_cache import cache_folder

FORMAT = 2  # bump when the layout of a cache folder changes


def cache_key(payload: object) -> str:
    """A short hash naming a cache folder by everything its content depends on."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ------------------------------------------------------------------------------ frames


@dataclass(frozen=True)
class FramePart:
    """The rows of one source dataset in a frame cache of several joined, and the frame
    cache key of its clips alone."""

    key: str
    rows: range


class JoinedFrames:
    """The frames of several caches read as one (total_frames, n_mels) array: a slice or an
    array of frame indices gathers from each cache in place."""

    def __init__(self, parts: Sequence[np.ndarray], starts: np.ndarray) -> None:
        self.parts, self.starts = parts, starts  # starts: each part's first frame, then the total
        self.shape = (int(starts[-1]), parts[0].shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice | np.ndarray) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index)
        part = np.searchsorted(self.starts, index, side="right") - 1
        out = np.empty((*index.shape, self.shape[1]), np.float32)
        for p in np.unique(part):
            at = part == p
            out[at] = self.parts[p][index[at] - self.starts[p]]
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)


@dataclass
class FrameCache:
    """Frames of the readable clips of a dataset, memory-mapped; `rows[i]` is clip i's row
    (-1 when it was skipped). `parts` split the rows by source dataset (one part when the
    dataset was not joined from several)."""

    folder: Path | None  # None for a dataset joined from several: its sources' folders
    key: str
    spec: FrontEndSpec
    frames: np.ndarray | JoinedFrames  # (total_frames, n_mels), memory-mapped
    offsets: np.ndarray  # (n_rows + 1,)
    rows: np.ndarray  # dataset clip index -> row, or -1
    skipped: list[str]  # "path: reason", under the paths of the dataset that opened it
    parts: tuple[FramePart, ...] = ()  # set by frame_cache

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def clip(self, row: int) -> np.ndarray:
        return self.frames[self.offsets[row] : self.offsets[row + 1]]


def frame_cache(
    dataset: Dataset,
    spec: FrontEndSpec,
    root: str | Path | None = None,
    reporter: Reporter | None = None,
    part_sizes: Sequence[int] = (),
) -> FrameCache:
    """The frame cache of a dataset's clips, built on first use. `part_sizes`: the clip
    counts of the source datasets the dataset joins, in order (default: one source); each
    source is cached on its own, so it is decoded once whatever it is joined with."""
    identities = _identities(dataset)
    bounds = np.cumsum([0, *(part_sizes or [len(identities)])])
    if bounds[-1] != len(identities):
        raise ValueError(f"part sizes {list(part_sizes)} do not add up to {len(identities)} clips")
    reporter = reporter or Reporter(quiet=True)
    sources = [
        _cached_frames(replace(dataset, clips=dataset.clips[a:b]), identities[a:b], spec, root,
                       reporter)
        for a, b in pairwise(bounds)
    ]  # fmt: skip
    if len(sources) == 1:
        (cache,) = sources
        return replace(cache, parts=(FramePart(cache.key, range(len(cache.lengths))),))
    return _joined(sources, _frames_key(identities, spec))


def _joined(sources: list[FrameCache], key: str) -> FrameCache:
    """The frame cache of the sources' clips in order, their frames read side by side."""
    first_rows = np.cumsum([0, *(len(source.lengths) for source in sources)])
    first_frames = np.cumsum([0, *(int(source.offsets[-1]) for source in sources)])
    shifted = list(zip(sources, first_rows[:-1], first_frames[:-1], strict=True))
    return FrameCache(
        folder=None,
        key=key,
        spec=sources[0].spec,
        frames=JoinedFrames([source.frames for source in sources], first_frames),
        offsets=np.concatenate([[0], *(s.offsets[1:] + frame for s, _, frame in shifted)]),
        rows=np.concatenate([np.where(s.rows >= 0, s.rows + row, -1) for s, row, _ in shifted]),
        skipped=[line for source in sources for line in source.skipped],
        parts=tuple(FramePart(s.key, range(row, row + len(s.lengths))) for s, row, _ in shifted),
    )


def _frames_key(identities: list[tuple[str, ...]], spec: FrontEndSpec) -> str:
    return cache_key({"format": FORMAT, "clips": identities, "spec": spec.to_dict()})


def _frames_folder(
    identities: list[tuple[str, ...]], spec: FrontEndSpec, root: str | Path | None
) -> tuple[str, Path]:
    key = _frames_key(identities, spec)
    return key, cache_folder(root) / "frames" / key


def _cached_frames(
    dataset: Dataset,
    identities: list[tuple[str, ...]],
    spec: FrontEndSpec,
    root: str | Path | None,
    reporter: Reporter,
) -> FrameCache:
    """The frame cache of clips (their `identities`), decoded on first use."""
    key, folder = _frames_folder(identities, spec, root)
    if not (folder / "index.json").is_file():
        _build_frames(dataset, spec, folder, reporter)
    return _open_frames(folder, key, spec, dataset)


def _identities(dataset: Dataset) -> list[tuple[str, ...]]:
    """Each clip's digest of its bytes ("" when it cannot be read), then what its decoders
    say the audio depends on besides (`Decoder.depends_on`: a MIDI file's SoundFont): a
    cache survives the data being moved, copied or re-created with new mtimes, and notices
    a file edited in place or rendered another way. (A skipped clip's reason is stored by
    its index and reported under the path it has when the cache is opened.)"""
    return [_identity(c.path) for c in dataset.clips]


def _identity(path: Path) -> tuple[str, ...]:
    depends = [d.depends_on() for d in decoders_for(path) if d.depends_on is not None]
    return (_digest(path), *depends)


def _digest(path: Path) -> str:
    try:
        return sha256_of(path)
    except OSError:
        return ""


def _build_frames(dataset: Dataset, spec: FrontEndSpec, folder: Path, reporter: Reporter) -> None:
    with written_whole(folder) as part:
        part.mkdir(parents=True)
        _write_frames(dataset, spec, part, reporter)


def _write_frames(dataset: Dataset, spec: FrontEndSpec, part: Path, reporter: Reporter) -> None:
    offsets, rows, skipped = [0], [], []
    with open(part / "frames.f32", "wb") as out, reporter.bar(len(dataset.clips), "log-mel") as bar:
        for index, clip in enumerate(dataset.clips):
            try:
                frames = clip_frames(clip.path, spec)
            except AudioError as error:
                rows.append(-1)
                skipped.append((index, error.reason))
            else:
                out.write(np.ascontiguousarray(frames, dtype=np.float32).tobytes())
                rows.append(len(offsets) - 1)
                offsets.append(offsets[-1] + len(frames))
            bar.advance()
    _write_index(part, spec, offsets, rows, skipped, [str(c.path) for c in dataset.clips])


def _write_index(
    part: Path,
    spec: FrontEndSpec,
    offsets: np.ndarray | list[int],
    rows: np.ndarray | list[int],
    skipped: list[tuple[int, str]],
    clips: list[str],
) -> None:
    """The frames' offsets, each clip's row (-1: skipped), and index.json, written last:
    the skipped clips as (clip index, reason), and the paths the cache was built from."""
    np.save(part / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    np.save(part / "rows.npy", np.asarray(rows, dtype=np.int64))
    index = {"format": FORMAT, "spec": spec.to_dict(), "skipped": skipped, "clips": clips}
    (part / "index.json").write_text(json.dumps(index, indent=1))


def _open_frames(folder: Path, key: str, spec: FrontEndSpec, dataset: Dataset) -> FrameCache:
    offsets = np.load(folder / "offsets.npy")
    total = int(offsets[-1])
    if total:
        frames = np.memmap(folder / "frames.f32", np.float32, "r", shape=(total, spec.n_mels))
    else:
        frames = np.empty((0, spec.n_mels), np.float32)
    index = json.loads((folder / "index.json").read_text())
    skipped = [f"{dataset.clips[i].path}: {why}" for i, why in index["skipped"]]
    return FrameCache(folder, key, spec, frames, offsets, np.load(folder / "rows.npy"), skipped)


# ------------------------------------------------------------------------------ segments


@dataclass(frozen=True)
class SegmentTable:
    """Every segment of the cached clips: its clip row and first frame."""

    clip: np.ndarray
    start: np.ndarray

    @classmethod
    def of(cls, lengths: np.ndarray, spec: FrontEndSpec) -> SegmentTable:
        counts = np.maximum(1, (lengths - spec.segment_frames) // spec.segment_hop_frames + 1)
        clip = np.repeat(np.arange(len(lengths)), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        start = (np.arange(len(clip)) - first) * spec.segment_hop_frames
        return cls(clip.astype(np.int64), start.astype(np.int64))

    def __len__(self) -> int:
        return len(self.clip)

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        """Segment ids of the given clip rows, clip by clip in the order given."""
        order = np.argsort(self.clip, kind="stable")
        bounds = np.searchsorted(self.clip[order], np.stack([rows, rows + 1]))
        return np.concatenate([order[a:b] for a, b in bounds.T]) if len(rows) else order[:0]


def view_segments(
    cache: FrameCache,
    table: SegmentTable,
    ids: np.ndarray,
    views: np.ndarray,
    augmentation: AugmentSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Log-mel segments (B, frames, n_mels) of segment `ids`; where `views` > 0, shifted in
    time and augmented."""
    spec = cache.spec
    rows = table.clip[ids]
    starts = table.start[ids].copy()
    shifted = views > 0
    if shifted.any():
        lengths = cache.lengths[rows[shifted]]
        starts[shifted] = jitter_starts(starts[shifted], lengths, spec, augmentation, rng)
    first = cache.offsets[rows] + starts
    index = first[:, None] + np.arange(spec.segment_frames)
    out = np.asarray(cache.frames[index], dtype=np.float32)
    if shifted.any():
        out[shifted] = augment(out[shifted], spec, augmentation, rng)
    return out


def view_clip(
    cache: FrameCache, row: int, view: int, augmentation: AugmentSettings, rng: np.random.Generator
) -> np.ndarray:
    """Frames of a whole clip (view 0) or of an augmented random crop of it."""
    frames = cache.clip(row)
    if view == 0:
        return np.array(frames, dtype=np.float32)
    start, length = crop(len(frames), augmentation, rng)
    piece = np.asarray(frames[start : start + length], dtype=np.float32)
    return augment(piece[None], cache.spec, augmentation, rng)[0]


# ------------------------------------------------------------------------------ extractors


def extras_cache(
    dataset: Dataset,
    extras: SongExtras,
    root: str | Path | None = None,
    reporter: Reporter | None = None,
    jobs: int | None = None,
) -> np.ndarray:
    """Song-level extractor features (clips, extras.size) of every clip of `dataset`,
    computed in `jobs` processes (default: one per core) and cached by the extractors,
    features and clips (their contents). A clip an extractor cannot read is an error
    that names it: the frame cache has already dropped the undecodable ones."""
    card = extras.to_card()
    key = cache_key({"clips": _identities(dataset), "x": card})
    path = cache_folder(root) / "extras" / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    reporter = reporter or Reporter(quiet=True)
    jobs = jobs or os.cpu_count() or 1
    paths = [str(c.path) for c in dataset.clips]
    label = ", ".join(extras.names)
    with reporter.bar(len(paths), label) as bar:
        if jobs == 1 or len(paths) < 2 * jobs:
            rows = [_extract_row(card, p, bar.advance) for p in paths]
        else:
            rows = _extract_in_processes(card, paths, jobs, bar.advance)
    array = np.stack(rows) if rows else np.zeros((0, extras.size))
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_npy(path, array)
    return array


def _extract_in_processes(
    card: list[dict], paths: list[str], jobs: int, advance: Callable[[int], None]
) -> list[np.ndarray]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")  # Numba's threads are not fork-safe
    with ProcessPoolExecutor(jobs, mp_context=spawn) as pool:
        rows = []
        for row in pool.map(_extract_row, [card] * len(paths), paths, chunksize=4):
            rows.append(row)
            advance(1)
        return rows


def _extract_row(
    card: list[dict], path: str, advance: Callable[[int], None] | None = None
) -> np.ndarray:
    try:
        row = SongExtras.from_card(card)(path)
    except MerError as error:
        raise MerError(f"{path}: {getattr(error, 'reason', error)}") from None
    if advance:
        advance(1)
    return row


# ------------------------------------------------------------------------------ embeddings


def embedding_cache(
    cache: FrameCache,
    table: SegmentTable | None,
    built: BuiltBackbone,
    views: int,
    augmentation: AugmentSettings,
    seed: int,
    device: torch.device,
    root: str | Path | None = None,
    reporter: Reporter | None = None,
) -> np.ndarray:
    """Frozen-backbone embeddings (views, items, embedding_size) of every segment in `table`,
    or of every whole clip when `table` is None. View v of clip row r is drawn from the seed
    (seed, v, r), so a view does not depend on batching or on which views exist; a fused
    backbone's are therefore its parts' cached embeddings, concatenated, and a joined
    dataset's its source datasets' (`cache.parts`), one after the other."""
    if isinstance(built.module, FusedBackbone):
        parts = [
            embedding_cache(cache, table, part, views, augmentation, seed, device, root, reporter)
            for part in _fused_parts(built)
        ]
        return np.concatenate(parts, axis=-1)
    level = "clips" if table is None else "segments"
    reporter = reporter or Reporter(quiet=True)
    pieces = []
    for part in (part for part in cache.parts if part.rows):
        depends = views_depend_on(part.key, built, augmentation, seed, level, part.rows.start)
        folder = cache_folder(root) / "embeddings" / cache_key(depends)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for view in range(views):
            path = folder / f"view{view}.npy"
            if not path.is_file():
                label = f"{built.backbone.name} {level}, view {view}"
                with reporter.bar(len(part.rows), label) as bar:
                    draws = (view, augmentation, seed)
                    array = embed_view(cache, table, built, draws, device, bar.advance, part.rows)
                _save_npy(path, array)
            out.append(np.load(path))
        pieces.append(np.stack(out))
    return np.concatenate(pieces, axis=1)


def views_depend_on(
    frames_key: str,
    built: BuiltBackbone,
    augmentation: AugmentSettings,
    seed: int,
    level: str,
    first_row: int = 0,
) -> dict:
    """What a backbone's cached outputs of the views of the items of the clips of a frame
    cache (key `frames_key`) depend on (their key); their rows numbered from `first_row`,
    which draws their views (named only when above 0, so keys stay those of one dataset)."""
    depends = {
        "frames": frames_key,
        "backbone": built.backbone.name,
        "weights": state_digest(built.module),
        "augment": augmentation,
        "seed": seed,
        "level": level,
    }
    return {**depends, "first_row": first_row} if first_row else depends


def stack_shortest(pieces: list[np.ndarray]) -> np.ndarray:
    """Arrays of (time, ...) stacked into one batch, each cut to the shortest's length."""
    shortest = min(len(p) for p in pieces)
    return np.stack([p[:shortest] for p in pieces])


def _fused_parts(built: BuiltBackbone) -> list[BuiltBackbone]:
    """A frozen fused backbone's parts, as if each had been built alone."""
    assert isinstance(built.module, FusedBackbone)
    return [
        BuiltBackbone(get_backbone(name), module, built.pretrained, ())
        for name, module in built.module.parts
    ]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with written_whole(path) as part, open(part, "wb") as handle:
        np.save(handle, array)


@torch.no_grad()
def run_frozen(function: Stage, batch: np.ndarray, device: torch.device) -> np.ndarray:
    """A frozen network `function` on a numpy batch; float32 out, even on CUDA."""
    return function(torch.from_numpy(batch).to(device)).float().cpu().numpy()


def view_batches(
    cache: FrameCache,
    table: SegmentTable | None,
    view: int,
    augmentation: AugmentSettings,
    seed: int,
    batch_size: int = 64,
    rows: range | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Log-mel batches of view `view` of every segment in `table` (of every whole clip, one
    at a time, when None) of the clip `rows` (default all), in order, each with how many
    clip rows it completes. View v of clip row r is drawn from the seed (seed, v, r),
    whatever the batching."""
    rows = range(len(cache.lengths)) if rows is None else rows
    if table is None:
        for row in rows:
            rng = np.random.default_rng([seed, view, row])
            yield 1, view_clip(cache, row, view, augmentation, rng)[None]
        return
    pending: list[np.ndarray] = []
    done = rows.start
    for row in rows:
        ids = np.flatnonzero(table.clip == row)
        rng = np.random.default_rng([seed, view, row])
        pending.append(view_segments(cache, table, ids, np.full(len(ids), view), augmentation, rng))
        if sum(len(p) for p in pending) >= batch_size or row == rows[-1]:
            yield row + 1 - done, np.concatenate(pending)
            pending, done = [], row + 1


def embed_view(
    cache: FrameCache,
    table: SegmentTable | None,
    built: BuiltBackbone,
    draws: tuple[int, AugmentSettings, int],
    device: torch.device,
    advance: Callable[[int], None],
    rows: range | None = None,
) -> np.ndarray:
    """The frozen backbone's embeddings (items, embedding_size) of the view drawn with
    `draws` (view, augmentation, seed) of the items of clip `rows` (default all)."""
    built.module.to(device)
    parts = []
    for done, batch in view_batches(cache, table, *draws, rows=rows):
        parts.append(run_frozen(built.module, batch, device))
        advance(done)
    return np.concatenate(parts)
