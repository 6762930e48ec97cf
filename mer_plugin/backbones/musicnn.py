"""musicnn in PyTorch (Pons & Serra, "musicnn: pre-trained convolutional neural networks
for music audio tagging", ISMIR LBD 2019), written from the paper and the shapes of the
MSD_musicnn checkpoint shipped in the `musicnn` 0.1.0 wheel (ISC licence); its MTT_musicnn
checkpoint (MagnaTagATune) has the same architecture and shapes.

    log-mel (B, T, 96)
      -> batch norm (one scalar channel)
      -> front-end: timbral convs (7x38, 7x67; 204 filters each) and temporal convs
         (128x1, 64x1, 32x1; 51 filters each), each ReLU -> batch norm -> max over
         frequency: 561 channels per frame
      -> mid-end: three 1-D convs (kernel 7, 64 filters, ReLU -> batch norm), the 2nd and
         3rd residual; front-end and mid-end outputs concatenated: 753 channels
      -> back-end: max and mean over time (interleaved per channel, as TensorFlow flattened
         them), batch norm, dense 200 + ReLU + batch norm = the penultimate embedding,
         dense 50 = the tag logits (MSD or MagnaTagATune).

Batch norm follows TensorFlow 1's defaults (epsilon 1e-3, moving-average decay 0.99).
Zero padding in time reproduces the original exactly: explicit (3, 3) for the 7-frame
kernels and TensorFlow's 'same' split (the odd extra frame at the end) for the temporal ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Stage = Callable[[torch.Tensor], torch.Tensor]

BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default
BN_MOMENTUM = 0.01  # torch's momentum = 1 - TensorFlow's decay 0.99

# Segments per front-end call in eval mode: the oneDNN convolutions run ~1.7x faster per
# segment on CPU when each call's output stays cache-sized (measured on AVX-512, 1-2 threads),
# and a batch's full-resolution maps are never all in memory at once.
EVAL_CHUNK = 2


def in_eval_chunks(
    stage: nn.Module, x: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """`stage(x)` (or `run(x)`, a pass through `stage`), over `EVAL_CHUNK` segments at a
    time when every module of `stage` is in eval mode (a module in train mode needs the
    whole batch: batch-norm statistics)."""
    run = run or stage
    if len(x) <= EVAL_CHUNK or any(m.training for m in stage.modules()):
        return run(x)
    return torch.cat([run(chunk) for chunk in x.split(EVAL_CHUNK)])


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _bn1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def same_padding(kernel: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding for stride 1: the odd extra element goes at the end."""
    total = kernel - 1
    return total // 2, total - total // 2


def _use_mkldnn(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
    )


def conv_max_relu_bn(
    x: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    pool: tuple[int, int],
    stride: tuple[int, int],
) -> torch.Tensor:
    """Eval-mode conv -> ReLU -> batch norm -> max pool, with the max taken first.

    Exact, because ReLU is monotone and eval batch norm is a per-channel affine map whose
    sign is the sign of gamma (channels with a negative gamma take the min instead, done by
    flipping the sign of their filters). This skips two passes over the big conv output; on
    CPU, without autograd, the max is also pooled inside oneDNN before the output leaves
    its blocked layout. A conv given an `int8` path (`mer_plugin.backbones.int8`) runs it.
    """
    sign = torch.where(bn.weight < 0, -1.0, 1.0)
    int8 = getattr(conv, "int8", None)
    if int8 is not None and x.device.type == "cpu" and not torch.is_grad_enabled():
        return bn(F.relu(int8(x, conv, sign, pool, stride)))
    return bn(F.relu(conv_max(x, conv, sign, pool, stride)))


