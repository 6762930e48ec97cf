"""MIDI files and a SoundFont written from scratch, for the MIDI renderer's tests: a
one-instrument SoundFont 2 (a looped sine at 440 Hz, playing every key of preset 0) and
type-0 MIDI files of single notes, each a few hundred bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

SF_RATE = 22050
PERIODS = 50  # whole sine periods in the looped sample: the loop is seamless


def _chunk(tag: bytes, data: bytes) -> bytes:
    pad = b"\0" if len(data) % 2 else b""
    return tag + struct.pack("<I", len(data)) + data + pad


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def _name(text: str) -> bytes:
    return text.encode("ascii")[:19].ljust(20, b"\0")


def write_soundfont(path: Path, overtone: float = 0.0) -> Path:
    """A SoundFont 2 whose preset 0 (bank 0) is a looped 440 Hz sine on every key, plus
    its octave at `overtone` times its amplitude (another timbre)."""
    length = int(round(PERIODS * SF_RATE / 440))
    phase = 2 * np.pi * PERIODS * np.arange(length) / length
    sine = (np.sin(phase) + overtone * np.sin(2 * phase)) / (1 + abs(overtone))
    samples = (0.8 * 32767 * sine).astype("<i2").tobytes() + b"\0" * 92  # 46 zero samples
    info = _list(
        b"INFO",
        _chunk(b"ifil", struct.pack("<HH", 2, 1)),
        _chunk(b"isng", b"EMU8000\0"),
        _chunk(b"INAM", b"mer test sine\0"),
    )
    sdta = _list(b"sdta", _chunk(b"smpl", samples))
    gen = struct.Struct("<HH")  # generator operator, amount
    pdta = _list(
        b"pdta",
        _chunk(
            b"phdr",
            _name("sine") + struct.pack("<HHHIII", 0, 0, 0, 0, 0, 0)
            + _name("EOP") + struct.pack("<HHHIII", 0, 0, 1, 0, 0, 0),
        ),
        _chunk(b"pbag", struct.pack("<HHHH", 0, 0, 1, 0)),
        _chunk(b"pmod", b"\0" * 10),
        _chunk(b"pgen", gen.pack(41, 0) + gen.pack(0, 0)),  # instrument 0
        _chunk(b"inst", _name("sine") + struct.pack("<H", 0) + _name("EOI") + struct.pack("<H", 1)),
        _chunk(b"ibag", struct.pack("<HHHH", 0, 0, 2, 0)),
        _chunk(b"imod", b"\0" * 10),
        # loop continuously (sampleModes 1) on sample 0 (sampleID comes last)
        _chunk(b"igen", gen.pack(54, 1) + gen.pack(53, 0) + gen.pack(0, 0)),
        _chunk(
            b"shdr",
            _name("sine") + struct.pack("<IIIIIBbHH", 0, length, 0, length, SF_RATE, 69, 0, 0, 1)
            + _name("EOS") + struct.pack("<IIIIIBbHH", 0, 0, 0, 0, 0, 0, 0, 0, 0),
        ),
    )  # fmt: skip
    path.write_bytes(_chunk(b"RIFF", b"sfbk" + info + sdta + pdta))
    return path


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    while value := value >> 7:
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


TICKS_PER_BEAT = 480
SMF_HEADER = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)  # type 0, one track


def write_track(path: Path, events: bytes) -> Path:
    """A type-0 MIDI file of one track holding `events` as given (delta times and all)."""
    path.write_bytes(SMF_HEADER + b"MTrk" + struct.pack(">I", len(events)) + events)
    return path


def write_midi(path: Path, notes: list[tuple[int, float]], seconds_per_beat: float = 0.5) -> Path:
    """A type-0 MIDI file playing `notes` ((key, seconds) each) one after the other on
    channel 0 at velocity 100; no notes: a file with only its tempo and end."""
    tempo = int(seconds_per_beat * 1e6)
    events = b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")
    for key, seconds in notes:
        ticks = int(round(seconds / seconds_per_beat * TICKS_PER_BEAT))
        events += b"\x00" + bytes([0x90, key, 100]) + _varlen(ticks) + bytes([0x80, key, 0])
    return write_track(path, events + b"\x00\xff\x2f\x00")
