"""`mer train`: fit one method on a whole dataset and write a model folder with its card."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mer_plugin import __version__
from mer_plugin.backbones import backbone_parts
from mer_plugin.datasets import Dataset
from mer_plugin.emotion import MOODS
from mer_plugin.hookspecs import Backbone
from mer_plugin.inference.card import Method
from mer_plugin.inference.folder import save_model, state_digest
from mer_plugin.plugins import get_plugins
from mer_plugin.song_extras import SongExtras
from mer_plugin.training.methods import Fitted, fit
from mer_plugin.training.prepare import Prepared, prepare
from mer_plugin.training.progress import Reporter
from mer_plugin.training.settings import METHODS, Settings, SettingsError

_ISC = "from musicnn 0.1.0, ISC licence (MTG-UPF)"
_CHECKPOINTS = {  # backbone -> the musicnn wheel's checkpoint its weights come from
    "musicnn-msd": "MSD_musicnn",
    "musicnn-msd-pool": "MSD_musicnn",
    "musicnn-msd-layers": "MSD_musicnn",
    "musicnn-mtt": "MTT_musicnn",
    "musicnn-mtt-layers": "MTT_musicnn",
    "vgg-msd": "MSD_vgg",
    "vgg-msd-layers": "MSD_vgg",
    "vgg-mtt": "MTT_vgg",
    "vgg-mtt-layers": "MTT_vgg",
}
LICENCE_NOTES = {name: f"backbone weights: {ckpt} {_ISC}" for name, ckpt in _CHECKPOINTS.items()}


def licence_note(backbone: str) -> str:
    """What the card says of a backbone's weights; a fused one's: each part's, in order."""
    parts = backbone_parts(backbone)
    if len(parts) == 1:
        return LICENCE_NOTES.get(backbone, "see the backbone's own notes")
    return "; ".join(LICENCE_NOTES.get(p, f"{p}: see the backbone's own notes") for p in parts)


def train_model(
    dataset: Dataset,
    backbone: str | Backbone,
    method: str | Method,
    settings: Settings,
    out: str | Path,
    cache_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    name: str | None = None,
    command: str = "",
    metrics: dict | None = None,
    data_licence: str = "",
    extractors: Sequence[str] = (),
    version: str = "1",
    train_only: Sequence[Dataset] = (),
    unlabelled: Dataset | None = None,
) -> Path:
    """Train `method` on every readable clip of `dataset` and of the `train_only` sets
    (sssl also on the `unlabelled` music); write the model folder `out`. `extractors`
    name song-level extractor plugins whose features stage 2 appends."""
    if method not in METHODS:
        raise SettingsError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    method = Method(method)
    extras = song_extras(extractors, (method,))
    reporter = reporter or Reporter(quiet=True)
    clip_level = method == Method.CLIP
    prepared = prepare(
        dataset, backbone, settings, cache_dir, reporter, clip_level, extras, train_only, unlabelled
    )
    rows = np.arange(len(prepared.ctx.dataset.clips))  # fit adds nothing: all rows train
    fitted = fit(method, prepared.ctx, rows, settings.seed)
    out = Path(out)
    name = name or out.name
    card = model_card(prepared, fitted, settings, name, command, metrics, data_licence, version)
    return save_model(out, card, model_tensors(prepared, fitted))


def song_extras(extractors: Sequence[str], methods: Sequence[str]) -> SongExtras | None:
    """The extractors for stage 2, checked: only segment and sssl have a song stage."""
    if not extractors:
        return None
    if Method.CLIP in methods:
        raise SettingsError("--extractor needs the segment or sssl method (clip has no stage 2)")
    return SongExtras.of(extractors)


def model_tensors(prepared: Prepared, fitted: Fitted) -> dict:
    tensors = {f"head.{k}": v for k, v in fitted.head.state_dict().items()}
    if fitted.song is not None:
        tensors.update(fitted.song.tensors())
    if fitted.song_embedding is not None:
        tensors.update(fitted.song_embedding.tensors("song_embedding."))
    if _weights_in_model(prepared):
        prepared.ctx.segments.load(fitted.backbone_state)
        state = prepared.built.module.state_dict()
        tensors.update({f"backbone.{k}": v for k, v in state.items()})
    return tensors


def _weights_in_model(prepared: Prepared) -> bool:
    return bool(prepared.built.trainable_groups) or not prepared.built.pretrained


def _plugin_of(backbone: str) -> dict[str, str]:
    """{"plugin": "distribution version"} for a third party's backbone, which a user of
    the model must install; nothing for mer's own."""
    origin = get_plugins().origin("mer_backbones", backbone)
    if origin is None or origin.builtin:
        return {}
    return {"plugin": f"{origin.distribution} {origin.version}"}


def model_card(
    prepared: Prepared,
    fitted: Fitted,
    settings: Settings,
    name: str,
    command: str,
    metrics: dict | None,
    data_licence: str,
    version: str = "1",
) -> dict:
    data, built = prepared.ctx.dataset, prepared.built
    backbone_name = built.backbone.name
    return {
        "name": name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "mer_version": __version__,
        "method": fitted.method,
        "classes": list(data.classes),
        "moods": {q: m for q, m in MOODS.items() if q in data.classes},
        "backbone": {
            "name": backbone_name,
            "pretrained": built.pretrained,
            "finetuned_groups": list(built.trainable_groups),
            "weights_in_model": _weights_in_model(prepared),
            "weights_sha256": state_digest(built.module),
            "embedding_size": built.backbone.embedding_size,
            "frontend": built.backbone.spec.to_dict(),
            **_plugin_of(backbone_name),
        },
        "song_level": _song_level(fitted, prepared.extras),
        "song_extractors": prepared.extras.to_card() if prepared.extras else [],
        "training_data": {
            "name": data.name,
            "clips": len(data.clips),
            "segments": int(len(prepared.ctx.table)),
            "segments_per_clip": int(np.median(np.bincount(prepared.ctx.table.clip))),
            "per_class": dict(sorted(Counter(c.label for c in data.clips).items())),
            "groups": len(set(data.groups)),
            "skipped": data.skipped,
            **prepared.more_data,
        },
        "settings": settings.to_dict(),
        "history": fitted.history,
        "metrics": metrics or {"note": "not measured: pass --metrics EVAL.json from `mer eval`"},
        "command": command,
        "licence": {
            "backbone": licence_note(backbone_name),
            "training_data": data_licence or "as published by the dataset's authors",
        },
    }


def _song_level(fitted: Fitted, extras: SongExtras | None) -> str:
    if fitted.method == Method.CLIP:
        return "the head on the whole clip's embedding"
    if fitted.song is None:
        text = "mean of segment probabilities"
    else:
        text = "logistic regression on aggregated segment probabilities (heads.SONG_FEATURES)"
        text = f"{text} and the features of {', '.join(extras.names)}" if extras else text
    if fitted.song_embedding is None:
        return text
    return (
        f"{text}, averaged with a logistic regression on the mean and standard deviation "
        "of the segment embeddings"
    )


def metrics_from_eval(path: str | Path, method: str) -> dict:
    """The row of `method` (``segment+essentia`` with an extractor) in a `mer eval --json`
    report, with its protocol."""
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    row = report["results"][method]
    protocol = dict(report["protocol"], dataset=report["dataset"], command=report.get("command"))
    return {"mean": row["mean"], "std": row["std"], "protocol": protocol}
