"""MIDI files, rendered to audio by FluidSynth with a General MIDI SoundFont: a decoder
like any other (`mer_decoders` hook), so MIDI datasets (EMOPIA, VGMIDI: see
tools/midi_datasets.py) train and evaluate like audio ones, and `mer predict` hears a
.mid file. (`mer tag` leaves .mid files alone: no tag writer takes them.)

Needs the `fluidsynth` program (Debian: ``apt install fluidsynth fluid-soundfont-gm``)
and a SoundFont: ``$MER_SOUNDFONT``, else the first of `SOUNDFONTS` that exists. The whole
file is rendered to a temporary WAV (44.1 kHz stereo float, FluidSynth's default reverb
and chorus), then peak-normalised to `PEAK` so a piece plays at a mastered recording's
level, not at FluidSynth's quiet default gain. A render is deterministic: the same file,
SoundFont and FluidSynth give the same samples, so the decoder's `depends_on` names
those two (FluidSynth's version, the SoundFont's path and digest): the training caches
key a MIDI file's frames by them too, and render it anew when either changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from mer_plugin.errors import AudioError
from mer_plugin.files import sha256_of
from mer_plugin.hookspecs import AudioInfo, Decoder, Source, hookimpl

NAME = "fluidsynth"
RATE = 44100
PEAK = 0.9  # linear, about -0.9 dBFS
SILENCE = 1e-4  # a render whose peak stays below this holds no notes
SOUNDFONTS = (  # Debian's fluid-soundfont-gm and its alternatives, Fedora's, Arch's
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)
INSTALL = (
    "install FluidSynth and a General MIDI SoundFont "
    "(Debian: apt install fluidsynth fluid-soundfont-gm)"
)


def soundfont() -> Path:
    """The SoundFont renders use: $MER_SOUNDFONT, else the first default that exists;
    `LookupError` (saying what to do) when there is none."""
    chosen = os.environ.get("MER_SOUNDFONT")
    if chosen:
        if not Path(chosen).is_file():
            raise LookupError(f"MER_SOUNDFONT={chosen}: no such file")
        return Path(chosen)
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise LookupError(f"no SoundFont to render MIDI with: set MER_SOUNDFONT, or {INSTALL}")


def render(path: Path, font: Path | None = None) -> np.ndarray:
    """The file rendered with `font` (else `soundfont()`): float32 (frames, 2) at `RATE`,
    peak-normalised to `PEAK`."""
    program = shutil.which("fluidsynth")
    if program is None:
        raise AudioError(path, f"cannot render MIDI: no fluidsynth program; {INSTALL}")
    if font is None:
        try:
            font = soundfont()
        except LookupError as error:
            raise AudioError(path, str(error)) from None
    elif not font.is_file():
        raise AudioError(path, f"cannot render MIDI: no SoundFont {font}")
    if not path.is_file():
        raise AudioError(path, "no such file")
    with tempfile.TemporaryDirectory(prefix="mer-midi-") as folder:
        wav = Path(folder) / "render.wav"
        command = [program, "-n", "-i", "-q", "-r", str(RATE), "-O", "float", "-T", "wav"]
        done = subprocess.run(
            [*command, "-F", str(wav), str(font), str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not wav.is_file() or wav.stat().st_size == 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            reason = said[-1] if said else "no output"
            raise AudioError(path, f"fluidsynth cannot render it ({reason})")
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < SILENCE:
        raise AudioError(path, f"renders to silence with {font.name} (no notes it can play)")
    return audio * np.float32(PEAK / peak)


def renders_with() -> str:
    """What a render depends on besides the MIDI file: FluidSynth's version and the
    SoundFont's path and digest (a short reason where either is missing)."""
    program = shutil.which("fluidsynth")
    try:
        font = soundfont().resolve()
    except LookupError as error:
        font_said = str(error)
    else:
        stat = font.stat()
        font_said = f"{font} sha256 {_digest(font, stat.st_size, stat.st_mtime_ns)}"
    return f"{_version(program) if program else 'no fluidsynth'}; {font_said}"


@cache
def _version(program: str) -> str:
    done = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout.strip().splitlines() or ["fluidsynth, version unknown"])[0]


@cache
def _digest(font: Path, size: int, mtime_ns: int) -> str:  # a file replaced: hashed anew
    return sha256_of(font)


@contextmanager
def _open(path: Path, block_frames: int) -> Iterator[Source]:
    audio = render(path)
    blocks = (audio[i : i + block_frames] for i in range(0, len(audio), block_frames))
    yield Source(RATE, audio.shape[1], blocks, expected_frames=len(audio))


def _info(path: Path) -> AudioInfo:
    """What a MIDI file's rendering will be; its length is known only once rendered."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"MThd":
            raise AudioError(path, "not a standard MIDI file (no MThd header)")
    return AudioInfo(path, None, RATE, 2, "midi", "midi", NAME)


@hookimpl
def mer_decoders() -> list[Decoder]:
    return [Decoder(NAME, (".mid", ".midi"), _open, _info, priority=10, depends_on=renders_with)]
