"""Grouped, stratified K-fold cross-validation of the methods, the logistic-regression
references on frozen embeddings, and the GMM separation check (docs/design.md §5).

Every method sees the same folds (`Context.folds`: no group on both sides; clips of
train-only sets join every training fold and no test fold). Nothing is
tuned on a test fold: settings are fixed before the run; SSSL's stage 2 uses inner folds
of the training clips only.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from mer_plugin.datasets import Dataset
from mer_plugin.emotion import QUADRANTS
from mer_plugin.hookspecs import Backbone
from mer_plugin.inference.card import Method
from mer_plugin.song_extras import SongExtras
from mer_plugin.training.methods import Context, clean_probability, fit, fit_ce, predict
from mer_plugin.training.prepare import prepare
from mer_plugin.training.progress import Reporter
from mer_plugin.training.settings import METHODS, Settings, SettingsError
from mer_plugin.training.sources import compute_threads

REFERENCES = ("lr-clip", "lr-segment")
METRICS = ("accuracy", "macro_f1", "valence_accuracy", "arousal_accuracy")


@dataclass
class EvalOptions:
    folds: int = 5
    run_folds: int | None = None  # evaluate only the first n of the folds (quick runs)
    methods: tuple[str, ...] = METHODS  # Method values
    references: bool = True  # the LR references (need a pretrained, frozen backbone)
    noise_rates: tuple[float, ...] = (0.2, 0.4)  # GMM check; () to skip
    lr_c: float = 1.0  # inverse L2 strength of the references' logistic regression
    command: str = ""
    extra: dict = field(default_factory=dict)
    # song-level extractors: segment and sssl also run with their features in stage 2,
    # reported as "<method>+<extractors>" beside the plain method (the ablation)
    extractors: tuple[str, ...] = ()


def metrics(probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, macro-F1, the confusion matrix and, for quadrant classes, binary valence
    and arousal accuracy."""
    from sklearn.metrics import f1_score

    predicted = probs.argmax(axis=1)
    out = {
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(
            f1_score(
                labels, predicted, labels=range(len(classes)), average="macro", zero_division=0
            )
        ),
    }
    out["confusion"] = confusion(predicted, labels, len(classes))
    if set(QUADRANTS) <= set(classes):
        q = {name: classes.index(name) for name in QUADRANTS}
        positive, high = [q["Q1"], q["Q4"]], [q["Q1"], q["Q2"]]
        valence = probs[:, positive].sum(axis=1) >= 0.5
        arousal = probs[:, high].sum(axis=1) >= 0.5
        out["valence_accuracy"] = float((valence == np.isin(labels, positive)).mean())
        out["arousal_accuracy"] = float((arousal == np.isin(labels, high)).mean())
    return out


