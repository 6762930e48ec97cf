"""Essentia song-level descriptors on generated audio: key/mode, tempo, loudness, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from mer_plugin.builtin.essentia import (
    ANALYSIS_RATE,
    FALLBACKS,
    FEATURE_NAMES,
    MAX_SECONDS,
    describe,
    feature_vector,
    middle,
    prepare,
)

SR = ANALYSIS_RATE


def note(midi: int, seconds: float, sr: int = SR) -> np.ndarray:
    """A decaying harmonic tone (six partials) with a 20 ms attack."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    partials = sum(0.6**k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(6))
    return partials * np.minimum(1.0, t / 0.02) * np.exp(-t)


def progression(chords: list[list[int]], repeats: int = 2, sr: int = SR) -> np.ndarray:
    """One second per chord (bass plus triad), the progression played `repeats` times."""
    bars = [sum(note(m, 1.0, sr) for m in chord) / len(chord) for chord in chords]
    return (0.5 * np.concatenate(bars * repeats)).astype(np.float32)


C_MAJOR = [[48, 60, 64, 67], [53, 60, 65, 69], [55, 59, 62, 67], [48, 60, 64, 67]]  # C F G C
C_MINOR = [[48, 60, 63, 67], [53, 60, 65, 68], [55, 59, 62, 67], [48, 60, 63, 67]]  # Cm Fm G Cm


def click_track(bpm: float, seconds: float, sr: int = SR) -> np.ndarray:
    """Short noise bursts (2 ms decay) on every beat."""
    out = np.zeros(int(seconds * sr), dtype=np.float32)
    n = int(0.01 * sr)
    burst = np.random.default_rng(0).standard_normal(n) * np.exp(-np.arange(n) / (0.002 * sr))
    for start in (np.arange(0.0, seconds, 60.0 / bpm) * sr).astype(int):
        end = min(start + n, len(out))
        out[start:end] += 0.5 * burst[: end - start]
    return out


@pytest.fixture(scope="module")
def major() -> dict[str, float]:
    return describe(progression(C_MAJOR), SR)


def test_major_progression_is_c_major(major: dict[str, float]) -> None:
    assert major["key_pitch_class"] == 0.0
    assert major["key_mode"] == 1.0
    assert major["key_strength"] > 0.5


def test_minor_progression_is_c_minor() -> None:
    minor = describe(progression(C_MINOR), SR)
    assert minor["key_pitch_class"] == 0.0
    assert minor["key_mode"] == 0.0
    assert minor["key_strength"] > 0.5


@pytest.mark.parametrize("bpm", [120.0, 90.0])
def test_click_track_tempo(bpm: float) -> None:
    described = describe(click_track(bpm, 10.0), SR)
    assert described["tempo_bpm"] == pytest.approx(bpm, abs=2.0)
    assert described["beat_confidence"] > 1.0
    assert described["onset_rate"] == pytest.approx(bpm / 60, rel=0.25)


def test_other_rates_are_resampled() -> None:
    rate = 22050
    assert describe(click_track(120.0, 10.0, rate), rate)["tempo_bpm"] == pytest.approx(120, abs=2)
    described = describe(progression(C_MAJOR, sr=rate), rate)
    assert (described["key_pitch_class"], described["key_mode"]) == (0.0, 1.0)


def test_louder_signal_has_higher_loudness() -> None:
    signal = progression(C_MAJOR, repeats=1)
    quiet, loud = describe(0.1 * signal, SR), describe(0.5 * signal, SR)
    gain_db = 20 * np.log10(5)
    assert loud["loudness_lufs"] - quiet["loudness_lufs"] == pytest.approx(gain_db, abs=0.5)
    assert -70.0 < quiet["loudness_lufs"] < loud["loudness_lufs"] < 0.0


def test_brighter_tone_has_higher_centroid() -> None:
    t = np.arange(2 * SR) / SR
    low, high = (describe(0.3 * np.sin(2 * np.pi * f * t), SR) for f in (200.0, 2000.0))
    assert low["spectral_centroid_mean"] < high["spectral_centroid_mean"]
    assert high["spectral_centroid_mean"] == pytest.approx(2000, rel=0.1)


@pytest.mark.parametrize("seconds", [0.0, 0.001, 5.0])
def test_silence_gives_the_fallbacks(seconds: float) -> None:
    assert describe(np.zeros(int(seconds * SR), dtype=np.float32), SR) == FALLBACKS


def test_half_second_signal_is_finite_with_fallback_tempo() -> None:
    described = describe(progression(C_MAJOR)[: SR // 2], SR)
    assert list(described) == list(FEATURE_NAMES)
    assert all(np.isfinite(v) for v in described.values())
    assert described["loudness_lufs"] > -70.0
    assert (described["tempo_bpm"], described["beat_confidence"]) == (0.0, 0.0)
    assert (described["key_mode"], described["key_strength"]) == (0.5, 0.0)


def test_non_finite_samples_are_zeroed() -> None:
    signal = progression(C_MAJOR, repeats=1)
    signal[::100] = np.nan
    signal[1] = np.inf
    assert all(np.isfinite(v) for v in describe(signal, SR).values())


def test_vector_has_documented_length_and_order(major: dict[str, float]) -> None:
    assert len(FEATURE_NAMES) == 12 and len(set(FEATURE_NAMES)) == 12
    assert FEATURE_NAMES[:3] == ("key_pitch_class", "key_mode", "key_strength")
    vector = feature_vector(major)
    assert vector.dtype == np.float32 and vector.shape == (len(FEATURE_NAMES),)
    assert vector == pytest.approx([major[name] for name in FEATURE_NAMES], rel=1e-6)
    with pytest.raises(KeyError, match="tempo_bpm"):
        feature_vector({k: v for k, v in major.items() if k != "tempo_bpm"})


def test_long_signals_are_cropped_to_their_middle() -> None:
    assert middle(np.arange(10), 4).tolist() == [3, 4, 5, 6]
    assert middle(np.arange(3), 4).tolist() == [0, 1, 2]
    extra = 1000
    long = np.zeros(int(MAX_SECONDS * SR) + extra, dtype=np.float32)
    long[extra // 2] = 1.0  # first sample of the middle
    cropped = prepare(long, SR)
    assert len(cropped) == int(MAX_SECONDS * SR) and cropped[0] == 1.0


def test_rejects_multichannel_input() -> None:
    with pytest.raises(ValueError, match="mono"):
        describe(np.zeros((SR, 2), dtype=np.float32), SR)


def test_extractor_is_a_builtin_plugin_reading_files(make_audio) -> None:
    from mer_plugin.plugins import get_plugins

    extractor = get_plugins().extractors()["essentia"]
    assert extractor.level == "song"
    assert extractor.feature_names == FEATURE_NAMES
    vector = extractor.extract(make_audio("tone.flac", seconds=6.0, sample_rate=44100))
    assert vector.shape == (len(FEATURE_NAMES),)
    assert np.isfinite(vector).all()


def test_window_keeps_the_middle_without_holding_the_rest() -> None:
    from mer_plugin.builtin.essentia import ANALYSIS_RATE, MAX_SECONDS, _window

    total = round((MAX_SECONDS + 20) * ANALYSIS_RATE)
    blocks = (np.arange(i, min(i + 65536, total), dtype=np.float32) for i in range(0, total, 65536))
    window = _window(blocks, skip=10 * ANALYSIS_RATE)
    assert len(window) == round(MAX_SECONDS * ANALYSIS_RATE)
    assert window[0] == 10 * ANALYSIS_RATE
