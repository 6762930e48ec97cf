"""Shared fixtures: real audio files, written on the fly by real encoders
(see `audio_factory`, which benchmarks use too)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from audio_factory import Broken, write_audio, write_broken, write_video_only


@pytest.fixture
def make_audio(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make_audio(name, **write_audio options)` -> a file in tmp_path."""

    def make(name: str, seconds: float = 1.0, **options) -> Path:
        return write_audio(tmp_path / name, seconds, **options)

    return make


@pytest.fixture
def make_broken(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make_broken(name, "empty" | "text" | "truncated", **options)`."""

    def make(name: str, how: Broken, **options) -> Path:
        return write_broken(tmp_path / name, how, **options)

    return make


@pytest.fixture
def make_video_only(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make_video_only(name, seconds=1.0)` -> an MP4 with no audio stream."""

    def make(name: str = "video-only.m4a", seconds: float = 1.0) -> Path:
        return write_video_only(tmp_path / name, seconds)

    return make


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated four-quadrant dataset (tests/synthetic_music.py), 4 clips per class."""
    from synthetic_music import make_dataset

    return make_dataset(tmp_path_factory.mktemp("synthetic") / "quadrants", per_class=4)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training cache shared by the tests that train on `dataset_dir`."""
    return tmp_path_factory.mktemp("cache")
