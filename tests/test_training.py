"""Training: caches, augmentations, the three methods, the GMM split, cross-validation and
the `mer train` / `mer eval` commands, end to end on generated audio (seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from mer_cli import mer
from synthetic_music import TINY, TINY_SPEC, TinyPlugin, make_dataset
from tiny_model import train_tiny_model
from typer.testing import CliRunner

from mer_plugin.backbones import get_backbone
from mer_plugin.cli.app import app
from mer_plugin.datasets import DatasetError, grouped_folds, load_dataset, load_unlabelled
from mer_plugin.frontend import MUSICNN, FrontEndSpec
from mer_plugin.hookspecs import Backbone, hookimpl
from mer_plugin.inference.folder import load_model
from mer_plugin.plugins import get_plugins
from mer_plugin.training import cache as cache_module
from mer_plugin.training.augment import augment, from_power, to_power
from mer_plugin.training.backbone import build_backbone
from mer_plugin.training.cache import (
    JoinedFrames,
    SegmentTable,
    embed_view,
    embedding_cache,
    frame_cache,
)
from mer_plugin.training.evaluate import EvalOptions, evaluate, gmm_check, metrics
from mer_plugin.training.methods import fit, fit_segment_head, head_seeds, predict
from mer_plugin.training.prepare import prepare
from mer_plugin.training.settings import AugmentSettings, Settings, SettingsError
from mer_plugin.training.sources import FrozenCacheSource, OnlineSource
from mer_plugin.training.stage2 import fit_classifier
from mer_plugin.training.train import train_model

# enough steps for a head to separate the four generated classes, still under a second
FAST = Settings(epochs=25, warmup_epochs=5, clip_epochs=60, rampup_epochs=5, stage2_folds=2)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "4q-dev"


@pytest.fixture(scope="module")
def prepared(dataset_dir: Path, cache_dir: Path):
    return prepare(load_dataset(dataset_dir, "Artist"), TINY, FAST, cache_dir)


@pytest.fixture
def tiny_plugin():
    plugins = get_plugins()
    plugin = plugins.register(TinyPlugin(), name="tiny-test-plugin")
    yield plugin
    plugins.unregister("tiny-test-plugin")


class TwoTiny:
    """tiny-test and a second copy under another name, to fuse."""

    def __init__(self, other: Backbone) -> None:
        self.other = other

    @hookimpl
    def mer_backbones(self) -> list[Backbone]:
        return [TINY, self.other]


# ------------------------------------------------------------------------------ pieces


def test_settings_overrides() -> None:
    settings = Settings().with_overrides(["tau=0.6", "prior_penalty=false", "augment.gain_db=3"])
    assert (settings.tau, settings.prior_penalty, settings.augment.gain_db) == (0.6, False, 3.0)
    assert Settings.from_dict(settings.to_dict()) == settings
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings().with_overrides(["taus=1"])
    with pytest.raises(SettingsError) as error:
        Settings().with_overrides(["epochs=2"])  # the default warm-up (10) is too long
    assert str(error.value) == (
        "invalid settings: warmup_epochs=10: 0 to epochs (2); "
        "set both, e.g. --set epochs=2 --set warmup_epochs=0"
    )

    with pytest.raises(SettingsError, match="heads=0: at least 1"):
        Settings(heads=0)
    with pytest.raises(SettingsError, match="heads=3: an ensemble of heads needs a frozen"):
        Settings().with_overrides(["heads=3", "finetune=1"])


def test_mer_settings_lists_every_setting_with_its_meaning() -> None:
    listing = mer("settings", env={"COLUMNS": "200"})
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if "│" in line}
    names = [f.name for f in fields(Settings) if f.name != "augment"]
    names += [f"augment.{f.name}" for f in fields(AugmentSettings)]
    assert set(rows) == set(names)
    assert "0 to epochs" not in rows["warmup_epochs"] and "at most epochs" in rows["warmup_epochs"]


@pytest.mark.parametrize("log", ["log10_1p", "log", "db", "none"])
def test_power_round_trip(log: str) -> None:
    spec = FrontEndSpec(log=log)
    power = np.random.default_rng(0).gamma(2.0, 0.01, size=(3, 10, 96))
    np.testing.assert_allclose(to_power(from_power(power, spec), spec), power, rtol=1e-6)


def test_augment_is_seeded_and_neutral_when_off() -> None:
    segments = np.random.default_rng(1).uniform(0, 3, size=(4, 187, 96)).astype(np.float32)
    settings = AugmentSettings()
    a = augment(segments, MUSICNN, settings, np.random.default_rng(5))
    b = augment(segments, MUSICNN, settings, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, segments)
    off = AugmentSettings(gain_db=0.0, freq_masks=0, noise_probability=0.0)
    same = augment(segments, MUSICNN, off, np.random.default_rng(5))
    np.testing.assert_allclose(same, segments, atol=1e-4)


def test_louder_view_is_louder() -> None:
    segments = np.full((1, 10, 96), 1.0, np.float32)
    up = AugmentSettings(gain_db=6.0, freq_masks=0, noise_probability=0.0)
    views = augment(np.repeat(segments, 50, 0), MUSICNN, up, np.random.default_rng(0))
    gains = views.mean(axis=(1, 2))
    assert gains.min() < 1.0 < gains.max()


def test_segment_table() -> None:
    spec = FrontEndSpec(segment_frames=10, segment_hop_frames=5)
    table = SegmentTable.of(np.array([10, 24, 12]), spec)
    assert list(table.clip) == [0, 1, 1, 1, 2]
    assert list(table.start) == [0, 0, 5, 10, 0]
    assert list(table.ids_of(np.array([2, 0]))) == [4, 0]


def test_frame_cache_skips_unreadable_and_is_reused(dataset_dir: Path, tmp_path: Path) -> None:
    broken = dataset_dir / "Q1" / "Q1_broken.wav"
    broken.write_text("not audio")
    try:
        data = load_dataset(dataset_dir)
        cache = frame_cache(data, TINY_SPEC, tmp_path)
        assert len(cache.skipped) == 1 and "Q1_broken.wav" in cache.skipped[0]
        assert (cache.rows >= 0).sum() == len(data.clips) - 1
        row = int(cache.rows[1])
        again = frame_cache(data, TINY_SPEC, tmp_path)
        assert again.folder == cache.folder
        np.testing.assert_array_equal(again.clip(row), cache.clip(row))
    finally:
        broken.unlink()


def test_a_cache_stopped_while_written_leaves_nothing_behind(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the log-mel is cached removes its half-written copy; the copy a killed
    process left (a dead PID in its name) goes when that cache is next built."""
    data = load_dataset(dataset_dir)
    real, calls = cache_module.clip_frames, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "clip_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        frame_cache(data, TINY_SPEC, tmp_path)
    assert list((tmp_path / "frames").iterdir()) == []
    monkeypatch.undo()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cache = frame_cache(data, TINY_SPEC, tmp_path)
    left = cache.folder.with_name(f".{cache.folder.name}.part-{dead.pid}")
    left.mkdir()
    (left / "frames.f32").write_bytes(b"half")
    shutil.rmtree(cache.folder)
    again = frame_cache(data, TINY_SPEC, tmp_path)
    assert [p.name for p in (tmp_path / "frames").iterdir()] == [again.folder.name]


