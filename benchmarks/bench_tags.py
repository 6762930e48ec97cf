"""Tag writing: mer's safe write beside a plain mutagen in-place save.

The safe write copies the file in its folder, tags the copy, fsyncs it, renames it
over the original and fsyncs the folder; the references save the same fields into the
file itself with mutagen, without and with an fsync. Per format (a 4-minute stereo
track: FLAC ~25 MB, MP3 ~4 MB) the groups show what safety costs per file.

    pytest benchmarks/bench_tags.py --benchmark-enable --benchmark-group-by=param:fmt
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from audio_factory import write_audio  # noqa: E402
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TMOO, TXXX, ID3NoHeaderError

from mer_plugin.tags import FIELDS, MOOD, format_fields, write_tags

SECONDS = 240
VALUES = format_fields(
    mood="Calm", valence=0.61, arousal=0.32, quadrant="Q4", confidence=0.8, model="mer 1.0"
)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tags")
    options = {"sample_rate": 44100, "channels": 2, "kind": "noise", "amplitude": 0.05}
    return {
        fmt: write_audio(folder / f"track.{fmt}", SECONDS, **options) for fmt in ("flac", "mp3")
    }


def mutagen_flac(path: Path) -> None:
    audio = FLAC(path)
    for field in FIELDS:
        audio[field.vorbis] = [VALUES[field.name]]
    audio.save()


def mutagen_mp3(path: Path) -> None:
    try:
        tags = ID3(path)
    except ID3NoHeaderError:
        tags = ID3()
    for field in FIELDS:
        value = VALUES[field.name]
        frame = TMOO(encoding=3, text=[value]) if field.name == MOOD else None
        tags.add(frame or TXXX(encoding=3, desc=field.id3v24[5:], text=[value]))
    tags.save(path)


REFERENCES: dict[str, Callable[[Path], None]] = {"flac": mutagen_flac, "mp3": mutagen_mp3}


def _fsynced(save: Callable[[Path], None]) -> Callable[[Path], None]:
    def save_and_sync(path: Path) -> None:
        save(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    return save_and_sync


WAYS: dict[str, Callable[[str], Callable[[Path], None]]] = {
    "mutagen-in-place": lambda fmt: REFERENCES[fmt],
    "mutagen-in-place+fsync": lambda fmt: _fsynced(REFERENCES[fmt]),
    "mer-safe-write": lambda fmt: lambda path: write_tags(path, VALUES),
}


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_tag_write(benchmark, tracks: dict[str, Path], tmp_path: Path, fmt: str, way: str):
    path = tmp_path / tracks[fmt].name
    shutil.copyfile(tracks[fmt], path)
    write = WAYS[way](fmt)
    write(path)  # the first write makes room for the tags: time the steady state
    benchmark.extra_info["file_mb"] = round(path.stat().st_size / 1e6, 1)
    benchmark.pedantic(write, args=(path,), rounds=15, warmup_rounds=1)
    assert FLAC(path)["MOOD"] == ["Calm"] if fmt == "flac" else str(ID3(path)["TMOO"]) == "Calm"
