"""Lay out the labelled MIDI datasets as mer datasets: the MIDI files unpacked and a
``path,label,group`` manifest beside them, which `mer eval`, `mer train` and
`tools/cv_seeds.py` read like any audio dataset (the built-in FluidSynth decoder renders
each file once into the frame cache; mer_plugin/builtin/midi.py).

    python tools/midi_datasets.py emopia ../shared/data/emopia/midis.zip build/midi/emopia
    python tools/midi_datasets.py vgmidi ../shared/data/vgmidi build/midi/vgmidi
    python tools/midi_datasets.py vgmidi ../shared/data/vgmidi build/midi/vgmidi-48 --program 48
    mer eval build/midi/emopia/manifest.csv --methods segment

- EMOPIA 1.0 (Hung et al., ISMIR 2021; CC BY-NC-SA 4.0, non-commercial): solo piano
  clips named ``Q{1..4}_<youtubeID>_<n>.mid``; the prefix is the quadrant, the YouTube id
  the song (its clips stay on one side of every split).
- VGMIDI (Ferreira & Whitehead, ISMIR 2019; no licence published): video-game piano
  phrases with valence and arousal of -1 or +1 (`vgmidi_labelled.csv`, MIDI in
  `phrases.zip`); the song is the game and piece.

`--program N` voices every melodic channel of every file with General MIDI program N
(0-127; 48 String Ensemble 1, 61 Brass Section): each program change of a channel other
than 10 (drums) is set to N, and each channel that plays gets one at time 0, so piano
phrases are heard in another timbre (docs/results.md, "Game music voiced for strings").
"""

from __future__ import annotations

import argparse
import csv
import struct
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


def voiced(midi: bytes, program: int) -> bytes:
    """A Standard MIDI File with every melodic channel voiced by `program` (see above)."""
    if midi[:4] != b"MThd":
        raise ValueError("not a Standard MIDI File")
    header_end = 8 + struct.unpack(">I", midi[4:8])[0]
    chunks, playing, at = [], set(), header_end
    while at + 8 <= len(midi):
        tag, size = midi[at : at + 4], struct.unpack(">I", midi[at + 4 : at + 8])[0]
        body = bytearray(midi[at + 8 : at + 8 + size])
        if tag == b"MTrk":
            playing |= _set_programs(body, program)
        chunks.append([tag, body])
        at += 8 + size
    # each playing channel's program at time 0, ahead of the first track's events
    first = next(chunk for chunk in chunks if chunk[0] == b"MTrk")
    first[1] = bytes(b for ch in sorted(playing) for b in (0, 0xC0 | ch, program)) + first[1]
    return midi[:header_end] + b"".join(t + struct.pack(">I", len(b)) + b for t, b in chunks)


def _set_programs(track: bytearray, program: int) -> set[int]:
    """Set each melodic program change of one track's events to `program`, in place; the
    channels whose notes it plays."""
    playing, status, at = set(), 0, 0
    while at < len(track):
        while track[at] & 0x80:  # the delta time's bytes
            at += 1
        at += 1
        if track[at] & 0x80:
            status, at = track[at], at + 1
        kind, channel = status & 0xF0, status & 0x0F
        if status in (0xF0, 0xF7) or status == 0xFF:  # sysex, meta: a length, then data
            at += 1 if status == 0xFF else 0
            length, at = _varlen(track, at)
            at += length
            status = 0  # no running status across them
            continue
        if kind == 0xC0 and channel != 9:
            track[at] = program
        if kind == 0x90 and track[at + 1] > 0:
            playing.add(channel)
        at += 1 if kind in (0xC0, 0xD0) else 2
    return {c for c in playing if c != 9}


def _varlen(data: bytearray, at: int) -> tuple[int, int]:
    value = 0
    while True:
        value = (value << 7) | (data[at] & 0x7F)
        at += 1
        if not data[at - 1] & 0x80:
            return value, at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("emopia", "vgmidi"))
    parser.add_argument("source", type=Path, help="emopia: midis.zip; vgmidi: its folder")
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--program",
        type=int,
        choices=range(128),
        metavar="0-127",
        help="voice every melodic channel with this General MIDI program",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = (emopia if args.dataset == "emopia" else vgmidi)(args.source, args.out)
    if args.program is not None:
        for path, _, _ in rows:
            midi = args.out / path
            try:
                midi.write_bytes(voiced(midi.read_bytes(), args.program))
            except (ValueError, IndexError) as error:  # IndexError: events cut short
                reason = "truncated" if isinstance(error, IndexError) else error
                raise SystemExit(f"{midi}: cannot voice it: {reason}") from None
    manifest = args.out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label", "group"))
        writer.writerows(rows)
    counts = {q: sum(r[1] == q for r in rows) for q in sorted(QUADRANT.values())}
    print(f"{manifest}: {len(rows)} clips, {len({r[2] for r in rows})} songs, {counts}")


if __name__ == "__main__":
    main()
