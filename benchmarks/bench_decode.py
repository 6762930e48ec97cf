"""Decode + down-mix + resample to 16 kHz, and the whole front-end (+ log-mel +
segments): speed (x realtime) and flat memory.

Targets (the reference machine: a laptop-class CPU, one core per file):
  - the whole tagging pipeline runs at >= 300x realtime, so decode + resample
    of a 5-minute stereo mp3 may take at most a third of that budget:
    >= 900x realtime (5 min in <= 0.33 s). Reported, not asserted (a loaded
    machine misses it); what fails the run is falling below 300x, at which
    decoding alone would break the pipeline target;
  - m4a: the chosen decoder (PyAV, streaming) is faster than essentia's
    loaders on the same file;
  - decode + resample + log-mel + segments (`iter_segments`, musicnn spec) of a
    5-minute mp3: >= 300x realtime (asserted);
  - peak RSS of decoding (and of the whole front-end) for a 60-minute file is
    within 10 % of a 3-minute one (each measured in a fresh subprocess).

References side by side in the same run: essentia's MonoLoader (decodes the
whole file, down-mixes and resamples) and soundfile's whole-file read + soxr;
for the front-end, MonoLoader + torchaudio's MelSpectrogram.

    pytest benchmarks/bench_decode.py --benchmark-enable

Test audio is generated once (stereo 44.1 kHz noise, ~140 kb/s mp3, 128 kb/s
AAC; a tone for FLAC) and kept in pytest's cache folder (.pytest_cache), so
only the first run pays for encoding the 60-minute files (~2 min).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import soundfile as sf
import soxr
from audio_factory import write_audio_once  # noqa: E402

from mer_plugin.audio import open_stream
from mer_plugin.features import iter_segments
from mer_plugin.frontend import MUSICNN

RATE = 16000
SHORT_S, LONG_S = 180, 3600
BENCH_S = 300
RSS_TOLERANCE = 0.10
SPEED_TARGET_X = 900  # reported against; timings on a shared machine vary
PIPELINE_TARGET_X = 300  # asserted: decode alone slower than this fails the pipeline


@pytest.fixture(scope="session")
def audio_dir(kept_dir: Path) -> Path:
    folder = kept_dir / "decode"
    folder.mkdir(exist_ok=True)
    return folder


def bench_file(folder: Path, fmt: str, seconds: int) -> Path:
    """A kept test file; written the first time it is asked for."""
    kind = "tone" if fmt == "flac" else "noise"  # noise does not compress
    path = folder / f"{seconds}s.{fmt}"
    return write_audio_once(path, seconds, sample_rate=44100, channels=2, kind=kind)


# ------------------------------------------------------------------ decoders


def mer_stream(path: Path) -> int:
    return sum(len(block) for block in open_stream(path, RATE))


def essentia_monoloader(path: Path) -> int:
    import essentia.standard as es

    return len(es.MonoLoader(filename=str(path), sampleRate=RATE)())


def soundfile_whole(path: Path) -> int:
    audio, rate = sf.read(path, dtype="float32")
    return len(soxr.resample(audio.mean(axis=1), rate, RATE, quality="HQ"))


def mer_segments(path: Path) -> int:
    """Samples covered by the file's log-mel segments (decode + resample + kernels)."""
    segments = sum(len(batch) for batch in iter_segments(path, MUSICNN))
    return segments * MUSICNN.segment_hop_frames * MUSICNN.hop_length


