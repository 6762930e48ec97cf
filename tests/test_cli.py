"""The `mer` command as a user runs it: the installed console script, real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mer_cli import mer

from mer_plugin.frontend import MUSICNN


def test_help_lists_the_commands() -> None:
    result = mer("--help")
    assert result.returncode == 0
    for command in ("features", "plugins", "predict", "train", "eval", "score"):
        assert command in result.stdout


def test_version() -> None:
    result = mer("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("mer ")


@pytest.mark.parametrize("fmt", ["wav", "aiff", "flac", "mp3", "ogg", "opus", "m4a"])
def test_features_writes_segments_for_every_format(make_audio, tmp_path: Path, fmt: str) -> None:
    song = make_audio(f"sång.{fmt}", seconds=7.0, sample_rate=48000 if fmt == "opus" else 44100)
    out = tmp_path / "segments.npy"
    result = mer("features", song, "--out", out)
    assert result.returncode == 0, result.stderr
    segments = np.load(out)
    # 7 s at 16 kHz / hop 256 -> 438 frames -> two whole 187-frame segments
    assert segments.shape == (2, MUSICNN.segment_frames, MUSICNN.n_mels)
    assert segments.dtype == np.float32
    assert np.isfinite(segments).all()
    assert "2 segments" in result.stdout


def test_features_of_audio_shorter_than_a_segment(make_audio, tmp_path: Path) -> None:
    out = tmp_path / "short.npy"
    result = mer("features", make_audio("short.wav", seconds=1.0), "--out", out)
    assert result.returncode == 0, result.stderr
    (segment,) = np.load(out)
    assert (segment[-10:] == MUSICNN.silence_level).all()  # padded with silence


def test_features_of_silence_is_the_silence_level(make_audio, tmp_path: Path) -> None:
    out = tmp_path / "silence.npy"
    assert mer("features", make_audio("quiet.flac", kind="silence", seconds=4), "--out", out)
    assert (np.load(out) == MUSICNN.silence_level).all()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda tmp, mb: tmp / "missing.mp3", "no such file"),
        (lambda tmp, mb: tmp, "directory"),
        (lambda tmp, mb: mb("empty.mp3", "empty"), "empty"),
        (lambda tmp, mb: mb("notes.mp3", "text"), "not a recognised audio file"),
        (lambda tmp, mb: mb("cut.flac", "truncated"), "truncated"),
    ],
    ids=["missing", "directory", "zero-bytes", "text-named-mp3", "truncated-flac"],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, make_broken, setup, message: str) -> None:
    path = setup(tmp_path, make_broken)
    result = mer("features", path, "--out", tmp_path / "x.npy")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0].lower()
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.npy").exists()


def test_unwritable_output_is_one_clear_line(make_audio, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "folder" / "x.npy"
    result = mer("features", make_audio("a.wav", seconds=4), "--out", out)
    assert result.returncode == 1
    assert "cannot write" in result.stderr


def test_usage_error_exits_2() -> None:
    assert mer("features").returncode == 2


def test_plugins_lists_the_builtins() -> None:
    result = mer("plugins")
    assert result.returncode == 0, result.stderr
    assert "plugin" in result.stdout


def test_predict_tags_prints_the_msd_tags_over_time(make_audio) -> None:
    song = make_audio("chords.flac", seconds=7.0)
    result = mer("predict", song, "--tags", "--json", "--top", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["song"]) == 3
    assert [len(segment["tags"]) for segment in report["segments"]] == [3, 3]
    assert all(0 <= p <= 1 for p in report["song"].values())


def test_predict_with_a_folder_that_is_not_a_model(tmp_path: Path, make_audio) -> None:
    result = mer("predict", make_audio("a.wav", seconds=4), "--model", tmp_path)
    assert result.returncode == 1
    assert "not a model folder" in result.stderr


def test_verbose_shows_a_decoder_falling_back(make_audio) -> None:
    song = make_audio("aac inside.flac", seconds=3.5, fmt="m4a")  # libsndfile lacks AAC
    quiet = mer("predict", song)
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = mer("predict", song, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    lines = verbose.stderr.splitlines()
    assert f"{song}: decoder soundfile failed: not a recognised audio file" in lines[1]
    assert lines[2] == f"{song}: read by decoder pyav-fallback"


def test_predict_plot_draws_the_song(make_audio, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    song = make_audio("two moods.flac", seconds=20.0, kind="noise", channels=2)
    picture = tmp_path / "timeline.png"
    result = mer("predict", song, "--plot", picture)
    assert result.returncode == 0, result.stderr
    height, width, _ = imread(picture).shape
    assert width > 1000 and height > 400
    assert not list(tmp_path.glob(".*part*"))  # written whole


@pytest.mark.parametrize("name", ["timeline.txt", "no-such-folder/timeline.png"])
def test_predict_plot_refuses_a_bad_target_first(make_audio, tmp_path: Path, name) -> None:
    pytest.importorskip("matplotlib")
    result = mer("predict", make_audio("a.flac", 1.0), "--plot", tmp_path / name)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "cannot draw .txt" in result.stderr or "no such folder" in result.stderr


def test_predict_shows_silence_as_left_out(tmp_path: Path) -> None:
    song = tmp_path / "noise then silence.flac"
    noise = 0.3 * np.random.default_rng(0).standard_normal(6 * 16000)
    sf.write(song, np.concatenate([noise, np.zeros(6 * 16000)]).astype(np.float32), 16000)
    result = mer("predict", song)
    assert result.returncode == 0, result.stderr
    segments = result.stdout.splitlines()[1:]
    assert len(segments) == 4 and segments[-1].endswith("9.0-   12.0 s  silent (left out)")
    assert not any("silent" in line for line in segments[:-1])
