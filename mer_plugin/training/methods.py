"""The three methods on one footing: `clip`, `segment` and `sssl` (docs/design.md §1).

- clip: one item per clip; the backbone sees the whole clip (it is convolutional in time
  and pools over time), the head classifies that one embedding.
- segment: segments inherit their clip's label; cross-entropy; a song is the mean of its
  segments' probabilities.
- sssl: warm-up cross-entropy, then each epoch a GMM on the per-segment losses splits
  clean from noisy segments; clean labels are refined, noisy segments get sharpened
  pseudo-labels from two augmented views; MixMatch mixup; a two-view KL consistency
  term; then stage 2, a song classifier on aggregated segment probabilities, trained on
  out-of-fold features of the training songs.

With `song_embedding_c`, segment and sssl also fit a logistic regression on the mean and
standard deviation of each song's segment embeddings (clean views); a song's probabilities
are then the average of that and the method's own.

All methods train a `Head` on features from a `FeatureSource` (cached frozen embeddings,
or the backbone on the fly when fine-tuning), so they differ only in what this module says.

Longer than most modules on purpose: the three methods share their training loops, loss
and prediction helpers, and one module keeps them on one footing, side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from mer_plugin.datasets import Dataset, grouped_folds
from mer_plugin.inference.card import Method
from mer_plugin.inference.heads import EmbeddingMoments, Head, SongClassifier, stage2_features
from mer_plugin.kernels.confidence import gmm_clean_probability
from mer_plugin.training.cache import SegmentTable
from mer_plugin.training.progress import Reporter
from mer_plugin.training.settings import Settings
from mer_plugin.training.sources import CachedSource, FeatureSource, compute_threads
from mer_plugin.training.stage2 import fit_classifier

PREDICT_BATCH = 256
HEAD_SEED_STEP = 100_000  # head j of an ensemble trains from seed + j * HEAD_SEED_STEP
Weights = TypeVar("Weights", np.ndarray, torch.Tensor)  # per-item loss weights


@dataclass
class Context:
    """What every method needs: the clips (in cache-row order), their segments, sources."""

    dataset: Dataset  # readable clips; clip i is cache row i
    table: SegmentTable
    segments: FeatureSource  # items: segment ids of `table`
    clips: FeatureSource | None  # items: clip rows (only the clip method needs it)
    settings: Settings
    reporter: Reporter = field(default_factory=lambda: Reporter(quiet=True))
    extras: np.ndarray | None = None  # song-level extractor features per clip row (stage 2)
    # rows of `dataset` that only ever train (added labelled sets): in every training
    # set, never in a test fold
    train_only: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # rows after the dataset's: music without labels, for sssl's unlabelled branch
    unlabelled: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_classes(self) -> int:
        return len(self.dataset.classes)

    def clip_weights(self) -> np.ndarray | None:
        """Each clip row's weight in the methods' losses: `added_weight` for the
        train-only clips, 1 for the others; None when every weight is 1."""
        if self.settings.added_weight == 1.0 or not len(self.train_only):
            return None
        weights = np.ones(len(self.dataset.clips))
        weights[self.train_only] = self.settings.added_weight
        return weights

    def folds(self, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """K grouped, stratified (train, test) splits, as cache rows, of the clips under
        evaluation (the train-only ones join every training set in `fit`)."""
        evaluated = np.setdiff1d(np.arange(len(self.dataset.clips)), self.train_only)
        splits = grouped_folds(self.dataset.subset(evaluated), k, seed)
        return [(evaluated[train], evaluated[test]) for train, test in splits]

    @property
    def clip_labels(self) -> np.ndarray:
        return self.dataset.labels


@dataclass
class Fitted:
    """A trained method: its head, for sssl the song classifier (None: mean), and the
    song's embedding classifier when asked for."""

    method: Method
    head: Head
    song: SongClassifier | None = None
    history: list[dict] = field(default_factory=list)
    backbone_state: dict[str, torch.Tensor] | None = None  # when the backbone was trained
    song_embedding: SongClassifier | None = None


# ------------------------------------------------------------------------------ public


def fit(method: Method, ctx: Context, rows: np.ndarray, seed: int) -> Fitted:
    """Train `method` on the clips at cache `rows` and the train-only clips; sssl also
    on the unlabelled music."""
    rows = np.concatenate([rows, np.setdiff1d(ctx.train_only, rows)])
    with compute_threads(ctx.segments):
        fitted = _fit(method, ctx, rows, seed)
        if method != Method.CLIP and ctx.settings.song_embedding_c > 0:
            fitted.song_embedding = fit_embedding_classifier(ctx, rows, seed)
    fitted.backbone_state = ctx.segments.snapshot()
    return fitted


