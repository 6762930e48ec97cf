"""The musicnn ports (MSD- and MTT-musicnn, MSD- and MTT-vgg): parity with the original
TensorFlow models, the backbone registry, and fused backbones.

The fixtures in tests/fixtures/musicnn/ come from the original musicnn 0.1.0 graphs
(tools/make_musicnn_fixtures.py, run once in a throwaway TensorFlow venv): the patches and
signals are shared, each model's outputs are in its own folder. These tests need no
TensorFlow.
"""

from __future__ import annotations

import json
import socket
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mer_plugin.backbones import (
    BackboneError,
    create_backbone,
    fused_parts,
    get_backbone,
    list_backbones,
    weights_card,
)
from mer_plugin.backbones.musicnn import ConvPoolBlock, MusiCNN
from mer_plugin.frontend import MUSICNN
from mer_plugin.plugins import get_plugins
from mer_plugin.training.backbone import build_backbone, frozen_split

FIXTURES = Path(__file__).parent / "fixtures" / "musicnn"
TAG_ATOL = 1e-3  # absolute, on probabilities
EMBEDDING_RTOL = 1e-3  # relative to each reference vector's largest magnitude


def index() -> dict:
    return json.loads((FIXTURES / "index.json").read_text())


TAGGERS = sorted(index()["models"])  # our backbone names of the wheel's four taggers


@cache
def pretrained(backbone: str = "musicnn-msd") -> MusiCNN:
    return create_backbone(backbone)


@cache
def fixture(name: str) -> np.ndarray:
    """A shared fixture (patches.npy, signal_*.npy) or one model's ("vgg-mtt/tags")."""
    return np.load(FIXTURES / f"{name}.npy")


def signals() -> dict[str, dict]:
    return index()["signals"]


def run(x: np.ndarray, backbone: str = "musicnn-msd") -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        embedding, tags = pretrained(backbone).embed_and_tag(torch.from_numpy(x))
    return embedding.numpy(), tags.numpy()


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    scale = np.abs(ref).max(axis=1, keepdims=True)
    return float((np.abs(got - ref) / scale).max())


def assert_parity(embedding: np.ndarray, tags: np.ndarray, rows: slice, backbone: str) -> None:
    tag_err = np.abs(tags - fixture(f"{backbone}/tags")[rows]).max()
    emb_err = relative_error(embedding, fixture(f"{backbone}/embedding")[rows])
    assert tag_err <= TAG_ATOL, f"tag probabilities off by {tag_err:.2e}"
    assert emb_err <= EMBEDDING_RTOL, f"embedding off by {emb_err:.2e} (relative)"


# ---------------------------------------------------------------- parity


def test_fixtures_cover_the_four_taggers() -> None:
    assert TAGGERS == ["musicnn-msd", "musicnn-mtt", "vgg-msd", "vgg-mtt"]


@pytest.mark.parametrize("backbone", TAGGERS)
def test_stored_patches_reproduce_original_outputs(backbone: str) -> None:
    embedding, tags = run(fixture("patches"), backbone)
    n = len(fixture("patches"))
    assert tags.shape == (n, 50)
    assert embedding.shape == (n, get_backbone(backbone).embedding_size)
    assert_parity(embedding, tags, slice(None), backbone)


@pytest.mark.parametrize("backbone", TAGGERS)
@pytest.mark.parametrize("name", sorted(signals()))
def test_our_frontend_end_to_end(name: str, backbone: str) -> None:
    try:
        from mer_plugin.logmel import log_mel
    except ImportError as exc:
        pytest.skip(f"mer_plugin.logmel.log_mel is not available: {exc}")
    from mer_plugin.kernels.segments import cut_segments

    entry = signals()[name]
    audio = fixture(f"signal_{name}").astype(np.float32) / 32768
    frames = np.asarray(log_mel(audio, MUSICNN), dtype=np.float32)
    patches = cut_segments(frames, MUSICNN.segment_frames, MUSICNN.segment_hop_frames)
    start, stop = entry["patches"]
    assert len(patches) == stop - start
    embedding, tags = run(patches, backbone)
    assert_parity(embedding, tags, slice(start, stop), backbone)


