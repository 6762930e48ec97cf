"""musicnn's VGG-like tagger in PyTorch (Pons & Serra 2019: the `vgg` baseline of the
`musicnn` 0.1.0 wheel, ISC licence), written from its `models.vgg` and the shapes of the
MSD_vgg and MTT_vgg checkpoints; the same network for both, with different weights.

    log-mel (B, T, 96)
      -> batch norm (one scalar channel)
      -> five blocks: 3x3 conv (128 filters, 'same') -> ReLU -> batch norm -> max pool
         (4x1 stride 2, then 2x2 stride 2 three times, then 4x4 stride 4); dropout 0.25
         before the 2nd to 5th conv
      -> pool5 (B, 128, 2, 1) for 3 s, flattened time-major as TensorFlow did = the 256-d
         embedding; dropout 0.5, dense 50 = the tag logits.

Batch norm follows TensorFlow 1's defaults (as in `musicnn.py`). The original takes exactly
187 frames; here pool5 is max-pooled to two time positions (`adaptive_max_pool2d`), which
is the identity at 3 s and halves of the input otherwise, so longer inputs (whole clips)
give an embedding of the same size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mer_plugin.backbones.musicnn import (
    BN_EPS,
    BN_MOMENTUM,
    TagOutputs,
    conv_max_relu_bn,
    in_eval_chunks,
)

FILTERS = 128
POOLS = ((4, 1), (2, 2), (2, 2), (2, 2), (4, 4))  # max-pool sizes of blocks 1..5
STRIDES = ((2, 2), (2, 2), (2, 2), (2, 2), (4, 4))
EMBEDDING_TIME = 2  # pool5's time positions for a 3 s input
EMBEDDINGS = ("pool5", "layers")  # what a MusicVGG hands on (its docstring)


class ConvBlock(nn.Module):
    """Dropout -> 3x3 conv ('same') -> ReLU -> batch norm -> max pool (TF 'valid'); in eval
    mode the max is taken before ReLU and batch norm (`conv_max_relu_bn`)."""

    def __init__(
        self, in_channels: int, pool: tuple[int, int], stride: tuple[int, int], dropout: float
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv2d(in_channels, FILTERS, 3, padding=1)
        self.bn = nn.BatchNorm2d(FILTERS, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.pool, self.stride = pool, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, F) -> (B, 128, T', F')."""
        if not self.training:
            return conv_max_relu_bn(x, self.conv, self.bn, self.pool, self.stride)
        y = self.bn(F.relu(self.conv(self.dropout(x))))
        return F.max_pool2d(y, self.pool, self.stride)


def _blocks(first: int, last: int) -> list[ConvBlock]:
    return [
        ConvBlock(1 if i == 0 else FILTERS, POOLS[i], STRIDES[i], 0.0 if i == 0 else 0.25)
        for i in range(first, last)
    ]


class MusicVGG(TagOutputs, nn.Module):
    """MSD_vgg / MTT_vgg: (B, T, 96) log-mel segments -> 256-d embedding and 50 tag logits.

    `forward` returns the embedding: flattened pool5 (the tag layer's input), or with
    ``embedding="layers"`` pool5 followed by the mean over time and frequency of each of
    blocks 1 to 4 (768-d: every block's output, as Choi et al. 2017's "convnet feature"
    pooled every layer of a tagger, in one pass). `tag_logits` / `tag_probs` give the
    original tagger's outputs. Its children, input to output, are the fine-tunable
    groups, named as musicnn's: frontend (input batch norm, blocks 1-2: the
    full-resolution convolutions), midend (blocks 3-4), backend (block 5), head.
    """

    embedding_size: int

    def __init__(self, n_classes: int = 50, dropout: float = 0.5, embedding: str = "pool5") -> None:
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, not {embedding!r}")
        input_bn = nn.BatchNorm2d(1, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.frontend = nn.Sequential(input_bn, *_blocks(0, 2))
        self.midend = nn.Sequential(*_blocks(2, 4))
        self.backend = nn.Sequential(*_blocks(4, 5))
        pool5_size = EMBEDDING_TIME * FILTERS  # 96 mels pool to one band
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(pool5_size, n_classes))
        self.layered = embedding == "layers"
        self.embedding_size = pool5_size + (4 * FILTERS if self.layered else 0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding (B, 256) of log-mel segments (B, T, n_mels)."""
        pool5 = self.backend(self.midend(in_eval_chunks(self.frontend, x.unsqueeze(1))))
        return _flat(pool5)

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """pool5 (B, 256) and the means of blocks 1-4 (B, 4 x 128) side by side."""
        return in_eval_chunks(self, x, self._layers)

    def _layers(self, x: torch.Tensor) -> torch.Tensor:
        h = self.frontend[0](x.unsqueeze(1))
        means = []
        for block in (*self.frontend[1:], *self.midend):
            h = block(h)
            means.append(h.mean(dim=(2, 3)))
        return torch.cat([_flat(self.backend(h)), *means], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) if self.layered else self.embed(x)


def _flat(pool5: torch.Tensor) -> torch.Tensor:
    """pool5 (B, 128, T', 1) -> (B, 256): two time positions, flattened (time, band,
    channel) as TensorFlow flattened."""
    pool5 = F.adaptive_max_pool2d(pool5, (EMBEDDING_TIME, 1))
    return pool5.permute(0, 2, 3, 1).flatten(1)
