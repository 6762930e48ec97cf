"""Throughput of `mer analyse`'s two engines, side by side in one run, on the same tracks.

    python tools/analyse_throughput.py ../shared/data/4q-dev --tracks 60

Takes the first TRACKS audio files under FOLDER (the 4Q clips: 30 s of real music
each), analyses them with the local engine (decoding workers, `--jobs` = CPU cores) and
then with the Ray engine on a local Ray instance with the same CPUs, each into a fresh
table, and prints wall time, tracks per second and the realtime factor of each, and
their ratio. The numbers in docs/scale.md come from here.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import soundfile as sf

from mer_plugin.catalog import analyse_to_table
from mer_plugin.catalog.ray_engine import analyse_on_ray, ray_module
from mer_plugin.library import walk
from mer_plugin.tagging import load_for_tagging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--tracks", type=int, default=60)
    args = parser.parse_args()
    files = walk([args.folder], clean=False, decodable=True).files[: args.tracks]
    audio_s = sum(sf.info(str(f)).duration for f in files)
    cpus = os.cpu_count() or 1
    model = load_for_tagging(None, "cpu")
    ray = ray_module()
    # Ray runs its workers at nice 15 by default: on a machine shared with other jobs
    # that alone would slow them; the local engine's workers run at normal priority
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="mer-throughput-") as tmp:
        results = {}
        for engine in ("local", "ray"):
            out = Path(tmp) / f"{engine}.parquet"
            start = time.perf_counter()
            if engine == "local":
                analyse_to_table(files, out, model, jobs=cpus)
            else:
                analyse_on_ray(files, out, model, device="cpu")
            results[engine] = time.perf_counter() - start
    print(
        f"{len(files)} tracks, {audio_s / 60:.1f} min of audio, {cpus} CPUs, model {model.release}"
    )
    for engine, wall in results.items():
        print(
            f"{engine:5s}: {wall:6.1f} s wall, {len(files) / wall:5.2f} tracks/s, "
            f"{audio_s / wall:6.1f}x realtime"
        )
    print(f"ray / local wall time: {results['ray'] / results['local']:.2f}")


if __name__ == "__main__":
    main()