def test_predict_tags_from_a_file(tmp_path: Path) -> None:
    """File -> decoder -> log-mel -> model reproduces the original's tags, segment by segment."""
    sf = pytest.importorskip("soundfile")
    from mer_plugin.inference.msd_tags import predict_tags

    entry = signals()["chords"]
    path = tmp_path / "chords.wav"
    sf.write(path, fixture("signal_chords"), 16000, subtype="PCM_16")
    timeline = predict_tags(path, batch_size=1)
    start, stop = entry["patches"]
    assert timeline.probs.shape == (stop - start, 50)
    reference = fixture("musicnn-msd/tags")[start:stop]
    np.testing.assert_allclose(timeline.probs, reference, atol=TAG_ATOL)
    np.testing.assert_allclose(timeline.starts, [0.0, MUSICNN.segment_hop_seconds])
    assert timeline.top(1)[0][0] == timeline.tags[int(reference.mean(0).argmax())]


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
def test_eval_pooling_shortcut_is_exact(grad: bool) -> None:
    """Eval mode pools before ReLU + batch norm (see ConvPoolBlock); check it against the
    plain order, with some negative gammas, with and without autograd."""
    torch.manual_seed(0)
    block = ConvPoolBlock(8, (7, 5), (3, 3)).eval()
    with torch.no_grad():
        block.bn.weight.copy_(torch.randn(8))
        block.bn.running_mean.uniform_(-1, 1)
        block.bn.running_var.uniform_(0.5, 2)
    assert (block.bn.weight < 0).any()
    x = torch.randn(4, 1, 30, 20)
    with torch.set_grad_enabled(grad):
        fast = block(x)
        plain = block.bn(F.relu(block.conv(F.pad(x, (0, 0, 3, 3))))).amax(dim=3)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_partly_trainable_model_sees_the_whole_batch() -> None:
    """Fine-tuning the last groups (the rest in eval mode) must not chunk what trains."""
    torch.manual_seed(0)
    model = create_backbone("musicnn-msd", pretrained=False).eval()
    model.backend.train()
    x = torch.randn(6, 187, 96)
    with torch.no_grad():
        torch.manual_seed(1)  # the same dropout masks for both
        whole = model.backend(model.midend(model.frontend(x)))
        torch.manual_seed(1)
        torch.testing.assert_close(model.embed(x), whole)
        model.eval()  # chunked front-end: same result as any other split
        parts = torch.cat([model.embed(x[:3]), model.embed(x[3:])])
        torch.testing.assert_close(model.embed(x), parts)


def test_any_number_of_frames() -> None:
    x = torch.from_numpy(fixture("patches")[:2, :100])
    with torch.inference_mode():
        assert pretrained().tag_probs(x).shape == (2, 50)


@pytest.mark.parametrize("frames", [100, 187, 1875])
def test_vgg_embeds_any_length_to_the_same_size(frames: int) -> None:
    """Whole clips (the `clip` method) give vgg's 256-d embedding too."""
    with torch.inference_mode():
        assert pretrained("vgg-mtt")(torch.randn(2, frames, 96)).shape == (2, 256)


# ---------------------------------------------------------------- registry


def test_registry_lists_the_builtin_backbones() -> None:
    assert {"musicnn-msd", "shortchunk-cnn", *TAGGERS} <= set(list_backbones())
    assert list_backbones("musicnn-msd*") == [
        "musicnn-msd",
        "musicnn-msd-layers",
        "musicnn-msd-pool",
    ]
    assert list_backbones("vgg*") == ["vgg-msd", "vgg-msd-layers", "vgg-mtt", "vgg-mtt-layers"]
    with pytest.raises(BackboneError, match="unknown backbone"):
        get_backbone("no-such-backbone")


BUILT_IN = ["musicnn-msd", "musicnn-msd-pool", "musicnn-mtt", "vgg-msd", "vgg-mtt"]
LAYERED = ["musicnn-msd-layers", "musicnn-mtt-layers", "vgg-msd-layers", "vgg-mtt-layers"]


@pytest.mark.parametrize("name", [*BUILT_IN, *LAYERED, "shortchunk-cnn", "musicnn-msd+mtt+vgg-msd"])
def test_backbones_build_and_embed(name: str) -> None:
    info = get_backbone(name)
    model = create_backbone(name, pretrained=False)
    x = torch.randn(3, info.spec.segment_frames, info.spec.n_mels)
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (3, info.embedding_size) == (3, model.embedding_size)
    assert info.spec == MUSICNN
    children = dict(model.named_children())
    assert set(info.finetune_groups) <= set(children), "a fine-tune group is no child module"
    grouped = {id(p) for g in info.finetune_groups for p in children[g].parameters()}
    assert grouped == {id(p) for p in model.parameters()}, "a parameter outside every group"


LAST_TAG = {"msd": "happy", "mtt": "choral"}


