"""Log-mel kernel and stream: parity with torchaudio, exact streaming, edge cases.

Parity tolerance: `assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * max|ref|)`,
elementwise. The atol term is needed because both sides run a float32 FFT whose
rounding error scales with a frame's total energy, not with each bin's: a mel
band 60 dB below the loudest one carries a relative error far above float32's
eps in torch too, and log outputs near zero (ln x or dB around x = 1) turn tiny
absolute errors into large relative ones. 1e-4 of the output's range is well
below anything a model can notice and well above float32 FFT noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from mer_plugin.frontend import MUSICNN, FrontEndSpec
from mer_plugin.kernels import melspec
from mer_plugin.logmel import LogMelStream, _prepare, log_mel, n_frames, silent_segments

SPECS = {
    "musicnn": MUSICNN,
    "htk-22k-2048": FrontEndSpec(
        sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128, mel_scale="htk", norm=None
    ),
    "n400-nocenter-ln": FrontEndSpec(
        n_fft=400, hop_length=160, n_mels=80, center=False, log="log", mel_scale="htk", norm=None
    ),
    "db-1024": FrontEndSpec(n_fft=1024, hop_length=320, n_mels=64, log="db"),
    "fmin-fmax": FrontEndSpec(f_min=50.0, f_max=7000.0, n_mels=64, mel_scale="htk"),
    "odd-nfft": FrontEndSpec(n_fft=401, hop_length=100, n_mels=40, log="none"),
}


def torch_log_mel(x: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """The reference: torchaudio's MelSpectrogram, then the spec's log in torch."""
    mel = torchaudio.transforms.MelSpectrogram(
        spec.sample_rate,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        f_min=spec.f_min,
        f_max=spec.f_max,
        n_mels=spec.n_mels,
        norm=spec.norm,
        mel_scale=spec.mel_scale,
        center=spec.center,
    )
    with torch.no_grad():
        m = mel(torch.from_numpy(x)).double()
    if spec.log == "log10_1p":
        m = torch.log10(1 + spec.log_gain * m)
    elif spec.log == "log":
        m = torch.log(m + spec.log_floor)
    elif spec.log == "db":
        m = 10 * torch.log10(torch.clamp(m, min=spec.log_floor))
    return m.T.numpy()


def assert_parity(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def music_like(n: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Noise plus a few tones at a moderate level, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 440.0, 1234.5, 3000.0))
    return (0.05 * rng.standard_normal(n) + 0.1 * tones).astype(np.float32)


# --- building blocks ---


@pytest.mark.parametrize("scale", ["htk", "slaney"])
@pytest.mark.parametrize("norm", [None, "slaney"])
@pytest.mark.parametrize(("sr", "n_freqs", "n_mels", "f_min", "f_max"), [
    (16000, 257, 96, 0.0, 8000.0),
    (22050, 1025, 128, 0.0, 11025.0),
    (44100, 201, 40, 30.0, 15000.0),
])  # fmt: skip
def test_filterbank_matches_torchaudio(scale, norm, sr, n_freqs, n_mels, f_min, f_max):
    """Ours is computed in float64, torch's in float32: band edges rounded to float32
    (~1e-7 * f_max Hz) over band widths of tens of Hz move weights by ~1e-5 of the peak."""
    ours = melspec.mel_filterbank(n_freqs, f_min, f_max, n_mels, sr, norm, scale)
    ref = torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sr, norm, scale)
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-4, atol=5e-5 * ref.max().item())


def test_sparse_filterbank_round_trip():
    fb = melspec.mel_filterbank(257, 0.0, 8000.0, 96, 16000, "slaney", "slaney")
    lo, off, weights = melspec.sparse_filterbank(fb)
    dense = np.zeros_like(fb)
    for j in range(fb.shape[1]):
        dense[lo[j] : lo[j] + off[j + 1] - off[j], j] = weights[off[j] : off[j + 1]]
    assert np.array_equal(dense, fb)
    assert weights.size < fb.size / 10  # mostly zeros: that is the point


@pytest.mark.parametrize("n", [7, 400, 512, 2048])
def test_hann_window_matches_torch(n):
    """Both float32; torch evaluates the cosine in float32, we in float64 (a few ulps)."""
    np.testing.assert_allclose(melspec.hann_window(n), torch.hann_window(n).numpy(), atol=1e-6)


@pytest.mark.parametrize("n_fft", [2, 3, 4, 6, 8, 12, 30, 64, 100, 128, 400, 512, 1024, 2048, 401])
def test_kernel_power_spectrum(n_fft):
    """Identity 'filterbank' and no log: the kernel's |rFFT|^2 against numpy's."""
    hop, frames = max(1, n_fft // 3), 37  # 37: a partial chunk of lanes as well
    x = np.random.default_rng(n_fft).standard_normal(n_fft + hop * (frames - 1))
    x = x.astype(np.float32)
    n_bins = n_fft // 2 + 1
    lo, off = np.arange(n_bins), np.arange(n_bins + 1)
    window = melspec.hann_window(n_fft)
    out = np.empty((frames, n_bins), np.float32)
    args = (x, 0, hop, window, *melspec.fft_plan(n_fft), lo, off, np.ones(n_bins, np.float32))
    melspec.log_mel_frames(*args, melspec.NONE, np.float32(1), np.float32(0), out, 2)
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)
    ref = np.abs(np.fft.rfft(x[idx].astype(np.float64) * window, axis=1)) ** 2
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-5 * ref.max())


def test_kernel_refuses_frames_outside_the_signal():
    prep = _prepare(MUSICNN)
    out = np.empty((3, 96), np.float32)
    with pytest.raises(ValueError):
        melspec.log_mel_frames(np.zeros(1000, np.float32), 0, 256, *prep, out, 1)
    with pytest.raises(ValueError):
        melspec.log_mel_frames(np.zeros(5000, np.float32), -1, 256, *prep, out, 1)


# --- parity with torchaudio ---


@pytest.mark.parametrize("name", SPECS)
def test_parity_with_torchaudio(name):
    spec = SPECS[name]
    x = music_like(4 * spec.sample_rate + 123, spec.sample_rate)
    assert_parity(log_mel(x, spec), torch_log_mel(x, spec))


def test_parity_on_loud_white_noise():
    x = np.random.default_rng(3).uniform(-1, 1, 16000 * 10).astype(np.float32)
    assert_parity(log_mel(x, MUSICNN), torch_log_mel(x, MUSICNN))


def test_threaded_and_single_thread_calls_agree():
    x = music_like(16000 * 8, 16000)
    whole = log_mel(x, MUSICNN)  # large enough for all threads
    stream = LogMelStream(MUSICNN)
    small = [stream.push(x[i : i + 2048]) for i in range(0, x.size, 2048)]  # one thread
    assert np.array_equal(whole, np.concatenate([*small, stream.finish()]))


# --- streaming ---


def stream_in_blocks(x: np.ndarray, spec: FrontEndSpec, sizes) -> np.ndarray:
    stream = LogMelStream(spec)
    parts, i = [], 0
    for size in sizes:
        parts.append(stream.push(x[i : i + size]))
        assert parts[-1].shape[1:] == (spec.n_mels,)
        i += size
        if i >= x.size:
            break
    parts.append(stream.finish())
    return np.concatenate(parts)


@pytest.mark.parametrize("name", ["musicnn", "htk-22k-2048", "n400-nocenter-ln", "odd-nfft"])
@pytest.mark.parametrize("seed", [0, 1])
def test_stream_equals_whole_signal(name, seed):
    spec = SPECS[name]
    x = music_like(3 * spec.sample_rate + seed * 77, spec.sample_rate, seed)
    rng = np.random.default_rng(seed)
    sizes = rng.choice([0, 1, 2, 7, 100, 255, 256, 257, 1000, 4096, 30000], size=x.size)
    assert np.array_equal(stream_in_blocks(x, spec, sizes), log_mel(x, spec))


@pytest.mark.parametrize("hop", [16, 100])  # 100: hops longer than frames skip samples
@pytest.mark.parametrize("center", [True, False])
def test_stream_sample_by_sample(center, hop):
    spec = FrontEndSpec(n_fft=64, hop_length=hop, n_mels=8, center=center)
    x = music_like(1000, 16000)
    whole = log_mel(x, spec)
    assert np.array_equal(stream_in_blocks(x, spec, [1] * x.size), whole)
    assert_parity(whole, torch_log_mel(x, spec))


def test_stream_emits_frames_as_soon_as_complete():
    # frame 0 needs samples 0..256 (256 is reflected to index -256), frame t > 0
    # samples up to t * 256 + 255
    stream = LogMelStream(MUSICNN)
    assert stream.push(np.zeros(256, np.float32)).shape == (0, 96)
    assert stream.push(np.zeros(1, np.float32)).shape == (1, 96)
    assert stream.push(np.zeros(254, np.float32)).shape == (0, 96)
    assert stream.push(np.zeros(1, np.float32)).shape == (1, 96)
    assert stream.finish().shape == (1, 96)  # 512 samples: 1 + 512 // 256 = 3 frames


def test_stream_memory_is_bounded():
    spec = MUSICNN
    stream = LogMelStream(spec)
    block = music_like(4096, 16000)
    for _ in range(200):
        stream.push(block)
        assert stream.n_buffered <= spec.n_fft + block.size
    assert stream.n_samples == 200 * block.size


def test_stream_restarts_after_finish():
    x = music_like(20000, 16000)
    stream = LogMelStream(MUSICNN)
    first = np.concatenate([stream.push(x), stream.finish()])
    again = np.concatenate([stream.push(x[:5000]), stream.push(x[5000:]), stream.finish()])
    assert np.array_equal(first, again)
    assert np.array_equal(first, log_mel(x, MUSICNN))


# --- edge cases ---


@pytest.mark.parametrize("center", [True, False])
def test_empty_signal(center):
    spec = FrontEndSpec(center=center)
    assert log_mel(np.zeros(0, np.float32), spec).shape == (0, 96)
    assert LogMelStream(spec).finish().shape == (0, 96)


@pytest.mark.parametrize("n", [1, 2, 255, 256, 257, 258, 511, 512, 513, 767])
@pytest.mark.parametrize("center", [True, False])
def test_short_signals(n, center):
    """Shapes, torch parity where torch is defined, and the zero-padding fallback."""
    spec = FrontEndSpec(center=center)
    x = music_like(n, 16000, seed=n)
    ours = log_mel(x, spec)
    assert ours.shape == (n_frames(n, spec), 96)
    assert np.array_equal(stream_in_blocks(x, spec, [3] * n), ours)
    if not center and n < spec.n_fft:
        assert ours.shape[0] == 0  # torch raises here
    elif not center or n > spec.n_fft // 2:
        assert_parity(ours, torch_log_mel(x, spec))
    else:  # too short to reflect (torch raises): zero-padded, i.e. center=False on zeros+x+zeros
        padded = np.pad(x, spec.n_fft // 2)
        ref = torch_log_mel(padded, FrontEndSpec(center=False))
        assert_parity(ours, ref)


@pytest.mark.parametrize("log", ["log10_1p", "log", "db", "none"])
@pytest.mark.parametrize("center", [True, False])
def test_silence_is_finite(log, center):
    spec = FrontEndSpec(log=log, center=center)
    out = log_mel(np.zeros(16000, np.float32), spec)
    assert out.shape == (n_frames(16000, spec), 96)
    assert np.isfinite(out).all()
    if log in ("log10_1p", "none"):
        assert not out.any()


def test_float64_is_converted_to_float32():
    x = music_like(10000, 16000)
    assert np.array_equal(log_mel(x.astype(np.float64), MUSICNN), log_mel(x, MUSICNN))
    stream = LogMelStream(MUSICNN)
    streamed = np.concatenate([stream.push(x.astype(np.float64)), stream.finish()])
    assert np.array_equal(streamed, log_mel(x, MUSICNN))


def test_read_only_and_strided_input():
    x = music_like(10000, 16000)
    ref = log_mel(x, MUSICNN)
    frozen = x.copy()
    frozen.flags.writeable = False
    assert np.array_equal(log_mel(frozen, MUSICNN), ref)
    stereo = np.stack([x, x], axis=1)
    assert np.array_equal(log_mel(stereo[:, 0], MUSICNN), ref)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.bool_, np.complex64])
def test_non_float_input_is_rejected(dtype):
    with pytest.raises(TypeError):
        log_mel(np.zeros(1000, dtype), MUSICNN)
    with pytest.raises(TypeError):
        LogMelStream(MUSICNN).push(np.zeros(1000, dtype))


def test_multichannel_input_is_rejected():
    with pytest.raises(ValueError):
        log_mel(np.zeros((2, 1000), np.float32), MUSICNN)


@pytest.mark.parametrize("log", ["log10_1p", "db", "log"])
def test_silence_is_quieter_than_a_tone_at_minus_80_dbfs(log: str) -> None:
    spec = FrontEndSpec(log=log)
    rng = np.random.default_rng(0)
    n = 2 * spec.segment_frames * spec.hop_length  # two segments
    t = np.arange(n) / spec.sample_rate

    def silent(x: np.ndarray) -> list[bool]:
        frames = log_mel(x.astype(np.float32), spec)
        segments = frames[: 2 * spec.segment_frames].reshape(2, spec.segment_frames, -1)
        return silent_segments(segments, spec).tolist()

    def db(level: float) -> float:
        return 10 ** (level / 20)

    assert silent(np.zeros(n)) == [True, True]
    assert silent(db(-96) * (rng.random(n) - rng.random(n))) == [True, True]  # 16-bit dither
    assert silent(db(-85) * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)) == [True, True]
    assert silent(db(-75) * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)) == [False, False]
    assert silent(db(-60) * rng.standard_normal(n)) == [False, False]  # a quiet passage
    assert silent(np.concatenate([np.zeros(n // 2), db(-40) * rng.standard_normal(n // 2)])) == [
        True,
        False,
    ]
    assert silent_segments(np.zeros((0, spec.segment_frames, spec.n_mels)), spec).shape == (0,)