def essentia_torchaudio_segments(path: Path) -> int:
    """The usual Python front-end: whole-file load, torchaudio log-mel, unfold to segments."""
    import essentia.standard as es
    import torch
    import torchaudio

    spec = MUSICNN
    mel = torchaudio.transforms.MelSpectrogram(
        spec.sample_rate, spec.n_fft, hop_length=spec.hop_length, n_mels=spec.n_mels,
        norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    audio = torch.from_numpy(es.MonoLoader(filename=str(path), sampleRate=RATE)())
    frames = torch.log10(1 + spec.log_gain * mel(audio)).T
    segments = frames.unfold(0, spec.segment_frames, spec.segment_hop_frames)
    return len(segments) * spec.segment_hop_frames * spec.hop_length


def run_speed(benchmark, summary: list[str], name: str, fn: Callable[[Path], int], path: Path):
    fn(path)  # warm caches and imports outside the timing
    frames = benchmark.pedantic(fn, args=(path,), rounds=5, iterations=1)
    assert abs(frames - BENCH_S * RATE) <= 0.01 * BENCH_S * RATE
    if benchmark.stats is not None:  # None under --benchmark-disable
        x = BENCH_S / benchmark.stats.stats.min
        benchmark.extra_info["x_realtime"] = round(x)
        summary.append(f"{benchmark.group} {name}: {x:.0f}x realtime")
        return x
    return None


# -------------------------------------------------------------------- speed


@pytest.mark.benchmark(group="mp3 5 min -> 16 kHz")
def test_mp3_mer_pyav(benchmark, audio_dir, summary) -> None:
    path = bench_file(audio_dir, "mp3", BENCH_S)
    x = run_speed(benchmark, summary, "mer (PyAV, streaming)", mer_stream, path)
    if x is not None:
        verdict = "met" if x >= SPEED_TARGET_X else "NOT met (a loaded machine?)"
        summary.append(f"  target >= {SPEED_TARGET_X}x realtime: {verdict}")
        # below the pipeline's own floor, the 300x pipeline target is out of reach
        assert x >= PIPELINE_TARGET_X, f"{x:.0f}x realtime < {PIPELINE_TARGET_X}x"


@pytest.mark.benchmark(group="mp3 5 min -> 16 kHz")
def test_mp3_essentia_monoloader(benchmark, audio_dir, summary) -> None:
    path = bench_file(audio_dir, "mp3", BENCH_S)
    run_speed(benchmark, summary, "essentia MonoLoader", essentia_monoloader, path)


@pytest.mark.benchmark(group="mp3 5 min -> 16 kHz")
def test_mp3_soundfile_whole_file(benchmark, audio_dir, summary) -> None:
    path = bench_file(audio_dir, "mp3", BENCH_S)
    run_speed(benchmark, summary, "soundfile whole file + soxr", soundfile_whole, path)


@pytest.mark.benchmark(group="m4a 5 min -> 16 kHz")
def test_m4a_mer_pyav(benchmark, audio_dir, summary) -> None:
    path = bench_file(audio_dir, "m4a", BENCH_S)
    run_speed(benchmark, summary, "mer (PyAV, streaming)", mer_stream, path)


@pytest.mark.benchmark(group="m4a 5 min -> 16 kHz")
def test_m4a_essentia_monoloader(benchmark, audio_dir, summary) -> None:
    path = bench_file(audio_dir, "m4a", BENCH_S)
    run_speed(benchmark, summary, "essentia MonoLoader", essentia_monoloader, path)


@pytest.mark.benchmark(group="mp3 5 min -> log-mel segments")
def test_mp3_front_end_mer(benchmark, audio_dir, summary) -> None:
    path = bench_file(audio_dir, "mp3", BENCH_S)
    x = run_speed(benchmark, summary, "mer (stream, Numba kernels)", mer_segments, path)
    if x is not None:
        assert x >= PIPELINE_TARGET_X, f"{x:.0f}x realtime < {PIPELINE_TARGET_X}x"


@pytest.mark.benchmark(group="mp3 5 min -> log-mel segments")
def test_mp3_front_end_essentia_torchaudio(benchmark, audio_dir, summary) -> None:
    path = bench_file(audio_dir, "mp3", BENCH_S)
    name = "essentia MonoLoader + torchaudio"
    run_speed(benchmark, summary, name, essentia_torchaudio_segments, path)


# ------------------------------------------------------------------- memory

_CHILD = """
import json, resource, sys

def peak():
    # VmHWM: this process's own peak (ru_maxrss keeps the parent's across fork + exec)
    try:
        with open("/proc/self/status") as status:
            line = next(s for s in status if s.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS: bytes

how, path = sys.argv[1], sys.argv[2]
if how == "mer":
    from mer_plugin.audio import open_stream
    imports = peak()
    frames = sum(len(b) for b in open_stream(path, 16000))
elif how == "mer-segments":
    from mer_plugin.features import iter_segments
    from mer_plugin.frontend import MUSICNN as spec
    imports = peak()
    segments = sum(len(b) for b in iter_segments(path, spec))
    frames = segments * spec.segment_hop_frames * spec.hop_length
else:
    import essentia.standard as es
    imports = peak()
    frames = len(es.MonoLoader(filename=path, sampleRate=16000)())
print(json.dumps({"frames": frames, "peak": peak(), "imports": imports}))
"""


def peak_rss(how: str, path: Path) -> dict:
    """Peak RSS (bytes) of a fresh interpreter that decodes `path` to 16 kHz."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, how, str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["mer", "mer-segments"])  # decode; decode + front-end
@pytest.mark.parametrize("fmt", ["mp3", "m4a", "flac"])  # PyAV, PyAV, soundfile
def test_peak_rss_is_flat_in_track_length(audio_dir, summary, fmt: str, how: str) -> None:
    short = peak_rss(how, bench_file(audio_dir, fmt, SHORT_S))
    long = peak_rss(how, bench_file(audio_dir, fmt, LONG_S))
    assert long["frames"] == pytest.approx(LONG_S * RATE, rel=0.002)
    growth = long["peak"] / short["peak"] - 1
    summary.append(
        f"peak RSS {fmt} ({how}): 3 min {_mb(short['peak'])}, 60 min {_mb(long['peak'])} "
        f"({growth:+.1%}; after imports {_mb(short['imports'])})"
    )
    assert growth <= RSS_TOLERANCE


@pytest.mark.slow
def test_peak_rss_essentia_reference(audio_dir, summary) -> None:
    short = peak_rss("essentia", bench_file(audio_dir, "m4a", SHORT_S))
    long = peak_rss("essentia", bench_file(audio_dir, "m4a", LONG_S))
    growth = long["peak"] / short["peak"] - 1
    summary.append(
        f"peak RSS m4a (essentia MonoLoader, reference): 3 min {_mb(short['peak'])}, "
        f"60 min {_mb(long['peak'])} ({growth:+.1%})"
    )
    assert np.isfinite(growth)
