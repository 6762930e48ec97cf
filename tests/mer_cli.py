"""Run the `mer` command as a user does: the console script installed beside this Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def mer(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`mer ARGS` in a subprocess; `env` adds to (or overrides) this process's environment."""
    exe = Path(sys.executable).with_name("mer")
    assert exe.exists(), f"the `mer` console script is not installed ({exe})"
    command = [exe, *map(str, args)]
    environment = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
