"""The example decoder + tag writer plugin (examples/mer-example-wavpack), installed for
real with pip: WavPack files, which mer's built-ins do not decode, are predicted exactly
as their wav originals, tagged with `mer tag` (read back by FFmpeg, another APEv2
reader than the writer's mutagen) with their audio and other tags untouched."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from audio_factory import wavpack_from_wav, write_audio
from example_packages import installed
from mer_cli import mer
from mutagen.wavpack import WavPack

DISTRIBUTION = "mer-example-wavpack"
APE_TAG = b"APETAGEX"  # an APEv2 tag's header and footer: the tag sits after the audio


@pytest.fixture(scope="module")
def example_installed():
    with installed(DISTRIBUTION):
        importlib.invalidate_caches()
        yield


@pytest.fixture
def library(tmp_path: Path) -> dict[str, Path]:
    """Two WavPack songs made from 16-bit wavs (one with an artist and a cover already),
    text named .wv, and a WavPack file cut in half."""
    lib = tmp_path / "library"
    lib.mkdir()
    songs = {}
    for name, options in [("tone", {"channels": 2}), ("ünï noise", {"kind": "noise"})]:
        wav = write_audio(tmp_path / f"{name}.wav", 7.0, sample_rate=44100, **options)
        songs[name] = wavpack_from_wav(wav, lib / f"{name}.wv")
    tagged = WavPack(songs["tone"])
    tagged["Artist"] = "Zoë"
    tagged["Cover Art (Front)"] = b"cover.jpg\x00" + bytes(range(256))
    tagged.save()
    songs["broken"] = lib / "broken.wv"
    songs["broken"].write_text("not WavPack at all\n" * 50)
    songs["cut"] = lib / "cut.wv"
    whole = write_audio(tmp_path / "whole.wv", 7.0, channels=2).read_bytes()
    songs["cut"].write_bytes(whole[: len(whole) // 2])
    return songs


def audio_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: data.find(APE_TAG)] if APE_TAG in data else data


def ffmpeg_tags(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {key.lower(): value for key, value in container.metadata.items()}


def test_plugins_lists_the_decoder_and_the_writer(example_installed) -> None:
    listing = mer("plugins")
    assert listing.returncode == 0, listing.stderr
    row = [line for line in listing.stdout.splitlines() if "example_wavpack" in line]
    assert row and DISTRIBUTION in row[0]
    assert "example-wavpack" in listing.stdout  # the decoder's and the writer's name


def test_decoder_gives_the_wav_samples_exactly(example_installed, tmp_path: Path) -> None:
    from mer_example_wavpack.decoder import info, open_wavpack

    wav = write_audio(tmp_path / "a.wav", 2.5, sample_rate=22050, channels=2, kind="noise")
    wv = wavpack_from_wav(wav, tmp_path / "a.wv")
    with open_wavpack(wv, 4096) as source:
        decoded = np.concatenate(list(source.blocks))
        assert (source.sample_rate, source.channels) == (22050, 2)
        assert source.expected_frames == len(decoded)
    np.testing.assert_array_equal(decoded, sf.read(wav, dtype="float32", always_2d=True)[0])
    assert info(wv).duration == pytest.approx(2.5)


def test_mer_predicts_a_wavpack_file_as_its_wav(example_installed, tmp_path: Path) -> None:
    wav = write_audio(tmp_path / "song.wav", 7.0, kind="noise", channels=2)
    wv = wavpack_from_wav(wav, tmp_path / "song.wv")
    results = []
    for path in (wav, wv):
        predicted = mer("predict", path, "--json")
        assert predicted.returncode == 0, predicted.stderr
        results.append({k: v for k, v in json.loads(predicted.stdout).items() if k != "file"})
    assert results[0] == results[1]


def test_mer_tags_wavpack_files_leaving_audio_and_other_tags(
    example_installed, library: dict[str, Path], tmp_path: Path
) -> None:
    songs = ("tone", "ünï noise")
    before = {name: audio_bytes(library[name]) for name in songs}
    report_file = tmp_path / "report.json"
    done = mer("tag", library["tone"].parent, "--jobs", "1", "--report", report_file)
    assert done.returncode == 1, done.stderr  # two files failed, the others were tagged
    assert f"failed: {library['broken']}: not a WavPack file" in done.stderr
    assert f"failed: {library['cut']}: corrupt WavPack data" in done.stderr
    report = {Path(f["path"]).stem: f for f in json.loads(report_file.read_text())["files"]}
    assert report["broken"]["status"] == report["cut"]["status"] == "failed"

    for name, audio in before.items():
        path = library[name]
        assert audio_bytes(path) == audio
        tags = ffmpeg_tags(path)
        row = report[name]
        assert row["status"] == "tagged"
        assert tags["mood"] == row["mood"] and tags["mer_quadrant"] == row["quadrant"]
        assert float(tags["mer_valence"]) == pytest.approx(row["valence"], abs=5e-4)
        assert tags["mer_model"].startswith("mer-4q")
    kept = WavPack(library["tone"])
    assert str(kept["Artist"]) == "Zoë"
    assert kept["Cover Art (Front)"].value == b"cover.jpg\x00" + bytes(range(256))

    again = mer("tag", library["tone"].parent, "--jobs", "1")
    assert "already tagged by this model" in again.stdout
    assert {name: audio_bytes(library[name]) for name in songs} == before
