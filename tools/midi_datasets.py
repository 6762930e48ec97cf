"""Lay out the labelled MIDI datasets as mer datasets: the MIDI files unpacked and a
``path,label,group`` manifest beside them, which `mer eval`, `mer train` and
`tools/cv_seeds.py` read like any audio dataset (the built-in FluidSynth decoder renders
each file once into the frame cache; mer_plugin/builtin/midi.py).

    python tools/midi_datasets.py emopia ../shared/data/emopia/midis.zip build/midi/emopia
    python tools/midi_datasets.py vgmidi ../shared/data/vgmidi build/midi/vgmidi
    mer eval build/midi/emopia/manifest.csv --methods segment

- EMOPIA 1.0 (Hung et al., ISMIR 2021; CC BY-NC-SA 4.0, non-commercial): solo piano
  clips named ``Q{1..4}_<youtubeID>_<n>.mid``; the prefix is the quadrant, the YouTube id
  the song (its clips stay on one side of every split).
- VGMIDI (Ferreira & Whitehead, ISMIR 2019; no licence published): video-game piano
  phrases with valence and arousal of -1 or +1 (`vgmidi_labelled.csv`, MIDI in
  `phrases.zip`); the song is the game and piece.
"""

from __future__ import annotations

import argparse
import csv
import zipfile
from pathlib import Path

QUADRANT = {(1, 1): "Q1", (-1, 1): "Q2", (-1, -1): "Q3", (1, -1): "Q4"}  # (valence, arousal)


def emopia(source: Path, out: Path) -> list[tuple[str, str, str]]:
    """Rows (path, label, group) of EMOPIA's clips, unpacked from midis.zip into `out`."""
    rows = []
    for path in _unpack(source, out):
        label, song = path.stem[:2], path.stem[3:].rsplit("_", 1)[0]  # ids may hold "_"
        rows.append((str(path.relative_to(out)), label, song))
    return rows


def vgmidi(source: Path, out: Path) -> list[tuple[str, str, str]]:
    """Rows of VGMIDI's labelled phrases, from the folder holding its CSV and phrases.zip."""
    unpacked = {path.name: path for path in _unpack(source / "phrases.zip", out)}
    rows = []
    with open(source / "vgmidi_labelled.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = unpacked.get(Path(row["midi"]).name)
            if path is None:
                raise SystemExit(f"{row['midi']}: named in the CSV, missing from phrases.zip")
            label = QUADRANT[(int(row["valence"]), int(row["arousal"]))]
            rows.append((str(path.relative_to(out)), label, f"{row['game']} / {row['piece']}"))
    return rows


def _unpack(archive: Path, out: Path) -> list[Path]:
    with zipfile.ZipFile(archive) as zipped:
        names = [n for n in zipped.namelist() if n.lower().endswith((".mid", ".midi"))]
        zipped.extractall(out, names)
    return sorted(out / name for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("emopia", "vgmidi"))
    parser.add_argument("source", type=Path, help="emopia: midis.zip; vgmidi: its folder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = (emopia if args.dataset == "emopia" else vgmidi)(args.source, args.out)
    manifest = args.out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label", "group"))
        writer.writerows(rows)
    counts = {q: sum(r[1] == q for r in rows) for q in sorted(QUADRANT.values())}
    print(f"{manifest}: {len(rows)} clips, {len({r[2] for r in rows})} songs, {counts}")


if __name__ == "__main__":
    main()
