"""A small short-chunk CNN for training from scratch (after Won et al., "Evaluation of CNN-based
automatic music tagging models", SMC 2020): stacked 3x3 conv + batch norm + ReLU + 2x2 max
pool blocks over the log-mel, then max and mean pooling over what is left of time.

About 20x fewer multiply-adds than MSD-musicnn per 3 s segment (a narrow first block does
the full-resolution work), and channels-last layout for oneDNN, so it trains quickly on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ShortChunkCNN(nn.Module):
    """(B, T, n_mels) log-mel segments -> (B, embedding_size) embeddings.

    Six blocks halve time and frequency each (187 x 96 -> 2 x 1); the remaining frequency
    is max-pooled, time is max- and mean-pooled, and a dense layer makes the embedding.
    Its children, input to output: stem, body, embedding (the fine-tunable groups).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64, 64, 128, 128),
        embedding_size: int = 256,
        dropout: float = 0.3,
        stem_blocks: int = 3,
    ) -> None:
        super().__init__()
        widths = (1, *channels)
        blocks = [_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        self.stem = nn.Sequential(nn.BatchNorm2d(1), *blocks[:stem_blocks])
        self.body = nn.Sequential(*blocks[stem_blocks:])
        self.embedding = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * channels[-1], embedding_size),
            nn.BatchNorm1d(embedding_size),
            nn.ReLU(inplace=True),
        )
        self.embedding_size = embedding_size
        self.to(memory_format=torch.channels_last)  # conv weights NHWC: ~2x faster on CPU

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding (B, embedding_size) of log-mel segments (B, T, n_mels)."""
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        h = self.body(self.stem(x)).amax(dim=3)  # (B, C, T')
        return self.embedding(torch.cat([h.amax(dim=2), h.mean(dim=2)], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)
