"""How few segments a song needs: the song quadrant from every Nth segment (or at most N
segments, evenly spread, or every Nth then all of them when that is a near tie) against
the full analysis, on real long tracks.

    python tools/analysis_budget.py MUSIC_FOLDER... --store budget.npz
    python tools/analysis_budget.py MUSIC_FOLDER... --precision int8 --store int8.npz \
        --reference budget.npz   # int8 segments against the float full analysis

Every track is analysed in full once with the default model (each segment's class
probabilities and embedding kept in `--store`, reused by later runs); then each budget's
song is computed from the kept segments as the model's song level does (the mean of
their probabilities, averaged with the song embedding classifier's when the model has
one) and its quadrant compared with the full analysis' (that of `--reference`, another
store of the same tracks, when given). Prints markdown tables: budget, segments
analysed, agreement.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mer_plugin.backbones import PRECISIONS
from mer_plugin.budget import Budget
from mer_plugin.errors import AudioError
from mer_plugin.features import iter_segments
from mer_plugin.inference import Model, load_model, resolve_model
from mer_plugin.inference.device import with_precision
from mer_plugin.inference.heads import EmbeddingMoments
from mer_plugin.inference.predict import SongSegments, near_tie, song_probabilities
from mer_plugin.library import walk

STRIDES = (1, 2, 3, 4, 5, 6, 8)
CAPS = (20, 30, 40)
MARGINS = (0.05, 0.1, 0.15, 0.2)  # near-tie thresholds of the refined budget

Track = tuple[np.ndarray, np.ndarray]  # segment probabilities (n, classes), embeddings (n, d)
Pick = Callable[[Track], np.ndarray]  # which segments a budget analyses


@torch.no_grad()
def analyse(model: Model, path: Path) -> Track:
    """Every segment's class probabilities and embedding."""
    probs, embeddings = [], []
    for batch in iter_segments(path, model.spec):
        embedded = model.backbone(torch.from_numpy(batch))
        probs.append(torch.softmax(model.head(embedded), dim=1).numpy())
        embeddings.append(embedded.numpy())
    return np.concatenate(probs), np.concatenate(embeddings)


def full_analyses(model: Model, files: list[Path], store: Path) -> dict[str, Track]:
    """Each file's full analysis, computed once into `store`."""
    known: dict[str, np.ndarray] = dict(np.load(store)) if store.exists() else {}
    todo = [f for f in files if f"p:{f}" not in known]
    start = time.perf_counter()
    for i, path in enumerate(todo, 1):
        try:
            known[f"p:{path}"], known[f"e:{path}"] = analyse(model, path)
        except AudioError as error:
            print(f"skipped: {error}", file=sys.stderr)
            continue
        took = time.perf_counter() - start
        print(f"{i}/{len(todo)} analysed ({took:.0f} s)", file=sys.stderr, flush=True)
        if i % 20 == 0 or i == len(todo):
            np.savez(store, **known)
    found = tracks_of(known)
    return {str(f): found[str(f)] for f in files if str(f) in found}


def tracks_of(known: dict[str, np.ndarray]) -> dict[str, Track]:
    """A store's arrays ("p:FILE" probabilities, "e:FILE" embeddings) as tracks by file."""
    return {k[2:]: (v, known[f"e:{k[2:]}"]) for k, v in known.items() if k.startswith("p:")}


def stored(store: Path) -> dict[str, Track]:
    """The full analyses kept in `store`, by file."""
    return tracks_of(dict(np.load(store)))


def song(model: Model, track: Track, rows: np.ndarray) -> np.ndarray:
    """The model's song probabilities from the segments `rows` of `track`."""
    return song_probabilities(model, segments_of(track, rows))


def segments_of(track: Track, rows: np.ndarray) -> SongSegments:
    """What the segments `rows` of `track` give the song, as `SegmentBatcher` keeps it."""
    return SongSegments(track[0][rows], EmbeddingMoments.of(track[1][rows]))


def every(k: int) -> Pick:
    return lambda track: np.arange(0, len(track[0]), k)


def spread(cap: int) -> Pick:
    """At most `cap` segments, evenly spread, first and last included."""

    def pick(track: Track) -> np.ndarray:
        n = len(track[0])
        return np.unique(np.linspace(0, n - 1, min(n, cap)).round().astype(int))

    return pick


def agreement(
    model: Model, tracks: dict[str, Track], pick: Pick, reference: dict[str, Track]
) -> tuple[float, float]:
    """Share of songs whose quadrant from the picked segments is the full reference
    analysis' one, and the share of segments analysed."""
    same = kept = total = 0
    for key, track in tracks.items():
        n = len(track[0])
        rows = pick(track)
        full = np.argmax(song(model, reference[key], np.arange(n)))
        same += int(np.argmax(song(model, track, rows)) == full)
        kept, total = kept + len(rows), total + n
    return same / len(tracks), kept / total


def refined(model: Model, k: int, margin: float) -> Pick:
    """Every k-th segment; all of them on a near tie (`near_tie`, as `mer tag` decides)."""
    budget = Budget(k, near_tie=margin)

    def pick(track: Track) -> np.ndarray:
        rows = every(k)(track)
        tie = near_tie(model, segments_of(track, rows), None, budget)
        return np.arange(len(track[0])) if tie else rows

    return pick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--store", type=Path, required=True, help="npz of full analyses")
    parser.add_argument("--min-seconds", type=float, default=60.0, help="shorter tracks left out")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument("--reference", type=Path, help="npz of the full analyses to agree with")
    args = parser.parse_args()
    model = with_precision(load_model(resolve_model(None)), args.precision)
    assert model.song is None, "the song level here is the mean of segments"
    torch.set_grad_enabled(False)
    files = walk(args.folders).files
    tracks = full_analyses(model, files, args.store)
    reference = stored(args.reference) if args.reference else tracks
    if tracks.keys() - reference.keys():
        sys.exit(f"{args.reference}: not every track of {args.store}")
    hop = model.spec.segment_hop_seconds
    tracks = {k: t for k, t in tracks.items() if len(t[0]) * hop >= args.min_seconds}
    minutes = sum(len(t[0]) for t in tracks.values()) * hop / 60
    shown = f"{len(tracks)} tracks of >= {args.min_seconds:g} s, {minutes:.0f} min"
    print(f"{model.release}, {args.precision}: {shown}\n")
    print("| budget | segments analysed | same song quadrant as full analysis |")
    print("|---|---|---|")
    budgets = [(f"every {k}", every(k)) for k in STRIDES]
    budgets += [(f"at most {cap}, evenly spread", spread(cap)) for cap in CAPS]
    budgets += [
        (f"every {k}, all when the top two are within {m:g}", refined(model, k, m))
        for k in (2, 3, 4)
        for m in MARGINS
    ]
    for name, pick in budgets:
        same, share = agreement(model, tracks, pick, reference)
        print(f"| {name} | {share:.1%} | {same:.1%} |", flush=True)


if __name__ == "__main__":
    main()
