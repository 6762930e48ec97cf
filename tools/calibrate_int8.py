"""Calibrate the shipped taggers' int8 convolutions on real music and write
`mer_plugin/models/<backbone>/int8.safetensors` (`mer_plugin/backbones/int8.py`).

    python tools/calibrate_int8.py ../shared/data/4q-dev            # every 3rd file
    python tools/calibrate_int8.py MUSIC_FOLDER --every 1 --backbones musicnn-msd

Every `--every`-th audio file under the folders (sorted by path) is cut into the log-mel
segments `mer tag` analyses; the float network runs over all of them and records, per
conv worth int8, the range of its input and each channel's largest value after ReLU.
The shipped calibrations were made with the first command (193 of 4q-dev's 600 clips,
1,935 segments); the files are a few kilobytes and hold no audio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from mer_plugin.backbones import CALIBRATION_FILE, create_backbone, get_backbone, shipped_folder
from mer_plugin.backbones.int8 import calibrate
from mer_plugin.features import iter_segments
from mer_plugin.library import walk

TAGGERS = ["musicnn-msd", "musicnn-mtt", "vgg-msd", "vgg-mtt"]
BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=3, help="every Nth file (default 3)")
    parser.add_argument("--backbones", nargs="+", default=TAGGERS)
    args = parser.parse_args()
    files = sorted(walk(args.folders).files)[:: args.every]
    spec = get_backbone(args.backbones[0]).spec
    if any(get_backbone(name).spec != spec for name in args.backbones):
        parser.error("the backbones eat different log-mels: calibrate them separately")
    segments = [s for path in files for batch in iter_segments(path, spec) for s in batch]
    x = torch.from_numpy(np.stack(segments))
    print(f"{len(files)} files, {len(x)} segments", flush=True)
    for name in args.backbones:
        started = time.perf_counter()
        tensors = calibrate(create_backbone(name), x.split(BATCH))
        target = shipped_folder(name) / CALIBRATION_FILE
        target.write_bytes(save({k: v.contiguous() for k, v in tensors.items()}))
        print(f"{target}: {len(tensors) // 2} convs ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
