"""Reading and writing mer's fields as APEv2 items with mutagen: a `TagWriter`'s
`read` and `write`.

The names mer hands over and expects back are the logical field names of
`mer_plugin.tags.FIELDS` (`mood`, `MER_VALENCE`, ...); each `Field` also says the key
to use in an APEv2 tag (`field.ape`). mer calls `write` on a temporary copy of the file
and renames it over the original only once it succeeded, so `write` edits in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mutagen.wavpack import WavPack, WavPackHeaderError

from mer_plugin.errors import TagError
from mer_plugin.tags import FIELDS, field_named


def read(path: Path) -> dict[str, str]:
    """mer's fields found in the file, by logical name; the other items are ignored."""
    tags = _load(path).tags or {}
    return {field.name: str(tags[field.ape]) for field in FIELDS if field.ape in tags}


def write(path: Path, fields: Mapping[str, str]) -> None:
    """Set mer's fields; every other item (artist, cover art...) stays as it was."""
    audio = _load(path)
    if audio.tags is None:
        audio.add_tags()
    for name, value in fields.items():
        audio.tags[field_named(name).ape] = value
    audio.save()


def _load(path: Path) -> WavPack:
    try:
        return WavPack(path)
    except WavPackHeaderError as error:
        raise TagError(path, f"not a WavPack file ({error})") from error
