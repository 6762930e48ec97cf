"""The built-in decoders, a plugin like any other (`mer_decoders` hook).

  - soundfile (libsndfile 1.2.2): wav, aiff, flac, ogg (vorbis), opus.
  - PyAV (FFmpeg), packet by packet: mp3, m4a/mp4/aac, and the fallback for every other
    extension (a file with the wrong extension, a codec libsndfile lacks).
    mp3 is not read through libsndfile: read in blocks (any size short of the whole
    file), libsndfile 1.2.2 returns runs of zeros inside VBR mp3s (CBR is fine),
    silently. FFmpeg decodes the same files to within 1.4e-6 of libsndfile's whole-file
    read, gapless (LAME tag) lengths included.

Each gives `mer_plugin.audio` a `Source` at the file's own rate and channels, and the
exact length its headers declare where they declare one (`expected_frames`), which is
how `mer_plugin.audio` detects truncated files; an Ogg file, which declares none, is
checked for its end-of-stream page instead (`_ogg_cut_short`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np
import soundfile as sf

from mer_plugin.errors import UNRECOGNISED, AudioError
from mer_plugin.hookspecs import AudioInfo, Decoder, Source, hookimpl

if TYPE_CHECKING:  # PyAV (FFmpeg) is imported where a file needs it: 0.16 s at start-up
    import av

log = logging.getLogger(__name__)
SOUNDFILE, PYAV, PYAV_FALLBACK = "soundfile", "pyav", "pyav-fallback"  # built-in decoders


# ------------------------------------------------------------------ soundfile


@contextmanager
def _open_soundfile(path: Path, block_frames: int) -> Iterator[Source]:
    with sf.SoundFile(path) as f:
        expected = _soundfile_declared(path, f.format, f.frames)
        cut = _ogg_cut_short(path) if f.format == "OGG" else None
        blocks = _ending_checked(_soundfile_blocks(f, block_frames), cut)
        yield Source(f.samplerate, f.channels, blocks, expected)


def _soundfile_blocks(f: sf.SoundFile, block_frames: int) -> Iterator[np.ndarray]:
    # read until libsndfile returns nothing: its frame count may be a header's claim
    buf = np.empty((block_frames, f.channels), np.float32)
    while True:
        block = f.read(dtype="float32", out=buf)
        if len(block) == 0:
            return
        yield block


def _soundfile_declared(path: Path, fmt: str, frames: int) -> int | None:
    """The exact length the headers declare, where they declare one: FLAC's STREAMINFO
    (libsndfile's frame count), WAV's data chunk and AIFF's COMM chunk (read here:
    libsndfile counts only the frames a cut file still holds)."""
    if fmt == "FLAC":
        return frames if frames > 0 else None
    if fmt in ("WAV", "WAVEX"):
        return _wav_declared_frames(path)
    if fmt == "AIFF":
        return _aiff_declared_frames(path)
    return None


def _soundfile_info(path: Path) -> AudioInfo:
    i = sf.info(str(path))
    codec = {"FLAC": "flac", "MP3": "mp3"}.get(i.format, i.subtype.lower())
    frames = _soundfile_declared(path, i.format, i.frames) or i.frames
    known = frames > 0 and not (i.format == "OGG" and _ogg_cut_short(path))
    duration = frames / i.samplerate if known else None
    return AudioInfo(path, duration, i.samplerate, i.channels, codec, i.format.lower(), SOUNDFILE)


# ------------------------------------------------------------------ WAV and AIFF chunks

_WAV_PCM_FORMATS = (1, 3, 0xFFFE)  # PCM, IEEE float, extensible: one block a frame
_WAV_UNKNOWN_SIZE = 0x7FFFF000  # data sizes from here up are placeholders (pipes, streams)


def _riff_chunks(fh: BinaryIO, order: Literal["little", "big"]) -> Iterator[tuple[bytes, int]]:
    """(id, size) of each chunk after a RIFF or IFF file's 12-byte header, the file
    positioned at the chunk's data; bodies are padded to an even size."""
    fh.seek(12)
    while len(head := fh.read(8)) == 8:
        size = int.from_bytes(head[4:], order)
        start = fh.tell()
        yield head[:4], size
        fh.seek(start + size + (size & 1))


