"""Labelled music for training and evaluation, behind one interface: a list of clips.

Sources:
- a folder per class (``Q1/ … Q4/``, the 4Q layout), with an optional CSV whose first
  column names a clip (file stem) and whose other columns can group clips (e.g. Artist);
- a CSV manifest ``path,label[,group]`` or ``path,valence,arousal[,group]``; relative
  paths are relative to the manifest. Continuous labels map to Russell quadrants at the
  scale's midpoint: 0.5 when every value lies in [0, 1], 0 when in [-1, 1], otherwise the
  middle of the observed range. Q1 = valence and arousal high, Q2 = arousal high and
  valence low, Q3 = both low, Q4 = valence high and arousal low;
- a folder of unlabelled audio (`load_unlabelled`), for SSSL's unlabelled branch.

Any file a decoder reads is a clip: audio, or MIDI rendered by the FluidSynth decoder.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer_plugin.emotion import QUADRANTS
from mer_plugin.errors import MerError

AUDIO_EXTENSIONS = (
    ".wav", ".aif", ".aiff", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".mp4", ".mid", ".midi"
)  # fmt: skip


class DatasetError(MerError):
    """A dataset cannot be used as given."""


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    group: str  # clips of one group stay on one side of every split


@dataclass
class Dataset:
    name: str
    clips: list[Clip]
    classes: tuple[str, ...]
    skipped: list[str] = field(default_factory=list)  # "what: why", one per skipped entry

    @property
    def labels(self) -> np.ndarray:
        """Class indices of the clips, in `classes` order."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index[clip.label] for clip in self.clips], dtype=np.int64)

    @property
    def groups(self) -> list[str]:
        return [clip.group for clip in self.clips]

    def subset(self, indices: Sequence[int]) -> Dataset:
        clips = [self.clips[i] for i in indices]
        return Dataset(self.name, clips, self.classes, list(self.skipped))


def load_dataset(
    source: str | Path, group_by: str | None = None, annotations: str | Path | None = None
) -> Dataset:
    """A dataset from a class-folder tree or a CSV manifest (see the module docstring)."""
    source = Path(source)
    if source.is_dir():
        dataset = from_class_folders(source, group_by, annotations)
    elif source.suffix.lower() == ".csv" and source.is_file():
        dataset = from_manifest(source)
    elif not source.exists():
        raise DatasetError(f"{source}: no such file or folder")
    else:
        raise DatasetError(f"{source}: expected a folder of class folders or a .csv manifest")
    _check(dataset)
    return dataset


def from_class_folders(
    root: Path, group_by: str | None = None, annotations: str | Path | None = None
) -> Dataset:
    """Clips from ``root/<class>/*.<audio>``; groups from a column of the annotations CSV
    (``root/annotations.csv`` when not given), else each clip is its own group."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    table = _annotation_table(root, group_by, annotations)
    clips: list[Clip] = []
    skipped: list[str] = []
    for class_dir in class_dirs:
        for path in sorted(class_dir.rglob("*")):
            if path.suffix.lower() not in AUDIO_EXTENSIONS or path.name.startswith("."):
                continue
            group = table.get(path.stem) if table is not None else str(path)
            if group is None:
                skipped.append(f"{path}: not in the annotations")
                continue
            clips.append(Clip(path, class_dir.name, group))
    classes = tuple(d.name for d in class_dirs)
    return Dataset(root.name, clips, classes, skipped)


def _annotation_table(
    root: Path, group_by: str | None, annotations: str | Path | None
) -> dict[str, str] | None:
    """clip stem → group value, from the first and the `group_by` column of the CSV."""
    if group_by is None:
        return None
    csv_path = Path(annotations) if annotations else root / "annotations.csv"
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: annotations file not found (needed by --group-by)")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if group_by not in columns:
            raise DatasetError(f"{csv_path}: no column {group_by!r} (columns: {columns})")
        key = columns[0]
        return {row[key]: row[group_by] for row in reader}


def from_manifest(manifest: Path) -> Dataset:
    """Clips from a ``path,label[,group]`` or ``path,valence,arousal[,group]`` CSV."""
    rows = _read_manifest(manifest)
    header = rows[0][1]
    continuous = "valence" in header and "arousal" in header
    if not continuous and "label" not in header:
        raise DatasetError(f"{manifest}: needs columns path,label or path,valence,arousal")
    labels = _continuous_labels(manifest, rows) if continuous else [r["label"] for _, r in rows]
    clips, skipped = [], []
    for (line, row), label in zip(rows, labels, strict=True):
        path = (manifest.parent / row["path"]).resolve()
        if not path.is_file():
            skipped.append(f"{manifest}:{line}: {row['path']}: no such file")
            continue
        clips.append(Clip(path, label, row.get("group") or str(path)))
    classes = QUADRANTS if continuous else tuple(sorted({c.label for c in clips}))
    return Dataset(_manifest_name(manifest), clips, classes, skipped)


def _manifest_name(manifest: Path) -> str:
    """How reports name a manifest's dataset: its folder ("vgmidi" for
    vgmidi/manifest.csv), and the file's stem when that says more (emopia/every4th)."""
    folder = manifest.resolve().parent.name
    return folder if manifest.stem.lower() == "manifest" else f"{folder}/{manifest.stem}"


