"""Log-mel features for a `FrontEndSpec`: whole signals and streams of blocks.

Frames follow `torch.stft` as used by `torchaudio.transforms.MelSpectrogram`:
frame t covers samples `t * hop - pad ... t * hop - pad + n_fft - 1`, with
`pad = n_fft // 2` when `spec.center` and 0 otherwise, so a signal of L samples
gives `1 + (L + 2 * pad - n_fft) // hop` frames (none if that is below one, and
none for an empty signal). With `center`, samples beyond either end are
reflected (torch's "reflect" padding). A signal of at most `n_fft // 2` samples
cannot be reflected (torch raises); here it is zero-padded instead.

Input is mono audio as a 1-D float array. float32 is used as is; other float
dtypes are converted to float32. Integer (PCM) input is rejected with TypeError:
its scale (1 or 32768 for full scale?) is the decoder's business.

`LogMelStream` gives bit-identical frames to `log_mel` on the concatenated
blocks, whatever the block sizes, and keeps only the samples it still needs.

Calls of 64 frames or more run on `numba.get_num_threads()` threads; that
setting is per calling thread, so a pipeline worker that shares the CPU with
inference can call `numba.set_num_threads(1)` (oversubscribed cores make the
threaded kernel wait for a descheduled worker).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numba
import numpy as np

from mer_plugin.frontend import FrontEndSpec
from mer_plugin.kernels import melspec

_PARALLEL_MIN_FRAMES = 4 * melspec.LANES  # below this, threads cost more than they save


class _Prepared(NamedTuple):
    """Per-spec arrays and constants the kernel takes (see `melspec.log_mel_frames`)."""

    window: np.ndarray
    radices: np.ndarray
    roots: np.ndarray
    post: np.ndarray
    band_lo: np.ndarray
    band_off: np.ndarray
    weights: np.ndarray
    mode: int
    gain: np.float32
    floor: np.float32


@functools.lru_cache(maxsize=16)
def _prepare(spec: FrontEndSpec) -> _Prepared:
    f_max = spec.f_max if spec.f_max is not None else float(spec.sample_rate // 2)
    fb = melspec.mel_filterbank(
        spec.n_freqs, spec.f_min, f_max, spec.n_mels, spec.sample_rate, spec.norm, spec.mel_scale
    )
    radices, roots, post = melspec.fft_plan(spec.n_fft)
    return _Prepared(
        melspec.hann_window(spec.n_fft),
        radices,
        roots,
        post,
        *melspec.sparse_filterbank(fb),
        melspec.LOG_MODES[spec.log],
        np.float32(spec.log_gain),
        np.float32(spec.log_floor),
    )


def _pad(spec: FrontEndSpec) -> int:
    return spec.n_fft // 2 if spec.center else 0


def n_frames(n_samples: int, spec: FrontEndSpec) -> int:
    """How many frames `log_mel` gives for a signal of n_samples."""
    span = n_samples + 2 * _pad(spec) - spec.n_fft
    return 0 if n_samples == 0 or span < 0 else 1 + span // spec.hop_length


def _as_float32(signal: np.ndarray) -> np.ndarray:
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {signal.shape}")
    if not np.issubdtype(signal.dtype, np.floating):
        raise TypeError(f"expected float audio, got {signal.dtype} (scale integer PCM first)")
    x = np.ascontiguousarray(signal, dtype=np.float32)
    # a read-only array is another numba type: copying beats compiling again
    return x if x.flags.writeable else x.copy()


def _run(x: np.ndarray, first: int, out: np.ndarray, prep: _Prepared, hop: int) -> None:
    """Kernel call for frames x[first + t * hop ...] into out (threaded when it pays)."""
    if out.shape[0] == 0:
        return
    threads = numba.get_num_threads() if out.shape[0] >= _PARALLEL_MIN_FRAMES else 1
    melspec.log_mel_frames(x, first, hop, *prep, out, threads)


def _padded(
    buf: np.ndarray, base: int, length: int | None, pad: int, start: int, stop: int
) -> np.ndarray:
    """Samples start..stop-1 of the padded signal, from buf = signal[base:].

    length: the signal's length, or None while unknown (then nothing past the
    end is asked for). Reflects, or zero-pads a signal too short to reflect.
    """
    idx = np.arange(start - pad, stop - pad)
    if length is None or length > pad:
        idx = np.abs(idx)
        if length is not None:
            idx = np.where(idx >= length, 2 * (length - 1) - idx, idx)
        return buf[idx - base]
    seg = np.zeros(idx.size, dtype=np.float32)
    inside = (idx >= 0) & (idx < length)
    seg[inside] = buf[idx[inside] - base]
    return seg


def _frames(
    buf: np.ndarray, base: int, length: int | None, t0: int, t1: int, spec: FrontEndSpec
) -> np.ndarray:
    """Frames t0..t1-1 from buf = signal[base:] (which holds every sample they need)."""
    prep = _prepare(spec)
    hop, n_fft, pad = spec.hop_length, spec.n_fft, _pad(spec)
    out = np.empty((t1 - t0, spec.n_mels), dtype=np.float32)
    # frames lying wholly inside buf are read in place; the few at the edges
    # (reaching before sample 0 or past the end) from small padded copies
    end = base + buf.size
    ta = min(max(-(-pad // hop), t0), t1)
    tb = min(max((end + pad - n_fft) // hop + 1, ta), t1)
    _run(buf, ta * hop - pad - base, out[ta - t0 : tb - t0], prep, hop)
    for lo, hi in ((t0, ta), (tb, t1)):
        if hi > lo:
            seg = _padded(buf, base, length, pad, lo * hop, (hi - 1) * hop + n_fft)
            _run(seg, 0, out[lo - t0 : hi - t0], prep, hop)
    return out


def log_mel(signal: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """Log-mel spectrogram of a mono signal: float32, (n_frames, n_mels), time-major."""
    x = _as_float32(signal)
    return _frames(x, 0, x.size, 0, n_frames(x.size, spec), spec)


class LogMelStream:
    """Log-mel frames of a signal fed block by block.

    `push` returns the frames completed so far (maybe none); `finish` returns the
    rest, those that reach past the end, and resets the stream for a new signal.
    Concatenated, they equal `log_mel` of the concatenated blocks bit for bit.
    """

    def __init__(self, spec: FrontEndSpec) -> None:
        self.spec = spec
        _prepare(spec)
        self._reset()

    def _reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)  # signal[self._base:]
        self._base = 0
        self._done = 0  # frames returned so far

    @property
    def n_samples(self) -> int:
        """Samples pushed so far."""
        return self._base + self._buf.size

    @property
    def n_buffered(self) -> int:
        """Samples held for frames still to come (at most about n_fft + a block)."""
        return self._buf.size

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add samples; returns the frames now complete, (k, n_mels) with k >= 0."""
        block = _as_float32(block)
        if block.size:
            self._buf = np.concatenate([self._buf, block])
        spec, n = self.spec, self.n_samples
        pad = _pad(spec)
        # frame t is complete once its last sample and, with center, the
        # reflected samples up to pad have arrived (pad < n: reflection is certain)
        ready = (n + pad - spec.n_fft) // spec.hop_length + 1 if n > pad else 0
        return self._emit(max(ready, self._done), None)

    def finish(self) -> np.ndarray:
        """The remaining frames (end padding included); then the stream starts afresh."""
        out = self._emit(n_frames(self.n_samples, self.spec), self.n_samples)
        self._reset()
        return out

    def _emit(self, t1: int, length: int | None) -> np.ndarray:
        spec = self.spec
        out = _frames(self._buf, self._base, length, self._done, t1, spec)
        self._done = t1
        # keep what later frames may read: from the next frame's first sample,
        # and the last pad + 1 samples for reflecting the end
        n = self.n_samples
        keep = max(0, min(t1 * spec.hop_length - _pad(spec), n - 1 - _pad(spec)))
        if keep > self._base:
            self._buf = self._buf[keep - self._base :].copy()
            self._base = keep
        return out


# ------------------------------------------------------------------ silence

SILENCE_DBFS = -80.0  # a segment quieter than a tone this far below full scale is silent


@functools.cache
def silence_ceiling(spec: FrontEndSpec) -> float:
    """The loudest log-mel value of a 1 kHz sine at `SILENCE_DBFS` (RMS): a segment whose
    every value lies at or below it holds nothing to hear (digital silence, dither, a
    fade's last breath). Any log compression is monotonic, so this holds for each."""
    t = np.arange(spec.sample_rate) / spec.sample_rate
    tone = np.sqrt(2) * 10 ** (SILENCE_DBFS / 20) * np.sin(2 * np.pi * 1000 * t)
    return float(log_mel(tone.astype(np.float32), spec).max())


def silent_segments(segments: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """Which of the log-mel segments (n, frames, n_mels) are silent (`silence_ceiling`)."""
    if len(segments) == 0:
        return np.zeros(0, bool)
    return segments.reshape(len(segments), -1).max(axis=1) <= silence_ceiling(spec)
