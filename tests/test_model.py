"""Model folders: a trained model saves, reloads, and predicts exactly what training saw."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from synthetic_music import TINY, TinyPlugin, make_dataset

from mer_plugin.datasets import load_dataset
from mer_plugin.inference import ModelError, load_model, predict_file, predict_segments
from mer_plugin.plugins import get_plugins
from mer_plugin.training.methods import fit, predict
from mer_plugin.training.prepare import prepare
from mer_plugin.training.settings import Settings
from mer_plugin.training.train import model_card, model_tensors, save_model, train_model

FAST = Settings(epochs=25, warmup_epochs=5, clip_epochs=60, rampup_epochs=5, stage2_folds=2)
ATOL = 1e-5  # training (batched cached embeddings) against inference (per file)


@pytest.fixture(scope="module", autouse=True)
def tiny_plugin():
    """The tiny backbone, known by name to `load_model` through the plugin hooks."""
    plugins = get_plugins()
    plugins.register(TinyPlugin(), name="tiny-test-plugin")
    yield
    plugins.unregister("tiny-test-plugin")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    root = make_dataset(tmp_path_factory.mktemp("synthetic") / "quadrants", per_class=3)
    return load_dataset(root, "Artist")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize(
    ("method", "song_embedding_c", "heads"),
    [
        ("clip", 0.0, 1),
        ("segment", 0.0, 1),
        ("sssl", 0.0, 1),
        ("segment", 1.0, 1),
        ("sssl", 1.0, 1),
        ("segment", 1.0, 3),  # an ensemble of heads, saved as one
    ],
)
def test_saved_model_predicts_what_training_saw(
    dataset, cache_dir, tmp_path, method, song_embedding_c, heads
) -> None:
    settings = replace(FAST, song_embedding_c=song_embedding_c, heads=heads)
    prepared = prepare(dataset, "tiny-test", settings, cache_dir)
    ctx = prepared.ctx
    rows = np.arange(len(ctx.dataset.clips))
    fitted = fit(method, ctx, rows, seed=0)
    assert (fitted.song_embedding is not None) == (song_embedding_c > 0)
    expected = predict(fitted, ctx, rows)
    card = model_card(prepared, fitted, settings, "tiny", "test", None, "")
    folder = save_model(tmp_path / "model", card, model_tensors(prepared, fitted))
    model = load_model(folder)
    for row, clip in enumerate(ctx.dataset.clips):
        got = predict_file(model, clip.path)
        probs = np.array([got.probabilities[c] for c in model.classes])
        np.testing.assert_allclose(probs, expected[row], atol=ATOL)
    again = load_model(folder)
    a = predict_file(model, ctx.dataset.clips[0].path)
    b = predict_file(again, ctx.dataset.clips[0].path)
    assert a == b


def test_model_folder_and_card(dataset, cache_dir, tmp_path) -> None:
    folder = train_model(dataset, TINY, "sssl", FAST, tmp_path / "m", cache_dir, command="cmd")
    card = json.loads((folder / "model.json").read_text())
    assert card["classes"] == ["Q1", "Q2", "Q3", "Q4"]
    assert card["moods"] == {"Q1": "Happy", "Q2": "Angry", "Q3": "Sad", "Q4": "Calm"}
    assert card["method"] == "sssl" and card["command"] == "cmd"
    assert Settings.from_dict(card["settings"]) == FAST
    assert card["backbone"]["frontend"] == TINY.spec.to_dict()
    assert card["training_data"]["clips"] == len(dataset.clips)
    tensors = load_file(folder / "model.safetensors")
    assert any(k.startswith("head.") for k in tensors) and "song.coef" in tensors
    # a backbone without shipped weights travels inside the model
    assert card["backbone"]["weights_in_model"] and "backbone.out.weight" in tensors
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    # others may read a model whoever trained it, as the umask allows (not owner-only)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes["model.safetensors"] == modes["model.json"]


def test_a_model_saved_again_replaces_the_old_and_sweeps_a_killed_save(
    dataset, cache_dir, tmp_path
) -> None:
    folder = train_model(dataset, TINY, "segment", FAST, tmp_path / "m", cache_dir)
    card, tensors = (
        json.loads((folder / "model.json").read_text()),
        load_file(folder / "model.safetensors"),
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".m.part-{dead.pid}"  # a save killed part way
    left.mkdir()
    (left / "model.json").write_text("{")
    card["command"] = "saved again"
    save_model(folder, card, tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert load_model(folder).card.data["command"] == "saved again"


def test_a_long_song_is_classified_in_training_length_windows(dataset, cache_dir, tmp_path):
    """Stage 2 learned from clips of `song_window` segments: a song of two such clips is
    the mean of the two, not one classification of features spread over both."""
    from mer_plugin.features import file_segments

    folder = train_model(dataset, TINY, "sssl", FAST, tmp_path / "m", cache_dir)
    model = load_model(folder)
    window = model.song_window
    assert (
        window
        == json.loads((folder / "model.json").read_text())["training_data"]["segments_per_clip"]
    )
    clips = [file_segments(c.path, model.spec) for c in dataset.clips]
    a, b = [segments[:window] for segments in clips if len(segments) >= window][:2]

    def probs(segments: np.ndarray) -> np.ndarray:
        return np.array(list(predict_segments(model, segments).probabilities.values()))

    both = probs(np.concatenate([a, b]))
    np.testing.assert_allclose(both, (probs(a) + probs(b)) / 2, atol=1e-9)
    assert len(predict_segments(model, np.concatenate([a, b])).timeline) == 2 * window


def test_prediction_fields(dataset, cache_dir, tmp_path) -> None:
    folder = train_model(dataset, TINY, "segment", FAST, tmp_path / "m", cache_dir)
    model = load_model(folder)
    result = predict_file(model, dataset.clips[0].path)
    p = result.probabilities
    assert result.valence == pytest.approx(p["Q1"] + p["Q4"])
    assert result.arousal == pytest.approx(p["Q1"] + p["Q2"])
    assert result.quadrant == max(p, key=p.get) and result.mood in ("Happy", "Angry", "Sad", "Calm")
    assert 0.0 <= result.confidence <= 1.0
    seconds = model.spec.segment_seconds
    assert result.timeline[1].start == pytest.approx(seconds)
    assert result.timeline[0].end == pytest.approx(seconds)
    assert json.dumps(result.to_dict())
    with pytest.raises(ModelError):
        predict_segments(model, np.empty((0, 32, 32), np.float32))


def test_finetuned_backbone_is_saved(dataset, cache_dir, tmp_path) -> None:
    settings = replace(FAST, finetune=1, epochs=2, warmup_epochs=1, views=2)
    folder = train_model(dataset, TINY, "segment", settings, tmp_path / "m", cache_dir)
    card = json.loads((folder / "model.json").read_text())
    assert card["backbone"]["finetuned_groups"] == ["out"]
    model = load_model(folder)
    first = predict_file(model, dataset.clips[0].path)
    assert first == predict_file(load_model(folder), dataset.clips[0].path)


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a model folder"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path)


def test_segments_of_several_songs_batched_together_keep_their_own_order(
    dataset, cache_dir, tmp_path
) -> None:
    """Batches filled across songs (as on a GPU) give each song what it alone would."""
    from mer_plugin.features import file_segments
    from mer_plugin.inference.predict import SegmentBatcher, song_segments

    settings = replace(FAST, song_embedding_c=1.0)  # embedding moments are kept per song too
    model = load_model(train_model(dataset, TINY, "segment", settings, tmp_path / "m", cache_dir))
    songs = [file_segments(c.path, model.spec) for c in dataset.clips[:3]]
    alone = [song_segments(model, [s]) for s in songs]
    batcher = SegmentBatcher(model, size=5)
    for start in range(0, max(map(len, songs)), 3):  # interleaved, 3 segments at a time
        for i, segments in enumerate(songs):
            batcher.add(i, segments[start : start + 3])
    batcher.add("failed", songs[0][:2])
    batcher.discard("failed")
    for i, expected in enumerate(alone):
        got = batcher.finish(i)
        np.testing.assert_allclose(got.probs, expected.probs, atol=1e-6)
        assert got.moments is not None and expected.moments is not None
        assert got.moments.count == len(songs[i])
        np.testing.assert_allclose(got.moments.features(), expected.moments.features(), atol=1e-5)


def test_embedding_moments_added_in_pieces_are_the_mean_and_std() -> None:
    from mer_plugin.inference.heads import EmbeddingMoments

    embeddings = np.random.default_rng(0).normal(3.0, 2.0, (50, 7)).astype(np.float32)
    moments = EmbeddingMoments(7)
    for piece in np.array_split(embeddings, [1, 20, 21]):  # pieces of 1, 19, 1 and 29 rows
        moments.add(piece)
    expected = np.concatenate([embeddings.mean(0), embeddings.std(0)])
    np.testing.assert_allclose(moments.features(), expected, rtol=1e-5)


def test_a_budget_analyses_every_stride_th_segment(dataset, cache_dir, tmp_path) -> None:
    from mer_plugin.budget import Budget

    model = load_model(train_model(dataset, TINY, "segment", FAST, tmp_path / "m", cache_dir))
    path = dataset.clips[0].path
    full = predict_file(model, path)
    capped = Budget(max_segments=2)
    stride = capped.stride_for(len(full.timeline))
    assert stride > 1
    for budget, picked in ((capped, full.timeline[::stride]), (Budget(3), full.timeline[::3])):
        got = predict_file(model, path, budget)
        assert [s.start for s in got.timeline] == pytest.approx([s.start for s in picked])
        for mine, want in zip(got.timeline, picked, strict=True):
            assert mine.probabilities == pytest.approx(want.probabilities, abs=1e-6)
    assert len(predict_file(model, path, capped).timeline) <= 2


def test_a_near_tie_is_analysed_whole(dataset, cache_dir, tmp_path) -> None:
    """A first pass whose song is a near tie (any margin is, below 1) brings the rest of
    the segments: the song (embedding moments included) and timeline are the full
    analysis'."""
    from mer_plugin.budget import Budget

    settings = replace(FAST, song_embedding_c=1.0)
    model = load_model(train_model(dataset, TINY, "segment", settings, tmp_path / "m", cache_dir))
    assert model.song_embedding is not None
    path = dataset.clips[0].path
    full = predict_file(model, path)
    both = predict_file(model, path, Budget(stride=3, near_tie=1.0))
    assert [s.start for s in both.timeline] == [s.start for s in full.timeline]
    assert both.probabilities == pytest.approx(full.probabilities, abs=1e-6)
    for mine, want in zip(both.timeline, full.timeline, strict=True):
        assert mine.probabilities == pytest.approx(want.probabilities, abs=1e-6)