def test_a_dataset_moved_elsewhere_keeps_its_cache(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same files in another folder are not decoded again, and a clip skipped when the
    cache was built is reported under the path it has now."""
    broken = dataset_dir / "Q1" / "Q1_broken.wav"
    broken.write_text("not audio")
    try:
        cache = frame_cache(load_dataset(dataset_dir), TINY_SPEC, tmp_path / "cache")
        moved = shutil.copytree(dataset_dir, tmp_path / "música copiada")
    finally:
        broken.unlink()
    decoded = []
    monkeypatch.setattr(cache_module, "clip_frames", lambda path, spec: decoded.append(path))
    again = frame_cache(load_dataset(moved), TINY_SPEC, tmp_path / "cache")
    assert again.folder == cache.folder and decoded == []
    reason = cache.skipped[0].removeprefix(f"{broken}: ")
    assert again.skipped == [f"{moved / 'Q1' / 'Q1_broken.wav'}: {reason}"] != cache.skipped


def test_frame_cache_follows_content_not_mtime(dataset_dir: Path, tmp_path: Path) -> None:
    data = load_dataset(dataset_dir)
    cache = frame_cache(data, TINY_SPEC, tmp_path)
    clip = data.clips[0].path
    original, stat = clip.read_bytes(), clip.stat()
    try:
        os.utime(clip, ns=(1, 1))  # the data re-created elsewhere: same bytes, new mtimes
        assert frame_cache(load_dataset(dataset_dir), TINY_SPEC, tmp_path).folder == cache.folder
        clip.write_bytes(original[:-2] + bytes([original[-2] ^ 1, original[-1]]))
        edited = frame_cache(load_dataset(dataset_dir), TINY_SPEC, tmp_path)
        assert edited.folder != cache.folder
    finally:
        clip.write_bytes(original)
        os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_metrics_valence_arousal() -> None:
    classes = ("Q1", "Q2", "Q3", "Q4")
    probs = np.eye(4)[[0, 1, 3, 3]]  # the last one is Q3 predicted as Q4
    got = metrics(probs, np.array([0, 1, 2, 3]), classes)
    assert got["accuracy"] == 0.75
    assert got["arousal_accuracy"] == 1.0  # Q3 and Q4 are both low arousal
    assert got["valence_accuracy"] == 0.75
    assert got["confusion"][2] == [0, 0, 0, 1]  # row: true Q3


# ------------------------------------------------------------------------------ methods


@pytest.mark.parametrize("method", ["clip", "segment", "sssl"])
def test_method_trains_and_predicts(prepared, method: str) -> None:
    ctx = prepared.ctx
    train, test = grouped_folds(ctx.dataset, 2, seed=0)[0]
    fitted = fit(method, ctx, train, seed=0)
    probs = predict(fitted, ctx, test)
    assert probs.shape == (len(test), 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs.argmax(axis=1) == ctx.clip_labels[test]).mean() >= 0.75
    if method == "sssl":
        phases = [record["phase"] for record in fitted.history]
        assert phases.count("warm-up") == FAST.warmup_epochs and "sssl" in phases
        assert fitted.song is not None


@pytest.mark.parametrize("method", ["segment", "sssl"])
def test_an_ensemble_of_heads_is_the_mean_of_their_logits(prepared, method: str) -> None:
    settings = replace(FAST, heads=3)
    ctx = replace(prepared.ctx, settings=settings)
    ids = ctx.table.ids_of(np.arange(len(ctx.dataset.clips)))
    ensemble, _ = fit_segment_head(method, ctx, ids, seed=4)
    assert ensemble.layers[0].out_features == 3 * FAST.hidden
    single = replace(ctx, settings=FAST)
    heads = [fit_segment_head(method, single, ids, seed)[0] for seed in head_seeds(4, settings)]
    assert not torch.equal(heads[0].layers[0].weight, heads[1].layers[0].weight)  # own seeds
    x = ctx.segments.features(ids, np.zeros(len(ids), np.int64))
    with torch.no_grad():
        for head in (ensemble, *heads):
            head.eval()
        expected = torch.stack([head(x) for head in heads]).mean(dim=0)
        torch.testing.assert_close(ensemble(x), expected, rtol=1e-5, atol=1e-5)


def test_training_is_reproducible(prepared) -> None:
    rows = np.arange(len(prepared.ctx.dataset.clips))
    first = predict(fit("sssl", prepared.ctx, rows, seed=3), prepared.ctx, rows)
    second = predict(fit("sssl", prepared.ctx, rows, seed=3), prepared.ctx, rows)
    np.testing.assert_array_equal(first, second)


def test_gmm_split_finds_flipped_segments(prepared) -> None:
    ctx = prepared.ctx
    rows = np.arange(len(ctx.dataset.clips))
    check = gmm_check(ctx, rows, 0.3, seed=0)
    assert check["noisy_share_of_flipped"] > 2 * check["noisy_share_of_kept"]
    assert check["auc"] > 0.8 and check["auc_plain_loss"] > 0.8


@pytest.fixture
def two_tiny():
    """tiny-test and a copy of it as tiny-test-b, registered, to fuse."""
    plugins = get_plugins()
    plugins.register(TwoTiny(replace(TINY, name="tiny-test-b")), name="two-tiny-test-plugin")
    yield "tiny-test+tiny-test-b"
    plugins.unregister("two-tiny-test-plugin")


def test_fused_embeddings_are_the_parts_cached_side_by_side(
    dataset_dir: Path, tmp_path: Path, two_tiny: str
) -> None:
    """A frozen fused backbone's cache is its parts' caches concatenated (each part's reused
    as if built alone), and equals running the fused module on the same views."""
    built = build_backbone(get_backbone(two_tiny), pretrained=None, finetune=0, seed=0)
    frames = frame_cache(load_dataset(dataset_dir, "Artist"), TINY_SPEC, tmp_path)
    table = SegmentTable.of(frames.lengths, TINY_SPEC)
    cpu = torch.device("cpu")
    fused = embedding_cache(frames, table, built, 2, FAST.augment, 0, cpu, tmp_path)
    assert fused.shape == (2, len(table), 32)
    assert len(list((tmp_path / "embeddings").iterdir())) == 2  # one cache per part
    for view in range(2):
        direct = embed_view(frames, table, built, (view, FAST.augment, 0), cpu, print)
        np.testing.assert_allclose(fused[view], direct, rtol=1e-5, atol=1e-6)


def test_fused_model_trains_saves_and_loads(
    dataset_dir: Path, cache_dir: Path, tmp_path: Path, two_tiny: str
) -> None:
    data = load_dataset(dataset_dir, "Artist")
    out = train_model(data, two_tiny, "segment", FAST, tmp_path / "model", cache_dir)
    card = json.loads((out / "model.json").read_text())
    assert card["backbone"]["name"] == two_tiny and card["backbone"]["embedding_size"] == 32
    model = load_model(out)
    with torch.inference_mode():
        assert model.backbone(torch.randn(3, 32, 32)).shape == (3, 32)


def test_finetune_trains_only_the_last_groups(dataset_dir: Path, cache_dir: Path) -> None:
    settings = replace(FAST, finetune=1, epochs=2, warmup_epochs=1, views=2)
    online = prepare(load_dataset(dataset_dir, "Artist"), TINY, settings, cache_dir)
    ctx = online.ctx
    before = {k: v.clone() for k, v in online.built.module.state_dict().items()}
    rows = np.arange(len(ctx.dataset.clips))
    fitted = fit("segment", ctx, rows, seed=0)
    assert fitted.backbone_state is not None
    assert torch.equal(fitted.backbone_state["stem.weight"], before["stem.weight"])
    assert not torch.equal(fitted.backbone_state["out.weight"], before["out.weight"])
    assert predict(fitted, ctx, rows).shape == (len(rows), 4)


@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 1e-4), ("float16", 1e-2)])
def test_training_from_the_frozen_cache_equals_training_on_the_fly(
    dataset_dir: Path, tmp_path: Path, dtype: str, tolerance: float
) -> None:
    """`--finetune 1` on tiny-test: its frozen stem's cached output trains the same `out`
    layer, and gives the same predictions, as running the whole network every step. A
    batch of clips is cut to its shortest after the cached stem (on the fly: before), so
    the clip method's edge frames differ a little: compared at 1e-2."""
    data = load_dataset(dataset_dir, "Artist")
    settings = replace(FAST, finetune=1, epochs=2, warmup_epochs=1, clip_epochs=3, views=1)
    cached = prepare(data, TINY, replace(settings, frozen_cache=dtype), tmp_path)
    online = prepare(data, TINY, replace(settings, frozen_cache="off"), tmp_path)
    assert isinstance(cached.ctx.segments, FrozenCacheSource)
    assert isinstance(online.ctx.segments, OnlineSource)
    rows = np.arange(len(data.clips))
    for method in ("clip", "segment", "sssl"):
        close = max(tolerance, 1e-2) if method == "clip" else tolerance
        one, other = (fit(method, p.ctx, rows, seed=0) for p in (cached, online))
        assert one.backbone_state and other.backbone_state
        weights = (one.backbone_state["out.weight"], other.backbone_state["out.weight"])
        np.testing.assert_allclose(*weights, atol=close)
        np.testing.assert_allclose(
            predict(one, cached.ctx, rows), predict(other, online.ctx, rows), atol=close
        )


def test_the_frozen_cache_is_built_once_and_an_interrupted_view_again(
    dataset_dir: Path, tmp_path: Path
) -> None:
    data = load_dataset(dataset_dir, "Artist")
    settings = replace(FAST, finetune=1, views=2)
    first = prepare(data, TINY, settings, tmp_path, clip_level=False).ctx.segments
    (folder,) = (tmp_path / "frozen").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "view0.float16", "view0.offsets.npy", "view1.float16", "view1.offsets.npy"
    ]  # fmt: skip
    (folder / "view1.offsets.npy").unlink()  # as if stopped while writing view 1
    built_at = (folder / "view0.float16").stat().st_mtime_ns
    again = prepare(data, TINY, settings, tmp_path, clip_level=False).ctx.segments
    assert (folder / "view0.float16").stat().st_mtime_ns == built_at
    assert (folder / "view1.offsets.npy").is_file()
    ids, views = np.arange(len(first.outputs.offsets[0]) - 1), np.ones(1, np.int64)
    for i in ids[:5]:
        np.testing.assert_array_equal(
            first.outputs.batch(ids[i : i + 1], views), again.outputs.batch(ids[i : i + 1], views)
        )


