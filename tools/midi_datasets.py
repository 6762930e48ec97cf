"""Lay out the labelled MIDI datasets as mer datasets: the MIDI files unpacked and a
``path,label,group`` manifest beside them, which `mer eval`, `mer train` and
`tools/cv_seeds.py` read like any audio dataset (the built-in FluidSynth decoder renders
each file once into the frame cache; mer_plugin/builtin/midi.py).

    python tools/midi_datasets.py emopia ../shared/data/emopia/midis.zip build/midi/emopia
    python tools/midi_datasets.py vgmidi ../shared/data/vgmidi build/midi/vgmidi
    python tools/midi_datasets.py vgmidi ../shared/data/vgmidi build/midi/vgmidi-48 --program 48
    python tools/midi_datasets.py vgmidi ../shared/data/vgmidi build/midi/vgmidi-orch --orchestra
    python tools/midi_datasets.py vgmidi ../shared/data/vgmidi build/midi/vgmidi-msg \
      --soundfont /usr/share/sounds/sf3/MuseScore_General_Full.sf3
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
`--orchestra` hands every melodic note to a section of a small orchestra by its register
(`ORCHESTRA`): below C3 the cello, up to B4 the strings doubled by a French horn, above
them a violin doubled by a flute; the other events of a melodic channel (pedal, volume,
pitch bend) go to every section, the file's program changes are dropped and each
section's channel gets its program at time 0; drums are kept as they are.
`--soundfont SF2` renders every clip with that SoundFont (mer_plugin/builtin/midi.py's
`render`) into a FLAC file beside it (24-bit, 44.1 kHz stereo) and the manifest names
the FLAC files: the set's audio no longer depends on ``$MER_SOUNDFONT``, so renderings of
one set by two SoundFonts train side by side (`--add` each manifest).
"""

from __future__ import annotations

import argparse
import csv
import os
import struct
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from mer_plugin.builtin.midi import RATE, render
from mer_plugin.errors import AudioError

QUADRANT = {(1, 1): "Q1", (-1, 1): "Q2", (-1, -1): "Q3", (1, -1): "Q4"}  # (valence, arousal)
# (pitches below, General MIDI programs): cello; strings and French horn; violin and flute
ORCHESTRA = ((48, (42,)), (72, (48, 60)), (128, (40, 73)))
_PROGRAMS = [program for _, programs in ORCHESTRA for program in programs]  # channel order


def emopia(source: Path, out: Path) -> list[tuple[str, str, str]]:
    """Rows (path, label, group) of EMOPIA's clips, unpacked from midis.zip (`source`, or
    the folder holding it) into `out`."""
    archive = source / "midis.zip" if source.is_dir() else source
    rows = []
    for path in _unpack(archive, out):
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
    try:
        with zipfile.ZipFile(archive) as zipped:
            names = [n for n in zipped.namelist() if n.lower().endswith((".mid", ".midi"))]
            zipped.extractall(out, names)
    except (OSError, zipfile.BadZipFile) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise SystemExit(f"{archive}: cannot unpack it: {reason}") from None
    return sorted(out / name for name in names)


def rendered(out: Path, rows: list[tuple[str, str, str]], font: Path) -> list[tuple[str, str, str]]:
    """`rows` with each MIDI file rendered by `font` into a FLAC file beside it."""

    def flac(row: tuple[str, str, str]) -> tuple[str, str, str]:
        midi = out / row[0]
        try:
            audio = render(midi, font)
        except AudioError as error:
            raise SystemExit(str(error)) from None
        sf.write(midi.with_suffix(".flac"), audio, RATE, subtype="PCM_24")
        return (str(Path(row[0]).with_suffix(".flac")), *row[1:])

    with ThreadPoolExecutor(os.cpu_count()) as pool:  # FluidSynth runs in a process each
        return list(pool.map(flac, rows))


def voiced(midi: bytes, program: int) -> bytes:
    """A Standard MIDI File with every melodic channel voiced by `program` (see above)."""
    chunks = list(_chunks(midi))
    playing = set()
    for tag, body in chunks:
        if tag == b"MTrk":
            playing |= _set_programs(body, program)
    return _assembled(midi, chunks, [(0, 0xC0 | ch, bytes([program])) for ch in sorted(playing)])


def _set_programs(track: bytearray, program: int) -> set[int]:
    """Set each melodic program change of one track's events to `program`, in place; the
    channels whose notes it plays."""
    playing = set()
    for _, status, start, _ in _events(track):
        kind, channel = status & 0xF0, status & 0x0F
        if kind == 0xC0 and channel != 9:
            track[start] = program
        if kind == 0x90 and track[start + 1] > 0:
            playing.add(channel)
    return {c for c in playing if c != 9}


def orchestrated(midi: bytes) -> bytes:
    """A Standard MIDI File whose melodic notes are played by `ORCHESTRA` (see above)."""
    chunks = [
        (tag, _orchestrated_track(body) if tag == b"MTrk" else body) for tag, body in _chunks(midi)
    ]
    setup = [(0, 0xC0 | ch, bytes([program])) for ch, program in enumerate(_PROGRAMS)]
    return _assembled(midi, chunks, setup)


