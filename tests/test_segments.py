"""Segmenting: the kernel, and the stream that cuts segments as frames arrive."""

import numpy as np
import pytest

from mer_plugin.features import SegmentStream, iter_segments
from mer_plugin.frontend import MUSICNN, FrontEndSpec
from mer_plugin.kernels.segments import cut_segments, pad_to_segment, segment_count


def _frames(n: int, n_mels: int = 4) -> np.ndarray:
    return np.arange(n * n_mels, dtype=np.float32).reshape(n, n_mels)


@pytest.mark.parametrize(
    ("n", "length", "hop", "expected"),
    [(0, 5, 5, 0), (4, 5, 5, 0), (5, 5, 5, 1), (14, 5, 5, 2), (15, 5, 5, 3), (12, 5, 2, 4)],
)
def test_segment_count(n: int, length: int, hop: int, expected: int) -> None:
    assert segment_count(n, length, hop) == expected


def test_cut_segments_matches_slicing() -> None:
    frames = _frames(50)
    segments = cut_segments(frames, 8, 3)
    assert segments.shape == (15, 8, 4)
    for i, segment in enumerate(segments):
        np.testing.assert_array_equal(segment, frames[3 * i : 3 * i + 8])


def test_cut_segments_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        cut_segments(_frames(10), 0, 1)


def test_pad_to_segment() -> None:
    padded = pad_to_segment(_frames(3), 5, -1.0)
    assert padded.shape == (5, 4)
    assert (padded[3:] == -1.0).all()
    assert pad_to_segment(_frames(6), 5, -1.0).shape == (6, 4)


def _spec(length: int, hop: int) -> FrontEndSpec:
    return FrontEndSpec(n_mels=4, segment_frames=length, segment_hop_frames=hop)


@pytest.mark.parametrize(("length", "hop"), [(7, 7), (7, 3), (4, 9)])
def test_stream_gives_the_segments_of_the_whole(length: int, hop: int) -> None:
    frames = _frames(101)
    stream = SegmentStream(_spec(length, hop))
    rng = np.random.default_rng(0)
    parts, start = [], 0
    while start < len(frames):
        size = int(rng.integers(0, 12))
        parts.append(stream.push(frames[start : start + size]))
        start += size
    parts.append(stream.finish())
    np.testing.assert_array_equal(np.concatenate(parts), cut_segments(frames, length, hop))


def test_stream_pads_audio_shorter_than_one_segment() -> None:
    spec = FrontEndSpec(n_mels=4, log="db", segment_frames=10, segment_hop_frames=10)
    stream = SegmentStream(spec)
    assert len(stream.push(_frames(3))) == 0
    (segment,) = stream.finish()
    np.testing.assert_array_equal(segment[:3], _frames(3))
    assert (segment[3:] == spec.silence_level).all()


def test_stream_of_nothing_gives_nothing() -> None:
    stream = SegmentStream(_spec(5, 5))
    assert stream.finish().shape == (0, 5, 4)


def test_a_second_pass_gives_the_segments_the_first_skipped(make_audio) -> None:
    """A budget's two passes over a file (every third segment, then the rest) are the
    whole file's segments, batch boundaries notwithstanding."""
    path = make_audio("long.flac", 40.0, kind="noise")
    whole = np.concatenate(list(iter_segments(path, MUSICNN)))
    first = list(iter_segments(path, MUSICNN, stride=3))
    rest = list(iter_segments(path, MUSICNN, stride=3, rest=True))
    assert len(whole) == 13 and len(rest) > 1  # the rest came in several batches
    np.testing.assert_array_equal(np.concatenate(first), whole[::3])
    np.testing.assert_array_equal(np.concatenate(rest), np.delete(whole, np.s_[::3], axis=0))
