"""`mer tag` on real music, as users have it, beside the plain sequential loop.

Target, on this 2-core CPU with the default model: >= 300x realtime end to end for the
mp3 tracks, process start included, and >= 1.6x the sequential reference of the same
run. Reported, not asserted: timings on a shared machine vary.

- Library: per format, 12 tracks of 4 min made with ffmpeg by joining eight 30-s 4Q
  clips of one quadrant (`../shared/data/4q-dev`; skipped without it or without
  ffmpeg): 44.1 kHz stereo mp3 at 192 kbps, flac 16-bit, m4a AAC at 256 kbps. Made once
  into pytest's cache folder.
- `mer tag FOLDER --force` as a user runs it (a fresh process: imports, model load,
  workers included), with its defaults and with --jobs 1, wall clock.
- Reference: the plain loop in one process, after the model is loaded: each file
  streamed through decode, segments and the model (`predict_file`), its tags written.

    pytest benchmarks/bench_tag_real.py --benchmark-enable
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from audio_factory import ffmpeg_or_skip  # noqa: E402

from mer_plugin.inference import load_model, predict_file, resolve_model  # noqa: E402
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


def sequential(library: list[Path]) -> float:
    """The reference loop; its wall time, model loaded beforehand."""
    model = load_model(resolve_model(None))
    start = time.perf_counter()
    for path in library:
        prediction = predict_file(model, path)
        write_tags(path, tag_fields(outcome_of(path, prediction), model.release))
    return time.perf_counter() - start


def mer_tag(library: list[Path], cache: Path, *args: str) -> float:
    mer = Path(sys.executable).with_name("mer")
    env = {**os.environ, "MER_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    cmd = [mer, "tag", str(library[0].parent), "--force", "-q", *args]
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - start


@pytest.mark.benchmark(group="mer tag on real music")
def test_real_music(benchmark, library, summary, tmp_path) -> None:
    load_for_tagging(None, "cpu")  # Numba's cache warm before anything is timed
    audio = _audio_seconds(library)
    reference = sequential(library)
    jobs1 = mer_tag(library, tmp_path / "c1", "--jobs", "1")
    wall = benchmark.pedantic(mer_tag, args=(library, tmp_path / "c2"), rounds=1)
    x = audio / wall
    benchmark.extra_info.update(x_realtime=round(x), vs_reference=round(reference / wall, 2))
    fmt = library[0].suffix[1:]
    verdict = "met" if x >= TARGET_X and reference / wall >= TARGET_RATIO else "NOT met"
    summary.append(
        f"{fmt}: {len(library)} tracks, {audio / 60:.0f} min: `mer tag` {wall:.1f} s = "
        f"{x:.0f}x realtime ({reference / wall:.2f}x the sequential loop's {reference:.1f} s "
        f"= {audio / reference:.0f}x; --jobs 1: {jobs1:.1f} s = {audio / jobs1:.0f}x); "
        f"target {TARGET_X}x and {TARGET_RATIO}x: {verdict}"
    )
