"""int8 convolutions of the shipped taggers: close to float, chosen by --precision, and
calibrations that round-trip; where the CPU has no int8 kernels, auto stays in float."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mer_cli import mer
from safetensors.torch import save
from synthetic_music import quadrant_segments

from mer_plugin.backbones import BackboneError, create_backbone
from mer_plugin.backbones.int8 import Int8Conv, attach_calibration, calibrate, int8_engine, quantize
from mer_plugin.frontend import MUSICNN
from mer_plugin.inference import load_model, resolve_model
from mer_plugin.inference.device import with_precision

needs_int8 = pytest.mark.skipif(int8_engine() is None, reason="no int8 kernels on this CPU")


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    return quadrant_segments(tmp_path_factory.mktemp("int8"), MUSICNN, seed=0)


def int8_paths(module: torch.nn.Module) -> list[str]:
    return [
        name for name, m in module.named_modules() if isinstance(getattr(m, "int8", None), Int8Conv)
    ]


@needs_int8
@pytest.mark.parametrize("name", ["musicnn-msd", "musicnn-mtt", "vgg-msd", "vgg-mtt"])
def test_int8_embeddings_stay_close_to_float(name: str, segments: torch.Tensor) -> None:
    """Bounds with room over what was measured on these signals: relative error 0.02-0.04
    (musicnn) and 0.13-0.16 (vgg, five int8 layers in a row), cosine >= 0.97."""
    exact, fast = create_backbone(name), create_backbone(name)
    assert quantize(fast) > 0
    with torch.inference_mode():
        want, got = exact(segments), fast(segments)
    error = (got - want).norm(dim=1) / want.norm(dim=1)
    assert float(error.mean()) < (0.06 if name.startswith("musicnn") else 0.2)
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.95


@needs_int8
def test_only_the_convs_worth_int8_are_quantised() -> None:
    model = create_backbone("musicnn-msd")
    quantize(model)
    assert int8_paths(model) == ["frontend.timbral.0.conv", "frontend.timbral.1.conv"]


@needs_int8
def test_a_calibration_round_trips_through_its_file(tmp_path: Path) -> None:
    model = create_backbone("vgg-msd", pretrained=False)
    batches = [torch.randn(4, MUSICNN.segment_frames, MUSICNN.n_mels) for _ in range(2)]
    tensors = calibrate(model, batches)
    assert not any(hasattr(m, "int8") for m in model.modules())  # calibrating leaves none
    assert len(tensors) == 2 * 5  # five 3x3 convs: input range and channel maxima each
    path = tmp_path / "int8.safetensors"
    path.write_bytes(save(tensors))
    attach_calibration(model, path)
    assert quantize(model) == 5
    with torch.inference_mode():
        assert model(batches[0]).shape == (4, 256)


def test_precision_float32_leaves_the_backbone_in_float() -> None:
    model = with_precision(load_model(resolve_model("fast")), "float32")
    assert int8_paths(model.backbone) == []


def test_precision_int8_without_a_calibration_is_an_error(tmp_path: Path) -> None:
    model = load_model(resolve_model("fast"))
    for _, conv in model.backbone.named_modules():
        if hasattr(conv, "int8_calibration"):
            del conv.int8_calibration  # as a backbone that ships none
    with pytest.raises(BackboneError, match="int8"):
        with_precision(model, "int8")
    assert int8_paths(with_precision(model, "auto").backbone) == []  # auto stays in float


def test_mer_predict_takes_a_precision(make_audio) -> None:
    song = make_audio("tune.flac", seconds=7)
    results = {}
    for precision in ("float32", "auto"):
        completed = mer("predict", song, "--json", "--model", "fast", "--precision", precision)
        assert completed.returncode == 0, completed.stderr
        results[precision] = json.loads(completed.stdout)
    assert results["auto"]["probabilities"].keys() == results["float32"]["probabilities"].keys()
    completed = mer("predict", song, "--precision", "half")
    assert completed.returncode == 2 and "half" in completed.stderr
