"""The example plugin packages of `examples/`, installed for real with pip into the test
environment for the length of a test, as a third party's users would install them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=300)


def install(distribution: str) -> None:
    """Install `examples/<distribution>` (its dependencies are mer's own)."""
    pip("install", "--no-deps", "--no-build-isolation", str(EXAMPLES / distribution))


def uninstall(distribution: str) -> None:
    pip("uninstall", "-y", distribution)


@contextmanager
def installed(distribution: str) -> Iterator[None]:
    """The example installed while the block runs; skip where it is absent (an sdist)."""
    if not (EXAMPLES / distribution).is_dir():
        pytest.skip(f"{EXAMPLES / distribution} is absent (not a source checkout)")
    install(distribution)
    try:
        yield
    finally:
        uninstall(distribution)