def test_eval_folds_never_share_a_group(dataset_dir: Path, cache_dir: Path) -> None:
    data = load_dataset(dataset_dir, "Artist")
    options = EvalOptions(folds=2, methods=("segment",), noise_rates=(0.2,))
    report = evaluate(data, TINY, FAST, options, cache_dir)
    test_groups = [set(groups) for groups in report["protocol"]["test_groups"]]
    assert not test_groups[0] & test_groups[1]
    assert test_groups[0] | test_groups[1] == set(data.groups)
    assert sum(report["protocol"]["test_fold_sizes"]) == len(data.clips)
    row = report["results"]["segment"]
    assert len(row["folds"]) == 2 and 0.0 <= row["mean"]["macro_f1"] <= 1.0
    assert "auc" in report["gmm_check"]["0.2"]["mean"]
    assert "lr-clip" not in report["results"]  # a random backbone has no reference
    json.dumps(report)


@pytest.fixture(scope="module")
def more_quadrants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second generated dataset (other draws of the same four quadrants), 2 clips each."""
    return make_dataset(tmp_path_factory.mktemp("more") / "more quadrants", per_class=2, seed=1)


@pytest.fixture(scope="module")
def unlabelled_music(tmp_path_factory: pytest.TempPathFactory, more_quadrants: Path) -> Path:
    """Music without labels in nested folders, beside files that are not music for mer:
    a hidden file, a text file, and an empty .wav (skipped with its reason)."""
    root = tmp_path_factory.mktemp("unlabelled") / "musique sans étiquette"
    for i, wav in enumerate(sorted(more_quadrants.rglob("*.wav"))):
        target = root / f"album {i % 2}" / f"track {i}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, target)
    (root / "album 0" / ".hidden.wav").write_bytes(b"")
    (root / "notes.txt").write_text("not music")
    (root / "empty.wav").write_bytes(b"")
    return root


def test_a_train_only_set_joins_every_training_fold_and_no_test_fold(
    dataset_dir: Path, more_quadrants: Path, cache_dir: Path
) -> None:
    data = load_dataset(dataset_dir, "Artist")
    more = load_dataset(more_quadrants)
    options = EvalOptions(folds=2, methods=("segment",), noise_rates=())
    alone = evaluate(data, TINY, FAST, options, cache_dir)
    report = evaluate(data, TINY, FAST, options, cache_dir, train_only=[more])
    assert report["clips"] == len(data.clips) and report["train_only"] == {
        "datasets": ["more quadrants"], "clips": len(more.clips)
    }  # fmt: skip
    protocol = report["protocol"]
    assert protocol["test_groups"] == alone["protocol"]["test_groups"]  # the same folds
    assert sum(protocol["test_fold_sizes"]) == len(data.clips)
    prepared = prepare(data, TINY, FAST, cache_dir, train_only=[more])
    ctx = prepared.ctx
    assert ctx.train_only.tolist() == list(range(len(data.clips), len(ctx.dataset.clips)))
    for train, test in ctx.folds(2, seed=0):
        assert not set(test) & set(ctx.train_only) and not set(train) & set(ctx.train_only)
    rows = np.arange(len(data.clips))
    with_more = fit("segment", ctx, rows, seed=0)
    without = fit("segment", replace(ctx, train_only=ctx.train_only[:0]), rows, seed=0)
    assert not np.allclose(predict(with_more, ctx, rows), predict(without, ctx, rows))


def test_a_joined_frame_cache_decodes_each_source_once(
    dataset_dir: Path, more_quadrants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset joined with an added set takes its log-mel from each source's own cache:
    the source cached before is not decoded again, nothing is copied to disk, and the
    joined frames, rows and skipped clips are those of one pass over every clip."""
    broken = more_quadrants / "Q2" / "Q2_broken.wav"
    broken.write_text("not audio")
    try:
        data, more = load_dataset(dataset_dir), load_dataset(more_quadrants)
        alone = frame_cache(data, TINY_SPEC, tmp_path / "a")
        joined_set = replace(data, clips=data.clips + more.clips)
        real, decoded = cache_module.clip_frames, []

        def counted(path, spec):
            decoded.append(Path(path))
            return real(path, spec)

        monkeypatch.setattr(cache_module, "clip_frames", counted)
        sizes = [len(data.clips), len(more.clips)]
        joined = frame_cache(joined_set, TINY_SPEC, tmp_path / "a", part_sizes=sizes)
        assert sorted(decoded) == sorted(c.path for c in more.clips)
        assert joined.parts[0].key == alone.key
        assert len(list((tmp_path / "a" / "frames").iterdir())) == 2  # the two sources
        one_pass = frame_cache(joined_set, TINY_SPEC, tmp_path / "b")
        np.testing.assert_array_equal(joined.rows, one_pass.rows)
        assert -1 in joined.rows[len(data.clips) :]
        np.testing.assert_array_equal(joined.offsets, one_pass.offsets)
        np.testing.assert_array_equal(joined.frames, one_pass.frames)
        assert joined.skipped == one_pass.skipped and "Q2_broken.wav" in joined.skipped[0]
    finally:
        broken.unlink()


