"""Cut a log-mel frame sequence into fixed-length, overlapping segments."""

from __future__ import annotations

import numpy as np
from numba import njit


def segment_count(n_frames: int, segment_frames: int, hop_frames: int) -> int:
    """Number of whole segments that start every `hop_frames` and fit in `n_frames`."""
    if n_frames < segment_frames:
        return 0
    return (n_frames - segment_frames) // hop_frames + 1


@njit(cache=True)
def _copy_segments(frames: np.ndarray, out: np.ndarray, hop_frames: int) -> None:
    n_segments, segment_frames, n_mels = out.shape
    for s in range(n_segments):
        start = s * hop_frames
        for t in range(segment_frames):
            for m in range(n_mels):
                out[s, t, m] = frames[start + t, m]


def cut_segments(frames: np.ndarray, segment_frames: int, hop_frames: int) -> np.ndarray:
    """Whole segments of `frames` (n_frames, n_mels) as a (n_segments, segment_frames, n_mels)
    batch; trailing frames that do not fill a segment are left out."""
    if segment_frames < 1 or hop_frames < 1:
        raise ValueError("segment_frames and hop_frames must be positive")
    n = segment_count(frames.shape[0], segment_frames, hop_frames)
    out = np.empty((n, segment_frames, frames.shape[1]), dtype=frames.dtype)
    if n:
        _copy_segments(np.ascontiguousarray(frames), out, hop_frames)
    return out


def pad_to_segment(frames: np.ndarray, segment_frames: int, pad_value: float) -> np.ndarray:
    """`frames` extended at the end with `pad_value` rows to at least one segment's length."""
    missing = segment_frames - frames.shape[0]
    if missing <= 0:
        return frames
    pad = np.full((missing, frames.shape[1]), pad_value, dtype=frames.dtype)
    return np.concatenate([frames, pad])
