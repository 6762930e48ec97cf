"""The plugin module named by the `mer` entry point: two hook implementations.

mer tags a file only when a decoder *and* a tag writer handle its extension. mer's
built-in `ape` tag writer already covers `.wv` (priority 10); this writer declares
priority 20, so it is the one mer uses while the plugin is installed. A plugin that only
adds a decoder would leave `mer_tag_writers` out.
"""

from __future__ import annotations

from mer_example_wavpack import decoder, writer
from mer_plugin.hookspecs import Decoder, TagWriter, hookimpl

EXTENSIONS = (".wv",)  # lower case, with the dot


@hookimpl
def mer_decoders() -> list[Decoder]:
    return [Decoder("example-wavpack", EXTENSIONS, decoder.open_wavpack, decoder.info, 10)]


@hookimpl
def mer_tag_writers() -> list[TagWriter]:
    return [TagWriter("example-wavpack", EXTENSIONS, writer.write, writer.read, priority=20)]
