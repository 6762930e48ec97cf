"""Handing freed heap memory back to the operating system.

glibc's malloc keeps memory a program frees for its next allocations; with batch buffers
of a few sizes allocated and freed for hours (a long file's segments, decoded and
classified in one process), what it keeps grows with the file's length in some runs
(docs/performance.md). `release_free_memory` asks it to return its free pages
(`malloc_trim`); elsewhere (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache

# batches between two hand-backs, where batches stream (the model's, a worker's): often
# enough that nothing builds up (every 16th let the int8 convolutions' buffers build up
# to 1.15x on a 120-minute file; docs/performance.md), rarely enough to cost little
RELEASE_EVERY = 4


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # a C library without it (musl)
        return None


def release_free_memory() -> None:
    """Return the heap's free pages to the operating system, where the C library can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