def test_joined_frames_read_as_one_array() -> None:
    """Slices and index arrays of joined caches, an empty one among them, gather the frames
    that one array of them all holds."""
    parts = [np.arange(12.0).reshape(6, 2), np.empty((0, 2)), np.arange(100.0, 108).reshape(4, 2)]
    whole = np.concatenate(parts)
    joined = JoinedFrames(parts, np.cumsum([0, 6, 0, 4]))
    index = np.array([[5, 6, 9], [0, 7, 3]])
    np.testing.assert_array_equal(joined[index], whole[index])
    np.testing.assert_array_equal(joined[4:8], whole[4:8])
    np.testing.assert_array_equal(np.asarray(joined), whole)


def test_an_added_set_reuses_the_cached_embeddings_of_the_dataset_it_joins(
    dataset_dir: Path, more_quadrants: Path, tmp_path: Path
) -> None:
    """`--add` computes the embeddings of the added clips only; the joined views are those
    of one pass over every row (each view drawn from its row's seed)."""
    data, more = load_dataset(dataset_dir, "Artist"), load_dataset(more_quadrants)
    alone = prepare(data, TINY, FAST, tmp_path).ctx.segments.embeddings
    assert len(list((tmp_path / "embeddings").iterdir())) == 2  # segments and whole clips
    joined = prepare(data, TINY, FAST, tmp_path, train_only=[more])
    assert len(list((tmp_path / "embeddings").iterdir())) == 4  # the added set's two
    embeddings = joined.ctx.segments.embeddings
    np.testing.assert_array_equal(embeddings[:, : alone.shape[1]], alone)
    assert embeddings.shape[1] == len(joined.ctx.table) > alone.shape[1]
    cpu = torch.device("cpu")
    for view in range(FAST.views):
        draws = (view, FAST.augment, FAST.seed)
        one_pass = embed_view(joined.frames, joined.ctx.table, joined.built, draws, cpu, print)
        np.testing.assert_allclose(embeddings[view], one_pass, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["segment", "sssl", "clip"])