def confusion(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts: row = true class, column = predicted class."""
    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (labels, predicted), 1)
    return counts.tolist()


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof 1) over folds of every number in the rows."""
    keys = [k for k in rows[0] if k != "fold" and isinstance(rows[0][k], float | int)]
    values = {k: np.array([r[k] for r in rows], dtype=float) for k in keys}
    std = {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()}
    out = {"mean": {k: float(v.mean()) for k, v in values.items()}, "std": std}
    if "confusion" in rows[0]:
        out["confusion"] = np.sum([r["confusion"] for r in rows], axis=0).tolist()
    return out


def evaluate(
    dataset: Dataset,
    backbone: str | Backbone,
    settings: Settings,
    options: EvalOptions,
    cache_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    train_only: Sequence[Dataset] = (),
    unlabelled: Dataset | None = None,
) -> dict:
    """Cross-validate `options.methods` (+ references, + GMM check); a JSON-ready report.
    `train_only` sets join every training fold (never a test fold); `unlabelled` music
    feeds sssl's unlabelled branch."""
    unknown = set(options.methods) - set(METHODS)
    if unknown:
        raise SettingsError(f"unknown methods {sorted(unknown)} (known: {', '.join(METHODS)})")
    reporter = reporter or Reporter(quiet=True)
    extras = SongExtras.of(options.extractors) if options.extractors else None
    clip_level = Method.CLIP in options.methods
    prepared = prepare(
        dataset, backbone, settings, cache_dir, reporter, clip_level, extras, train_only, unlabelled
    )
    ctx = replace(prepared.ctx, extras=None)
    runs = [(m, Method(m), ctx) for m in options.methods]
    if extras:
        suffix = "+".join(extras.names)
        runs += [
            (f"{m}+{suffix}", Method(m), prepared.ctx) for m in options.methods if m != Method.CLIP
        ]
    folds = ctx.folds(options.folds, settings.seed)
    results: dict[str, list[dict]] = {name: [] for name, _, _ in runs}
    references = options.references and prepared.built.pretrained and settings.finetune == 0
    if references:
        results.update({name: [] for name in REFERENCES})
    checks: dict[str, list[dict]] = {f"{rate:g}": [] for rate in options.noise_rates}
    for k, (train, test) in enumerate(folds[: options.run_folds]):
        reporter.log(
            f"fold {k + 1}/{len(folds)}: {len(train)} training clips, {len(test)} test clips"
        )
        for name, method, run_ctx in runs:
            row = _run_method(method, run_ctx, train, test, settings.seed + k, k)
            results[name].append(row)
        if references:
            for name, row in _references(ctx, train, test, options.lr_c, settings.seed).items():
                results[name].append({"fold": k, **row})
        for rate in options.noise_rates:
            checks[f"{rate:g}"].append(gmm_check(ctx, train, rate, settings.seed + k))
    return _report(ctx, prepared, folds, results, checks, settings, options)


def _run_method(
    method: Method, ctx: Context, train: np.ndarray, test: np.ndarray, seed: int, k: int
) -> dict:
    started = time.perf_counter()
    fitted = fit(method, ctx, train, seed)
    seconds = time.perf_counter() - started
    probs = predict(fitted, ctx, test)
    row = metrics(probs, ctx.clip_labels[test], ctx.dataset.classes)
    return {"fold": k, **row, "train_seconds": seconds}


def _references(ctx: Context, train: np.ndarray, test: np.ndarray, c: float, seed: int) -> dict:
    """Frozen clean-view embeddings + standardised logistic regression: clip level (mean
    segment embedding per clip) and segment level (segment probabilities averaged)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    embeddings = ctx.segments.embeddings[0]  # type: ignore[union-attr]
    table, labels = ctx.table, ctx.clip_labels
    out = {}
    for name in REFERENCES:
        started = time.perf_counter()
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed)
        )
        if name == "lr-clip":
            means = np.stack([embeddings[table.clip == r].mean(axis=0) for r in range(len(labels))])
            model.fit(means[train], labels[train])
            probs = model.predict_proba(means[test])
        else:
            ids = table.ids_of(train)
            model.fit(embeddings[ids], labels[table.clip[ids]])
            probs = np.stack(
                [model.predict_proba(embeddings[table.clip == r]).mean(axis=0) for r in test]
            )
        seconds = time.perf_counter() - started
        full = np.zeros((len(test), ctx.n_classes))
        full[:, model.classes_] = probs
        out[name] = {**metrics(full, labels[test], ctx.dataset.classes), "train_seconds": seconds}
    return out


def gmm_check(ctx: Context, train: np.ndarray, rate: float, seed: int) -> dict:
    """Flip `rate` of the training segments' labels to another class, warm up on them as
    SSSL does, and score the GMM clean probability against the known flips (ROC AUC)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng([seed, int(rate * 1000)])
    ids = ctx.table.ids_of(train)
    labels = ctx.clip_labels[ctx.table.clip[ids]].copy()
    flipped = np.zeros(len(ids), bool)
    flipped[rng.choice(len(ids), size=int(round(rate * len(ids))), replace=False)] = True
    labels[flipped] = (
        labels[flipped] + rng.integers(1, ctx.n_classes, flipped.sum())
    ) % ctx.n_classes
    s = ctx.settings
    with compute_threads(ctx.segments):
        head = fit_ce(
            ctx.segments, ids, labels, ctx, max(s.warmup_epochs, 1), seed, f"gmm check {rate:g}"
        )
        w = clean_probability(head, ctx.segments, ids, labels, s, ctx.table.clip[ids])
        plain = clean_probability(
            head, ctx.segments, ids, labels, replace(s, clip_relative_loss=False)
        )
    noisy = w <= s.tau
    return {
        "auc": float(roc_auc_score(~flipped, w)),  # the split SSSL uses (settings)
        "noisy_share_of_flipped": float(noisy[flipped].mean()),
        "noisy_share_of_kept": float(noisy[~flipped].mean()),
        "auc_plain_loss": float(roc_auc_score(~flipped, plain)),  # losses not clip-relative
    }


def _report(
    ctx: Context,
    prepared,
    folds: list,
    results: dict[str, list[dict]],
    checks: dict[str, list[dict]],
    settings: Settings,
    options: EvalOptions,
) -> dict:
    data = ctx.dataset
    return {
        "dataset": data.name,
        "clips": len(data.clips) - len(ctx.train_only),
        **prepared.more_data,
        "segments": int(len(ctx.table)),
        "classes": list(data.classes),
        "skipped": data.skipped,
        "protocol": {
            "folds": len(folds),
            "folds_run": len(folds[: options.run_folds]),
            "grouped": True,
            "stratified": True,
            "seed": settings.seed,
            "std": "sample standard deviation over folds (ddof 1)",
            "test_fold_sizes": [int(len(test)) for _, test in folds],
            "test_groups": [sorted({data.groups[i] for i in test}) for _, test in folds],
        },
        "backbone": {
            "name": prepared.built.backbone.name,
            "pretrained": prepared.built.pretrained,
            "finetune_groups": list(prepared.built.trainable_groups),
            "frontend": prepared.built.backbone.spec.to_dict(),
        },
        "settings": settings.to_dict(),
        "song_extractors": prepared.extras.to_card() if prepared.extras else [],
        "results": {name: {"folds": rows, **summarise(rows)} for name, rows in results.items()},
        "gmm_check": {
            rate: {"folds": rows, **summarise(rows)} for rate, rows in checks.items() if rows
        },
        "cache_seconds": prepared.seconds,
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "device": str(ctx.segments.device),
        },
        "command": options.command,
        **options.extra,
    }