@pytest.mark.parametrize("backbone", TAGGERS)
def test_pretrained_loads_from_package_without_network(
    monkeypatch: pytest.MonkeyPatch, backbone: str
) -> None:
    import mer_plugin

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(socket, "socket", no_network)
    model = create_backbone(backbone)
    random = create_backbone(backbone, pretrained=False)
    assert not model.training
    weights = model.state_dict()["head.1.weight"]
    assert not torch.equal(weights, random.state_dict()["head.1.weight"])
    card = weights_card(backbone)
    assert len(card["tags"]) == 50 and card["tags"][-1] == LAST_TAG[backbone.split("-")[1]]
    assert card["frontend"] == MUSICNN.to_dict()
    assert card["embedding_size"] == get_backbone(backbone).embedding_size
    assert card["layer_groups"] == list(get_backbone(backbone).finetune_groups)
    assert card["licence"]["spdx"] == "ISC"
    shipped = Path(mer_plugin.__file__).parent / "models" / backbone
    assert (shipped / card["licence"]["file"]).is_file()


def test_pooled_backbone_is_the_layer_below_the_penultimate() -> None:
    """musicnn-msd-pool shares the weights and returns what the dense layer eats."""
    pooled = create_backbone("musicnn-msd-pool")
    x = torch.randn(4, 187, 96)
    with torch.inference_mode():
        features = pooled(x)
        msd = pretrained()
        dense = msd.backend.dense_bn(torch.relu(msd.backend.dense(features)))
        assert features.shape == (4, 1506)
        torch.testing.assert_close(dense, msd(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tagger", ["musicnn-msd", "musicnn-mtt"])
def test_layered_musicnn_is_its_embedding_then_its_pooled_midend(tagger: str) -> None:
    """musicnn-*-layers: the penultimate embedding and the 1506 pooled features below it,
    from the tagger's shipped weights, in one pass."""
    layered = create_backbone(f"{tagger}-layers")
    x = torch.randn(3, 187, 96)
    with torch.inference_mode():
        out = layered(x)
        torch.testing.assert_close(out[:, :200], pretrained(tagger)(x))
        torch.testing.assert_close(out[:, 200:], pretrained(tagger).pool(x))


@pytest.mark.parametrize("tagger", ["vgg-msd", "vgg-mtt"])
def test_layered_vgg_is_pool5_then_the_mean_of_each_lower_block(tagger: str) -> None:
    """vgg-*-layers: pool5 as vgg-* gives it, then blocks 1-4's outputs averaged over time
    and frequency, channel by channel; a batch longer than one eval chunk gives what
    each segment gives alone."""
    layered = create_backbone(f"{tagger}-layers")
    vgg = pretrained(tagger)
    x = torch.randn(5, 187, 96)
    with torch.inference_mode():
        out = layered(x)
        assert out.shape == (5, 256 + 4 * 128)
        torch.testing.assert_close(out[:, :256], vgg(x))
        h = vgg.frontend[0](x[:1].unsqueeze(1))
        for i, block in enumerate([*vgg.frontend[1:], *vgg.midend]):
            h = block(h)
            mean = h.mean(dim=(2, 3))[0]
            torch.testing.assert_close(out[0, 256 + 128 * i : 256 + 128 * (i + 1)], mean)
        alone = torch.cat([layered(x[i : i + 1]) for i in range(5)])
        torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-5)


def test_layered_vgg_fine_tuning_sees_the_whole_batch() -> None:
    """With its mid-end learning (`--finetune`: the network in eval mode, a group in train
    mode), vgg-*-layers runs the batch whole, so batch norm gets the batch's statistics."""
    built = build_backbone(get_backbone("vgg-msd-layers"), pretrained=True, finetune=2, seed=0)
    built.set_mode(train=True)
    vgg = built.module
    assert not vgg.training and vgg.midend.training
    x = torch.randn(5, 187, 96)
    with torch.no_grad():
        torch.manual_seed(0)  # the same dropout masks for both passes
        out = vgg(x)
        torch.manual_seed(0)
        h = vgg.frontend(x.unsqueeze(1))
        for i, block in enumerate(vgg.midend):  # blocks 3 and 4, in train mode
            h = block(h)
            at = 256 + 128 * (2 + i)
            torch.testing.assert_close(out[:, at : at + 128], h.mean(dim=(2, 3)))


def test_shortchunk_has_no_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="ships no weights"):
        create_backbone("shortchunk-cnn")


