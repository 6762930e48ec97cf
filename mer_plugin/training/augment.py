"""The augmented views of SSSL (and of every method's training), in one place.

All work on log-mel: gain and noise are applied to the mel *power* (the spec's log
compression undone, then redone), so a view is what the front-end would have given for
louder or noisier audio. Time shift moves a segment's start within its clip. Every
function takes a numpy `Generator`; the same seed gives the same views.
"""

from __future__ import annotations

import numpy as np

from mer_plugin.frontend import FrontEndSpec
from mer_plugin.training.settings import AugmentSettings

LN10 = float(np.log(10.0))


def to_power(logmel: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """Undo the spec's log compression: mel power from log-mel."""
    if spec.log == "log10_1p":
        return np.expm1(logmel * LN10) / spec.log_gain
    if spec.log == "log":
        return np.maximum(np.exp(logmel) - spec.log_floor, 0.0)
    if spec.log == "db":
        return np.power(10.0, logmel / 10.0)
    return logmel


def from_power(power: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """The spec's log compression of mel power."""
    power = np.maximum(power, 0.0)
    if spec.log == "log10_1p":
        return np.log1p(spec.log_gain * power) / LN10
    if spec.log == "log":
        return np.log(power + spec.log_floor)
    if spec.log == "db":
        return 10.0 * np.log10(np.maximum(power, spec.log_floor))
    return power


def jitter_starts(
    starts: np.ndarray,
    lengths: np.ndarray,
    spec: FrontEndSpec,
    settings: AugmentSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Segment starts moved by up to `shift` * hop frames each way, kept inside the clip."""
    reach = int(settings.shift * spec.segment_hop_frames)
    moved = starts + rng.integers(-reach, reach + 1, size=len(starts))
    return np.clip(moved, 0, np.maximum(lengths - spec.segment_frames, 0))


def crop(length: int, settings: AugmentSettings, rng: np.random.Generator) -> tuple[int, int]:
    """(start, frames) of a random crop of a clip for a clip-level view."""
    frames = max(1, int(round(length * settings.clip_crop)))
    return int(rng.integers(0, length - frames + 1)), frames


def augment(
    segments: np.ndarray,
    spec: FrontEndSpec,
    settings: AugmentSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Gain, noise and frequency masks on log-mel segments (B, frames, n_mels); a new array."""
    batch = len(segments)
    power = to_power(segments.astype(np.float64), spec)
    gain_db = rng.uniform(-settings.gain_db, settings.gain_db, size=batch)
    power *= (10.0 ** (gain_db / 10.0))[:, None, None]
    power += _noise(power, settings, rng)
    out = from_power(power, spec).astype(np.float32)
    _mask_bands(out, settings, rng)
    return out


def _noise(power: np.ndarray, settings: AugmentSettings, rng: np.random.Generator) -> np.ndarray:
    """White noise in the mel power domain (flat over slaney-normalised bands) at a random
    SNR, for a `noise_probability` share of the segments; each cell fluctuates like the
    power of a few averaged FFT bins (Gamma, shape 4)."""
    batch = len(power)
    low, high = settings.noise_snr_db
    snr_db = rng.uniform(low, high, size=batch)
    level = power.mean(axis=(1, 2)) / 10.0 ** (snr_db / 10.0)
    level *= rng.random(batch) < settings.noise_probability
    return level[:, None, None] * rng.gamma(4.0, 0.25, size=power.shape)


def _mask_bands(out: np.ndarray, settings: AugmentSettings, rng: np.random.Generator) -> None:
    """Replace up to `freq_mask_bands` adjacent mel bands by the segment's mean, in place."""
    n_mels = out.shape[2]
    top = min(settings.freq_mask_bands, n_mels - 1)
    if top < 1:
        return
    for i in range(len(out)):
        fill = out[i].mean()
        for _ in range(settings.freq_masks):
            width = int(rng.integers(1, top + 1))
            first = int(rng.integers(0, n_mels - width + 1))
            out[i, :, first : first + width] = fill