def _fit(method: Method, ctx: Context, rows: np.ndarray, seed: int) -> Fitted:
    labels = ctx.clip_labels
    if method == Method.CLIP:
        if ctx.clips is None:
            raise ValueError("the clip method needs a clip-level source")
        if ctx.extras is not None:
            raise ValueError("the clip method has no song stage for extractor features")
        epochs = ctx.settings.clip_epochs
        weights = _at(ctx.clip_weights(), rows)
        heads = [
            fit_ce(ctx.clips, rows, labels[rows], ctx, epochs, s, Method.CLIP, weights)
            for s in head_seeds(seed, ctx.settings)
        ]
        return Fitted(Method.CLIP, Head.merged(heads))
    if method not in (Method.SEGMENT, Method.SSSL):
        raise ValueError(f"unknown method {method!r}")
    ids = ctx.table.ids_of(rows)
    head, history = fit_segment_head(method, ctx, ids, seed, ctx.table.ids_of(ctx.unlabelled))
    # stage 2: sssl's song classifier (unless turned off); for segment, only to take
    # extractor features (else its song is the mean of its segments)
    if not (ctx.extras is not None or (method == Method.SSSL and ctx.settings.song_classifier)):
        return Fitted(method, head, None, history)
    state = ctx.segments.snapshot()
    song = fit_song_classifier(ctx, rows, seed, head, method)  # trains more heads (backbones)
    ctx.segments.load(state)
    return Fitted(method, head, song, history)


def predict(fitted: Fitted, ctx: Context, rows: np.ndarray) -> np.ndarray:
    """Song probabilities (len(rows), n_classes) of the clips at cache `rows`."""
    ctx.segments.load(fitted.backbone_state)
    with compute_threads(ctx.segments):
        return _predict(fitted, ctx, rows)


def _predict(fitted: Fitted, ctx: Context, rows: np.ndarray) -> np.ndarray:
    if fitted.method == Method.CLIP:
        assert ctx.clips is not None
        return predict_items(fitted.head, ctx.clips, rows)
    per_clip = segment_probabilities(fitted.head, ctx, rows)
    if fitted.song is None:
        songs = np.stack([p.mean(axis=0) for p in per_clip])
    else:
        songs = fitted.song.predict_proba(clip_stage2_features(ctx, rows, per_clip))
    if fitted.song_embedding is None:
        return songs
    return (songs + fitted.song_embedding.predict_proba(clip_embedding_features(ctx, rows))) / 2


def fit_segment_head(
    method: Method, ctx: Context, ids: np.ndarray, seed: int, unlabelled: np.ndarray | None = None
) -> tuple[Head, list[dict]]:
    """The head `method` (segment or sssl) trains on the segments `ids`, their clips'
    labels and weights (sssl: with the `unlabelled` segments); `settings.heads` of them,
    merged. The history is the first head's."""
    labels, weights = ctx.clip_labels[ctx.table.clip[ids]], segment_weights(ctx, ids)
    epochs, trained = ctx.settings.epochs, []
    for s in head_seeds(seed, ctx.settings):
        if method == Method.SSSL:
            trained.append(fit_sssl(ctx.segments, ids, labels, ctx, s, unlabelled, weights))
        else:
            head = fit_ce(ctx.segments, ids, labels, ctx, epochs, s, method, weights)
            trained.append((head, []))
    return Head.merged([head for head, _ in trained]), trained[0][1]


def head_seeds(seed: int, settings: Settings) -> list[int]:
    """The seeds of an ensemble's heads: `seed` for the first (a single head's)."""
    return [seed + j * HEAD_SEED_STEP for j in range(settings.heads)]


def segment_weights(ctx: Context, ids: np.ndarray) -> np.ndarray | None:
    """Each segment's weight in the losses, its clip's (None when every weight is 1)."""
    return _at(ctx.clip_weights(), ctx.table.clip[ids])


def _at(weights: Weights | None, index: np.ndarray | slice) -> Weights | None:
    """`weights[index]`, or None for no weights."""
    return None if weights is None else weights[index]


