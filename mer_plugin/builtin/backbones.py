"""The built-in backbones, a plugin like any other (`mer_backbones` hook).

Records only: torch and the networks are imported when a backbone is built, not when the
plugins load (importing torch takes ~2 s). `finetune_groups` name each network's child
modules from input to output (a test checks they match). The four taggers of the
`musicnn` 0.1.0 wheel (musicnn and its VGG-like baseline, each trained on MSD and on
MagnaTagATune) share the group names `MUSICNN_GROUPS`, so they can be fused
(`mer_plugin.backbones`: "musicnn-msd+mtt").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from mer_plugin.backbones import build
from mer_plugin.frontend import MUSICNN
from mer_plugin.hookspecs import Backbone, hookimpl

if TYPE_CHECKING:
    from torch import nn

MUSICNN_GROUPS = ("frontend", "midend", "backend", "head")  # the musicnn and vgg taggers
SHORTCHUNK_GROUPS = ("stem", "body", "embedding")


def _musicnn(embedding: str = "penultimate") -> nn.Module:
    from mer_plugin.backbones.musicnn import MusiCNN

    return MusiCNN(embedding=embedding)


def _vgg(embedding: str = "pool5") -> nn.Module:
    from mer_plugin.backbones.vgg import MusicVGG

    return MusicVGG(embedding=embedding)


def _tagger(
    name: str, factory: Callable[[], nn.Module], size: int, text: str, weights: str = ""
) -> Backbone:
    """A tagger of the musicnn wheel, its weights shipped in mer_plugin/models/<weights>
    (by default <name>)."""
    create = partial(build, name, factory, weights or name)
    return Backbone(name, create, MUSICNN, size, MUSICNN_GROUPS, text)


def _layers(tagger: str, factory: Callable[[str], nn.Module], size: int) -> Backbone:
    """`tagger` with the outputs of its lower layers pooled beside its embedding."""
    text = (
        f"{tagger}'s embedding and its lower layers pooled ({size}-d, one pass): "
        "what each layer hears, not only what its tags needed"
    )
    return _tagger(f"{tagger}-layers", partial(factory, "layers"), size, text, tagger)


def _shortchunk() -> nn.Module:
    from mer_plugin.backbones.shortchunk import ShortChunkCNN

    return ShortChunkCNN(embedding_size=256)


@hookimpl
def mer_backbones() -> list[Backbone]:
    return [
        Backbone(
            "musicnn-msd",
            partial(build, "musicnn-msd", _musicnn, "musicnn-msd"),
            MUSICNN,
            embedding_size=200,
            finetune_groups=MUSICNN_GROUPS,
            description="MSD_musicnn (Pons & Serra 2019) ported from musicnn 0.1.0 (ISC); "
            "200-d penultimate embedding, 50 MSD tags via tag_probs()",
        ),
        Backbone(
            "musicnn-msd-pool",
            partial(build, "musicnn-msd-pool", partial(_musicnn, "pool"), "musicnn-msd"),
            MUSICNN,
            embedding_size=1506,
            finetune_groups=MUSICNN_GROUPS,  # backend: its pool_bn
            description="MSD_musicnn's pooled mid-end features (1506-d temporal max and mean "
            "below the penultimate layer): the same network, a richer embedding for mood",
        ),
        _tagger(
            "musicnn-mtt",
            _musicnn,
            200,
            "MTT_musicnn (Pons & Serra 2019) ported from musicnn 0.1.0 (ISC); 200-d "
            "penultimate embedding, 50 MagnaTagATune tags (slow, fast, loud, quiet, soft...)",
        ),
        _tagger(
            "vgg-msd",
            _vgg,
            256,
            "MSD_vgg, musicnn's VGG-like baseline, ported from musicnn 0.1.0 (ISC); 256-d "
            "pool5 embedding, 50 MSD tags",
        ),
        _tagger(
            "vgg-mtt",
            _vgg,
            256,
            "MTT_vgg, musicnn's VGG-like baseline, ported from musicnn 0.1.0 (ISC); 256-d "
            "pool5 embedding, 50 MagnaTagATune tags",
        ),
        _layers("musicnn-msd", _musicnn, 1706),
        _layers("musicnn-mtt", _musicnn, 1706),
        _layers("vgg-msd", _vgg, 768),
        _layers("vgg-mtt", _vgg, 768),
        Backbone(
            "shortchunk-cnn",
            partial(build, "shortchunk-cnn", _shortchunk, None),
            MUSICNN,
            embedding_size=256,
            finetune_groups=SHORTCHUNK_GROUPS,
            description="small 3x3 short-chunk CNN for training from scratch",
        ),
    ]
