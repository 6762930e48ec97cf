"""The default model ships inside the package and works offline, with its card."""

from __future__ import annotations

import json
import socket

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mer_cli import mer
from synthetic_music import SAMPLE_RATE, signal

from mer_plugin.budget import DEFAULT_BUDGET
from mer_plugin.errors import SilentTrack
from mer_plugin.inference import load_model, predict_file, read_card, resolve_model
from mer_plugin.inference.folder import shipped_models_dir


def test_default_model_is_shipped_with_its_card() -> None:
    folder = resolve_model()
    assert folder == shipped_models_dir() / "default"
    card = json.loads((folder / "model.json").read_text())
    assert card["classes"] == ["Q1", "Q2", "Q3", "Q4"]
    assert card["moods"] == {"Q1": "Happy", "Q2": "Angry", "Q3": "Sad", "Q4": "Calm"}
    assert card["metrics"]["protocol"]["folds"] == 5 and card["metrics"]["protocol"]["grouped"]
    assert 0 < card["metrics"]["mean"]["macro_f1"] <= 1
    assert card["command"].startswith("mer train ")
    assert "without a licence" in card["licence"]["training_data"]
    size = sum(path.stat().st_size for path in folder.iterdir())
    assert size < 10 * 2**20


def test_default_model_predicts_offline(make_audio, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(socket, "socket", no_network)
    result = predict_file(load_model(resolve_model()), make_audio("song.flac", seconds=7))
    assert result.label in {"Q1", "Q2", "Q3", "Q4"}
    assert result.mood in {"Happy", "Angry", "Sad", "Calm"}
    assert 0 <= result.valence <= 1 and 0 <= result.arousal <= 1
    assert len(result.timeline) == 2


def test_mer_predict_uses_the_default_model(make_audio) -> None:
    completed = mer("predict", make_audio("tune.mp3", seconds=7), "--json")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["model"].startswith("mer-4q")
    assert report["mood"] in {"Happy", "Angry", "Sad", "Calm"}


def test_the_fast_model_ships_beside_the_default_and_is_chosen_by_name(make_audio) -> None:
    default, fast = read_card(resolve_model()), read_card(resolve_model("fast"))
    assert (default.name, fast.name) == ("mer-4q", "mer-4q")
    assert default.release != fast.release  # tags written by either are told apart
    assert default.backbone.name == "musicnn-msd+mtt+vgg-msd+mtt"
    assert fast.backbone.name == "musicnn-msd"
    completed = mer("predict", make_audio("tune.wav", seconds=7), "--json", "--model", "fast")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["model"] == fast.release


def _song_then_silence(path, silence_s: float, level_db: float = 0.0):
    """Synthetic Q1 music (8 s, scaled by `level_db`), then `silence_s` of digital zeros."""
    music = signal("Q1", 8.0, np.random.default_rng(0)) * np.float32(10 ** (level_db / 20))
    sf.write(
        path,
        np.concatenate([music, np.zeros(int(silence_s * SAMPLE_RATE), np.float32)]),
        SAMPLE_RATE,
    )
    return path


def test_silence_after_a_song_leaves_its_emotion_as_it_was(tmp_path) -> None:
    # a hidden track's minutes of silence, a long gap before the end of a recording
    model = load_model(resolve_model())
    short = predict_file(model, _song_then_silence(tmp_path / "short.flac", 4.0))
    long = predict_file(model, _song_then_silence(tmp_path / "long.flac", 90.0))
    assert len(short.timeline) == 4 and len(long.timeline) == 32  # every segment shown
    assert [s.silent for s in short.timeline] == [False, False, False, True]  # from 9 s on
    assert sum(s.silent for s in long.timeline) == 29
    assert long.label == short.label
    for quadrant, p in short.probabilities.items():
        assert long.probabilities[quadrant] == pytest.approx(p, abs=1e-5)


def test_quiet_music_is_not_silence(tmp_path) -> None:
    quiet = _song_then_silence(tmp_path / "quiet.flac", 0.0, level_db=-40.0)  # peaks ~ -50 dBFS
    assert predict_file(load_model(resolve_model()), quiet).label in {"Q1", "Q2", "Q3", "Q4"}


@pytest.mark.parametrize("noise", [0.0, 1 / 32768], ids=["digital-zero", "16-bit-dither"])
def test_a_silent_track_gets_no_emotion(tmp_path, noise: float) -> None:
    path = tmp_path / "Stille – silence.flac"
    rng = np.random.default_rng(0)
    sf.write(
        path, noise * (rng.random(30 * SAMPLE_RATE) - rng.random(30 * SAMPLE_RATE)), SAMPLE_RATE
    )
    with pytest.raises(SilentTrack, match="silent: nothing louder than -80 dBFS"):
        predict_file(load_model(resolve_model()), path)
    completed = mer("tag", tmp_path)  # skipped, saying why: nothing failed
    assert completed.returncode == 0, completed.stderr
    assert "silent: nothing louder than -80 dBFS" in completed.stdout
    assert "mood" not in (mutagen.File(path).tags or {})  # Vorbis comments: any case


def test_a_budget_that_hears_only_silence_analyses_the_rest(tmp_path) -> None:
    # 66 s, sound only in the second 3-s segment: the budget's first pass (every third
    # segment) hears nothing, so the rest is analysed, not the track called silent
    music = signal("Q2", 2.9, np.random.default_rng(0))
    x = np.zeros(66 * SAMPLE_RATE, np.float32)
    start = int(3.0 * SAMPLE_RATE)
    x[start : start + len(music)] = music
    sf.write(tmp_path / "gap.flac", x, SAMPLE_RATE)
    result = predict_file(load_model(resolve_model()), tmp_path / "gap.flac", DEFAULT_BUDGET)
    assert len(result.timeline) == 22  # every segment, after both passes
