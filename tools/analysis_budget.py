"""How few segments a song needs: the song quadrant from every Nth segment (or at most N
segments, evenly spread) against the full analysis, on real long tracks.

    python tools/analysis_budget.py MUSIC_FOLDER... --probs budget.npz

Every track is analysed in full once with the default model (segment probabilities kept
in `--probs`, reused by later runs); then each budget's song quadrant (the mean of the
kept segments' probabilities, as the default model's song level) is compared with the
full one. Prints a markdown table: budget, segments analysed, agreement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mer_plugin.errors import AudioError
from mer_plugin.inference import load_model, predict_file, resolve_model
from mer_plugin.library import walk

STRIDES = (1, 2, 3, 4, 5, 6, 8, 10)
CAPS = (10, 20, 30, 40)


def full_probabilities(files: list[Path], store: Path) -> dict[str, np.ndarray]:
    """Each file's segment probabilities (n, classes), computed once into `store`."""
    known = dict(np.load(store)) if store.exists() else {}
    todo = [f for f in files if str(f) not in known]
    if todo:
        model = load_model(resolve_model(None))
        assert model.song is None, "the song level here is the mean of segments"
        start = time.perf_counter()
        for i, path in enumerate(todo, 1):
            try:
                timeline = predict_file(model, path).timeline
            except AudioError as error:
                print(f"skipped: {error}", file=sys.stderr)
                continue
            known[str(path)] = np.array([list(s.probabilities.values()) for s in timeline])
            took = time.perf_counter() - start
            print(f"{i}/{len(todo)} analysed ({took:.0f} s)", file=sys.stderr, flush=True)
            if i % 20 == 0 or i == len(todo):
                np.savez(store, **known)
    return {k: v for k, v in known.items() if k in {str(f) for f in files}}


def agreement(probs: dict[str, np.ndarray], pick) -> tuple[float, float]:
    """Share of songs whose quadrant from the picked segments is the full one's, and the
    share of segments picked."""
    same = kept = total = 0
    for p in probs.values():
        rows = p[pick(len(p))]
        same += int(np.argmax(rows.mean(axis=0)) == np.argmax(p.mean(axis=0)))
        kept, total = kept + len(rows), total + len(p)
    return same / len(probs), kept / total


def spread(n: int, cap: int) -> np.ndarray:
    """At most `cap` of `n` segment indices, evenly spread, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(n, cap)).round().astype(int))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--probs", type=Path, required=True, help="npz of full analyses")
    parser.add_argument("--min-seconds", type=float, default=60.0, help="shorter tracks left out")
    args = parser.parse_args()
    files = walk(args.folders).files
    probs = full_probabilities(files, args.probs)
    hop = load_model(resolve_model(None)).spec.segment_hop_seconds
    probs = {k: p for k, p in probs.items() if len(p) * hop >= args.min_seconds}
    minutes = sum(len(p) for p in probs.values()) * hop / 60
    print(f"{len(probs)} tracks of >= {args.min_seconds:g} s, {minutes:.0f} min in all\n")
    print("| budget | segments analysed | same song quadrant as full analysis |")
    print("|---|---|---|")
    for k in STRIDES:
        same, share = agreement(probs, lambda n, k=k: slice(None, None, k))
        print(f"| every {k} | {share:.1%} | {same:.1%} |")
    for cap in CAPS:
        same, share = agreement(probs, lambda n, cap=cap: spread(n, cap))
        print(f"| at most {cap}, evenly spread | {share:.1%} | {same:.1%} |")


if __name__ == "__main__":
    main()
