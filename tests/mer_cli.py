"""Run the `mer` command as a user does: the console script installed beside this Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def mer(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mer")
    assert exe.exists(), f"the `mer` console script is not installed ({exe})"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300)