def test_finetune_freezes_all_but_the_last_groups_the_embedding_uses() -> None:
    """`--finetune 2`: mid-end and back-end learn (the tag head is not in the embedding's
    path), the front-end stays frozen; more groups than the network has is an error."""
    backbone = get_backbone("musicnn-msd")
    built = build_backbone(backbone, pretrained=False, finetune=2, seed=0)
    model = built.module
    assert built.trainable_groups == ("midend", "backend")
    assert {id(p) for p in built.trainable_parameters()} == {
        id(p) for g in ("midend", "backend") for p in model.get_submodule(g).parameters()
    }
    assert not any(p.requires_grad for p in model.frontend.parameters())
    with pytest.raises(BackboneError, match="cannot fine-tune 4"):
        build_backbone(backbone, pretrained=False, finetune=4, seed=0)


@pytest.mark.parametrize(
    ("backbone", "finetune", "at"),
    [
        ("musicnn-msd", 2, "midend"),
        ("musicnn-msd-pool", 1, "backend"),
        ("musicnn-mtt-layers", 1, "backend"),
    ],
)
def test_fine_tuning_splits_musicnn_where_its_frozen_groups_end(
    backbone: str, finetune: int, at: str
) -> None:
    """The frozen groups' output, run through the learning ones, is the embedding: what
    `mer train --finetune` caches (training/frozen_cache.py) and trains from."""
    built = build_backbone(get_backbone(backbone), pretrained=True, finetune=finetune, seed=0)
    split = frozen_split(built)
    assert split is not None and split.at == at
    x = torch.randn(3, MUSICNN.segment_frames, MUSICNN.n_mels)
    with torch.inference_mode():
        torch.testing.assert_close(split.trainable(split.frozen(x)), built.module(x))
    whole = build_backbone(get_backbone(backbone), pretrained=True, finetune=3, seed=0)
    assert frozen_split(whole) is None  # the front-end learns: nothing frozen to cache


# ---------------------------------------------------------------- fused backbones


def test_fused_names_borrow_the_family_of_the_part_before() -> None:
    known = get_plugins().backbones()
    assert fused_parts("musicnn-msd+mtt", known) == ["musicnn-msd", "musicnn-mtt"]
    assert fused_parts("vgg-msd+mtt+musicnn-msd", known) == ["vgg-msd", "vgg-mtt", "musicnn-msd"]
    assert fused_parts("musicnn-msd-layers+mtt-layers+vgg-msd-layers+mtt-layers", known) == [
        "musicnn-msd-layers",
        "musicnn-mtt-layers",
        "vgg-msd-layers",
        "vgg-mtt-layers",
    ]
    with pytest.raises(BackboneError, match="unknown backbone 'musicnn-xyz'"):
        get_backbone("musicnn-msd+xyz")
    with pytest.raises(BackboneError, match="fused with itself"):
        get_backbone("vgg-mtt+mtt")
    with pytest.raises(BackboneError, match="differ in front-end or layer groups"):
        get_backbone("musicnn-msd+shortchunk-cnn")


def test_fused_embedding_is_the_parts_side_by_side() -> None:
    """Each part loads its own shipped weights; the embedding is theirs concatenated."""
    info = get_backbone("musicnn-msd+mtt+vgg-mtt")
    assert info.embedding_size == 200 + 200 + 256
    x = torch.from_numpy(fixture("patches"))
    with torch.inference_mode():
        fused = create_backbone(info.name)(x).numpy()
    parts = [fixture(f"{name}/embedding") for name in ("musicnn-msd", "musicnn-mtt", "vgg-mtt")]
    assert relative_error(fused, np.concatenate(parts, axis=1)) <= EMBEDDING_RTOL


def test_fused_finetune_unfreezes_the_same_groups_of_every_part() -> None:
    """`--finetune 1` on musicnn-msd+vgg-mtt: both back-ends learn, nothing else."""
    built = build_backbone(get_backbone("musicnn-msd+vgg-mtt"), pretrained=True, finetune=1, seed=0)
    assert built.trainable_groups == ("backend",)
    parts = dict(built.module.parts)
    expected = {id(p) for part in parts.values() for p in part.backend.parameters()}
    assert {id(p) for p in built.trainable_parameters()} == expected
    built.set_mode(True)
    assert all(part.backend.training and not part.frontend.training for part in parts.values())
    with pytest.raises(BackboneError, match="cannot fine-tune 4"):
        build_backbone(get_backbone("musicnn-msd+mtt"), pretrained=False, finetune=4, seed=0)
