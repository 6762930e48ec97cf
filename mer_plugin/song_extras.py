"""Song-level features from extractor plugins, as stage 2 of training appends them.

`mer train --extractor essentia` fits the song classifier on the aggregated segment
probabilities plus these features; the model card lists each extractor and the features
used, and prediction computes the same vector from the file. Category codes (an
extractor's `categorical` features, such as a key's tonic) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer_plugin.errors import AudioError, MerError
from mer_plugin.hookspecs import Extractor


class ExtractorError(MerError):
    """An extractor is unknown, of the wrong level, or failed on a file."""


@dataclass(frozen=True)
class SongExtras:
    """Extractors with the indexes of the features used, in a fixed order."""

    parts: tuple[tuple[Extractor, tuple[int, ...]], ...]

    @classmethod
    def of(
        cls, names: Sequence[str], features: Mapping[str, Sequence[str]] | None = None
    ) -> SongExtras:
        """The installed extractors `names`, with `features[name]` (default: every
        non-categorical feature)."""
        from mer_plugin.plugins import get_plugins

        available = get_plugins().extractors()
        parts = []
        for name in names:
            if name not in available:
                known = ", ".join(sorted(available)) or "none"
                raise ExtractorError(f"no installed plugin provides extractor {name!r} ({known})")
            extractor = available[name]
            if extractor.level != "song":
                raise ExtractorError(
                    f"extractor {name!r} is {extractor.level}-level; stage 2 "
                    "takes song-level features"
                )
            wanted = (features or {}).get(name) or [
                f for f in extractor.feature_names if f not in extractor.categorical
            ]
            missing = sorted(set(wanted) - set(extractor.feature_names))
            if missing:
                raise ExtractorError(f"extractor {name!r} lacks features {', '.join(missing)}")
            parts.append((extractor, tuple(extractor.feature_names.index(f) for f in wanted)))
        return cls(tuple(parts))

    @classmethod
    def from_card(cls, entries: Sequence[Mapping]) -> SongExtras:
        return cls.of([e["name"] for e in entries], {e["name"]: e["features"] for e in entries})

    def to_card(self) -> list[dict]:
        return [
            {"name": ex.name, "features": [ex.feature_names[i] for i in idx]}
            for ex, idx in self.parts
        ]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(ex.name for ex, _ in self.parts)

    @property
    def size(self) -> int:
        return sum(len(idx) for _, idx in self.parts)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def __call__(self, path: str | Path) -> np.ndarray:
        """The feature vector of one file; `AudioError` when it cannot be read."""
        values = []
        for extractor, idx in self.parts:
            try:
                vector = np.asarray(extractor.extract(Path(path)), dtype=np.float64)
            except AudioError:
                raise
            except Exception as error:  # a plugin's bug names the plugin
                raise ExtractorError(f"extractor {extractor.name!r} failed: {error}") from None
            if vector.shape != (len(extractor.feature_names),):
                raise ExtractorError(
                    f"extractor {extractor.name!r} returned shape {vector.shape}, expected "
                    f"({len(extractor.feature_names)},)"
                )
            values.append(vector[list(idx)])
        out = np.concatenate(values) if values else np.zeros(0)
        if not np.isfinite(out).all():
            raise ExtractorError(
                f"{path}: extractors {', '.join(self.names)} gave non-finite values"
            )
        return out
