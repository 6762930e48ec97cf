"""bfloat16 convolutions for the musicnn and vgg taggers on CPUs with native bfloat16.

On CPUs with AVX-512 BF16 (and AMX, where oneDNN uses its tiles) a convolution in
bfloat16 runs two to three times faster than in float32: musicnn's temporal (k x 1)
convolutions and its mid-end's 1-D convolutions, which int8 does not serve well
(`int8.worth_int8`), are ~40 % of musicnn's time once its timbral convolutions run in
int8. `to_bfloat16` casts the weights of every conv of the musicnn and vgg taggers' blocks in a
backbone (`SERVED`, a fusion's parts included) that has no int8 path; those convs take
their input in bfloat16 and hand float32 back (`musicnn.conv_max`, `musicnn.run_conv`),
so batch norm, pooling and every later layer stay in float32. Measured speed and
song-level agreement with float32: docs/performance.md.
"""

from __future__ import annotations

import torch
from torch import nn

from mer_plugin.backbones.musicnn import ConvPoolBlock, MidEnd
from mer_plugin.backbones.vgg import ConvBlock

# the blocks whose convs run through `musicnn.conv_max` or `musicnn.run_conv`
SERVED = (ConvPoolBlock, MidEnd, ConvBlock)


def bfloat16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere
    oneDNN emulates it, slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def to_bfloat16(module: nn.Module) -> int:
    """Cast the weights of the convs of `SERVED` blocks in `module` that have no int8
    path to bfloat16, in place; returns how many. Other layers, and other backbones'
    modules, are left as they are."""
    blocks = [m for m in module.modules() if isinstance(m, SERVED)]
    convs = {
        conv
        for block in blocks
        for conv in block.modules()
        if isinstance(conv, nn.Conv1d | nn.Conv2d) and getattr(conv, "int8", None) is None
    }
    for conv in convs:
        conv.to(torch.bfloat16)
    return len(convs)
