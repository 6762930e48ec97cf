"""MIDI files as audio: the FluidSynth decoder (mer_plugin/builtin/midi.py), on a SoundFont
and MIDI files the tests write (tests/midi_files.py). Skipped where the fluidsynth
program is missing; .ci/run installs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from midi_files import write_midi, write_soundfont

from mer_plugin.audio import open_stream
from mer_plugin.builtin.midi import PEAK, RATE, render
from mer_plugin.datasets import load_dataset
from mer_plugin.errors import AudioError
from mer_plugin.frontend import MUSICNN
from mer_plugin.plugins import get_plugins
from mer_plugin.testing import check_decoder
from mer_plugin.training.cache import frame_cache

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="no fluidsynth")


@pytest.fixture
def soundfont(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_soundfont(tmp_path / "sine.sf2")
    monkeypatch.setenv("MER_SOUNDFONT", str(path))
    return path


def _peak_hz(x: np.ndarray, rate: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x))) * rate / len(x))


def test_the_midi_decoder_keeps_the_decoder_contract(soundfont: Path, tmp_path: Path) -> None:
    (decoder,) = [d for d in get_plugins().decoders(".mid") if d.name == "fluidsynth"]
    sample = write_midi(tmp_path / "two notes.mid", [(69, 1.0), (81, 1.0)])
    check_decoder(decoder, sample, tmp_path)


def test_a_midi_file_sounds_its_notes_at_a_mastered_level(soundfont: Path, tmp_path: Path) -> None:
    """A4 for a second then A5 for a second: 440 Hz, then 880 Hz, peak at `PEAK`; and mer's
    own decoding path resamples it like any file."""
    midi = write_midi(tmp_path / "ünïcode notes.midi", [(69, 1.0), (81, 1.0)])
    audio = render(midi)
    assert audio.dtype == np.float32 and audio.shape[1] == 2
    assert np.abs(audio).max() == pytest.approx(PEAK, rel=1e-5)
    mono = audio.mean(axis=1)
    assert _peak_hz(mono[int(0.2 * RATE) : int(0.9 * RATE)], RATE) == pytest.approx(440, abs=2)
    assert _peak_hz(mono[int(1.2 * RATE) : int(1.9 * RATE)], RATE) == pytest.approx(880, abs=2)
    decoded = np.concatenate(list(open_stream(midi, MUSICNN.sample_rate)))
    assert len(decoded) == pytest.approx(len(audio) * MUSICNN.sample_rate / RATE, abs=2)


def test_a_midi_file_without_notes_is_refused_with_its_reason(
    soundfont: Path, tmp_path: Path
) -> None:
    with pytest.raises(AudioError, match="renders to silence with sine.sf2"):
        render(write_midi(tmp_path / "empty.mid", []))


def test_without_fluidsynth_or_a_soundfont_the_error_says_what_to_install(
    soundfont: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    midi = write_midi(tmp_path / "a.mid", [(69, 0.5)])
    monkeypatch.setenv("MER_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with pytest.raises(AudioError, match="MER_SOUNDFONT=.*missing.sf2: no such file"):
        render(midi)
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth here
    with pytest.raises(AudioError, match="apt install fluidsynth fluid-soundfont-gm"):
        render(midi)


def test_a_dataset_of_midi_files_is_rendered_into_the_frame_cache(
    soundfont: Path, tmp_path: Path
) -> None:
    """Class folders of .mid files train like audio: every clip rendered once, its log-mel
    cached; a file that renders to silence is skipped with its reason."""
    root = tmp_path / "midi set"
    for quadrant, key in (("Q1", 81), ("Q2", 76), ("Q3", 57), ("Q4", 64)):
        (root / quadrant).mkdir(parents=True)
        write_midi(root / quadrant / f"{quadrant}_a.mid", [(key, 3.0), (key + 2, 1.0)])
    write_midi(root / "Q1" / "Q1_silent.mid", [])
    data = load_dataset(root)
    assert len(data.clips) == 5
    frames = frame_cache(data, MUSICNN, tmp_path / "cache")
    assert (frames.rows >= 0).sum() == 4
    (skipped,) = frames.skipped
    assert "Q1_silent.mid: renders to silence" in skipped
    assert all(len(frames.clip(r)) > MUSICNN.segment_frames for r in range(4))


def test_a_new_soundfont_renders_the_midi_set_anew(
    soundfont: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frame cache of MIDI files is keyed by the SoundFont too: after a change of
    $MER_SOUNDFONT the clips are rendered with the new one, not read back stale; going
    back finds the first cache again."""
    root = tmp_path / "midi set"
    for quadrant, key in (("Q1", 81), ("Q2", 76), ("Q3", 57), ("Q4", 64)):
        (root / quadrant).mkdir(parents=True)
        write_midi(root / quadrant / f"{quadrant}.mid", [(key, 3.0), (key + 2, 1.0)])
    data, cache = load_dataset(root), tmp_path / "cache"
    sine = frame_cache(data, MUSICNN, cache)
    monkeypatch.setenv("MER_SOUNDFONT", str(write_soundfont(tmp_path / "o.sf2", overtone=0.8)))
    octave = frame_cache(data, MUSICNN, cache)
    assert octave.key != sine.key
    assert not np.allclose(octave.clip(0), sine.clip(0), atol=0.1)
    monkeypatch.setenv("MER_SOUNDFONT", str(soundfont))
    assert frame_cache(data, MUSICNN, cache).key == sine.key
    assert len(list((cache / "frames").iterdir())) == 2
