"""`mer tag` on real music, as users have it, beside the plain sequential loop.

Target, on this 2-core CPU with the default model: >= 300x realtime end to end for the
mp3 tracks, process start included, and >= 1.6x the sequential reference of the same
run. Reported, not asserted: timings on a shared machine vary.

- Library: per format, 12 tracks of 4 min made with ffmpeg by joining eight 30-s 4Q
  clips of one quadrant (`../shared/data/4q-dev`; skipped without it or without
  ffmpeg): 44.1 kHz stereo mp3 at 192 kbps, flac 16-bit, m4a AAC at 256 kbps. Made once
  into pytest's cache folder.
- `mer tag FOLDER --force` as a user runs it (a fresh process: imports, model load,
  workers included), with its defaults (int8 and bfloat16 convolutions where the CPU has
  them), with --jobs 1, with `--precision int8` (no bfloat16), with `--precision float32`
  and with `--model fast` (the single-backbone model), wall clock.
- Reference: the plain loop in one process, after the model is loaded (in float): each file
  streamed through decode, segments and the model (`predict_file`'s stream), its tags
  written; CPU seconds per stage (decode to log-mel segments, model, tag write).
- `mer tag`'s CPU seconds are its whole process tree's (workers included).
- Memory: peak RSS of `mer tag` (main process and whole tree) and `mer predict` on a
  120-minute mp3 (240 4Q clips joined) against a 3-minute one (its start), both
  44.1 kHz stereo 192 kbps. Target: <= 1.10x.

    pytest benchmarks/bench_tag_real.py --benchmark-enable
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from audio_factory import ffmpeg_or_skip  # noqa: E402
from bench_tag import peak_memory  # noqa: E402  (the memory sampler both suites use)

from mer_plugin.backbones.bfloat16 import bfloat16_supported  # noqa: E402
from mer_plugin.backbones.int8 import int8_engine  # noqa: E402
from mer_plugin.features import iter_segments  # noqa: E402
from mer_plugin.inference import load_model, resolve_model  # noqa: E402
from mer_plugin.inference.predict import predict_stream  # noqa: E402
from mer_plugin.tagging import load_for_tagging, tag_fields  # noqa: E402
from mer_plugin.tagging.run import outcome_of  # noqa: E402
from mer_plugin.tags import write_tags  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "4q-dev"
TRACKS, CLIPS = 12, 8  # 8 clips of 30 s: 4-min tracks
ENCODE = {
    "mp3": ["-ar", "44100", "-ac", "2", "-b:a", "192k"],
    "flac": ["-ar", "44100", "-ac", "2", "-sample_fmt", "s16"],
    "m4a": ["-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "256k"],
}
TARGET_X, TARGET_RATIO = 300, 1.6


def _clips() -> list[Path]:
    if not DATA.is_dir():
        pytest.skip(f"no 4Q clips at {DATA}")
    return sorted(DATA.glob("Q*/*.opus"))


def _join(clips: list[Path], out: Path, args: list[str]) -> None:
    inputs = [arg for clip in clips for arg in ("-i", str(clip))]
    joined = f"concat=n={len(clips)}:v=0:a=1"
    cmd = [ffmpeg_or_skip(), "-v", "error", "-y", *inputs, "-filter_complex", joined, *args]
    partial = out.with_name(f"partial-{out.name}")
    subprocess.run([*cmd, "-f", "ipod" if out.suffix == ".m4a" else out.suffix[1:], partial])
    partial.replace(out)


@pytest.fixture(scope="session", params=list(ENCODE))
def library(request, kept_dir: Path) -> list[Path]:
    fmt = request.param
    folder = kept_dir / "tag-real" / fmt
    folder.mkdir(parents=True, exist_ok=True)
    clips = _clips()
    tracks = []
    for i in range(TRACKS):
        path = folder / f"{i:02d}.{fmt}"
        if not path.exists():
            _join(clips[i * CLIPS : (i + 1) * CLIPS], path, ENCODE[fmt])
        tracks.append(path)
    return tracks


def _audio_seconds(library: list[Path]) -> float:
    from mer_plugin.audio import audio_info

    return sum(audio_info(path).duration or 0.0 for path in library)


def timed(batches: Iterator[np.ndarray], cpu: Counter) -> Iterator[np.ndarray]:
    """`batches`, the CPU seconds spent making them (decoding) added to cpu["decode"]."""
    while True:
        start = time.process_time()
        batch = next(batches, None)
        cpu["decode"] += time.process_time() - start
        if batch is None:
            return
        yield batch


def sequential(library: list[Path]) -> tuple[float, Counter]:
    """The reference loop, model loaded beforehand (`predict_file`'s stream, decoding
    timed apart): its wall time and CPU seconds per stage (all threads)."""
    model = load_model(resolve_model(None))
    cpu: Counter = Counter()
    start = time.perf_counter()
    for path in library:
        begin = time.process_time()
        prediction = predict_stream(model, timed(iter_segments(path, model.spec), cpu))
        written = time.process_time()
        write_tags(path, tag_fields(outcome_of(path, prediction), model.release))
        cpu["write"] += time.process_time() - written
        cpu["model"] += written - begin
    cpu["model"] -= cpu["decode"]
    return time.perf_counter() - start, cpu


def mer_tag(library: list[Path], cache: Path, *args: str) -> tuple[float, float]:
    """`mer tag` in a fresh process: wall and CPU seconds (its workers included)."""
    mer = Path(sys.executable).with_name("mer")
    env = {**os.environ, "MER_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [mer, "tag", str(library[0].parent), "--force", "-q", *args]
    subprocess.run(cmd, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


@pytest.mark.benchmark(group="mer tag on real music")
def test_real_music(benchmark, library, summary, tmp_path) -> None:
    load_for_tagging(None, "cpu")  # Numba's cache warm before anything is timed
    audio = _audio_seconds(library)
    reference, stages = sequential(library)
    jobs1, _ = mer_tag(library, tmp_path / "c1", "--jobs", "1")
    fast, _ = mer_tag(library, tmp_path / "c3", "--model", "fast")  # mer-4q 2, one backbone
    floated, _ = mer_tag(library, tmp_path / "c4", "--precision", "float32")
    int8 = int8_engine() is not None
    only_int8 = mer_tag(library, tmp_path / "c5", "--precision", "int8")[0] if int8 else None
    cpu: list[float] = []

    def run() -> float:
        wall, seconds = mer_tag(library, tmp_path / "c2")
        cpu.append(seconds)
        return wall

    wall = benchmark.pedantic(run, rounds=1)
    x = audio / wall
    benchmark.extra_info.update(x_realtime=round(x), vs_reference=round(reference / wall, 2))
    fmt = library[0].suffix[1:]
    verdict = "met" if x >= TARGET_X and reference / wall >= TARGET_RATIO else "NOT met"
    per_stage = ", ".join(f"{stage} {s:.1f}" for stage, s in stages.items())
    auto = "+".join(p for p, has in (("int8", int8), ("bfloat16", bfloat16_supported())) if has)
    int8_alone = f"{only_int8:.1f} s = {audio / only_int8:.0f}x" if only_int8 else "n/a"
    summary.append(
        f"{fmt}: {len(library)} tracks, {audio / 60:.0f} min: `mer tag` {wall:.1f} s = "
        f"{x:.0f}x realtime (auto: {auto or 'float32'}), {cpu[0]:.1f} CPU s "
        f"({reference / wall:.2f}x the sequential "
        f"loop's {reference:.1f} s = {audio / reference:.0f}x, CPU s {per_stage}; --jobs 1: "
        f"{jobs1:.1f} s = {audio / jobs1:.0f}x; --precision int8: {int8_alone}; "
        f"--precision float32: {floated:.1f} s = "
        f"{audio / floated:.0f}x; --model fast: {fast:.1f} s = {audio / fast:.0f}x); "
        f"target {TARGET_X}x and {TARGET_RATIO}x: {verdict}"
    )


# ------------------------------------------------------------------------------ memory

LONG_CLIPS, SHORT_S, MEMORY_TARGET = 240, 180, 1.10  # 240 clips of 30 s: 120 minutes


@pytest.fixture(scope="session")
def long_and_short(kept_dir: Path) -> tuple[Path, Path]:
    """A 120-minute mp3 of real music and its first 3 minutes, made once."""
    folder = kept_dir / "tag-real" / "memory"
    long, short = folder / "long" / "120min.mp3", folder / "short" / "3min.mp3"
    if not short.exists():
        long.parent.mkdir(parents=True, exist_ok=True)
        short.parent.mkdir(parents=True, exist_ok=True)
        listing = folder / "clips.txt"
        listing.write_text("".join(f"file '{c}'\n" for c in _clips()[:LONG_CLIPS]))
        ffmpeg = [ffmpeg_or_skip(), "-v", "error", "-y"]
        joined = ["-f", "concat", "-safe", "0", "-i", str(listing), *ENCODE["mp3"]]
        subprocess.run([*ffmpeg, *joined, long], check=True)
        subprocess.run([*ffmpeg, "-i", long, "-t", str(SHORT_S), "-c", "copy", short], check=True)
    return long, short


@pytest.mark.parametrize("command", ["tag", "predict"])
def test_memory_of_a_long_file(long_and_short, summary, tmp_path, command: str) -> None:
    mer = Path(sys.executable).with_name("mer")
    env = {**os.environ, "MER_CACHE_DIR": str(tmp_path / "cache")}
    peaks = {}
    for path in long_and_short:
        args = ["tag", path.parent, "--force", "-q"] if command == "tag" else ["predict", path]
        peaks[path] = peak_memory([mer, *args], env)
    long, short = (peaks[path] for path in long_and_short)
    ratios = {part: long[part] / short[part] for part in ("main", "tree")}
    verdict = "met" if max(ratios.values()) <= MEMORY_TARGET else "NOT met"
    summary.append(
        f"mer {command}, 120-min vs 3-min mp3: main process {long['main'] / 1e6:.0f} / "
        f"{short['main'] / 1e6:.0f} MB = {ratios['main']:.2f}x, process tree "
        f"{long['tree'] / 1e6:.0f} / {short['tree'] / 1e6:.0f} MB = {ratios['tree']:.2f}x "
        f"(target <= {MEMORY_TARGET:.2f}x: {verdict})"
    )