def _read_manifest(manifest: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; rows without a path or label raise with their line."""
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise DatasetError(f"{manifest}: the first line must name the columns, with 'path'")
        rows = [(reader.line_num, row) for row in reader]
    wanted = [c for c in ("label", "valence", "arousal") if c in reader.fieldnames]
    for line, row in rows:
        if not row.get("path") or any(not (row.get(c) or "").strip() for c in wanted):
            raise DatasetError(f"{manifest}:{line}: empty path or label")
    if not rows:
        raise DatasetError(f"{manifest}: no rows")
    return rows


def _continuous_labels(manifest: Path, rows: list[tuple[int, dict[str, str]]]) -> list[str]:
    values = []
    for line, row in rows:
        try:
            values.append((float(row["valence"]), float(row["arousal"])))
        except ValueError:
            raise DatasetError(f"{manifest}:{line}: valence and arousal must be numbers") from None
    array = np.array(values)
    return [quadrant(v, a, _midpoint(array[:, 0]), _midpoint(array[:, 1])) for v, a in values]


def _midpoint(values: np.ndarray) -> float:
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 1:
        return 0.5
    if low >= -1 and high <= 1:
        return 0.0
    return (low + high) / 2


def quadrant(valence: float, arousal: float, v_mid: float = 0.5, a_mid: float = 0.5) -> str:
    """Russell quadrant of a valence/arousal pair; a value on the midpoint counts as high."""
    if arousal >= a_mid:
        return "Q1" if valence >= v_mid else "Q2"
    return "Q4" if valence >= v_mid else "Q3"


def load_unlabelled(folder: str | Path) -> Dataset:
    """Every audio file under `folder` (recursively, hidden ones left out), without labels
    (label ""): music for a semi-supervised method's unlabelled branch. Each file is its
    own group."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (unlabelled music is a folder of audio)")
    paths = [
        path
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in AUDIO_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    if not paths:
        raise DatasetError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return Dataset(root.name, [Clip(path, "", str(path)) for path in paths], ())


def _check(dataset: Dataset) -> None:
    if not dataset.clips:
        raise DatasetError(f"{dataset.name}: no audio clips found")
    counts = Counter(clip.label for clip in dataset.clips)
    expected = set(dataset.classes)
    if expected & set(QUADRANTS):  # a quadrant dataset needs all four
        expected |= set(QUADRANTS)
    missing = sorted(name for name in expected if counts[name] == 0)
    if missing:
        raise DatasetError(f"{dataset.name}: no clips for class {', '.join(missing)}")
    if len(counts) < 2:
        raise DatasetError(f"{dataset.name}: needs at least two classes, found {list(counts)}")


def grouped_folds(dataset: Dataset, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, test) index splits, stratified by class, never sharing a group."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(dataset.groups))
    if not 2 <= k <= n_groups:
        raise DatasetError(f"{dataset.name}: cannot make {k} folds from {n_groups} groups")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    indices = np.arange(len(dataset.clips))
    return list(splitter.split(indices, dataset.labels, dataset.groups))
