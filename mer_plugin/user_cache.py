"""The user's cache folder, shared by `mer tag` (results) and training (segments, embeddings)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def cache_folder(override: str | Path | None = None) -> Path:
    """``override``, else ``$MER_CACHE_DIR``, ``$XDG_CACHE_HOME/mer``, ``~/.cache/mer``.

    As the XDG base-directory spec says, a relative ``XDG_CACHE_HOME`` is ignored; an
    empty or relative ``HOME`` gives way to the account's home folder."""
    if override:
        return Path(override)
    if env := os.environ.get("MER_CACHE_DIR"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "mer"
    return _home() / ".cache" / "mer"


def _home() -> Path:
    home = os.environ.get("HOME", "")
    if os.path.isabs(home):
        return Path(home)
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # an account without a passwd entry (some containers)
        return Path.home()
