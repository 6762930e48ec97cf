"""Hook specifications: the one place where mer's built-ins and third-party plugins meet.

A plugin is a module (or object) with functions decorated by `hookimpl`, named after the
specs below, made known through an entry point of group ``mer``::

    [project.entry-points.mer]
    my_backbone = "my_package.mer_hooks"

Every hook returns a list of small component records (the dataclasses below). mer calls
each plugin's implementation separately, so one broken plugin is reported by name and
skipped; the results of all plugins are merged, and two plugins that provide the same
name (backbone, extractor, decoder) are an error that names both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pluggy

from mer_plugin.frontend import FrontEndSpec

if TYPE_CHECKING:
    from torch import nn

PROJECT = "mer"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Backbone:
    """A segment-level network: `create(pretrained)` builds it for log-mels made by `spec`.

    The module maps (batch, spec.segment_frames, spec.n_mels) to (batch, embedding_size)
    through `embed`; `finetune_groups` names its parameter groups from input to output,
    so training can unfreeze the last k of them.
    """

    name: str
    create: Callable[[bool], nn.Module]
    spec: FrontEndSpec
    embedding_size: int
    finetune_groups: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Decoder:
    """Opens a file as a stream of mono float32 blocks at a sample rate.

    `open(path, sample_rate)` yields the blocks. For a file extension, the decoder with the
    highest `priority` is tried first; built-ins use priority 0.
    """

    name: str
    extensions: tuple[str, ...]  # lower case, with the dot: (".mp3", ".flac")
    open: Callable[[Path, int], Iterator[np.ndarray]]
    priority: int = 0


@dataclass(frozen=True)
class Extractor:
    """Hand-made features of a song (or of each segment), used beside the backbone's."""

    name: str
    level: Literal["song", "segment"]
    feature_names: tuple[str, ...]
    extract: Callable[[Path], np.ndarray]  # file → float32 vector (song) or rows (segments)
    description: str = ""


@dataclass(frozen=True)
class TagWriter:
    """Reads and writes mer's fields in one container format (ID3, Vorbis comments, MP4…)."""

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
