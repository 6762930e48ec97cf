"""Backbone speed on this CPU: segments per second, and file -> tags time for a 30 s clip.

- `backbone` group: MSD-musicnn (our PyTorch port) and the from-scratch short-chunk CNN,
  fp32, one batch of 64 random 3 s log-mel segments, on all cores and on one
  (`extra_info.segments_per_second`).
- `predict batch size` group: MSD-musicnn on 128 segments in calls of `predict.BATCH` (16,
  what prediction uses) beside calls of 64. Measured here (2026-11-26, medians of 5):
  1.329 s vs 1.340 s; separately, peak RSS 672-676 MB vs 750 MB (/proc VmHWM).
- `clip_30s` group: a 30 s 44.1 kHz WAV -> the 50 MSD tags per 3 s segment, decode,
  resample, log-mel and model included; ours (`mer_plugin.features.file_segments` +
  MusiCNN) beside the original TensorFlow extractor (`musicnn.extractor.extractor`, which
  builds its graph and restores the checkpoint on every call), the latter only where
  `tensorflow` and `musicnn` are importable (skipped otherwise), all cores.

Target: ours at least 5x faster per 30 s clip than the original TensorFlow extractor on the
same machine, in the same run.

OpenMP threads are made to sleep rather than spin while waiting (OMP_WAIT_POLICY=PASSIVE,
set before torch loads): with Numba's OpenMP layer and torch's in one process, or any other
load on the cores, spinning threads made inference up to 10x slower on a 2-core machine.

    pytest benchmarks/bench_backbone.py --benchmark-enable
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch (and numba) load OpenMP

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from mer_plugin.backbones import create_backbone, get_backbone  # noqa: E402
from mer_plugin.frontend import MUSICNN  # noqa: E402
from mer_plugin.inference import predict  # noqa: E402

CORES = os.cpu_count() or 1
torch.set_num_threads(CORES)

BATCH = 64
CLIP_SECONDS = 30.0
CLIP_RATE = 44100


def segments_per_second(benchmark, n_segments: int) -> None:
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["segments_per_second"] = n_segments / benchmark.stats.stats.mean


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30 s mono WAV at 44.1 kHz: a few harmonic notes over quiet noise, seeded."""
    rng = np.random.default_rng(0)
    t = np.arange(int(CLIP_SECONDS * CLIP_RATE)) / CLIP_RATE
    chord = [(220.0, 0.5), (277.2, 0.7), (329.6, 1.1)]  # (pitch Hz, tremolo Hz)
    notes = sum(np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * r * t)) for f, r in chord)
    audio = 0.1 * notes + 0.02 * rng.standard_normal(t.size)
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, (audio / np.abs(audio).max() * 0.5).astype(np.float32), CLIP_RATE)
    return path


@pytest.fixture(params=sorted({1, CORES}), ids=lambda n: f"{n}thread")
def threads(request: pytest.FixtureRequest) -> int:
    """Torch intra-op threads for one test: one core, then all of them."""
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(CORES)


@pytest.mark.parametrize("name", ["musicnn-msd", "shortchunk-cnn"])
@pytest.mark.benchmark(group="backbone")
def test_backbone_batch64(benchmark, name: str, threads: int) -> None:
    spec = get_backbone(name).spec
    model = create_backbone(name, pretrained=name == "musicnn-msd")
    x = torch.randn(BATCH, spec.segment_frames, spec.n_mels) + 2.0

    def infer() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    infer()  # warm-up outside the timing
    out = benchmark.pedantic(infer, rounds=5, warmup_rounds=1)
    assert out.shape == (BATCH, model.embedding_size)
    segments_per_second(benchmark, BATCH)


@pytest.mark.parametrize("batch", [predict.BATCH, 64], ids=lambda b: f"batch{b}")
@pytest.mark.benchmark(group="predict batch size")
def test_musicnn_predict_batches(benchmark, batch: int) -> None:
    """128 segments through MSD-musicnn in calls of `predict.BATCH` (what predict uses)
    beside calls of 64. Target: no slower (it holds a quarter of the activations)."""
    net = create_backbone("musicnn-msd")
    x = torch.randn(128, MUSICNN.segment_frames, MUSICNN.n_mels) + 2.0

    def infer() -> list[torch.Tensor]:
        with torch.inference_mode():
            return [net(chunk) for chunk in x.split(batch)]

    infer()
    benchmark.pedantic(infer, rounds=5, warmup_rounds=1)
    segments_per_second(benchmark, len(x))


@pytest.mark.benchmark(group="clip_30s")
def test_clip_ours(benchmark, clip: Path) -> None:
    features = pytest.importorskip("mer_plugin.features", reason="streaming front-end missing")
    model = create_backbone("musicnn-msd")

    def file_to_tags() -> torch.Tensor:
        segments = torch.from_numpy(features.file_segments(clip, MUSICNN))
        with torch.inference_mode():
            return model.tag_probs(segments)

    file_to_tags()  # JIT-compiles (or loads) the kernels outside the timing
    tags = benchmark.pedantic(file_to_tags, rounds=5, warmup_rounds=1)
    assert tags.shape == (10, 50)


@pytest.mark.benchmark(group="clip_30s")
def test_clip_original_tensorflow(benchmark, clip: Path) -> None:
    pytest.importorskip("tensorflow", reason="original musicnn needs TensorFlow")
    extractor = pytest.importorskip("musicnn.extractor", reason="musicnn not installed")

    def file_to_tags() -> np.ndarray:
        taggram, _ = extractor.extractor(str(clip), model="MSD_musicnn", extract_features=False)
        return taggram

    taggram = benchmark.pedantic(file_to_tags, rounds=3, warmup_rounds=1)
    assert taggram.shape == (10, 50)