def test_added_clips_weigh_as_much_as_added_weight_says(
    dataset_dir: Path, more_quadrants: Path, cache_dir: Path, method: str
) -> None:
    """Added clips all labelled Q1 pull the songs towards Q1 at weight 1, not at weight 0,
    whichever the method (sssl: in the warm-up, the mixed losses and its song classifier)."""
    data = load_dataset(dataset_dir, "Artist")
    settings = replace(FAST, song_embedding_c=1.0)
    ctx = prepare(data, TINY, settings, cache_dir, train_only=[load_dataset(more_quadrants)]).ctx
    clips = [replace(c, label="Q1") if i in ctx.train_only else c
             for i, c in enumerate(ctx.dataset.clips)]  # fmt: skip
    ctx = replace(ctx, dataset=replace(ctx.dataset, clips=clips))
    rows = np.arange(len(data.clips))
    q1 = {}
    for weight in (1.0, 0.0):
        weighed = replace(ctx, settings=replace(settings, added_weight=weight))
        q1[weight] = predict(fit(method, weighed, rows, seed=0), weighed, rows)[:, 0].mean()
    assert q1[1.0] > q1[0.0] + 0.05


def test_a_song_of_weight_zero_is_a_song_left_out() -> None:
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(40, 6)), np.arange(40) % 4
    weights = np.where(np.arange(40) < 30, 1.0, 0.0)
    weighed = fit_classifier(features, labels, 4, 1.0, seed=0, weights=weights)
    left_out = fit_classifier(features[:30], labels[:30], 4, 1.0, seed=0)
    np.testing.assert_allclose(weighed.coef, left_out.coef, atol=1e-4)
    np.testing.assert_allclose(weighed.mean, left_out.mean, atol=1e-9)