def _wav_declared_frames(path: Path) -> int | None:
    """The frames a PCM or float WAV's data chunk declares; None for placeholders or
    compressed data."""
    with open(path, "rb") as fh:
        if fh.read(12)[8:] != b"WAVE":
            return None
        block_align = 0
        for chunk, size in _riff_chunks(fh, "little"):
            if chunk == b"fmt ":
                fmt = fh.read(16)
                pcm = int.from_bytes(fmt[:2], "little") in _WAV_PCM_FORMATS
                block_align = int.from_bytes(fmt[12:14], "little") if pcm else 0
            elif chunk == b"data":
                known = block_align and 0 < size < _WAV_UNKNOWN_SIZE
                return size // block_align if known else None
    return None


def _aiff_declared_frames(path: Path) -> int | None:
    """The frames an AIFF or AIFF-C's COMM chunk declares."""
    with open(path, "rb") as fh:
        if fh.read(12)[8:] not in (b"AIFF", b"AIFC"):
            return None
        for chunk, _size in _riff_chunks(fh, "big"):
            if chunk == b"COMM":
                return int.from_bytes(fh.read(6)[2:], "big") or None
    return None


# ------------------------------------------------------------------ Ogg pages

_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header, segment table, body
_OGG_END_OF_STREAM = 0x04  # the header-type flag of a stream's last page


