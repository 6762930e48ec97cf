"""Extractor features in stage 2: `mer train/eval --extractor essentia`, the model card,
and prediction (`mer predict`, `mer tag` with workers) computing the same features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mer_cli import mer
from synthetic_music import TINY
from test_training import FAST
from tinytag import TinyTag

from mer_plugin.builtin.essentia import FEATURE_NAMES
from mer_plugin.datasets import grouped_folds, load_dataset
from mer_plugin.inference import ModelError, load_model
from mer_plugin.song_extras import ExtractorError, SongExtras
from mer_plugin.training.methods import fit, predict
from mer_plugin.training.prepare import prepare
from mer_plugin.training.stage2 import SONG_C_GRID, fit_classifier, pick_c

USED = [name for name in FEATURE_NAMES if name != "key_pitch_class"]
FAST_CLI = ["--set", "epochs=6", "--set", "warmup_epochs=2", "--set", "views=2"]
FAST_CLI += ["--set", "stage2_folds=2", "--backbone", "shortchunk-cnn", "--quiet"]


def test_extras_leave_out_category_codes() -> None:
    extras = SongExtras.of(["essentia"])
    assert extras.to_card() == [{"name": "essentia", "features": USED}]
    assert extras.size == len(USED) and SongExtras.from_card(extras.to_card()) == extras
    with pytest.raises(ExtractorError, match="no installed plugin provides extractor 'nope'"):
        SongExtras.of(["nope"])
    with pytest.raises(ExtractorError, match="lacks features"):
        SongExtras.from_card([{"name": "essentia", "features": ["key_colour"]}])


def test_segment_method_takes_extractor_features_in_stage_2(dataset_dir, cache_dir) -> None:
    extras = SongExtras.of(["essentia"])
    data = load_dataset(dataset_dir, "Artist")
    prepared = prepare(data, TINY, FAST, cache_dir, clip_level=False, extras=extras)
    ctx = prepared.ctx
    assert ctx.extras is not None and ctx.extras.shape == (len(data.clips), len(USED))
    assert np.isfinite(ctx.extras).all()
    assert len(list((cache_dir / "extras").glob("*.npy"))) == 1  # cached for the next run
    train, test = grouped_folds(ctx.dataset, 2, seed=0)[0]
    fitted = fit("segment", ctx, train, seed=0)
    assert fitted.song is not None and fitted.song.coef.shape == (4, 6 * 4 + len(USED))
    probs = predict(fitted, ctx, test)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="clip method"):
        fit("clip", ctx, train, seed=0)


def test_song_classifier_picks_its_strength_by_grouped_folds() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 12)
    features = rng.normal(size=(48, 5)) + 2 * labels[:, None]
    groups = np.arange(48) // 2
    assert pick_c(features, labels, groups, seed=0) in SONG_C_GRID
    one_each = [0, 12, 24, 36]
    assert pick_c(features[one_each], labels[one_each], groups[one_each], 0) == 1.0  # too few
    song = fit_classifier(features, labels, 4, 0.0, seed=0, groups=groups)
    assert (song.predict_proba(features).argmax(axis=1) == labels).mean() > 0.9


def test_cli_eval_ablation_train_predict_and_tag(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MER_CACHE_DIR", str(tmp_path / "cache"))  # the `mer` subprocesses'
    monkeypatch.setenv("COLUMNS", "160")  # the table's rows unwrapped
    common = ["--group-by", "Artist", *FAST_CLI]
    report_path = tmp_path / "eval.json"
    run = mer(
        "eval", dataset_dir, "--folds", "2", "--methods", "segment", "--noise", "",
        "--extractor", "essentia", "--json", report_path, *common,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    assert set(report["results"]) == {"segment", "segment+essentia"}
    assert report["song_extractors"] == [{"name": "essentia", "features": USED}]
    assert "segment+essentia" in run.stdout

    model = tmp_path / "model"
    run = mer(
        "train", dataset_dir, "--method", "segment", "--extractor", "essentia",
        "--metrics", report_path, "--out", model, *common,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    card = json.loads((model / "model.json").read_text())
    assert card["song_extractors"] == report["song_extractors"]
    assert card["metrics"]["mean"] == report["results"]["segment+essentia"]["mean"]
    assert "essentia" in card["song_level"] and "--extractor essentia" in card["command"]

    clip = next(dataset_dir.glob("Q1/*.wav"))
    run = mer("predict", clip, "--model", model, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["label"] in ("Q1", "Q2", "Q3", "Q4")

    library = tmp_path / "library"
    library.mkdir()
    for source in sorted(dataset_dir.glob("Q*/*_0.wav")):
        shutil.copy(source, library / source.name)
    run = mer("tag", library, "--model", model, "--jobs", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    for path in library.iterdir():
        assert TinyTag.get(path).other["mer_quadrant"], path  # read by a second library


def test_cli_extractor_errors(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    unknown = mer("train", dataset_dir, "--out", out, "--extractor", "nope", "--quiet")
    assert unknown.returncode == 1
    assert "no installed plugin provides extractor 'nope'" in unknown.stderr
    clip = mer(
        "train", dataset_dir, "--out", out, "--method", "clip", "--extractor", "essentia", "-q"
    )
    assert clip.returncode == 1 and "segment or sssl" in clip.stderr
    assert not out.exists()


def test_a_model_needing_a_missing_extractor_says_so(tmp_path: Path) -> None:
    from tiny_model import train_tiny_model

    model = train_tiny_model(tmp_path)
    card_path = model / "model.json"
    card = json.loads(card_path.read_text())
    card["song_extractors"] = [{"name": "lost-plugin", "features": ["x"]}]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="lost-plugin"):
        load_model(model)
