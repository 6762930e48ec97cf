"""An analysis budget: which of a track's 3-s segments the model analyses.

`mer tag` analyses every third segment of a track first (`DEFAULT_BUDGET`); when the
song those give is a near tie between its two likeliest moods, it analyses the others
too, so the song is the full analysis' own. Measured on 191 real tracks of at least a
minute (docs/performance.md): the song's quadrant of the full analysis on every one,
from about 45 % of the segments. A track of fewer than 20 segments by its header
(under about a minute) is analysed whole: on 30-s clips every third segment kept the
full analysis' quadrant on only 94 % and cost 0.009 macro-F1 (4Q clips the model had
not learned from, the same page) to save 40 % of their time. `FULL` analyses every
segment; `max_segments` caps a track at that many segments, evenly spread, with no
second pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Every `stride`-th segment (or, with `max_segments`, at most that many, evenly
    spread); with `near_tie`, all of them when the song's two likeliest classes from
    those are within `near_tie` of each other; all of them from the start for a track
    known to have fewer than `whole_below` segments."""

    stride: int = 1
    max_segments: int | None = None
    near_tie: float = 0.0
    whole_below: int = 0

    def stride_for(self, segments: int) -> int:
        """Every how many of a track's `segments` the first pass takes (0: unknown)."""
        if self.max_segments:
            return max(1, math.ceil(segments / self.max_segments))
        if 0 < segments < self.whole_below:
            return 1
        return self.stride


FULL = Budget()
DEFAULT_BUDGET = Budget(stride=3, near_tie=0.1, whole_below=20)
