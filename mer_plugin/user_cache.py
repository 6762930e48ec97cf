"""The user's cache folder, shared by `mer tag` (results) and training (segments, embeddings)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_folder(override: str | Path | None = None) -> Path:
    """``override``, else ``$MER_CACHE_DIR``, ``$XDG_CACHE_HOME/mer``, ``~/.cache/mer``."""
    if override:
        return Path(override)
    if env := os.environ.get("MER_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mer"
