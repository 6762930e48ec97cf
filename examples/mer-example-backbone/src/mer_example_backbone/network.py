"""A tiny CNN over log-mel segments: two conv blocks, then pooling over time and frequency."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """(B, frames, n_mels) log-mel segments -> (B, embedding_size) embeddings.

    mer asks two things of a backbone module: `forward(x)` gives the embeddings, and the
    names in the record's `finetune_groups` ("convs", "embedding") are its child modules,
    from input to output, so training can fine-tune the last k of them.
    """

    def __init__(self, embedding_size: int = 32) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.BatchNorm2d(1),
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(4),
        )
        self.embedding = nn.Sequential(nn.Linear(32, embedding_size), nn.ReLU())
        self.embedding_size = embedding_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x.unsqueeze(1)).amax(dim=3)  # (B, 16, frames / 16)
        return self.embedding(torch.cat([h.amax(dim=2), h.mean(dim=2)], dim=1))
