"""Datasets: class folders, manifests, quadrant mapping, grouped folds, clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from midi_files import SMF_HEADER, write_midi, write_soundfont, write_track

from mer_plugin.datasets import DatasetError, grouped_folds, load_dataset, quadrant

SHARED_4Q = Path(__file__).resolve().parents[2] / "shared" / "data" / "4q-dev"


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(800, dtype=np.float32), 8000)
    return path


def _folder_dataset(root: Path, per_class: int = 3, classes=("Q1", "Q2", "Q3", "Q4")) -> Path:
    rows = ["Song,Artist"]
    for label in classes:
        for i in range(per_class):
            _wav(root / label / f"{label}_{i}.wav")
            rows.append(f"{label}_{i},artist{i}")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return root


def test_class_folders_with_groups(tmp_path: Path) -> None:
    dataset = load_dataset(_folder_dataset(tmp_path / "set"), group_by="Artist")
    assert dataset.classes == ("Q1", "Q2", "Q3", "Q4")
    assert len(dataset.clips) == 12
    assert sorted(set(dataset.groups)) == ["artist0", "artist1", "artist2"]
    assert list(np.bincount(dataset.labels)) == [3, 3, 3, 3]


def test_missing_class_is_named(tmp_path: Path) -> None:
    root = _folder_dataset(tmp_path / "set", classes=("Q1", "Q2", "Q4"))
    with pytest.raises(DatasetError, match="no clips for class Q3"):
        load_dataset(root)


def test_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "empty" / "Q1").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no audio clips"):
        load_dataset(tmp_path / "empty")


def test_unknown_group_column(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no column 'Label'"):
        load_dataset(_folder_dataset(tmp_path / "set"), group_by="Label")


def test_manifest_with_labels_and_groups(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        _wav(tmp_path / f"{name}.wav")
    manifest = tmp_path / "set.csv"
    manifest.write_text(
        "path,label,group\na.wav,sad,x\nb.wav,happy,x\nc.wav,sad,y\nd.wav,happy,z\n"
    )
    dataset = load_dataset(manifest)
    assert dataset.classes == ("happy", "sad")
    assert dataset.groups == ["x", "x", "y", "z"]
    assert dataset.name == f"{tmp_path.name}/set"


def test_a_file_named_manifest_takes_its_folders_name(tmp_path: Path) -> None:
    _wav(tmp_path / "vgmidi" / "a.wav")
    _wav(tmp_path / "vgmidi" / "b.wav")
    (tmp_path / "vgmidi" / "manifest.csv").write_text("path,label\na.wav,calm\nb.wav,tense\n")
    assert load_dataset(tmp_path / "vgmidi" / "manifest.csv").name == "vgmidi"


def test_manifest_with_valence_arousal(tmp_path: Path) -> None:
    lines = ["path,valence,arousal"]
    for i, (v, a) in enumerate([(0.8, 0.9), (0.1, 0.7), (0.2, 0.1), (0.9, 0.3)]):
        _wav(tmp_path / f"{i}.wav")
        lines.append(f"{i}.wav,{v},{a}")
    (tmp_path / "va.csv").write_text("\n".join(lines) + "\n")
    dataset = load_dataset(tmp_path / "va.csv")
    assert [clip.label for clip in dataset.clips] == ["Q1", "Q2", "Q3", "Q4"]


def test_manifest_bad_row_names_its_line(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    (tmp_path / "bad.csv").write_text("path,label\na.wav,sad\n,happy\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:3: empty path or label"):
        load_dataset(tmp_path / "bad.csv")


def test_manifest_missing_files_are_skipped_and_counted(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _wav(tmp_path / f"{name}.wav")
    (tmp_path / "m.csv").write_text("path,label\na.wav,sad\nb.wav,happy\ngone.wav,sad\n")
    dataset = load_dataset(tmp_path / "m.csv")
    assert len(dataset.clips) == 2
    assert dataset.skipped == [f"{tmp_path / 'm.csv'}:4: gone.wav: no such file"]


@pytest.mark.parametrize(
    ("valence", "arousal", "expected"),
    [(0.9, 0.9, "Q1"), (0.1, 0.9, "Q2"), (0.1, 0.1, "Q3"), (0.9, 0.1, "Q4"), (0.5, 0.5, "Q1")],
)
def test_quadrant(valence: float, arousal: float, expected: str) -> None:
    assert quadrant(valence, arousal) == expected


def test_folds_never_share_a_group(tmp_path: Path) -> None:
    dataset = load_dataset(_folder_dataset(tmp_path / "set", per_class=6), group_by="Artist")
    groups = np.array(dataset.groups)
    folds = grouped_folds(dataset, 3)
    assert len(folds) == 3
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    covered = np.sort(np.concatenate([test for _, test in folds]))
    np.testing.assert_array_equal(covered, np.arange(len(dataset.clips)))


@pytest.mark.skipif(not SHARED_4Q.is_dir(), reason=f"{SHARED_4Q} is absent")
def test_real_4q_folds_keep_artists_apart() -> None:
    dataset = load_dataset(SHARED_4Q, group_by="Artist")
    assert len(dataset.clips) == 600
    groups = np.array(dataset.groups)
    for train, test in grouped_folds(dataset, 5):
        assert not set(groups[train]) & set(groups[test])


MIDI_TOOL = Path(__file__).resolve().parents[1] / "tools" / "midi_datasets.py"


def _vgmidi_folder(folder: Path, phrases: list[tuple[Path, str, int, int]]) -> Path:
    """A folder laid out as VGMIDI's: phrases.zip and the labelled CSV; one row per
    (MIDI file, piece, valence, arousal), all of game "Game"."""
    folder.mkdir()
    rows = ["id,series,console,game,piece,midi,valence,arousal"]
    with zipfile.ZipFile(folder / "phrases.zip", "w") as zipped:
        for i, (midi, piece, valence, arousal) in enumerate(phrases):
            zipped.write(midi, f"phrases/{midi.name}")
            rows.append(f"{i},s,c,Game,{piece},phrases/{midi.name},{valence},{arousal}")
    (folder / "vgmidi_labelled.csv").write_text("\n".join(rows) + "\n")
    return folder


def _midi_tool(*arguments: object) -> subprocess.CompletedProcess:
    command = [sys.executable, MIDI_TOOL, *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_emopia_laid_out_by_quadrant_and_song(tmp_path: Path) -> None:
    """tools/midi_datasets.py on an EMOPIA-shaped midis.zip, named directly or by its
    folder: the quadrant is the name's prefix, the song its YouTube id (which may hold
    "_"); a source that is no zip archive is refused by name."""
    midi = write_midi(tmp_path / "clip.mid", [(60, 0.5)])
    folder = tmp_path / "emopia"
    folder.mkdir()
    names = ("Q1_abc_0.mid", "Q1_abc_1.mid", "Q3_x_y_0.mid")
    with zipfile.ZipFile(folder / "midis.zip", "w") as zipped:
        for name in names:
            zipped.write(midi, f"midis/{name}")
    expected = [
        "midis/Q1_abc_0.mid,Q1,abc",
        "midis/Q1_abc_1.mid,Q1,abc",
        "midis/Q3_x_y_0.mid,Q3,x_y",
    ]
    for source in (folder / "midis.zip", folder):
        out = tmp_path / f"out-{source.name}"
        done = _midi_tool("emopia", source, out)
        assert done.returncode == 0, done.stderr
        assert (out / "manifest.csv").read_text().splitlines()[1:] == expected
        assert (out / "midis" / names[2]).read_bytes() == midi.read_bytes()
    done = _midi_tool("emopia", midi, tmp_path / "no-zip")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{midi}: cannot unpack it: File is not a zip file" in done.stderr


def test_vgmidi_laid_out_and_voiced_for_strings(tmp_path: Path) -> None:
    """tools/midi_datasets.py on a VGMIDI-shaped folder with `--program 48`: the manifest's
    quadrants come from valence and arousal, and every melodic channel plays program 48
    (a file without a program change gets one at time 0; drums keep theirs)."""
    piano = write_midi(tmp_path / "piano.mid", [(60, 0.5), (64, 0.5)])
    events = (  # channel 1: program 0 then two notes in running status; drums: program 5
        b"\x00\xc1\x00" b"\x00\x91\x3c\x64" b"\x60\x3c\x00"
        b"\x00\xff\x01\x02hi" b"\x00\xc9\x05" b"\x00\x99\x24\x64" b"\x00\xff\x2f\x00"
    )  # fmt: skip
    mixed = write_track(tmp_path / "mixed.mid", events)
    phrases = [(piano, "Calm piece", 1, -1), (mixed, "Tense piece", -1, 1)]
    source = _vgmidi_folder(tmp_path / "vgmidi", phrases)
    out = tmp_path / "voiced"
    done = _midi_tool("vgmidi", source, out, "--program", "48")
    assert done.returncode == 0, done.stderr
    manifest = (out / "manifest.csv").read_text().splitlines()
    assert manifest[1:] == [
        "phrases/piano.mid,Q4,Game / Calm piece",
        "phrases/mixed.mid,Q2,Game / Tense piece",
    ]
    before, after = piano.read_bytes(), (out / "phrases" / "piano.mid").read_bytes()
    assert after[22:] == b"\x00\xc0\x30" + before[22:]  # one program change, then the notes
    assert int.from_bytes(after[18:22], "big") == int.from_bytes(before[18:22], "big") + 3
    voiced_events = (out / "phrases" / "mixed.mid").read_bytes()[22:]
    assert voiced_events == b"\x00\xc1\x30" + events.replace(b"\xc1\x00", b"\xc1\x30")


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="no fluidsynth")
def test_vgmidi_rendered_by_a_chosen_soundfont(tmp_path: Path) -> None:
    """`--soundfont`: every phrase rendered by that SoundFont into FLAC beside its MIDI
    file, the manifest naming the FLAC files; a missing SoundFont is refused by name."""
    notes = write_midi(tmp_path / "notes.mid", [(69, 1.0), (81, 0.5)])
    source = _vgmidi_folder(tmp_path / "vgmidi", [(notes, "Bright piece", 1, 1)])
    font = write_soundfont(tmp_path / "sine.sf2")
    out = tmp_path / "rendered"
    done = _midi_tool("vgmidi", source, out, "--soundfont", font)
    assert done.returncode == 0, done.stderr
    assert (out / "manifest.csv").read_text().splitlines()[1:] == [
        "phrases/notes.flac,Q1,Game / Bright piece"
    ]
    audio, rate = sf.read(out / "phrases" / "notes.flac", dtype="float32")
    info = sf.info(out / "phrases" / "notes.flac")
    assert (rate, audio.shape[1], info.subtype) == (44100, 2, "PCM_24")
    assert 1.4 < len(audio) / rate < 4  # the notes' 1.5 s and FluidSynth's release
    assert np.abs(audio).max() == pytest.approx(0.9, abs=1e-4)  # mastered level
    missing = _midi_tool("vgmidi", source, tmp_path / "none", "--soundfont", tmp_path / "x.sf2")
    assert missing.returncode != 0
    assert f"no SoundFont {tmp_path / 'x.sf2'}" in missing.stderr


def test_vgmidi_orchestrated_by_register(tmp_path: Path) -> None:
    """`--orchestra`: each melodic note goes to its register's section (cello; strings and
    horn; violin and flute), pedal to every section, the file's program change is dropped
    with its delta time kept, and drums and meta events stay as they were."""
    events = (  # program 0 (dropped, 5 ticks carried), sustain, notes 40, 60, 80, a drum, off
        b"\x05\xc0\x00" b"\x00\xb0\x40\x7f" b"\x00\x90\x28\x64" b"\x10\x3c\x64" b"\x10\x50\x64"
        b"\x00\x99\x24\x64" b"\x20\x80\x28\x00" b"\x00\xff\x2f\x00"
    )  # fmt: skip
    phrase = write_track(tmp_path / "phrase.mid", events)
    source = _vgmidi_folder(tmp_path / "vgmidi", [(phrase, "Battle", -1, 1)])
    out = tmp_path / "out"
    done = _midi_tool("vgmidi", source, out, "--orchestra")
    assert done.returncode == 0, done.stderr
    expected = (  # each section's program at time 0: 42, 48, 60, 40, 73
        b"\x00\xc0\x2a" b"\x00\xc1\x30" b"\x00\xc2\x3c" b"\x00\xc3\x28" b"\x00\xc4\x49"
        b"\x05\xb0\x40\x7f" b"\x00\xb1\x40\x7f" b"\x00\xb2\x40\x7f" b"\x00\xb3\x40\x7f"
        b"\x00\xb4\x40\x7f"
        b"\x00\x90\x28\x64"
        b"\x10\x91\x3c\x64" b"\x00\x92\x3c\x64"
        b"\x10\x93\x50\x64" b"\x00\x94\x50\x64"
        b"\x00\x99\x24\x64" b"\x20\x80\x28\x00" b"\x00\xff\x2f\x00"
    )  # fmt: skip
    written = (out / "phrases" / "phrase.mid").read_bytes()
    assert written[:14] == SMF_HEADER
    assert written[14:22] == b"MTrk" + len(expected).to_bytes(4, "big")
    assert written[22:] == expected
    both = _midi_tool("vgmidi", source, out, "--orchestra", "--program", "48")
    assert both.returncode == 2 and "choose one" in both.stderr