def segment_probabilities(head: Head, ctx: Context, rows: np.ndarray) -> list[np.ndarray]:
    """Per clip row, its segments' probabilities (n_segments, n_classes), in time order."""
    ids = ctx.table.ids_of(rows)
    return _by_clip(ctx, rows, ids, predict_items(head, ctx.segments, ids))


def predict_items(head: Head, source: FeatureSource, ids: np.ndarray) -> np.ndarray:
    """Softmax of the head on the clean view of items, in eval mode."""
    head.eval()
    return _on_clean_views(source, ids, lambda x: F.softmax(head(x), dim=1))


@torch.no_grad()
def _on_clean_views(
    source: FeatureSource, ids: np.ndarray, apply: Callable[[torch.Tensor], torch.Tensor]
) -> np.ndarray:
    """`apply` to the clean view's features of items, a chunk at a time (source in eval
    mode), as one float64 array."""
    source.set_mode(False)
    chunks = np.array_split(ids, max(1, math.ceil(len(ids) / PREDICT_BATCH)))
    out = [apply(source.features(c, np.zeros(len(c), np.int64))).cpu() for c in chunks]
    return torch.cat(out).double().numpy()


def _by_clip(ctx: Context, rows: np.ndarray, ids: np.ndarray, values: np.ndarray) -> list:
    """`values` of the segments `ids` (`ctx.table.ids_of(rows)`), split clip by clip."""
    counts = np.bincount(ctx.table.clip[ids], minlength=int(rows.max()) + 1)[rows]
    return np.split(values, np.cumsum(counts)[:-1])


# ------------------------------------------------------------------------------ training


