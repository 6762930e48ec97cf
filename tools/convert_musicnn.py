"""Convert a tagger of the `musicnn` 0.1.0 wheel into our safetensors model folder.

    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn
    python tools/convert_musicnn.py /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl --model vgg-mtt

`--model` is one of `MODELS` (musicnn-msd, musicnn-mtt, vgg-msd, vgg-mtt; `all` converts
each). Reads the TensorFlow checkpoint straight out of the wheel with a small pure-Python
reader (no TensorFlow needed), maps its variables onto our module
(`mer_plugin.backbones.musicnn.MusiCNN` or `mer_plugin.backbones.vgg.MusicVGG`), and writes
`mer_plugin/models/<model>/{model.safetensors, model.json, LICENSE-musicnn.txt}`. Only the
trained weights and batch-norm moving statistics are kept (the Adam slots are dropped), as
float32.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import struct
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from mer_plugin.builtin.backbones import MUSICNN_GROUPS
from mer_plugin.frontend import MUSICNN

MODELS_DIR = Path(__file__).resolve().parents[1] / "mer_plugin" / "models"
TABLE_MAGIC = 0xDB4775248B80FB57
DT_FLOAT = 1

# ---------------------------------------------------------------- checkpoint reading


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _block_entries(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one uncompressed LevelDB-format table block."""
    if data[offset + size] != 0:
        raise ValueError("compressed checkpoint index blocks are not supported")
    block = data[offset : offset + size]
    n_restarts = struct.unpack_from("<I", block, size - 4)[0]
    end = size - 4 - 4 * n_restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def _table(index: bytes) -> dict[str, bytes]:
    """All entries of a TensorFlow tensor-bundle index (a LevelDB-format table)."""
    footer = index[-48:]
    if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
        raise ValueError("not a TensorFlow checkpoint index")
    pos = _varint(footer, _varint(footer, 0)[1])[1]  # skip the metaindex handle
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    table = {}
    for _, handle in _block_entries(index, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        table.update((k.decode(), v) for k, v in _block_entries(index, offset, size))
    return table


def _fields(msg: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message (varint, fixed and bytes fields)."""
    out, pos = [], 0
    while pos < len(msg):
        tag, pos = _varint(msg, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(msg, pos)
        elif wire == 2:
            length, pos = _varint(msg, pos)
            value, pos = msg[pos : pos + length], pos + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(msg[pos : pos + width], "little"), pos + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


@dataclass(frozen=True)
class BundleEntry:
    dtype: int
    shape: tuple[int, ...]
    offset: int
    size: int


def _entry(msg: bytes) -> BundleEntry:
    """A BundleEntryProto: dtype (1), shape (2), shard (3), offset (4), size (5), slices (7)."""
    fields = dict(dtype=DT_FLOAT, shape=b"", shard=0, offset=0, size=0)
    names = {1: "dtype", 2: "shape", 3: "shard", 4: "offset", 5: "size", 7: "slices"}
    for number, value in _fields(msg):
        if number in names:
            fields[names[number]] = value
    if "slices" in fields or fields["shard"] != 0:
        raise ValueError("sliced or sharded checkpoint tensors are not supported")
    dims = [v for n, v in _fields(fields["shape"]) if n == 2]  # TensorShapeProto.dim
    shape = tuple(int(dict(_fields(d)).get(1, 0)) for d in dims)
    return BundleEntry(fields["dtype"], shape, fields["offset"], fields["size"])


def read_checkpoint(wheel: Path, prefix: str) -> dict[str, np.ndarray]:
    """Every float32 variable of a single-shard TF checkpoint stored inside a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        index = zf.read(prefix + ".index")
        data = zf.read(prefix + ".data-00000-of-00001")
    variables = {}
    for name, value in _table(index).items():
        if not name:  # the bundle header
            continue
        entry = _entry(value)
        if entry.dtype != DT_FLOAT or entry.size != 4 * int(np.prod(entry.shape)):
            raise ValueError(f"unexpected dtype or size for {name}: {entry}")
        raw = np.frombuffer(data, "<f4", int(np.prod(entry.shape)), entry.offset)
        variables[name] = raw.reshape(entry.shape).astype(np.float32)
    return variables


# ---------------------------------------------------------------- mapping to our module

# TensorFlow layer (in creation order) -> our module path, per architecture. musicnn's
# graph creates: input BN; timbral 7x38 and 7x67 (conv + BN each); temporal 128, 64, 32
# (conv + BN each); three mid-end convs (conv + BN each); pooled-feature BN; dense 200; its
# BN; dense 50. The vgg graph: input BN; five blocks "1CNN".."5CNN" (conv + BN each); dense 50.


@dataclass(frozen=True)
class Layers:
    """Where each TensorFlow layer of one architecture goes in our module."""

    convs_2d: dict[str, str]  # HWIO kernels
    convs_1d: dict[str, str]  # musicnn's mid-end: 2-D convs spanning all channels
    denses: dict[str, str]
    batch_norms: dict[str, str]


_MUSICNN_BNS = [
    "frontend.input_bn",
    *(f"frontend.timbral.{i}.bn" for i in range(2)),
    *(f"frontend.temporal.{i}.bn" for i in range(3)),
    *(f"midend.bns.{i}" for i in range(3)),
    "backend.pool_bn",
    "backend.dense_bn",
]
_VGG_BLOCKS = ["frontend.1", "frontend.2", "midend.0", "midend.1", "backend.0"]


def _tf_bn(i: int) -> str:
    return "batch_normalization" + (f"_{i}" if i else "")


LAYERS = {
    "musicnn": Layers(
        convs_2d={
            "conv2d": "frontend.timbral.0.conv",
            "conv2d_1": "frontend.timbral.1.conv",
            "conv2d_2": "frontend.temporal.0.conv",
            "conv2d_3": "frontend.temporal.1.conv",
            "conv2d_4": "frontend.temporal.2.conv",
        },
        convs_1d={f"conv2d_{i + 5}": f"midend.convs.{i}" for i in range(3)},
        denses={"dense": "backend.dense", "dense_1": "head.1"},
        batch_norms={_tf_bn(i): ours for i, ours in enumerate(_MUSICNN_BNS)},
    ),
    "vgg": Layers(
        convs_2d={f"{i + 1}CNN": f"{ours}.conv" for i, ours in enumerate(_VGG_BLOCKS)},
        convs_1d={},
        denses={"dense": "head.1"},
        batch_norms={
            _tf_bn(i): ours
            for i, ours in enumerate(["frontend.0", *(f"{b}.bn" for b in _VGG_BLOCKS)])
        },
    ),
}
BN_PARAMS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def to_state_dict(tf_vars: dict[str, np.ndarray], layers: Layers) -> dict[str, np.ndarray]:
    """TensorFlow variables -> our state dict (layouts converted, Adam slots dropped)."""
    out: dict[str, np.ndarray] = {}
    for tf_name, ours in layers.convs_2d.items():  # HWIO -> OIHW
        out[f"{ours}.weight"] = tf_vars[f"{tf_name}/kernel"].transpose(3, 2, 0, 1)
        out[f"{ours}.bias"] = tf_vars[f"{tf_name}/bias"]
    for tf_name, ours in layers.convs_1d.items():  # (7, C_in, 1, C_out) -> (C_out, C_in, 7)
        out[f"{ours}.weight"] = tf_vars[f"{tf_name}/kernel"][:, :, 0, :].transpose(2, 1, 0)
        out[f"{ours}.bias"] = tf_vars[f"{tf_name}/bias"]
    for tf_name, ours in layers.denses.items():  # (in, out) -> (out, in)
        out[f"{ours}.weight"] = tf_vars[f"{tf_name}/kernel"].T
        out[f"{ours}.bias"] = tf_vars[f"{tf_name}/bias"]
    for tf_name, ours in layers.batch_norms.items():
        for tf_param, param in BN_PARAMS.items():
            out[f"{ours}.{param}"] = tf_vars[f"{tf_name}/{tf_param}"]
    weighted = (*layers.convs_2d, *layers.convs_1d, *layers.denses)
    used = {f"{n}/{p}" for n in weighted for p in ("kernel", "bias")}
    used |= {f"{n}/{p}" for n in layers.batch_norms for p in BN_PARAMS}
    left = {n for n in tf_vars if n not in used and "Adam" not in n and "_power" not in n}
    if left:
        raise ValueError(f"checkpoint variables not mapped: {sorted(left)}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


# ---------------------------------------------------------------- the four models


@dataclass(frozen=True)
class Model:
    """One tagger of the wheel and what its card says about it."""

    checkpoint: str  # folder inside the wheel's musicnn package, e.g. "MSD_musicnn"
    architecture: str  # a key of LAYERS
    description: str
    embedding: str

    @property
    def dataset(self) -> str:  # "MSD" or "MTT"
        return self.checkpoint.split("_")[0]


_PENULTIMATE = "penultimate: dense 200 + ReLU + batch norm (before the tag layer)"
_POOL5 = (
    "pool5: the last block's max-pooled map (2 time x 1 band x 128), flattened time-major "
    "(the tag layer's input)"
)
MODELS = {
    "musicnn-msd": Model(
        "MSD_musicnn", "musicnn", "MSD_musicnn (Pons & Serra 2019), ported to PyTorch", _PENULTIMATE
    ),
    "musicnn-mtt": Model(
        "MTT_musicnn", "musicnn", "MTT_musicnn (Pons & Serra 2019), ported to PyTorch", _PENULTIMATE
    ),
    "vgg-msd": Model(
        "MSD_vgg",
        "vgg",
        "MSD_vgg (the VGG-like baseline of Pons & Serra 2019), ported to PyTorch",
        _POOL5,
    ),
    "vgg-mtt": Model(
        "MTT_vgg",
        "vgg",
        "MTT_vgg (the VGG-like baseline of Pons & Serra 2019), ported to PyTorch",
        _POOL5,
    ),
}
TRAINING_DATA = {
    "MSD": "Million Song Dataset, 50 most frequent last.fm tags (by the authors)",
    "MTT": "MagnaTagATune, 50 most frequent tags (by the authors)",
}


# ---------------------------------------------------------------- card and files


def labels(wheel: Path, dataset: str) -> list[str]:
    """The 50 tags of `dataset` ("MSD" or "MTT"), in output order, from musicnn's
    configuration module."""
    with zipfile.ZipFile(wheel) as zf:
        tree = ast.parse(zf.read("musicnn/configuration.py"))
    name = f"{dataset}_LABELS"
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return list(ast.literal_eval(node.value))
    raise ValueError(f"{name} not found in musicnn/configuration.py")


def wheel_version(wheel: Path) -> str:
    match = re.match(r"musicnn-([^-]+)-", wheel.name)
    if not match:
        raise ValueError(f"not a musicnn wheel: {wheel.name}")
    return match.group(1)


def checkpoint_prefix(model: Model) -> str:
    """The checkpoint's prefix inside the wheel (its files ".index", ".data-...")."""
    return f"musicnn/{model.checkpoint}/"


def model_card(wheel: Path, name: str, state: dict[str, np.ndarray]) -> dict:
    model, version = MODELS[name], wheel_version(wheel)
    with zipfile.ZipFile(wheel) as zf:
        result = zf.read(checkpoint_prefix(model) + "experiment.result").decode()
    reported = result.split("\n")[1:]
    return {
        "name": name,
        "version": "1.0.0",
        "backbone": name,
        "architecture": model.description,
        "source": {
            "package": "musicnn",
            "version": version,
            "file": wheel.name,
            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "checkpoint": checkpoint_prefix(model),
            "pypi": f"https://pypi.org/project/musicnn/{version}/",
            "upstream": "https://github.com/jordipons/musicnn",
            "paper": "J. Pons and X. Serra, musicnn: pre-trained convolutional neural networks "
            "for music audio tagging, ISMIR late-breaking/demo, 2019 (arXiv:1909.06654)",
        },
        "licence": {
            "spdx": "ISC",
            "file": "LICENSE-musicnn.txt",
            "notice": "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. "
            "Weights converted from the musicnn wheel; the ISC notice is kept beside them.",
        },
        "training_data": TRAINING_DATA[model.dataset],
        "metrics": {
            "reported": [line for line in reported if line],
            "protocol": f"musicnn's experiment.result on the {model.dataset} test split: "
            "ROC-AUC, then PR-AUC",
        },
        "tags": labels(wheel, model.dataset),
        "frontend": MUSICNN.to_dict(),
        "frontend_note": "the original computes the mel power in float16 before the log; "
        "this port's front-end stays float32",
        "input": "log-mel segments (batch, frames, 96), time-major; trained on 187 frames (3 s)",
        "embedding": model.embedding,
        "embedding_size": int(state["head.1.weight"].shape[1]),
        "layer_groups": list(MUSICNN_GROUPS),  # fine-tunable, input to output; layer prefixes
        "layers": {k: list(v.shape) for k, v in state.items()},
        "converted": date.today().isoformat(),
        "converter": "tools/convert_musicnn.py",
    }


def convert(wheel: Path, name: str, out_dir: Path) -> dict[str, np.ndarray]:
    model = MODELS[name]
    tf_vars = read_checkpoint(wheel, checkpoint_prefix(model))
    state = to_state_dict(tf_vars, LAYERS[model.architecture])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "model.safetensors").chmod(0o644)
    card = model_card(wheel, name, state)
    (out_dir / "model.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    with zipfile.ZipFile(wheel) as zf:
        licence = zf.read(f"musicnn-{wheel_version(wheel)}.dist-info/LICENSE.md")
    (out_dir / "LICENSE-musicnn.txt").write_bytes(licence.rstrip() + b"\n")
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path, help="musicnn-0.1.0-py3-none-any.whl")
    parser.add_argument("--model", choices=[*MODELS, "all"], default="musicnn-msd")
    parser.add_argument("--out", type=Path, help="folder (default: mer_plugin/models/<model>)")
    parser.add_argument("--list", action="store_true", help="print the checkpoint's variables")
    args = parser.parse_args()
    names = list(MODELS) if args.model == "all" else [args.model]
    if args.out and len(names) > 1:
        parser.error("--out takes one --model")
    for name in names:
        if args.list:
            variables = read_checkpoint(args.wheel, checkpoint_prefix(MODELS[name]))
            for variable, value in sorted(variables.items()):
                print(name, variable, list(value.shape))
            continue
        out = args.out or MODELS_DIR / name
        state = convert(args.wheel, name, out)
        size = sum(v.nbytes for v in state.values())
        print(f"{name}: wrote {len(state)} tensors ({size / 1e6:.1f} MB) to {out}")


if __name__ == "__main__":
    main()