def _orchestrated_track(track: bytearray) -> bytes:
    """One track's events with every melodic note sent to the channels of its register's
    section, its program changes dropped and its other channel events sent to every
    section's channels; drums, meta and sysex events kept."""
    out: list[tuple[int, int, bytes]] = []
    carried = 0  # the delta time of dropped events, added to the next one kept
    for delta, status, start, end in _events(track):
        kind, data = status & 0xF0, bytes(track[start:end])
        carried += delta
        if status >= 0xF0 or status & 0x0F == 9:
            targets = [status]
        elif kind == 0xC0:
            continue
        elif kind in (0x80, 0x90, 0xA0):  # notes and their aftertouch: by pitch
            targets = [kind | ch for ch in _section_channels(data[0])]
        else:
            targets = [kind | ch for ch in range(len(_PROGRAMS))]
        for target in targets:
            out.append((carried, target, data))
            carried = 0
    return _encode(out)


def _section_channels(pitch: int) -> list[int]:
    """The channels of the section whose register holds `pitch`."""
    first = 0
    for below, programs in ORCHESTRA:
        if pitch < below:
            return list(range(first, first + len(programs)))
        first += len(programs)
    raise ValueError(f"pitch {pitch} is outside MIDI's 0-127")


def _encode(events: list[tuple[int, int, bytes]]) -> bytes:
    """Track events (delta, status, data) as bytes, every status written out."""
    out = bytearray()
    for delta, status, data in events:
        digits = [delta & 0x7F]
        while delta := delta >> 7:
            digits.append(0x80 | (delta & 0x7F))
        out += bytes(reversed(digits)) + bytes([status]) + data
    return bytes(out)


def _chunks(midi: bytes) -> Iterator[tuple[bytes, bytearray]]:
    """(tag, body) of each chunk after the header of a Standard MIDI File."""
    if midi[:4] != b"MThd":
        raise ValueError("not a Standard MIDI File")
    at = 8 + struct.unpack(">I", midi[4:8])[0]
    while at + 8 <= len(midi):
        size = struct.unpack(">I", midi[at + 4 : at + 8])[0]
        yield midi[at : at + 4], bytearray(midi[at + 8 : at + 8 + size])
        at += 8 + size


def _assembled(midi: bytes, chunks: list, setup: list[tuple[int, int, bytes]]) -> bytes:
    """`midi`'s header followed by `chunks` (tag, body), the `setup` events (program
    changes at time 0) ahead of the first track's events."""
    first = next(i for i, (tag, _) in enumerate(chunks) if tag == b"MTrk")
    out = bytearray(midi[: 8 + struct.unpack(">I", midi[4:8])[0]])
    for i, (tag, body) in enumerate(chunks):
        body = _encode(setup) + body if i == first else body
        out += tag + struct.pack(">I", len(body)) + body
    return bytes(out)


def _events(track: bytearray) -> Iterator[tuple[int, int, int, int]]:
    """(delta time, status, start, end) of each event of a track, running status
    resolved: `track[start:end]` is what follows the status byte (for a meta event, its
    type, length and data)."""
    status, at = 0, 0
    while at < len(track):
        delta, at = _varlen(track, at)
        if track[at] & 0x80:
            status, at = track[at], at + 1
        start = at
        if status in (0xF0, 0xF7, 0xFF):  # sysex, meta: a length, then data
            at += 1 if status == 0xFF else 0
            length, at = _varlen(track, at)
            at += length
            yield delta, status, start, at
            status = 0  # no running status across them
            continue
        at += 1 if status & 0xF0 in (0xC0, 0xD0) else 2
        yield delta, status, start, at


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
    parser.add_argument(
        "source", type=Path, help="emopia: midis.zip or its folder; vgmidi: its folder"
    )
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--program",
        type=int,
        choices=range(128),
        metavar="0-127",
        help="voice every melodic channel with this General MIDI program",
    )
    parser.add_argument(
        "--orchestra",
        action="store_true",
        help="split the notes by register among the sections of a small orchestra",
    )
    parser.add_argument(
        "--soundfont",
        type=Path,
        help="render every clip with this SoundFont into FLAC; the manifest names those",
    )
    args = parser.parse_args()
    if args.program is not None and args.orchestra:
        parser.error("--program and --orchestra are two voicings: choose one")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = (emopia if args.dataset == "emopia" else vgmidi)(args.source, args.out)
    if args.program is not None or args.orchestra:
        for path, _, _ in rows:
            midi = args.out / path
            try:
                data = midi.read_bytes()
                midi.write_bytes(
                    orchestrated(data) if args.orchestra else voiced(data, args.program)
                )
            except (ValueError, IndexError) as error:  # IndexError: events cut short
                reason = "truncated" if isinstance(error, IndexError) else error
                raise SystemExit(f"{midi}: cannot voice it: {reason}") from None
    if args.soundfont is not None:
        rows = rendered(args.out, rows, args.soundfont)
    manifest = args.out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label", "group"))
        writer.writerows(rows)
    counts = {q: sum(r[1] == q for r in rows) for q in sorted(QUADRANT.values())}
    print(f"{manifest}: {len(rows)} clips, {len({r[2] for r in rows})} songs, {counts}")


if __name__ == "__main__":
    main()
