"""Where and how a backbone runs: `--device auto | cpu | cuda`, `--precision auto |
float32 | int8 | bfloat16` (the shipped taggers' convolutions on x86 CPUs: int8 where
they ship a calibration, `mer_plugin/backbones/int8.py`; bfloat16 on CPUs that compute
it natively, `mer_plugin/backbones/bfloat16.py`)."""

from __future__ import annotations

from dataclasses import replace

import torch

from mer_plugin.backbones import PRECISIONS, BackboneError
from mer_plugin.backbones.bfloat16 import bfloat16_supported, to_bfloat16
from mer_plugin.backbones.int8 import int8_engine, quantize
from mer_plugin.inference.folder import Model


def pick_device(name: str) -> torch.device:
    """The torch device for a `--device` value; `cuda` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise BackboneError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class _OnDevice(torch.nn.Module):
    """A backbone on another device, fed CPU tensors: each batch moves there, its
    embeddings come back."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.module = module.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.device, non_blocking=True)).float().cpu()


BATCH_CPU = 16  # segments per backbone call: as fast as 64 on CPU, a quarter of the memory
BATCH_GPU = 256  # a GPU is fed segments of several files at once


def batch_size(model: Model) -> int:
    """Segments per backbone call for where the model's backbone runs."""
    return BATCH_GPU if isinstance(model.backbone, _OnDevice) else BATCH_CPU


def on_device(model: Model, device: str, precision: str = "auto") -> Model:
    """The model with its backbone on `device` in `precision`; the small head stays on
    the CPU. Off the CPU the backbone runs in float (int8 and bfloat16 are CPU paths)."""
    chosen = pick_device(device)
    if chosen.type == "cpu":
        return with_precision(model, precision)
    if precision in ("int8", "bfloat16"):
        raise BackboneError(f"--precision {precision} runs on the CPU only")
    return replace(model, backbone=_OnDevice(model.backbone, chosen).eval())


def with_precision(model: Model, precision: str) -> Model:
    """The model, its backbone's convolutions switched in place: to int8 for `int8`, to
    bfloat16 for `bfloat16`, and for `auto` each where this CPU has it (int8 for the convs
    with a calibration, bfloat16 for the rest). `int8` or `bfloat16` where the CPU or the
    backbone lacks it is an error."""
    if precision not in PRECISIONS:
        raise BackboneError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision in ("int8", "auto"):
        _int8(model, required=precision == "int8")
    if precision in ("bfloat16", "auto"):
        _bfloat16(model, required=precision == "bfloat16")
    return model


def _int8(model: Model, required: bool) -> None:
    if int8_engine() is None:
        if required:
            raise BackboneError("--precision int8: this CPU has no int8 kernels (x86 with AVX2)")
        return
    if not quantize(model.backbone) and required:
        raise BackboneError(f"--precision int8: {model.card.backbone.name} has no int8 calibration")


def _bfloat16(model: Model, required: bool) -> None:
    if not bfloat16_supported():
        if required:
            raise BackboneError("--precision bfloat16: this CPU has no bfloat16 instructions")
        return
    if not to_bfloat16(model.backbone) and required:
        name = model.card.backbone.name
        raise BackboneError(f"--precision bfloat16: {name} has no musicnn or vgg tagger")
