"""Helpers of tools/gpu_check.sh: real-music tracks to tag, and the summary of the runs.

    python tools/gpu_check_tracks.py DATA OUT [N]      # N tracks (default 40) of 4 minutes
    python tools/gpu_check_tracks.py --compare GPU.json CPU.json UTILISATION.csv

Tracks: 8 clips of DATA's class folders each (30 s clips: 4 minutes), drawn in a seeded
order so that a track mixes quadrants, resampled to 44.1 kHz stereo and written as 16-bit
FLAC, the kind of file a library holds. The summary: each run's wall time and realtime
factor (from the `timed` lines of its log beside the report), the GPU's utilisation
while it ran, and how many tracks got the same quadrant from both.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

CLIPS_PER_TRACK, RATE = 8, 44100


def make_tracks(data: Path, out: Path, count: int) -> None:
    clips = sorted(p for p in data.glob("*/*.*") if p.suffix != ".csv")
    order = np.random.default_rng(0).permutation(len(clips))
    out.mkdir(parents=True, exist_ok=True)
    for t in range(min(count, len(clips) // CLIPS_PER_TRACK)):
        picked = order[t * CLIPS_PER_TRACK : (t + 1) * CLIPS_PER_TRACK]
        pieces = []
        for i in picked:
            audio, rate = sf.read(clips[i], dtype="float32", always_2d=True)
            pieces.append(soxr.resample(audio.mean(axis=1), rate, RATE))
        mono = np.concatenate(pieces)
        sf.write(out / f"track{t:02d}.flac", np.stack([mono, mono], axis=1), RATE, "PCM_16")
    print(f"{t + 1} tracks of {CLIPS_PER_TRACK} clips in {out}")


def _wall(report: Path) -> float | None:
    log = report.with_suffix(".txt")
    found = re.findall(r"^wall (\d+) s", log.read_text(), re.M) if log.is_file() else []
    return float(found[-1]) if found else None


def _quadrants(report: Path) -> dict[str, str]:
    rows = json.loads(report.read_text())["files"] if report.is_file() else []
    return {Path(r["path"]).name: r["quadrant"] for r in rows if r.get("quadrant")}


def compare(gpu: Path, cpu: Path, utilisation: Path, track_seconds: float = 240.0) -> None:
    first, second = _quadrants(gpu), _quadrants(cpu)
    for report, quadrants in ((gpu, first), (cpu, second)):
        wall = _wall(report)
        audio = len(quadrants) * track_seconds
        speed = f"{audio / wall:.0f}x realtime" if wall else "no wall time"
        print(f"{report.stem}: {len(quadrants)} tracks tagged, wall {wall} s, {speed}")
    if utilisation.is_file():
        with open(utilisation, newline="") as handle:
            busy = [float(row[1].split()[0]) for row in csv.reader(handle) if len(row) > 1]
        if busy:
            print(
                f"GPU utilisation over {len(busy)} samples: mean {np.mean(busy):.0f} %, "
                f"median {np.median(busy):.0f} %, max {max(busy):.0f} %"
            )
    both = first.keys() & second.keys()
    same = sum(first[name] == second[name] for name in both)
    print(f"same quadrant on {same} of {len(both)} tracks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    if args.compare:
        compare(*map(Path, args.paths[:3]))
    else:
        count = int(args.paths[2]) if len(args.paths) > 2 and args.paths[2] else 40
        make_tracks(Path(args.paths[0]), Path(args.paths[1]), count)


if __name__ == "__main__":
    main()
