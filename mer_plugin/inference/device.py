"""Where a backbone runs: `--device auto | cpu | cuda`."""

from __future__ import annotations

from dataclasses import replace

import torch

from mer_plugin.backbones import BackboneError
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


def on_device(model: Model, device: str) -> Model:
    """The model with its backbone on `device`; the small head stays on the CPU."""
    chosen = pick_device(device)
    if chosen.type == "cpu":
        return model
    return replace(model, backbone=_OnDevice(model.backbone, chosen).eval())