def _new_head(
    source: FeatureSource, ids: np.ndarray, ctx: Context, seed: int
) -> tuple[Head, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    source.reset()
    s = ctx.settings
    head = Head(source.dim, ctx.n_classes, s.hidden, s.dropout).to(_device(source))
    if isinstance(source, CachedSource) and len(ids) > 1:
        head.standardise_like(source.features(ids, np.zeros(len(ids), np.int64)))
    groups = [{"params": head.parameters(), "lr": s.lr}]
    if backbone := source.parameters():
        groups.append({"params": backbone, "lr": s.backbone_lr})
    return head, torch.optim.AdamW(groups, weight_decay=s.weight_decay)


def _device(source: FeatureSource) -> torch.device:
    return source.device


def _batches(n: int, size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for first in range(0, n, size):
        batch = order[first : first + size]
        if len(batch) >= 2 or n < 2:
            yield batch


def _train_mode(head: Head, source: FeatureSource) -> None:
    head.train()
    source.set_mode(True)


def _random_views(
    n: int, source: FeatureSource, ctx: Context, rng: np.random.Generator
) -> np.ndarray:
    if not ctx.settings.augment_training:
        return np.zeros(n, np.int64)
    return rng.integers(0, source.n_views, size=n)


def _ce_epoch(
    head: Head,
    optimizer: torch.optim.Optimizer,
    source: FeatureSource,
    ids: np.ndarray,
    labels: np.ndarray,
    ctx: Context,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> float:
    _train_mode(head, source)
    total, count = 0.0, 0
    target = torch.from_numpy(labels).to(_device(source))
    weight = None if weights is None else torch.from_numpy(weights).float().to(target.device)
    for batch in _batches(len(ids), ctx.settings.batch_size, rng):
        x = source.features(ids[batch], _random_views(len(batch), source, ctx, rng))
        if weight is None:
            loss = F.cross_entropy(head(x), target[batch])
        else:
            losses = F.cross_entropy(head(x), target[batch], reduction="none")
            loss = _batch_mean(losses, weight[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + loss.item() * len(batch), count + len(batch)
    return total / max(count, 1)


def _batch_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The mean of `values` over the batch; with `weight`, each row (dim 0) weighted."""
    if weight is None:
        return values.mean()
    per_row = values.reshape(len(values), -1).mean(dim=1)
    return (per_row * weight).sum() / weight.sum().clamp_min(1e-12)


def fit_ce(
    source: FeatureSource,
    ids: np.ndarray,
    labels: np.ndarray,
    ctx: Context,
    epochs: int,
    seed: int,
    name: str,
    weights: np.ndarray | None = None,
) -> Head:
    """A head trained with plain cross-entropy for `epochs` epochs (cosine learning rate);
    with `weights`, each item's loss weighted."""
    rng = np.random.default_rng(seed)
    head, optimizer = _new_head(source, ids, ctx, seed)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    with ctx.reporter.bar(epochs, name) as bar:
        for _ in range(epochs):
            loss = _ce_epoch(head, optimizer, source, ids, labels, ctx, rng, weights)
            schedule.step()
            bar.advance(description=f"{name} loss {loss:.3f}")
    return head


@torch.no_grad()
def per_item_loss(
    head: Head, source: FeatureSource, ids: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Cross-entropy of each item's clean view against its (inherited) label, eval mode."""
    probs = predict_items(head, source, ids)
    return -np.log(np.maximum(probs[np.arange(len(ids)), labels], 1e-12))


def clean_probability(
    head: Head,
    source: FeatureSource,
    ids: np.ndarray,
    labels: np.ndarray,
    settings: Settings,
    clips: np.ndarray | None = None,
) -> np.ndarray:
    """SSSL step 2: the GMM clean probability w of each segment from its loss.

    With `settings.clip_relative_loss` and the segments' `clips`, each loss is taken
    relative to the mean loss of its clip, so the split finds segments that disagree
    with the rest of their clip rather than whole clips that are hard to classify.
    """
    losses = per_item_loss(head, source, ids, labels)
    if settings.clip_relative_loss and clips is not None:
        _, inverse, counts = np.unique(clips, return_inverse=True, return_counts=True)
        losses = losses - (np.bincount(inverse, weights=losses) / counts)[inverse]
    return gmm_clean_probability(
        losses, settings.gmm_max_iter, settings.gmm_tol, settings.gmm_reg_covar
    )


def fit_sssl(
    source: FeatureSource,
    ids: np.ndarray,
    labels: np.ndarray,
    ctx: Context,
    seed: int,
    unlabelled: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[Head, list[dict]]:
    """SSSL on segments (warm-up, then GMM split + refinement + pseudo-labels + mixup);
    segments of music without labels (`unlabelled` ids) join the unlabelled branch. With
    `weights`, each labelled segment's terms in the losses are weighted (unlabelled: 1)."""
    unlabelled = np.zeros(0, np.int64) if unlabelled is None else unlabelled
    s = ctx.settings
    rng = np.random.default_rng(seed)
    head, optimizer = _new_head(source, ids, ctx, seed)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, s.epochs)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    with ctx.reporter.bar(s.epochs, "sssl") as bar:
        for epoch in range(s.epochs):
            if epoch < s.warmup_epochs:
                loss = _ce_epoch(head, optimizer, source, ids, labels, ctx, rng, weights)
                record = {"epoch": epoch, "phase": "warm-up", "loss": loss}
            else:
                w = clean_probability(head, source, ids, labels, s, _clips_of(source, ids, ctx))
                ramp = min(1.0, (epoch - s.warmup_epochs + 1) / max(s.rampup_epochs, 1))
                loss = _sssl_epoch(
                    head,
                    optimizer,
                    source,
                    ids,
                    labels,
                    w,
                    ramp,
                    ctx,
                    rng,
                    generator,
                    unlabelled,
                    weights,
                )
                labelled = float((w > s.tau).mean())
                record = {"epoch": epoch, "phase": "sssl", "loss": loss, "labelled": labelled}
            schedule.step()
            history.append(record)
            bar.advance(description=f"sssl {record['phase']} loss {loss:.3f}")
    return head, history


def _clips_of(source: FeatureSource, ids: np.ndarray, ctx: Context) -> np.ndarray | None:
    """The clip row of each segment item (None for clip-level items)."""
    return ctx.table.clip[ids] if source is ctx.segments else None


def _two_views(n: int, n_views: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two different augmented views per item (clean + one when there is only one)."""
    if n_views >= 3:
        a = rng.integers(1, n_views, size=n)
        b = (a - 1 + rng.integers(1, n_views - 1, size=n)) % (n_views - 1) + 1
        return a, b
    return np.zeros(n, np.int64), np.full(n, n_views - 1, np.int64)


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    p = p ** (1.0 / temperature)
    return p / p.sum(dim=1, keepdim=True)


def _sssl_epoch(
    head: Head,
    optimizer: torch.optim.Optimizer,
    source: FeatureSource,
    ids: np.ndarray,
    labels: np.ndarray,
    w: np.ndarray,
    ramp: float,
    ctx: Context,
    rng: np.random.Generator,
    generator: torch.Generator,
    unlabelled: np.ndarray,
    weights: np.ndarray | None = None,
) -> float:
    s = ctx.settings
    is_clean = w > s.tau
    if min(is_clean.sum(), (~is_clean).sum()) < s.min_split:  # no split: plain refinement
        is_clean = np.ones(len(ids), bool)
    clean, noisy = np.flatnonzero(is_clean), np.flatnonzero(~is_clean)
    # music without labels joins the noisy segments (no label, no weight: never a target)
    noisy = np.concatenate([noisy, len(ids) + np.arange(len(unlabelled))])
    ids = np.concatenate([ids, unlabelled])
    device = _device(source)
    onehot = F.one_hot(torch.from_numpy(labels), ctx.n_classes).float()
    onehot = F.pad(onehot, (0, 0, 0, len(unlabelled))).to(device)
    weight = torch.from_numpy(np.pad(w, (0, len(unlabelled)))).float().to(device)
    item_weight = None
    if weights is not None:  # music without labels weighs 1
        padded = np.pad(weights, (0, len(unlabelled)), constant_values=1.0)
        item_weight = torch.from_numpy(padded).float().to(device)
    total, steps = 0.0, 0
    for batch in _batches(len(clean), s.batch_size, rng):
        l_idx = clean[batch]
        u_idx = rng.choice(noisy, size=len(batch)) if len(noisy) else noisy
        loss = _sssl_step(
            head, source, ids, l_idx, u_idx, onehot, weight, ramp, ctx, rng, generator, item_weight
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


def _sssl_step(
    head: Head,
    source: FeatureSource,
    ids: np.ndarray,
    l_idx: np.ndarray,
    u_idx: np.ndarray,
    onehot: torch.Tensor,
    weight: torch.Tensor,
    ramp: float,
    ctx: Context,
    rng: np.random.Generator,
    generator: torch.Generator,
    item_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    s = ctx.settings
    both = np.concatenate([l_idx, u_idx])
    va, vb = _two_views(len(both), source.n_views, rng)
    _train_mode(head, source)
    xa, xb = source.features(ids[both], va), source.features(ids[both], vb)
    n_l = len(l_idx)
    targets = _guess(head, xa, xb, onehot[l_idx], weight[l_idx, None], n_l, s.temperature)
    _train_mode(head, source)
    # MixMatch: [labelled a, labelled b, unlabelled a, unlabelled b], mixed with a permutation
    inputs = torch.cat([xa[:n_l], xb[:n_l], xa[n_l:], xb[n_l:]])
    mixed_targets = torch.cat([targets[:n_l], targets[:n_l], targets[n_l:], targets[n_l:]])
    lam = float(rng.beta(s.alpha, s.alpha))
    lam = max(lam, 1.0 - lam)
    perm = torch.randperm(len(inputs), generator=generator).to(inputs.device)
    logits = head(lam * inputs + (1 - lam) * inputs[perm])
    mixed = lam * mixed_targets + (1 - lam) * mixed_targets[perm]
    row_weight = view_weight = None
    if item_weight is not None:  # a mixed row weighs as its two inputs do, mixed alike
        view_weight = item_weight[both]
        w_l, w_u = view_weight[:n_l], view_weight[n_l:]
        input_weight = torch.cat([w_l, w_l, w_u, w_u])  # the order of `inputs`
        row_weight = lam * input_weight + (1 - lam) * input_weight[perm]
    n_lab = 2 * n_l
    x_terms = -(F.log_softmax(logits[:n_lab], dim=1) * mixed[:n_lab]).sum(dim=1)
    loss = _batch_mean(x_terms, _at(row_weight, slice(0, n_lab)))
    if len(u_idx):
        u_terms = (F.softmax(logits[n_lab:], dim=1) - mixed[n_lab:]) ** 2
        loss_u = _batch_mean(u_terms, _at(row_weight, slice(n_lab, None)))
        loss = loss + ramp * s.lambda_u * loss_u
    if s.lambda_kl:
        loss = loss + s.lambda_kl * _symmetric_kl(head(xa), head(xb), view_weight)
    if s.prior_penalty:
        mean_p = F.softmax(logits, dim=1).mean(dim=0)
        prior = torch.full_like(mean_p, 1.0 / ctx.n_classes)
        loss = loss + (prior * torch.log(prior / mean_p.clamp_min(1e-12))).sum()
    return loss


@torch.no_grad()
def _guess(
    head: Head,
    xa: torch.Tensor,
    xb: torch.Tensor,
    onehot: torch.Tensor,
    w: torch.Tensor,
    n_l: int,
    temperature: float,
) -> torch.Tensor:
    """Targets: refined labels w*y + (1-w)*p for the labelled rows, pseudo-labels for the
    rest; p is the mean prediction over two views; both sharpened."""
    head.eval()
    p = (F.softmax(head(xa.detach()), dim=1) + F.softmax(head(xb.detach()), dim=1)) / 2
    refined = w * onehot + (1 - w) * p[:n_l]
    return torch.cat([sharpen(refined, temperature), sharpen(p[n_l:], temperature)])


def _symmetric_kl(
    logits_a: torch.Tensor, logits_b: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """KL between two views' predictions, both ways, averaged over the batch (each row
    weighted by `weight` where given)."""
    la, lb = F.log_softmax(logits_a, dim=1), F.log_softmax(logits_b, dim=1)
    if weight is None:
        kl_ab = F.kl_div(lb, la, log_target=True, reduction="batchmean")
        kl_ba = F.kl_div(la, lb, log_target=True, reduction="batchmean")
        return 0.5 * (kl_ab + kl_ba)
    kl_ab = F.kl_div(lb, la, log_target=True, reduction="none").sum(dim=1)
    kl_ba = F.kl_div(la, lb, log_target=True, reduction="none").sum(dim=1)
    return 0.5 * _batch_mean(kl_ab + kl_ba, weight)


# ------------------------------------------------------------------------------ stage 2


def fit_song_classifier(
    ctx: Context, rows: np.ndarray, seed: int, head: Head, method: Method = Method.SSSL
) -> SongClassifier:
    """Stage 2 on out-of-fold song features of the training clips (inner grouped folds):
    each inner fold's head (trained by `method`) predicts the songs it did not see.
    Without inner folds, `head` (trained on all `rows`) gives in-sample features."""
    s = ctx.settings
    probs: list[np.ndarray] = [np.empty(0)] * len(rows)
    state = ctx.segments.snapshot()
    for k, (inner_train, inner_test) in enumerate(_inner_folds(ctx, rows, seed)):
        if len(inner_train) == len(rows):  # in-sample
            ctx.segments.load(state)
            inner_head = head
        else:
            ids = ctx.table.ids_of(rows[inner_train])
            inner_head, _ = fit_segment_head(method, ctx, ids, seed + 1000 * (k + 1))
        inner_probs = segment_probabilities(inner_head, ctx, rows[inner_test])
        for i, p in zip(inner_test, inner_probs, strict=True):
            probs[i] = p
    features = clip_stage2_features(ctx, rows, probs)
    groups = np.array(ctx.dataset.groups)[rows]
    weights = _at(ctx.clip_weights(), rows)
    labels = ctx.clip_labels[rows]
    return fit_classifier(features, labels, ctx.n_classes, s.song_c, seed, groups, weights)


def fit_embedding_classifier(ctx: Context, rows: np.ndarray, seed: int) -> SongClassifier:
    """The song's embedding classifier, fitted on the training clips at `rows`."""
    features = clip_embedding_features(ctx, rows)
    labels, weights = ctx.clip_labels[rows], _at(ctx.clip_weights(), rows)
    c = ctx.settings.song_embedding_c
    return fit_classifier(features, labels, ctx.n_classes, c, seed, weights=weights)


def clip_embedding_features(ctx: Context, rows: np.ndarray) -> np.ndarray:
    """Per clip row, the mean and std of its segments' clean-view embeddings."""
    ids = ctx.table.ids_of(rows)
    per_clip = _by_clip(ctx, rows, ids, _on_clean_views(ctx.segments, ids, lambda x: x))
    return np.stack([EmbeddingMoments.of(e).features() for e in per_clip])


def clip_stage2_features(ctx: Context, rows: np.ndarray, probs: list[np.ndarray]) -> np.ndarray:
    """Stage 2's input for the clips at `rows`, with their extractor features if any."""
    return stage2_features(probs, None if ctx.extras is None else ctx.extras[rows])


def _inner_folds(ctx: Context, rows: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped stratified folds of the training clips; one in-sample 'fold' when stage2_folds
    is 0, or when the groups are too few for every inner training set to hold every class."""
    subset = ctx.dataset.subset(rows)
    k = min(ctx.settings.stage2_folds, len(set(subset.groups)))
    everything = np.arange(len(rows))
    if k < 2:
        return [(everything, everything)]
    folds = grouped_folds(subset, k, seed)
    labels = subset.labels
    if any(len(np.unique(labels[train])) < len(np.unique(labels)) for train, _ in folds):
        return [(everything, everything)]
    return folds