def _ogg_cut_short(path: Path) -> str | None:
    """Why an Ogg file stops short of its end, or None.

    Ogg declares no length, but the last page of a stream is flagged end-of-stream (in
    all 2,057 Ogg Vorbis and Opus files checked: Debian's game packages, 4Q's clips,
    FFmpeg's and libsndfile's encodes). A file cut short ends inside a page, or
    after a page that is not its stream's last. Bytes after a complete page (a tag
    appended by some tool) are not judged."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - _OGG_MAX_PAGE))
        tail = fh.read()
    inside = False
    start = tail.rfind(b"OggS")
    while start >= 0:  # from the last capture pattern back: one may lie inside a page
        end = _ogg_page_end(tail, start)
        if end == len(tail):
            if tail[start + 5] & _OGG_END_OF_STREAM:
                return None
            return "the Ogg stream stops before its last page"
        inside = inside or (end is not None and end > len(tail))
        start = tail.rfind(b"OggS", 0, start)
    return "the file ends inside an Ogg page" if inside else None


def _ogg_page_end(data: bytes, start: int) -> int | None:
    """Where the page whose header starts at `start` ends (past the data's end for a page
    cut short); None when the bytes there are not a page header (version 0)."""
    if data[start + 4 : start + 5] not in (b"\x00", b""):
        return None
    table_start = start + 27
    if table_start > len(data):
        return len(data) + 1
    table = data[table_start : table_start + data[start + 26]]
    if len(table) < data[start + 26]:
        return len(data) + 1
    return table_start + len(table) + sum(table)


def _ending_checked(blocks: Iterator[np.ndarray], cut: str | None) -> Iterator[np.ndarray]:
    """`blocks`, then the error `cut` names: `mer_plugin.audio` reports it with how much
    decoded (a failure, or a warning that keeps it)."""
    yield from blocks
    if cut:
        raise EOFError(cut)


# ------------------------------------------------------------------ mp3 headers

# MPEG audio frame: side-information size by (MPEG-1?, mono?); Xing/Info follow it
_MP3_SIDE_INFO = {(True, False): 32, (True, True): 17, (False, False): 17, (False, True): 9}
_MP3_SCAN_BYTES = 65536
_LAME_TAGS = (b"LAME", b"Lavc", b"Lavf")  # encoders whose tag gives delay and padding


def _mp3_declared_samples(path: Path) -> int | None:
    """The exact length, in samples, that the first MP3 frame's Xing/Info (less the LAME
    tag's encoder delay and padding) or VBRI header declares; None without one.

    Read here rather than from FFmpeg: with more bytes after the audio than the header
    counts (junk, a concatenation), FFmpeg estimates the length from the bitrate."""
    with open(path, "rb") as fh:
        head = fh.read(10)
        start = 0
        if len(head) == 10 and head[:3] == b"ID3":  # skip an ID3v2 tag (syncsafe size)
            size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
            start = 10 + size + (10 if head[5] & 0x10 else 0)
        fh.seek(start)
        data = fh.read(_MP3_SCAN_BYTES)
    i = _first_mp3_frame(data)
    if i is None:
        return None
    mpeg1 = (data[i + 1] >> 3) & 3 == 3
    mono = data[i + 3] >> 6 == 3
    per_frame = 1152 if mpeg1 else 576  # samples per layer III frame
    tag = i + 4 + _MP3_SIDE_INFO[(mpeg1, mono)]
    if data[tag : tag + 4] in (b"Xing", b"Info"):
        flags = _int(data, tag + 4)
        if not flags & 1:
            return None
        lame = tag + 8 + sum(n for bit, n in ((1, 4), (2, 4), (4, 100), (8, 4)) if flags & bit)
        samples = _int(data, tag + 8) * per_frame
        if data[lame : lame + 4] not in _LAME_TAGS:
            return samples
        delay_padding = _int(data, lame + 21, 3)  # 12 bits each
        return samples - (delay_padding >> 12) - (delay_padding & 0xFFF)
    if data[i + 36 : i + 40] == b"VBRI":
        return _int(data, i + 50) * per_frame
    return None


def _mp3_declared(path: Path, container: av.container.InputContainer) -> int | None:
    """`_mp3_declared_samples` of an mp3 container; None for any other."""
    return _mp3_declared_samples(path) if container.format.name == "mp3" else None


def _int(data: bytes, at: int, size: int = 4) -> int:
    return int.from_bytes(data[at : at + size], "big")


def _first_mp3_frame(data: bytes) -> int | None:
    i = data.find(b"\xff")
    while 0 <= i < len(data) - 40:
        b1, b2 = data[i + 1], data[i + 2]
        layer3 = b1 & 0xE6 == 0xE2  # sync bits, layer III
        valid = (b1 >> 3) & 3 != 1 and b2 >> 4 not in (0, 15) and (b2 >> 2) & 3 != 3
        if layer3 and valid:
            return i
        i = data.find(b"\xff", i + 1)
    return None


# ----------------------------------------------------------------------- PyAV


@contextmanager
def _open_pyav(path: Path, block_frames: int) -> Iterator[Source]:
    import av

    with av.open(str(path)) as container:
        stream = _audio_stream(path, container)
        declared = _mp3_declared(path, container)
        frames = _packet_frames(path, container, stream, declared)
        # the first frame tells the real rate and layout (HE-AAC headers may not)
        first = next(frames, None)
        if first is None:  # a stream without a rate: FFmpeg guessed from the extension
            known = stream.codec_context.sample_rate > 0
            raise AudioError(path, "no audio samples in the file" if known else UNRECOGNISED)
        expected = declared or _container_declared(container, stream, first.sample_rate)
        cut = _ogg_cut_short(path) if container.format.name == "ogg" else None
        blocks = _pyav_blocks(chain([first], frames), first, block_frames, expected)
        blocks = _ending_checked(blocks, cut)
        yield Source(first.sample_rate, first.layout.nb_channels, blocks, expected)


def _packet_frames(
    path: Path, container: av.container.InputContainer, stream: av.AudioStream, declared: int | None
) -> Iterator[av.AudioFrame]:
    """The stream's frames, packet by packet. Past the declared length, data that does
    not decode (junk after the audio, a botched concatenation) ends the stream quietly."""
    import av

    decoded = 0
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                decoded += frame.samples
                yield frame
    except av.FFmpegError as error:
        if declared is None or decoded < declared:
            raise
        log.info("%s: undecodable data after the declared audio ignored (%s)", path, error)


def _audio_stream(path: Path, container: av.container.InputContainer) -> av.AudioStream:
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise AudioError(path, f"no audio stream (the file holds only {', '.join(kinds)})")
    return container.streams.audio[0]


def _container_declared(
    container: av.container.InputContainer, stream: av.AudioStream, rate: int
) -> int | None:
    """The exact length MP4 sample tables or FLAC STREAMINFO declare, or None where
    FFmpeg estimates it."""
    fmt = container.format.name
    if not ("mp4" in fmt or fmt == "flac") or not stream.duration or stream.time_base is None:
        return None
    return round(Fraction(stream.duration) * stream.time_base * rate)


def _pyav_blocks(
    frames: Iterable[av.AudioFrame], first: av.AudioFrame, block_frames: int, limit: int | None
) -> Iterator[np.ndarray]:
    """Gather decoded frames into (frames, channels) float32 blocks.

    The resampler only converts sample format (to planar float), and keeps the
    first frame's rate and layout should a stream change them midway. `limit`
    trims the encoder's end padding to the container's declared length.
    """
    import av

    convert = av.AudioResampler(format="fltp", layout=first.layout, rate=first.sample_rate)
    pending: list[np.ndarray] = []
    pending_frames = emitted = 0
    for frame in chain(frames, [None]):
        for out in convert.resample(frame):
            pending.append(out.to_ndarray())
            pending_frames += out.samples
        if pending and (pending_frames >= block_frames or frame is None):
            block = np.concatenate(pending, axis=1).T
            pending, pending_frames = [], 0
            if limit is not None:
                block = block[: max(0, limit - emitted)]
            emitted += len(block)
            if len(block):
                yield block


def _pyav_info(path: Path, name: str = PYAV) -> AudioInfo:
    import av

    with av.open(str(path)) as container:
        stream = _audio_stream(path, container)
        ctx = stream.codec_context
        if ctx.sample_rate <= 0:  # no stream header: FFmpeg guessed from the extension
            raise AudioError(path, UNRECOGNISED)
        declared = _mp3_declared(path, container)
        if declared:
            duration = declared / ctx.sample_rate
        elif container.format.name == "ogg" and _ogg_cut_short(path):
            duration = None  # what FFmpeg reads from the last page is the cut file's
        elif stream.duration and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = None
        codec = ctx.codec.name.removesuffix("float")  # "mp3float" -> "mp3"
        container_name = container.format.name.split(",")[0]
        return AudioInfo(
            path,
            duration,
            ctx.sample_rate,
            ctx.layout.nb_channels,
            codec,
            container_name,
            name,
        )


def _fallback_info(path: Path) -> AudioInfo:
    return _pyav_info(path, PYAV_FALLBACK)


# ------------------------------------------------------------------ the hook

_SOUNDFILE_EXTS = (".wav", ".wave", ".aif", ".aiff", ".aifc", ".flac", ".ogg", ".oga", ".opus")
_PYAV_EXTS = (".mp3", ".m4a", ".m4b", ".mp4", ".aac")


@hookimpl
def mer_decoders() -> list[Decoder]:
    """The built-in decoders, registered like any plugin's."""
    return [
        Decoder(SOUNDFILE, _SOUNDFILE_EXTS, _open_soundfile, _soundfile_info, priority=10),
        Decoder(PYAV, _PYAV_EXTS, _open_pyav, _pyav_info, priority=10),
        # fallback: a wrong extension, a codec libsndfile lacks
        Decoder(PYAV_FALLBACK, _SOUNDFILE_EXTS, _open_pyav, _fallback_info, priority=0),
    ]
