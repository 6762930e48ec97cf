"""int8 convolutions for the musicnn and vgg taggers on x86 CPUs.

Every convolution of those networks runs through `musicnn.conv_max_relu_bn` (conv, max
pool, ReLU, batch norm; the max taken first). A conv with an `int8` attribute has that
step done by it instead; this module makes those attributes:

- `calibrate` runs the float network over real music and records, per conv worth it
  (`worth_int8`), the range of its input and the largest value each output channel
  reaches after ReLU
  (`tools/calibrate_int8.py` writes them to `int8.safetensors` beside the weights);
- `attach_calibration` hangs a calibration on the convs of a built network (`build` does
  it for shipped weights that have one), and `quantize` turns those into int8 paths.

The int8 path (`Int8Conv`): the input is quantised per tensor over its calibrated range
(7 of uint8's bits, `INPUT_LEVELS`), the filters per output channel (int8), each
channel's filters first divided by its calibrated maximum so that every channel spans the
whole 8-bit output; the max pool runs on the 8-bit map (fbgemm, through torch's quantized
ops) and only the pooled values return to float, scaled back. Values beyond the
calibrated range saturate. Measured speed and song-level agreement with float:
docs/performance.md.

torch deprecated its quantized dtypes in 2.13 (its warning says they will be removed;
the way ahead it names is plain int8 tensors with torchao's kernels). The pinned torch
2.14.1 has them; where a torch lacks them, `int8_engine` says so and `--precision auto`
stays in float.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mer_plugin.backbones.musicnn import conv_max

ENGINES = ("x86", "fbgemm")  # torch's quantized engines with per-channel int8 convs
INPUT, CHANNELS = "input_range", "channel_max"  # a conv's two calibrated tensors
# Inputs use 7 of their 8 bits: fbgemm's AVX2 kernels add pairs of uint8 x int8 products
# in int16, which the full range can overflow (torch's own fbgemm configs reduce it too).
INPUT_LEVELS = 127
QUANTILE = 0.9999  # of a conv's input values: the calibrated range
QUANTILE_SAMPLE = 1 << 20  # values per batch the quantiles are taken from, evenly spread


# said once per process on stderr otherwise: known, and answered above
warnings.filterwarnings("ignore", r"torch\.quantize_per_tensor, torch\.quantize_per_channel")


def int8_engine() -> str | None:
    """The quantized engine int8 convs run on here; None where there is none (fbgemm
    needs AVX2; a torch without quantized dtypes has none)."""
    if not hasattr(torch, "quantize_per_channel") or not hasattr(torch.ops.quantized, "conv2d"):
        return None
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return None
    return next((e for e in ENGINES if e in torch.backends.quantized.supported_engines), None)


class Int8Conv:
    """The int8 path of one conv, from its calibration (see the module's docstring).
    Called as `conv_max`; packs the conv's filters on first use."""

    def __init__(self, input_range: torch.Tensor, channel_max: torch.Tensor) -> None:
        low, high = min(float(input_range[0]), 0.0), max(float(input_range[1]), 0.0)
        self.scale = max(high - low, 1e-6) / INPUT_LEVELS
        self.zero_point = min(INPUT_LEVELS, max(0, round(-low / self.scale)))
        self.channel_max = channel_max.float().clamp_min(1e-6)
        self._packed: tuple[torch.Tensor, float, int, torch.Tensor] | None = None

    def __call__(
        self,
        x: torch.Tensor,
        conv: nn.Conv2d,
        sign: torch.Tensor,
        pool: tuple[int, int],
        stride: tuple[int, int],
    ) -> torch.Tensor:
        packed, out_scale, out_zero, back = self._packed or self._pack(conv, sign)
        qx = torch.quantize_per_tensor(x, self.scale, self.zero_point, torch.quint8)
        qy = torch.ops.quantized.conv2d(qx, packed, out_scale, out_zero)
        return F.max_pool2d(qy, pool, stride).dequantize() * back

    def _pack(self, conv: nn.Conv2d, sign: torch.Tensor) -> tuple:
        """Filters scaled to their channel's range and quantised; the output's 8 bits span
        [0, 1] of that range, or [-1, 1] when some channel takes the min (its ReLU input
        is then the negated pooled value)."""
        per_channel = (sign / self.channel_max).detach()
        weight = conv.weight.detach() * per_channel[:, None, None, None]
        bias = conv.bias.detach() * per_channel
        scales = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127
        zeros = torch.zeros(len(scales), dtype=torch.long)
        qweight = torch.quantize_per_channel(weight, scales.double(), zeros, 0, torch.qint8)
        padding = list(conv.padding)
        packed = torch.ops.quantized.conv2d_prepack(qweight, bias, [1, 1], padding, [1, 1], 1)
        signed = bool((sign < 0).any())
        back = (self.channel_max * sign)[:, None, None]
        self._packed = (packed, 1 / 128 if signed else 1 / 255, 128 if signed else 0, back)
        return self._packed


class _Recorder:
    """Stands in for a conv's int8 path while calibrating: runs the float path and
    records the input's range (its `QUANTILE`s: rare outliers saturate rather than
    coarsen every step) and each channel's largest value after ReLU."""

    def __init__(self) -> None:
        self.low, self.high = 0.0, 0.0
        self.channel_max: torch.Tensor | None = None

    def __call__(self, x, conv, sign, pool, stride) -> torch.Tensor:  # noqa: ANN001
        pooled = conv_max(x, conv, sign, pool, stride)
        values = x.flatten()[:: max(1, x.numel() // QUANTILE_SAMPLE)].float()
        low, high = torch.quantile(values, torch.tensor([1 - QUANTILE, QUANTILE])).tolist()
        self.low, self.high = min(self.low, low), max(self.high, high)
        seen = F.relu(pooled).amax(dim=(0, 2, 3))
        self.channel_max = seen if self.channel_max is None else self.channel_max.maximum(seen)
        return pooled

    def calibration(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.channel_max is not None, "calibrated on no input"
        return torch.tensor([self.low, self.high]), self.channel_max


def worth_int8(conv: nn.Conv2d) -> bool:
    """Convs that run faster in int8: not the k x 1 kernels (musicnn's temporal filters),
    for which fbgemm took 28 ms a segment against oneDNN's 4 in float (one thread)."""
    return conv.kernel_size[1] > 1


def _convs(module: nn.Module) -> Iterator[tuple[str, nn.Conv2d]]:
    return ((n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d))


def calibrate(module: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The calibration of every 2-D conv worth int8 of an eval-mode musicnn or vgg network
    over `batches` of log-mel segments:
    {"<conv>.input_range": (2,), "<conv>.channel_max": (C,)}."""
    recorders = {name: _Recorder() for name, conv in _convs(module) if worth_int8(conv)}
    convs = dict(_convs(module))
    try:
        for name, recorder in recorders.items():
            convs[name].int8 = recorder
        with torch.inference_mode():
            for batch in batches:
                module(batch)
    finally:
        for name in recorders:
            del convs[name].int8
    tensors = {}
    for name, recorder in recorders.items():
        tensors[f"{name}.{INPUT}"], tensors[f"{name}.{CHANNELS}"] = recorder.calibration()
    return tensors


def attach_calibration(module: nn.Module, path: Path) -> None:
    """Hang the calibration saved at `path` on the convs it names (inert until `quantize`)."""
    from safetensors.torch import load

    tensors = load(path.read_bytes())
    for name, conv in _convs(module):
        if f"{name}.{INPUT}" in tensors:
            conv.int8_calibration = (tensors[f"{name}.{INPUT}"], tensors[f"{name}.{CHANNELS}"])


def quantize(module: nn.Module) -> int:
    """Give every conv of `module` that carries a calibration its int8 path; returns how
    many. Raises RuntimeError where this CPU has no int8 engine (`int8_engine`)."""
    engine = int8_engine()
    if engine is None:
        raise RuntimeError("int8 inference needs an x86 CPU with AVX2")
    torch.backends.quantized.engine = engine
    count = 0
    for _, conv in _convs(module):
        calibration = getattr(conv, "int8_calibration", None)
        if calibration is not None:
            conv.int8 = Int8Conv(*calibration)
            count += 1
    return count