def conv_max(
    x: torch.Tensor,
    conv: nn.Conv2d,
    sign: torch.Tensor,
    pool: tuple[int, int],
    stride: tuple[int, int],
) -> torch.Tensor:
    """`conv_max_relu_bn`'s pooled conv before ReLU, in float: the max over each pooling
    window of the conv's output, the min on channels whose `sign` is -1. A conv cast to
    bfloat16 (`mer_plugin.backbones.bfloat16`) computes in it and returns float32."""
    dtype = conv.weight.dtype
    weight = conv.weight * sign.to(dtype)[:, None, None, None]
    bias = conv.bias * sign.to(dtype)
    x = x.to(dtype)
    padding = list(conv.padding)
    if _use_mkldnn(x):
        y = torch.mkldnn_convolution(x.to_mkldnn(), weight, bias, padding, [1, 1], [1, 1], 1)
        pooled = F.max_pool2d(y, pool, stride).to_dense()
    else:
        pooled = F.max_pool2d(F.conv2d(x, weight, bias, padding=padding), pool, stride)
    return pooled.float() * sign[:, None, None]


def run_conv(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` in the dtype of its weights (bfloat16 where `bfloat16.to_bfloat16` cast
    them), returned in float32."""
    return conv(x.to(conv.weight.dtype)).float()


class ConvPoolBlock(nn.Module):
    """Conv over (time, frequency) -> ReLU -> batch norm -> max over frequency
    (in eval mode by `conv_max_relu_bn`)."""

    def __init__(self, filters: int, kernel: tuple[int, int], pad_time: tuple[int, int]) -> None:
        super().__init__()
        self.pad_time = pad_time
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, F) -> (B, filters, T)."""
        x = F.pad(x, (0, 0, *self.pad_time))
        if self.training:  # batch statistics need the full map
            return self.bn(F.relu(self.conv(x))).amax(dim=3)
        bands = x.shape[3] - self.conv.kernel_size[1] + 1
        return conv_max_relu_bn(x, self.conv, self.bn, (1, bands), (1, bands)).squeeze(3)


class FrontEnd(nn.Module):
    """Musically motivated front-end: timbral (wide in frequency) and temporal (long) filters."""

    def __init__(
        self,
        n_mels: int = 96,
        timbral_filters: int = 204,
        temporal_filters: int = 51,
        timbral_widths: tuple[float, ...] = (0.4, 0.7),
        temporal_lengths: tuple[int, ...] = (128, 64, 32),
    ) -> None:
        super().__init__()
        self.input_bn = _bn2d(1)
        self.timbral = nn.ModuleList(
            ConvPoolBlock(timbral_filters, (7, int(w * n_mels)), (3, 3)) for w in timbral_widths
        )
        self.temporal = nn.ModuleList(
            ConvPoolBlock(temporal_filters, (k, 1), same_padding(k)) for k in temporal_lengths
        )
        self.out_channels = timbral_filters * len(timbral_widths) + temporal_filters * len(
            temporal_lengths
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) log-mel -> (B, out_channels, T)."""
        x = self.input_bn(x.unsqueeze(1))
        return torch.cat([block(x) for block in (*self.timbral, *self.temporal)], dim=1)


class MidEnd(nn.Module):
    """Three 1-D convs over time, the last two residual; returns all features stacked."""

    def __init__(self, in_channels: int, filters: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        widths = [in_channels] + [filters] * (n_layers - 1)
        self.convs = nn.ModuleList(nn.Conv1d(w, filters, 7, padding=3) for w in widths)
        self.bns = nn.ModuleList(_bn1d(filters) for _ in widths)
        self.out_channels = in_channels + filters * n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C + n_layers * filters, T)."""
        outputs = [x]
        h = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            y = bn(F.relu(run_conv(conv, h)))
            h = y + h if i else y
            outputs.append(h)
        return torch.cat(outputs, dim=1)


class BackEnd(nn.Module):
    """Temporal max and mean pooling -> batch norm -> dense + ReLU -> batch norm."""

    def __init__(self, in_channels: int, units: int = 200, dropout: float = 0.5) -> None:
        super().__init__()
        self.pool_bn = _bn1d(2 * in_channels)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(2 * in_channels, units)
        self.dense_bn = _bn1d(units)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, 2C): temporal max and mean, batch-normalised."""
        # [max_0, mean_0, max_1, mean_1, ...]: the order TensorFlow's flatten produced
        return self.pool_bn(torch.stack([x.amax(dim=2), x.mean(dim=2)], dim=2).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, units)."""
        return self.dense_bn(F.relu(self.dense(self.dropout(self.pool(x)))))


class TagOutputs:
    """The tag outputs of a musicnn-family tagger: its `head` applied to `embed(x)`.
    Mixed into the networks (`MusiCNN`, `vgg.MusicVGG`), which define both."""

    head: nn.Module

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def tag_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Tag logits (B, 50), in the order of the weights card's `tags`."""
        return self.head(self.embed(x))

    def tag_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Tag probabilities (B, 50), in the order of the weights card's `tags`."""
        return torch.sigmoid(self.tag_logits(x))

    def embed_and_tag(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding (B, embedding size) and tag probabilities (B, 50) in one pass."""
        embedding = self.embed(x)
        return embedding, torch.sigmoid(self.head(embedding))


EMBEDDINGS = ("penultimate", "pool", "layers")  # what a MusiCNN hands on (its docstring)


class MusiCNN(TagOutputs, nn.Module):
    """MSD_musicnn / MTT_musicnn: (B, T, 96) log-mel segments -> 200-d embedding and 50 tag
    logits (MSD or MagnaTagATune tags, per the weights).

    `forward` returns the embedding (what a backbone hands to a downstream head): the
    200-d penultimate layer, with ``embedding="pool"`` the 1506-d pooled mid-end
    features below it (the max_pool/mean_pool outputs of the original extractor), or with
    ``embedding="layers"`` both side by side (1706-d, one pass).
    `tag_logits` / `tag_probs` give the original tagger's outputs. Any number of frames
    works (the model is convolutional in time); it was trained on 187 (3 s). Its
    children, input to output: frontend, midend, backend, head (the fine-tunable groups).
    """

    embedding_size: int

    def __init__(
        self,
        n_mels: int = 96,
        n_classes: int = 50,
        midend_filters: int = 64,
        backend_units: int = 200,
        dropout: float = 0.5,
        embedding: str = "penultimate",
    ) -> None:
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, not {embedding!r}")
        self.frontend = FrontEnd(n_mels)
        self.midend = MidEnd(self.frontend.out_channels, midend_filters)
        self.backend = BackEnd(self.midend.out_channels, backend_units, dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backend_units, n_classes))
        self.embedding = embedding
        pooled = 2 * self.midend.out_channels
        sizes = {"penultimate": backend_units, "pool": pooled, "layers": backend_units + pooled}
        self.embedding_size = sizes[embedding]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding (B, 200) of log-mel segments (B, T, n_mels)."""
        return self.backend(self.midend(self._frontend(x)))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled mid-end features (B, 1506) of log-mel segments (B, T, n_mels)."""
        return self.backend.pool(self.midend(self._frontend(x)))

    def _frontend(self, x: torch.Tensor) -> torch.Tensor:
        return in_eval_chunks(self.frontend, x)

    def stages(self) -> tuple[tuple[str, Stage], ...]:
        """The embedding as its layer groups applied in turn, input to output: (group,
        function); every output but the last is (B, channels, time). Training caches the
        output of the frozen ones (mer_plugin/training/frozen_cache.py)."""
        last = {"penultimate": self.backend, "pool": self.backend.pool, "layers": self._both}
        return (
            ("frontend", self._frontend),
            ("midend", self.midend),
            ("backend", last[self.embedding]),
        )

    def _both(self, midend: torch.Tensor) -> torch.Tensor:
        """The penultimate layer and the pooled features below it, of one mid-end output."""
        return torch.cat([self.backend(midend), self.backend.pool(midend)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *_, (_, last) = self.stages()
        return last(self.midend(self._frontend(x)))
