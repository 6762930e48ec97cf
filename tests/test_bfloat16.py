"""bfloat16 convolutions of the shipped taggers: close to float, only the convs int8 leaves
in float, other backbones untouched; where the CPU has no native bfloat16, `bfloat16`
is a clear error and `auto` does without it."""

from __future__ import annotations

import pytest
import torch
from synthetic_music import quadrant_segments

from mer_plugin.backbones import BackboneError, create_backbone
from mer_plugin.backbones.bfloat16 import bfloat16_supported, to_bfloat16
from mer_plugin.backbones.int8 import int8_engine, quantize
from mer_plugin.frontend import MUSICNN
from mer_plugin.inference import load_model, resolve_model
from mer_plugin.inference.device import with_precision

needs_bfloat16 = pytest.mark.skipif(not bfloat16_supported(), reason="no bfloat16 on this CPU")


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    return quadrant_segments(tmp_path_factory.mktemp("bf16"), MUSICNN, seed=1)


def bfloat16_convs(module: torch.nn.Module) -> list[str]:
    return [
        name
        for name, m in module.named_modules()
        if getattr(m, "weight", None) is not None and m.weight.dtype == torch.bfloat16
    ]


def test_only_the_musicnn_and_vgg_convs_are_cast() -> None:
    model = create_backbone("musicnn-msd")
    assert to_bfloat16(model) == 8  # 2 timbral, 3 temporal, 3 mid-end
    cast = bfloat16_convs(model)
    assert all(".conv" in name for name in cast) and not any("bn" in n for n in cast)
    assert model.backend.dense.weight.dtype == torch.float32
    other = torch.nn.Sequential(torch.nn.Conv1d(4, 4, 3))  # a third party's backbone
    assert to_bfloat16(other) == 0 and other[0].weight.dtype == torch.float32


@pytest.mark.skipif(int8_engine() is None, reason="no int8 kernels on this CPU")
def test_the_convs_in_int8_stay_in_int8() -> None:
    model = create_backbone("musicnn-msd")
    quantize(model)
    assert to_bfloat16(model) == 6
    assert not any("timbral" in name for name in bfloat16_convs(model))


@needs_bfloat16
@pytest.mark.parametrize("name", ["musicnn-msd", "vgg-msd"])
def test_bfloat16_embeddings_stay_close_to_float(name: str, segments: torch.Tensor) -> None:
    """Bounds with room over what was measured on these signals: relative error
    0.006-0.016 for the four taggers, cosine >= 0.9996."""
    exact, fast = create_backbone(name), create_backbone(name)
    to_bfloat16(fast)
    with torch.inference_mode():
        want, got = exact(segments), fast(segments)
    assert got.dtype == torch.float32
    error = (got - want).norm(dim=1) / want.norm(dim=1)
    assert float(error.mean()) < 0.03
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.99


def test_precision_bfloat16_computes_or_says_the_cpu_lacks_it() -> None:
    model = load_model(resolve_model("fast"))
    if not bfloat16_supported():
        with pytest.raises(BackboneError, match="bfloat16"):
            with_precision(model, "bfloat16")
        assert bfloat16_convs(with_precision(model, "auto").backbone) == []
        return
    assert len(bfloat16_convs(with_precision(model, "bfloat16").backbone)) == 8


def test_precision_auto_takes_what_the_cpu_has() -> None:
    backbone = with_precision(load_model(resolve_model("fast")), "auto").backbone
    cast = bfloat16_convs(backbone)
    assert len(cast) == (0 if not bfloat16_supported() else 6 if int8_engine() else 8)
