"""The run loop: files checked by the policy, analysed by the pipeline, predicted on the
model's device, their tags written and cached, one outcome each.

Workers import this package, so nothing here imports torch at module level: inference
is imported when a model is loaded or applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mer_plugin.budget import DEFAULT_BUDGET, Budget
from mer_plugin.emotion import QUADRANTS
from mer_plugin.errors import MerError, SilentTrack
from mer_plugin.inference.card import CardFacts, Method
from mer_plugin.inference.find import ModelError
from mer_plugin.library import Library
from mer_plugin.tagging.analysis import Analysis, extras_key
from mer_plugin.tagging.interrupts import Interrupts
from mer_plugin.tagging.outcomes import Outcome, Status, TagOptions, TagRun
from mer_plugin.tagging.policy import Planned, Policy, moved, plan
from mer_plugin.tagging.results_cache import ResultCache, open_cache
from mer_plugin.tagging.workers import Pipeline
from mer_plugin.tags import (
    AROUSAL,
    CONFIDENCE,
    MODEL,
    MOOD,
    QUADRANT,
    VALENCE,
    TagError,
    write_tags,
)

if TYPE_CHECKING:
    from mer_plugin.inference import Model, Prediction
    from mer_plugin.inference.predict import SegmentBatcher, SongSegments


def load_for_tagging(
    name_or_folder: str | Path | None, device: str = "auto", precision: str = "auto"
) -> Model:
    """The model folder (or shipped name, None: the default) loaded on `device`, its
    backbone computing in `precision` (`inference.device.with_precision`)."""
    from mer_plugin.inference import load_model, resolve_model
    from mer_plugin.inference.device import on_device

    return on_device(load_model(resolve_model(name_or_folder)), device, precision)


class ModelOnDemand(CardFacts):
    """A model whose card is read now and whose weights (and torch) are loaded when a
    file first needs analysis: a rerun over a tagged library never loads them."""

    def __init__(
        self, name_or_folder: str | Path | None, device: str = "auto", precision: str = "auto"
    ) -> None:
        from mer_plugin.inference import read_card, resolve_model

        self.folder = resolve_model(name_or_folder)
        self.card = read_card(self.folder)
        self.device, self.precision = device, precision
        self._model: Model | None = None

    def load(self) -> Model:
        """The loaded model; `ModelError` when it cannot be had (weights, backbone, device)."""
        if self._model is None:
            try:
                self._model = load_for_tagging(self.folder, self.device, self.precision)
            except ModelError:
                raise
            except MerError as error:  # a missing backbone plugin or device
                raise ModelError(str(error)) from None
        return self._model


def model_release(name_or_folder: str | Path | None) -> str:
    """What MER_MODEL says of the model `load_for_tagging` would load, from its card
    alone: neither the weights nor torch are loaded."""
    from mer_plugin.inference import read_card, resolve_model

    return read_card(resolve_model(name_or_folder)).release


def model_id(model: Model | ModelOnDemand) -> str:
    """The model's release and a digest of its files: what the cache calls the same model."""
    digest = hashlib.sha256()
    for name in ("model.json", "model.safetensors"):
        with open(model.folder / name, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return f"{model.release} sha256:{digest.hexdigest()[:16]}"


def tag_fields(outcome: Outcome, release: str) -> dict[str, str | float]:
    """The tags for a predicted outcome; valence, arousal and quadrant where the model's
    classes are the four quadrants."""
    assert outcome.mood is not None and outcome.confidence is not None
    fields: dict[str, str | float] = {
        MOOD: outcome.mood,
        CONFIDENCE: outcome.confidence,
        MODEL: release,
    }
    if outcome.valence is not None and outcome.arousal is not None:
        fields[VALENCE] = outcome.valence
        fields[AROUSAL] = outcome.arousal
    if outcome.quadrant in QUADRANTS:
        fields[QUADRANT] = outcome.quadrant
    return fields


class Tagger:
    """The per-file steps of a run; `run` drives them through the pipeline."""

    def __init__(
        self,
        model: Model | ModelOnDemand,
        options: TagOptions,
        cache: ResultCache | None,
        check_tags: bool = True,
    ) -> None:
        self.source: CardFacts = model  # loaded, or on demand: its card known before loading
        self.options = options
        self.policy = Policy(model.release, model_id(model), options, cache)
        self.seconds: Counter = self.policy.seconds
        self.stop_signal: int | None = None  # the signal that ended the last `run` early
        self.check_tags = check_tags  # False: every readable file is analysed
        # files whose budget's first pass is kept while their other segments are analysed
        self.first_pass: dict[Path, tuple[Analysis, SongSegments]] = {}

    @cached_property
    def model(self) -> Model:
        """The model, loaded when the first file needs it."""
        model = self.source
        return model.load() if isinstance(model, ModelOnDemand) else model

    @cached_property
    def batcher(self) -> SegmentBatcher:
        return segment_batcher(self.model)

    def check(self, path: Path) -> Planned | Outcome:
        """The policy: what to do with a file, before anything is decoded."""
        return self.policy.check(path) if self.check_tags else plan(path)

    def finish(
        self, planned: Planned, analysis: Analysis | str, interrupts: Interrupts | None = None
    ) -> Outcome:
        """Predict from the analysis (Ctrl-C may cut it), then write the tags (unless a
        dry run), which Ctrl-C never cuts."""
        try:
            with interrupts.interruptible() if interrupts else contextlib.nullcontext():
                outcome = self.predict(planned, analysis)
            if outcome.status == Status.WOULD_TAG and not self.options.dry_run:
                outcome = self.write(planned, outcome)
            return outcome
        finally:
            self.policy.unlock(planned.path)

    def segments(self, planned: Planned, batch: np.ndarray) -> None:
        """A batch of a file's segments, through the model as it comes."""
        start = time.perf_counter()
        self.batcher.add(planned.path, batch)
        self.seconds["model"] += time.perf_counter() - start

    def needs_rest(self, planned: Planned, analysis: Analysis | str) -> bool:
        """Whether a budget's first pass over a file left its song a near tie: then what
        it gave is kept, and the file goes back for the segments it skipped."""
        if isinstance(analysis, str) or analysis.segments is not None:
            return False
        if analysis.rest or analysis.stride == 1 or not self.options.budget.near_tie:
            return False
        from mer_plugin.inference.predict import near_tie

        start = time.perf_counter()
        self.seconds["analyse"] += analysis.seconds
        streamed = self.batcher.finish(planned.path)
        self.first_pass[planned.path] = (analysis, streamed)
        tie = near_tie(self.model, streamed, analysis.extras, self.options.budget)
        self.seconds["model"] += time.perf_counter() - start
        return tie

    def predict(self, planned: Planned, analysis: Analysis | str) -> Outcome:
        """ "would tag" with the prediction, or "failed" with the reason."""
        path, previous = planned.path, planned.previous_mood
        first = self.first_pass.pop(path, None)
        if isinstance(analysis, str):
            self.batcher.discard(path)
            return predict_outcome(self.model, path, analysis, previous)
        start = time.perf_counter()
        try:
            if first is None:
                self.seconds["analyse"] += analysis.seconds
                streamed = self.batcher.finish(path) if analysis.segments is None else None
            else:
                analysis, streamed = self._both_passes(path, first, analysis)
            timeline = self.options.timeline
            outcome = predict_outcome(self.model, path, analysis, previous, streamed, timeline)
            if outcome.status == Status.WOULD_TAG:
                self.seconds["audio"] += analysis.duration
            return outcome
        except ModelError as error:  # the passes disagree: the file changed meanwhile
            return predict_outcome(self.model, path, str(error), previous)
        finally:
            self.seconds["model"] += time.perf_counter() - start

    def _both_passes(
        self, path: Path, first: tuple[Analysis, SongSegments], analysis: Analysis
    ) -> tuple[Analysis, SongSegments]:
        """A file's first pass, kept by `needs_rest`, joined with `analysis`: its second
        pass (the rest of the segments), or the first pass itself when that sufficed."""
        from mer_plugin.inference.predict import both_passes

        kept, segments = first
        if not analysis.rest:
            return kept, segments
        self.seconds["analyse"] += analysis.seconds
        joined = both_passes(segments, self.batcher.finish(path), kept.stride)
        return replace(kept, stride=1), joined

    def write(self, planned: Planned, outcome: Outcome) -> Outcome:
        """Write a predicted outcome's tags and cache it: "tagged", else why not."""
        start = time.perf_counter()
        fields = tag_fields(outcome, self.source.release)
        try:
            if (change := moved(planned)) is not None:
                return _ended(outcome, Status.SKIPPED, change)
            in_place = planned.info.st_nlink > 1  # hard links stay one file
            write_tags(planned.path, fields, keep_mtime=self.options.keep_mtime, in_place=in_place)
        except TagError as error:
            change = moved(planned)  # vanished or rewritten during the write itself
            if change:
                return _ended(outcome, Status.SKIPPED, change)
            return _ended(outcome, Status.FAILED, error.reason)
        finally:
            self.seconds["write"] += time.perf_counter() - start
        outcome.status = Status.TAGGED
        with contextlib.suppress(OSError):
            self.policy.store(planned.key, os.stat(planned.path), outcome)
        return outcome

    def run(self, files: Sequence[Path], record: Callable[[Outcome], None]) -> list[Outcome]:
        """Tag `files`, calling `record` with each outcome. Interrupted (Ctrl-C): the
        files not done, as "not done" outcomes; else an empty list."""
        jobs = max(1, min(self.options.jobs, len(files)))
        card = self.source
        clip, stall_s = card.method == Method.CLIP, self.options.stall_timeout
        extras, budget = extras_key(card.card), self.options.budget
        pipeline = Pipeline(card.spec, clip, extras, jobs, self.segments, stall_s, budget)
        waiting: deque[Path] = deque(files)
        current: list[Planned] = []  # the file between the pipeline and `record`
        with Interrupts() as interrupts:
            try:
                with pipeline:
                    while waiting or pipeline.busy:
                        self._fill(pipeline, waiting, record, interrupts)
                        if pipeline.busy:
                            planned, analysis = pipeline.next_done(interrupts)
                            current[:] = [planned]
                            if self.needs_rest(planned, analysis):
                                pipeline.submit(planned, rest=True)
                            else:
                                record(self.finish(planned, analysis, interrupts))
                            current.clear()
            except KeyboardInterrupt:
                self.stop_signal = interrupts.received or signal.SIGINT
                return _not_done([*current, *pipeline.in_flight()], waiting)
            finally:
                self.policy.unlock_all()
        return []

    def _fill(
        self, pipeline: Pipeline, waiting: deque, record: Callable, interrupts: Interrupts
    ) -> None:
        while waiting and pipeline.has_room:
            interrupts.check()
            checked = self.check(waiting.popleft())
            if isinstance(checked, Outcome):
                record(checked)
            else:
                pipeline.submit(checked)
                self.model  # noqa: B018  (loaded once, while the workers decode)


def _not_done(planned: list[Planned], waiting: deque[Path]) -> list[Outcome]:
    outcomes = {
        p.path: Outcome(p.path, Status.NOT_DONE, "interrupted", previous_mood=p.previous_mood)
        for p in planned
    }
    for path in waiting:
        outcomes.setdefault(path, Outcome(path, Status.NOT_DONE, "interrupted"))
    return list(outcomes.values())


def _unit(x: float) -> float:
    return min(1.0, max(0.0, float(x)))  # sums of probabilities can be 1 + 1e-16


def segment_batcher(model: Model) -> SegmentBatcher:
    from mer_plugin.inference.predict import SegmentBatcher

    return SegmentBatcher(model)


def predict_outcome(
    model: Model,
    path: Path,
    analysis: Analysis | str,
    previous_mood: str | None = None,
    streamed: SongSegments | None = None,
    timeline: bool = False,
) -> Outcome:
    """A file's analysis (or why it failed) through the model: "would tag" with the
    prediction (a partly decoded file says so in `reason`, its segment timeline when
    asked), "skipped" for a silent track, or "failed" with the reason. An analysis
    whose segments were streamed comes with what they gave (`SegmentBatcher.finish`)."""
    from mer_plugin.inference.predict import predict_segments, song_prediction

    if isinstance(analysis, str):
        return Outcome(path, Status.FAILED, analysis, previous_mood=previous_mood)
    a = analysis
    try:
        if a.segments is None:
            assert streamed is not None
            prediction = song_prediction(model, streamed, a.extras, a.stride)
        else:
            prediction = predict_segments(model, a.segments, a.frames, a.extras, a.stride)
    except SilentTrack as error:  # nothing to hear: no mood to write, nothing wrong
        return Outcome(path, Status.SKIPPED, str(error), previous_mood=previous_mood)
    except Exception as error:  # ModelError (no segments), a backbone's error
        reason = str(error) if isinstance(error, MerError) else f"model failed: {error}"
        return Outcome(path, Status.FAILED, reason, previous_mood=previous_mood)
    outcome = outcome_of(path, prediction, previous_mood)
    outcome.reason = analysis.note or ""
    outcome.timeline = prediction.timeline if timeline else None
    return outcome


def outcome_of(path: Path, p: Prediction, previous_mood: str | None = None) -> Outcome:
    """A prediction as the "would tag" outcome of `path` (numbers clipped to [0, 1])."""
    return Outcome(
        path,
        Status.WOULD_TAG,
        quadrant=p.label,
        mood=p.mood or p.label,
        valence=None if p.valence is None else _unit(p.valence),
        arousal=None if p.arousal is None else _unit(p.arousal),
        confidence=_unit(p.confidence),
        previous_mood=previous_mood,
    )


def _ended(outcome: Outcome, status: Status, reason: str) -> Outcome:
    outcome.status, outcome.reason = status, reason
    return outcome


def tag_library(
    library: Library,
    model: Model,
    options: TagOptions | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> TagRun:
    """Tag every file of a walked library (its problems are failed outcomes); see the
    package docstring. Outcomes come back in the library's order."""
    options = options or TagOptions()
    run = TagRun(model.release, options.dry_run)
    problems = [Outcome(p.path, Status.FAILED, p.reason) for p in library.problems]
    cache = open_cache(options, run.warnings)
    try:
        _run(Tagger(model, options, cache), run, library.files, problems, on_outcome)
    finally:
        if cache is not None:
            cache.close()
    return run


def predict_files(
    files: Sequence[Path],
    model: Model,
    jobs: int = 1,
    on_outcome: Callable[[Outcome], None] | None = None,
    timeline: bool = False,
    budget: Budget = DEFAULT_BUDGET,
) -> TagRun:
    """Each file's prediction through `tag_library`'s pipeline (decoding workers, Ctrl-C
    between steps), for an application that keeps the results itself (the beets plugin,
    `beetsplug/mer.py`): no tags are read or written, no results cache is used. Outcomes,
    in the files' order: "would tag" with the prediction (`tag_fields` turns it into
    tags; with `timeline`, its segments too), "failed" or "skipped" (vanished) with the
    reason, "not done" after Ctrl-C. The `budget` picks the segments, as for `mer tag`."""
    options = TagOptions(dry_run=True, jobs=jobs, use_cache=False, timeline=timeline, budget=budget)
    run = TagRun(model.release, dry_run=True)
    _run(Tagger(model, options, None, check_tags=False), run, files, [], on_outcome)
    return run


def _run(
    tagger: Tagger,
    run: TagRun,
    files: Sequence[Path],
    problems: list[Outcome],
    on_outcome: Callable[[Outcome], None] | None,
) -> None:
    """Run `tagger` over `files` into `run`, `problems` first; outcomes sorted in order."""
    start = time.perf_counter()

    def record(outcome: Outcome) -> None:
        run.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    for problem in problems:
        record(problem)
    left = tagger.run(files, record)
    run.interrupted = bool(left)
    run.stop_signal = tagger.stop_signal if left else None
    done = {outcome.path for outcome in run.outcomes}
    run.outcomes += [outcome for outcome in left if outcome.path not in done]
    run.seconds.update(tagger.seconds)
    run.seconds["wall"] = time.perf_counter() - start
    order = {path: i for i, path in enumerate([p.path for p in problems] + list(files))}
    run.outcomes.sort(key=lambda o: order.get(o.path, len(order)))
