"""Hook specifications: the one place where mer's built-ins and third-party plugins meet.

A plugin is a module (or object) with functions decorated by `hookimpl`, named after the
specs below, made known through an entry point of group ``mer``::

    [project.entry-points.mer]
    my_backbone = "my_package.mer_hooks"

Every hook returns a list of small component records (the dataclasses below). mer calls
each plugin's implementation separately, so one broken plugin is reported by name and
skipped; the results of all plugins are merged, and a name a second plugin provides
again is reported against that plugin, whose component is skipped (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pluggy

from mer_plugin.frontend import FrontEndSpec

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

PROJECT = "mer"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Backbone:
    """A segment-level network: `create(pretrained)` builds it for log-mels made by `spec`;
    `create(True)` raises `ValueError` when the backbone has no pretrained weights.

    The module maps (batch, spec.segment_frames, spec.n_mels) to (batch, embedding_size)
    through `embed`; `finetune_groups` names its parameter groups from input to output,
    so training can unfreeze the last k of them. A module may also define `stages()`
    (docs/plugins.md): then the frozen groups' output is cached for fine-tuning.
    """

    name: str
    create: Callable[[bool], nn.Module]
    spec: FrontEndSpec
    embedding_size: int
    finetune_groups: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's headers say; nothing is decoded."""

    path: Path
    duration: float | None  # seconds; None when the headers do not say
    sample_rate: int
    channels: int
    codec: str  # e.g. "pcm_16", "flac", "mp3", "vorbis", "opus", "aac"
    container: str  # e.g. "wav", "flac", "mp3", "ogg", "mov"
    decoder: str  # the registered decoder that read the headers


@dataclass
class Source:
    """An opened file, as a decoder hands it over (docs/plugins.md has every rule).

    `blocks` yields float32 arrays of shape (frames, channels) at the file's own
    `sample_rate`, of any length (mer re-blocks, down-mixes and resamples); a decoder may
    reuse a block's memory once the next block is asked for. `expected_frames` is the
    exact length the headers declare, in frames at `sample_rate`, or None.
    """

    sample_rate: int
    channels: int
    blocks: Iterator[np.ndarray]
    expected_frames: int | None = None


@dataclass(frozen=True)
class Decoder:
    """Reads files of some extensions; mer down-mixes, resamples and re-blocks its output.

    `open(path, block_frames)` is a context manager giving a `Source` (sample rate,
    channels, blocks of float32 (frames, channels), declared length); `info(path)` reads
    the headers into an `AudioInfo`. Either raises
    (preferably `AudioError`) for a file it cannot read: the next decoder is tried.
    For an extension, decoders are tried from the highest `priority` down; built-ins
    use 10 for the formats they are chosen for and 0 for fallbacks. `depends_on()`, where
    given, names what the decoded audio depends on besides the file's bytes (a synthesiser
    and its SoundFont): caches keyed by files add it, so a change of it decodes anew.
    """

    name: str
    extensions: tuple[str, ...]  # lower case, with the dot: (".mp3", ".flac")
    open: Callable[[Path, int], AbstractContextManager[Source]]
    info: Callable[[Path], AudioInfo]
    priority: int = 0
    depends_on: Callable[[], str] | None = None


@dataclass(frozen=True)
class Extractor:
    """Hand-made features of a song (or of each segment), used beside the backbone's."""

    name: str
    level: Literal["song", "segment"]
    feature_names: tuple[str, ...]
    extract: Callable[[Path], np.ndarray]  # file → float32 vector (song) or rows (segments)
    description: str = ""
    # features that are category codes, not quantities (a key's tonic): stage 2 of
    # training leaves them out
    categorical: tuple[str, ...] = ()


@dataclass(frozen=True)
class TagWriter:
    """Reads and writes mer's fields in one container format (ID3, Vorbis comments, MP4…).

    `write(path, fields)` edits the file in place: mer hands it a temporary copy (same
    extension, same folder) and renames that over the original once it succeeded.
    """

    name: str
    extensions: tuple[str, ...]
    write: Callable[[Path, dict[str, str]], None]
    read: Callable[[Path], dict[str, str]]
    priority: int = 0


@hookspec
def mer_backbones() -> Sequence[Backbone]:
    """Backbones this plugin provides. All plugins' lists are merged; names are unique."""


@hookspec
def mer_extractors() -> Sequence[Extractor]:
    """Feature extractors this plugin provides. All lists are merged; names are unique."""


@hookspec
def mer_decoders() -> Sequence[Decoder]:
    """Decoders this plugin provides. All lists are merged; names are unique; per extension
    they are tried from the highest priority down until one opens the file."""


@hookspec
def mer_tag_writers() -> Sequence[TagWriter]:
    """Tag writers this plugin provides. All lists are merged; names are unique; per
    extension the writer with the highest priority is used."""
