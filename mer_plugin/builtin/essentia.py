"""Song-level essentia descriptors that carry emotion cues, as a fixed-order vector.

Mode, tempo, loudness and brightness are among the strongest hand-made cues for
valence and arousal; stage 2 of SSSL can append this vector to a song's aggregated
segment probabilities.

Analysis rate: 44100 Hz (`ANALYSIS_RATE`). RhythmExtractor2013 and OnsetRate only work
at that rate and the other algorithms assume it by default, so callers should decode at
44100 Hz; other rates are resampled (essentia `Resample`). At most the middle
`MAX_SECONDS` (5 minutes) of a signal are analysed, so the cost of a 2-hour mix is
that of a 5-minute song.

Features, in `FEATURE_NAMES` order (fallback for silence or too-short audio):

==========================  ==================================================  ========
name                        meaning (algorithm)                                 fallback
==========================  ==================================================  ========
key_pitch_class             key tonic, C=0 … B=11, categorical (KeyExtractor,   0
                            Krumhansl profile)
key_mode                    1.0 major, 0.0 minor, 0.5 undetermined              0.5
key_strength                correlation with the key profile, 0…1               0
tempo_bpm                   tempo (RhythmExtractor2013, multifeature); ≥ 4 s    0
beat_confidence             beat-tracking confidence, 0…5.32 (same)             0
onset_rate                  onsets per second (OnsetRate)                       0
loudness_lufs               integrated loudness, EBU R128, of the mono signal   -70
                            played on both channels (LoudnessEBUR128)
loudness_range_lu           loudness range, LU (same)                           0
dynamic_complexity          mean deviation from global loudness, dB             0
                            (DynamicComplexity)
danceability                DFA danceability, about 0…3 (Danceability)          0
spectral_centroid_mean      frame-wise spectral centroid mean, Hz, over         0
                            non-silent 2048-sample frames (Centroid)
spectral_centroid_std       its standard deviation, Hz                          0
==========================  ==================================================  ========

Audio whose integrated loudness is at or below -70 LUFS (the EBU R128 absolute gate)
counts as silence and gets every fallback. Every value is a finite float.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np

from mer_plugin.hookspecs import Extractor, hookimpl

ANALYSIS_RATE = 44100
MAX_SECONDS = 300.0
SILENCE_LUFS = -70.0
MIN_KEY_SECONDS = 1.0  # about ten 4096-sample HPCP frames
MIN_RHYTHM_SECONDS = 4.0  # shorter clips give erratic tempi
FRAME_SIZE = 2048
HOP_SIZE = 1024
_SILENT_FRAME_RMS = 10 ** (SILENCE_LUFS / 20)

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_ENHARMONIC = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb"}

FALLBACKS: dict[str, float] = {
    "key_pitch_class": 0.0,
    "key_mode": 0.5,
    "key_strength": 0.0,
    "tempo_bpm": 0.0,
    "beat_confidence": 0.0,
    "onset_rate": 0.0,
    "loudness_lufs": SILENCE_LUFS,
    "loudness_range_lu": 0.0,
    "dynamic_complexity": 0.0,
    "danceability": 0.0,
    "spectral_centroid_mean": 0.0,
    "spectral_centroid_std": 0.0,
}
FEATURE_NAMES: tuple[str, ...] = tuple(FALLBACKS)


@cache
def _es() -> ModuleType:
    """essentia.standard, imported on first use (it costs ~0.6 s) with its INFO log off."""
    import essentia

    essentia.log.infoActive = False  # otherwise it prints a MusicExtractorSVM note on import
    import essentia.standard

    return essentia.standard


def describe(signal: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Song-level descriptors of a mono signal, keyed by `FEATURE_NAMES`, all finite."""
    audio = prepare(signal, sample_rate)
    out = dict(FALLBACKS)
    if not len(audio):
        return out
    out.update(_loudness(audio))
    if out["loudness_lufs"] <= SILENCE_LUFS:
        return dict(FALLBACKS)
    out.update(_key(audio))
    out.update(_rhythm(audio))
    out.update(_dynamics(audio))
    out.update(_spectral_centroid(audio))
    return {name: _finite(out[name], FALLBACKS[name]) for name in FEATURE_NAMES}


def feature_vector(descriptors: dict[str, float]) -> np.ndarray:
    """The descriptors as a float32 vector in `FEATURE_NAMES` order."""
    missing = [name for name in FEATURE_NAMES if name not in descriptors]
    if missing:
        raise KeyError(f"descriptors lack {', '.join(missing)}")
    return np.array([descriptors[name] for name in FEATURE_NAMES], dtype=np.float32)


