"""Generated audio for the training tests: four "quadrants" of clearly different signals,
and a tiny backbone, registered as a plugin the way a third-party one would be."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from mer_plugin.frontend import FrontEndSpec
from mer_plugin.hookspecs import Backbone, hookimpl

SAMPLE_RATE = 16000
TINY_SPEC = FrontEndSpec(n_mels=32, segment_frames=32, segment_hop_frames=32)  # 0.5 s


def signal(quadrant: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    if quadrant == "Q1":  # bright, fast arpeggio
        freq = 660 * 2 ** (np.floor(t * 8) % 3 * 4 / 12)
        x = 0.3 * np.sin(2 * np.pi * freq * t) * (0.5 + 0.5 * (np.sin(2 * np.pi * 4 * t) > 0))
    elif quadrant == "Q2":  # loud noise bursts over a low sawtooth
        bursts = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 3 * t) > 0)
        x = 0.4 * bursts + 0.3 * ((t * 110) % 1 - 0.5)
    elif quadrant == "Q3":  # quiet, slow, low
        x = 0.05 * np.sin(2 * np.pi * 110 * t + np.sin(2 * np.pi * 0.3 * t))
    else:  # soft major chord
        x = 0.08 * sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392))
    return (x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def quadrant_segments(folder: Path, spec: FrontEndSpec, seed: int) -> torch.Tensor:
    """Log-mel segments (`spec`) of four kinds of generated music, 6 s each, written as
    wav files into `folder`."""
    from mer_plugin.features import iter_segments

    rng, found = np.random.default_rng(seed), []
    for quadrant in ("Q1", "Q2", "Q3", "Q4"):
        path = folder / f"{quadrant}.wav"
        sf.write(path, signal(quadrant, 6.0, rng), SAMPLE_RATE)
        found += [torch.from_numpy(batch) for batch in iter_segments(path, spec)]
    return torch.cat(found)


def make_dataset(root: Path, per_class: int = 4, seconds: float = 6.0, seed: int = 0) -> Path:
    """root/Q1..Q4/*.wav and annotations.csv (Song,Artist,...): two clips per artist."""
    rng = np.random.default_rng(seed)
    rows = ["Song,Artist,Title,Quadrant"]
    for quadrant in ("Q1", "Q2", "Q3", "Q4"):
        (root / quadrant).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            name = f"{quadrant}_{i}"
            length = seconds * (0.8 + 0.4 * rng.random())
            sf.write(root / quadrant / f"{name}.wav", signal(quadrant, length, rng), SAMPLE_RATE)
            rows.append(f"{name},artist-{quadrant}-{i // 2},{name},{quadrant}")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return root


class TinyNet(nn.Module):
    """Conv over time on the mels, max and mean pooled, one linear layer: 16-d embedding."""

    def __init__(self, n_mels: int = TINY_SPEC.n_mels) -> None:
        super().__init__()
        self.stem = nn.Conv1d(n_mels, 16, 3, padding=1)
        self.out = nn.Linear(32, 16)

    def stages(self) -> tuple[tuple[str, Callable[[torch.Tensor], torch.Tensor]], ...]:
        """(group, function), input to output: a frozen stem's output can be cached."""
        return (("stem", self._stem), ("out", self._out))

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.stem(x.transpose(1, 2)))

    def _out(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._out(self._stem(x))


def _create(pretrained: bool) -> nn.Module:
    if pretrained:
        raise ValueError("tiny-test ships no weights")
    return TinyNet()


TINY = Backbone("tiny-test", _create, TINY_SPEC, 16, ("stem", "out"), "test backbone")


class TinyPlugin:
    @hookimpl
    def mer_backbones(self) -> list[Backbone]:
        return [TINY]
