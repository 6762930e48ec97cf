"""Shared by the benchmark suites."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def kept_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder kept across runs (pytest's cache) for generated inputs; a temporary one
    under `-p no:cacheprovider`."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("bench")
    return Path(cache.mkdir("mer-bench"))


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest):
    """Lines a suite prints after its run (x realtime, RSS, ratios), whatever the capture."""
    lines: list[str] = []
    yield lines
    plugins = request.config.pluginmanager
    writer, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if writer is None or capture is None or not lines:
        return
    with capture.global_and_fixture_disabled():
        writer.write_sep("-", f"{request.module.__name__} summary")
        for line in lines:
            writer.write_line(line)