def prepare(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at `ANALYSIS_RATE`: the middle `MAX_SECONDS`, non-finite samples zeroed."""
    audio = np.asarray(signal, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, got shape {audio.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    audio = middle(audio, int(MAX_SECONDS * sample_rate))
    audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    if sample_rate != ANALYSIS_RATE and len(audio):
        resample = _es().Resample(inputSampleRate=sample_rate, outputSampleRate=ANALYSIS_RATE)
        audio = resample(audio)
    return np.ascontiguousarray(audio, dtype=np.float32)


def middle(audio: np.ndarray, max_samples: int) -> np.ndarray:
    """The centred `max_samples` of `audio` (all of it when shorter)."""
    start = max(0, (len(audio) - max_samples) // 2)
    return audio[start : start + max_samples]


def _loudness(audio: np.ndarray) -> dict[str, float]:
    # LoudnessEBUR128 takes stereo: dual mono measures like a stereo track with L == R
    # (3 LU above the same signal measured as a single channel)
    stereo = np.ascontiguousarray(np.stack([audio, audio], axis=1))
    loudness = _es().LoudnessEBUR128(sampleRate=ANALYSIS_RATE)
    _, _, integrated, loudness_range = loudness(stereo)
    return {
        "loudness_lufs": max(_finite(integrated, SILENCE_LUFS), SILENCE_LUFS),
        "loudness_range_lu": loudness_range,
    }


def _key(audio: np.ndarray) -> dict[str, float]:
    if len(audio) < MIN_KEY_SECONDS * ANALYSIS_RATE:
        return {}
    extractor = _es().KeyExtractor(sampleRate=ANALYSIS_RATE, profileType="krumhansl")
    key, scale, strength = extractor(audio)
    if strength <= 0.0:
        return {}
    return {
        "key_pitch_class": float(PITCH_CLASSES.index(_ENHARMONIC.get(key, key))),
        "key_mode": 1.0 if scale == "major" else 0.0,
        "key_strength": strength,
    }


def _rhythm(audio: np.ndarray) -> dict[str, float]:
    if len(audio) < MIN_RHYTHM_SECONDS * ANALYSIS_RATE:
        return {"onset_rate": _es().OnsetRate()(audio)[1]}
    bpm, _, confidence, _, _ = _es().RhythmExtractor2013(method="multifeature")(audio)
    return {
        "tempo_bpm": bpm,
        "beat_confidence": confidence,
        "onset_rate": _es().OnsetRate()(audio)[1],
    }


def _dynamics(audio: np.ndarray) -> dict[str, float]:
    complexity, _ = _es().DynamicComplexity(sampleRate=ANALYSIS_RATE)(audio)
    danceability, _ = _es().Danceability(sampleRate=ANALYSIS_RATE)(audio)
    return {"dynamic_complexity": complexity, "danceability": danceability}


def _spectral_centroid(audio: np.ndarray) -> dict[str, float]:
    es = _es()
    window = es.Windowing(type="hann", size=FRAME_SIZE)
    spectrum = es.Spectrum(size=FRAME_SIZE)
    centroid = es.Centroid(range=ANALYSIS_RATE / 2)
    frames = es.FrameGenerator(audio, frameSize=FRAME_SIZE, hopSize=HOP_SIZE, startFromZero=True)
    values = [centroid(spectrum(window(f))) for f in frames if _rms(f) > _SILENT_FRAME_RMS]
    if not values:
        return {}
    return {
        "spectral_centroid_mean": float(np.mean(values)),
        "spectral_centroid_std": float(np.std(values)),
    }


def _rms(frame: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))


def _finite(value: float, fallback: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else fallback


def describe_file(path: str | Path) -> np.ndarray:
    """The descriptor vector of an audio file: its middle `MAX_SECONDS`, decoded streaming.

    Only the analysed window is held in memory; where the headers give no duration, the
    first `MAX_SECONDS` are analysed.
    """
    from mer_plugin.audio import audio_info, open_stream

    duration = audio_info(path).duration
    skip = max(0.0, ((duration or 0.0) - MAX_SECONDS) / 2)
    window = _window(open_stream(path, ANALYSIS_RATE), round(skip * ANALYSIS_RATE))
    return feature_vector(describe(window, ANALYSIS_RATE))


def _window(blocks: Iterator[np.ndarray], skip: int) -> np.ndarray:
    """At most `MAX_SECONDS` of samples after the first `skip`."""
    wanted = round(MAX_SECONDS * ANALYSIS_RATE)
    kept: list[np.ndarray] = []
    held = 0
    for block in blocks:
        start = min(skip, len(block))
        skip -= start
        piece = block[start : start + wanted - held]
        kept.append(piece)
        held += len(piece)
        if held >= wanted:
            break
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.float32)


@hookimpl
def mer_extractors() -> list[Extractor]:
    """The built-in essentia extractor, registered like any plugin's."""
    return [
        Extractor(
            name="essentia",
            level="song",
            feature_names=FEATURE_NAMES,
            extract=describe_file,
            categorical=("key_pitch_class",),
            description="key and mode, tempo, EBU R128 loudness, dynamics, danceability, "
            "spectral centroid (essentia)",
        )
    ]
