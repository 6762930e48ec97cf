"""What a backbone costs per 3 s segment: GFLOP counted, and milliseconds measured here.

    python tools/backbone_cost.py                      # the built-in pretrained backbones
    python tools/backbone_cost.py musicnn-msd musicnn-msd+mtt --batch 32 --repeats 5

GFLOP are counted by `torch.utils.flop_counter` on one segment: 2 per multiply-add of the
convolutions and dense layers (batch norm, ReLU and pooling are left out, a few percent at
most). Milliseconds are the median over `--repeats` timed batches of `--batch` random
log-mel segments, inference mode, after one warm-up batch, divided by the batch size, with
torch's threads as set (`--threads`, default torch's own): wall time, and the CPU time of
the process (all its threads), which other jobs on a shared machine inflate much less. All
backbones are measured in one run, so they share its load; compare them with each other.
Where this CPU has int8 kernels, each backbone with an int8 calibration is also timed with
its int8 convolutions (`mer_plugin/backbones/int8.py`), right after its float run; where it
has native bfloat16, then also with its other convs in bfloat16 (`--precision auto`,
`mer_plugin/backbones/bfloat16.py`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mer_plugin.backbones import create_backbone, get_backbone
from mer_plugin.backbones.bfloat16 import bfloat16_supported, to_bfloat16
from mer_plugin.backbones.int8 import int8_engine, quantize

DEFAULT = ["musicnn-msd", "musicnn-mtt", "vgg-msd", "vgg-mtt", "musicnn-msd-pool"]
TRACK_SEGMENTS = 80  # 3 s segments in a 4-minute track


def segments(name: str, batch: int) -> torch.Tensor:
    spec = get_backbone(name).spec
    return torch.randn(batch, spec.segment_frames, spec.n_mels, generator=torch.Generator())


def gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOP of one forward pass on one segment (autograd on: the plain conv path is the
    one counted, eval-mode shortcuts compute the same convolutions)."""
    with FlopCounterMode(display=False) as counter, torch.enable_grad():
        model(x[:1])
    return counter.get_total_flops() / 1e9


def ms_per_segment(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds per segment."""
    wall, cpu = [], []
    with torch.inference_mode():
        model(x)  # warm-up: oneDNN picks its kernels
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            model(x)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    return tuple(1000 * statistics.median(t) / len(x) for t in (wall, cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backbones", nargs="*", default=DEFAULT)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    columns = ["backbone", "embedding", "GFLOP / segment", "ms / segment", "CPU ms / segment"]
    columns.append("CPU s / 4-min track")
    int8, bf16 = int8_engine() is not None, bfloat16_supported()
    if int8:
        columns += ["int8 ms / segment", "int8 CPU ms / segment"]
    if bf16:
        columns += ["int8 + bfloat16 ms / segment", "int8 + bfloat16 CPU ms / segment"]
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
    for name in args.backbones:
        model, x = create_backbone(name), segments(name, args.batch)
        wall, cpu = ms_per_segment(model, x, args.repeats)
        size, track = get_backbone(name).embedding_size, cpu * TRACK_SEGMENTS / 1000
        row = f"{name} | {size} | {gflop(model, x):.2f} | {wall:.1f} | {cpu:.1f} | {track:.2f}"
        if int8:
            fast = quantize(model) and ms_per_segment(model, x, args.repeats)
            row += f" | {fast[0]:.1f} | {fast[1]:.1f}" if fast else " | - | -"
        if bf16:
            # a backbone with no conv left in float computes as in int8
            faster = ms_per_segment(model, x, args.repeats) if to_bfloat16(model) else fast
            row += f" | {faster[0]:.1f} | {faster[1]:.1f}" if faster else " | - | -"
        print(f"| {row} |", flush=True)


if __name__ == "__main__":
    main()