def test_a_train_only_set_must_have_the_same_classes(
    dataset_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    manifest = tmp_path / "two classes.csv"
    wavs = sorted(dataset_dir.rglob("*.wav"))
    arousal = {"Q1": "tense", "Q2": "tense", "Q3": "calm", "Q4": "calm"}
    rows = "".join(f"{w},{arousal[w.parent.name]}\n" for w in wavs)
    manifest.write_text("path,label\n" + rows)
    with pytest.raises(DatasetError, match="two classes: classes calm, tense, not those of"):
        prepare(
            load_dataset(dataset_dir), TINY, FAST, cache_dir, train_only=[load_dataset(manifest)]
        )


def test_unlabelled_music_is_every_audio_file_under_its_folder(
    unlabelled_music: Path, tmp_path: Path
) -> None:
    music = load_unlabelled(unlabelled_music)
    names = sorted(str(c.path.relative_to(unlabelled_music)) for c in music.clips)
    assert names == ["album 0/track 0.wav", "album 0/track 2.wav", "album 0/track 4.wav",
                     "album 0/track 6.wav", "album 1/track 1.wav", "album 1/track 3.wav",
                     "album 1/track 5.wav", "album 1/track 7.wav", "empty.wav"]  # fmt: skip
    assert {c.label for c in music.clips} == {""}
    (tmp_path / "readme.txt").write_text("nothing to hear")
    with pytest.raises(DatasetError, match="no audio files"):
        load_unlabelled(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        load_unlabelled(unlabelled_music / "notes.txt")


def test_sssl_learns_from_unlabelled_music(
    dataset_dir: Path, unlabelled_music: Path, cache_dir: Path
) -> None:
    """The unlabelled files' segments follow the labelled rows and feed sssl's unlabelled
    branch (a different model from the same seed); an unreadable one is skipped."""
    data = load_dataset(dataset_dir, "Artist")
    prepared = prepare(data, TINY, FAST, cache_dir, unlabelled=load_unlabelled(unlabelled_music))
    ctx = prepared.ctx
    assert len(ctx.dataset.clips) == len(data.clips)
    assert ctx.unlabelled.tolist() == list(range(len(data.clips), len(data.clips) + 8))
    assert any("empty.wav" in line for line in ctx.dataset.skipped)
    assert prepared.more_data == {"unlabelled": {"folder": unlabelled_music.name, "clips": 8}}
    rows = np.arange(len(data.clips))
    learnt = fit("sssl", ctx, rows, seed=0)
    plain = fit("sssl", replace(ctx, unlabelled=ctx.unlabelled[:0]), rows, seed=0)
    assert learnt.history[-1]["loss"] != plain.history[-1]["loss"]
    probs = predict(learnt, ctx, rows)
    assert probs.shape == (len(rows), 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


# ------------------------------------------------------------------------------ CLI


def test_cli_eval_then_train(dataset_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--group-by", "Artist", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    common += ["--backbone", "shortchunk-cnn", "--set", "epochs=4", "--set", "warmup_epochs=2"]
    common += ["--set", "clip_epochs=4", "--set", "views=2"]
    report_path = tmp_path / "eval.json"
    args = ["eval", str(dataset_dir), "--folds", "2", "--run-folds", "1", "--methods", "segment"]
    args += ["--noise", ""]
    result = runner.invoke(app, [*args, "--json", str(report_path), *common])
    assert result.exit_code == 0, result.output
    assert "segment" in result.output
    report = json.loads(report_path.read_text())
    assert set(report["results"]) == {"segment"}
    assert len(report["results"]["segment"]["folds"]) == report["protocol"]["folds_run"] == 1
    out = tmp_path / "model"
    train = ["train", str(dataset_dir), "--method", "segment", "--out", str(out)]
    result = runner.invoke(app, [*train, "--metrics", str(report_path), *common])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())
    assert card["method"] == "segment" and card["backbone"]["name"] == "shortchunk-cnn"
    assert card["command"].startswith("mer train")
    assert card["metrics"]["mean"] == report["results"]["segment"]["mean"]
    assert card["metrics"]["protocol"]["folds"] == 2


def test_cli_trains_on_a_train_only_set_and_unlabelled_music(
    dataset_dir: Path, more_quadrants: Path, unlabelled_music: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    common = ["--group-by", "Artist", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    common += ["--backbone", "shortchunk-cnn", "--set", "epochs=3", "--set", "warmup_epochs=1"]
    more = ["--add", str(more_quadrants), "--unlabelled", str(unlabelled_music)]
    out = tmp_path / "model"
    train = ["train", str(dataset_dir), "--method", "sssl", "--out", str(out), *more, *common]
    result = runner.invoke(app, train)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "model.json").read_text())["training_data"]
    assert data["clips"] == 16 + 8 and data["train_only"]["datasets"] == ["more quadrants"]
    assert data["unlabelled"] == {"folder": unlabelled_music.name, "clips": 8}
    assert "--unlabelled" in json.loads((out / "model.json").read_text())["command"]
    segment = ["eval", str(dataset_dir), "--methods", "segment", *more, *common]
    refused = runner.invoke(app, segment)
    assert refused.exit_code == 2 and "only sssl learns from music without labels" in refused.output


def test_cli_score_reports_a_trained_model_on_labelled_music(
    dataset_dir: Path, tmp_path: Path
) -> None:
    model = train_tiny_model(tmp_path)
    broken = dataset_dir / "Q2" / "Q2_truncated.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVE")  # a header and nothing else
    silent = dataset_dir / "Q4" / "Q4_silent.wav"
    sf.write(silent, np.zeros(4 * 16000, np.float32), 16000)
    report_path = tmp_path / "score.json"
    try:
        result = mer("score", dataset_dir, "--model", model, "--json", report_path, "--quiet")
    finally:
        broken.unlink()
        silent.unlink()
    assert result.returncode == 0, result.stderr
    assert "tiny-tagger 1 on quadrants: 16 clips" in result.stdout and "macro-F1" in result.stdout
    assert "2 clips skipped" in result.stdout and "Q2_truncated.wav" in result.stdout
    assert "Q4_silent.wav: silent" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["clips"] == len(report["predictions"]) == 16
    assert sum(map(sum, report["metrics"]["confusion"])) == 16
    for row in report["predictions"]:
        assert row["predicted"] == max(row["probabilities"], key=row["probabilities"].get)
    hits = sum(row["predicted"] == row["label"] for row in report["predictions"])
    assert report["metrics"]["accuracy"] == hits / 16

    other = tmp_path / "moods"
    for name, source in (("happy", "Q1/Q1_0.wav"), ("sad", "Q3/Q3_0.wav")):
        (other / name).mkdir(parents=True)
        shutil.copy(dataset_dir / source, other / name)
    refused = mer("score", other, "--model", model)
    assert refused.returncode == 1
    assert "classes happy, sad; the model tiny-tagger 1 predicts Q1, Q2, Q3, Q4" in refused.stderr


def test_cli_errors(dataset_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    usage = runner.invoke(app, ["train", str(dataset_dir), "--method", "nope", "--out", "x"])
    assert usage.exit_code == 2
    bad_set = runner.invoke(app, ["eval", str(dataset_dir), "--set", "nonsense=1"])
    assert bad_set.exit_code == 2
    missing = runner.invoke(app, ["eval", str(tmp_path / "absent"), "--quiet"])
    assert missing.exit_code == 1
    assert "no such file or folder" in missing.output
    unknown = runner.invoke(
        app, ["train", str(dataset_dir), "--backbone", "nope", "--out", str(tmp_path / "m")]
    )
    assert unknown.exit_code == 1 and "unknown backbone" in unknown.output


def test_a_report_that_cannot_be_written_is_refused_before_the_run(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """Hours of cross-validation are not spent to fail on the report at the end."""
    runner = CliRunner()
    nowhere = tmp_path / "no such folder" / "report.json"
    evaluate = ["eval", str(dataset_dir), "--methods", "segment"]
    for command in (evaluate, ["score", str(dataset_dir)]):
        refused = runner.invoke(app, [*command, "--json", str(nowhere), "--quiet"])
        assert refused.exit_code == 1
        assert f"no folder {nowhere.parent}" in refused.output
        assert "macro-F1" not in refused.output  # nothing was run
    folder = runner.invoke(app, ["score", str(dataset_dir), "--json", str(tmp_path), "--quiet"])
    assert folder.exit_code == 1 and "cannot write the report there" in folder.output
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)  # refused even to root, as `mer tag --report` refuses it
    try:
        locked = runner.invoke(app, [*evaluate, "--json", str(read_only / "r.json"), "--quiet"])
    finally:
        read_only.chmod(0o755)
    assert locked.exit_code == 1 and "cannot write the report there" in locked.output
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("")
    cache = runner.invoke(app, [*evaluate, "--cache-dir", str(not_a_folder), "--quiet"])
    assert cache.exit_code == 1 and "Not a directory" in cache.output
    assert "cannot write" not in cache.output  # not misnamed a report's write error


@pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} is absent (development data)")
def test_real_dataset_loads_with_artist_groups() -> None:
    data = load_dataset(DATA, "Artist")
    folds = grouped_folds(data, 5, seed=0)
    groups = np.array(data.groups)
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
