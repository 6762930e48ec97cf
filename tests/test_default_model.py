"""The default model ships inside the package and works offline, with its card."""

from __future__ import annotations

import json
import socket

import pytest
from mer_cli import mer

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
