"""`mer tag`'s engine: decide, analyse, predict and write, for a whole library, resumably.

    model = load_for_tagging("models/4q-sssl", device="auto")
    run = tag_library(walk([Path("~/Music").expanduser()]), model, TagOptions(jobs=2))
    run.outcomes  # one per file: tagged | would tag | skipped | failed | not done (+ reason)

Per file: `Tagger.check` applies the policy in the main process (results cache, tags
already written by this model, a mood the user set, read-only file); `analyse` decodes the
file and cuts its log-mel segments, in worker processes ('spawn': Numba's OpenMP layer is
not fork-safe) a few files ahead, or inline with one job; `Tagger.finish` predicts in the
main process on the model's device, checks the file did not change meanwhile, writes the
tags (`tags.write_tags`: a copy renamed over the original) and records the result in the
cache. One file's failure is its outcome; the run goes on.

Results cache: a SQLite file (`tag-results.sqlite3`) in the user cache folder
(``$MER_CACHE_DIR``, ``$XDG_CACHE_HOME/mer``, ``~/.cache/mer``), one row per tagged
file keyed by its real path, size, mtime and the model (name, version and a digest of its
files); each row is its own transaction, committed right after the file's rename.

Ctrl-C (SIGINT) stops the run between two steps, or at once while a file is decoded
inline or predicted; never inside a file's tag write and its cache row. So every file
is fully tagged (and cached) or untouched; worker processes are terminated, the run is
marked interrupted and the files not reached are listed as "not done". A later run
resumes: what was tagged is skipped.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, partial
from multiprocessing import Pipe, get_context
from multiprocessing.connection import Connection
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING

import numpy as np

from mer_plugin.errors import MerError
from mer_plugin.frontend import FrontEndSpec
from mer_plugin.library import Library
from mer_plugin.song_extras import SongExtras
from mer_plugin.tags import (
    AROUSAL,
    CONFIDENCE,
    MODEL,
    MOOD,
    QUADRANT,
    QUADRANTS,
    VALENCE,
    TagError,
    foreign_mood,
    read_tags,
    write_tags,
)

if TYPE_CHECKING:
    from mer_plugin.model import Model, Prediction

# outcome statuses
TAGGED = "tagged"
WOULD_TAG = "would tag"  # a dry run's prediction
SKIPPED = "skipped"
FAILED = "failed"
NOT_DONE = "not done"  # the run was interrupted first
# reasons to skip
CACHED = "already tagged by this model (cached)"
SAME_MODEL = "already tagged by this model"
OWN_MOOD = "has a mood mer did not write (--force replaces it)"
VANISHED = "vanished during the run"
CHANGED = "changed while being analysed (still being written?)"
WORKER_DIED = "the decoding process died on this file (decoder crash or out of memory)"

CACHE_FILE = "tag-results.sqlite3"


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class TagOptions:
    force: bool = False  # replace moods mer did not write, re-tag what this model tagged
    dry_run: bool = False  # write nothing (tags, cache); outcomes say what would change
    keep_mtime: bool = False
    jobs: int = 1  # decoding processes; 1 decodes in this process
    cache_dir: Path | None = None  # None: the user cache folder (`cache_folder`)
    use_cache: bool = True


@dataclass
class Outcome:
    """What happened to one file; the prediction's numbers where there is one."""

    path: Path
    status: str
    reason: str = ""
    quadrant: str | None = None
    mood: str | None = None
    valence: float | None = None
    arousal: float | None = None
    confidence: float | None = None
    previous_mood: str | None = None  # the mood the file had before this run

    def row(self) -> dict:
        """The report's row: plain values, the path printable whatever its bytes."""
        return {"path": shown(self.path), **{k: v for k, v in vars(self).items() if k != "path"}}


@dataclass
class TagRun:
    model: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: Counter = field(default_factory=Counter)  # check, analyse, model, write, wall
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def reasons(self, status: str) -> Counter:
        return Counter(o.reason for o in self.outcomes if o.status == status)

    def moods(self) -> Counter:
        done = (TAGGED, WOULD_TAG)
        return Counter(o.mood or o.quadrant for o in self.outcomes if o.status in done)

    def summary(self) -> dict:
        return {
            "tagged": self.count(TAGGED),
            "would tag": self.count(WOULD_TAG),
            "skipped": dict(self.reasons(SKIPPED)),
            "failed": dict(self.reasons(FAILED)),
            "not done": self.count(NOT_DONE),
            "moods": dict(self.moods()),
        }


@dataclass
class Planned:
    """A file that passed the checks, with what it looked like then."""

    path: Path
    key: bytes  # its real path: the cache's key
    info: os.stat_result
    previous_mood: str | None


@dataclass
class Analysis:
    """A worker's result: the file's log-mel segments, all frames for clip models, and the
    song's extractor features for models whose stage 2 takes them."""

    segments: np.ndarray | None  # None only as a worker sends it: its batches went ahead
    seconds: float
    frames: np.ndarray | None = None
    extras: np.ndarray | None = None


def shown(path: str | os.PathLike) -> str:
    """A path as text that can be printed: undecodable bytes as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# ------------------------------------------------------------------------------ the model


def load_for_tagging(name_or_folder: str | Path | None, device: str = "auto") -> Model:
    """The model folder (or shipped name, None: the default) loaded on `device`."""
    from mer_plugin.model import load_model, resolve_model

    return on_device(load_model(resolve_model(name_or_folder)), device)


def on_device(model: Model, device: str) -> Model:
    """The model with its backbone on `device` (auto | cpu | cuda); the small head stays
    on the CPU. `model.predict_segments` feeds CPU tensors, so the backbone is wrapped to
    move each batch there and its embeddings back."""
    import torch

    from mer_plugin.training.backbone import pick_device

    chosen = pick_device(device)
    if chosen.type == "cpu":
        return model

    class OnDevice(torch.nn.Module):
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module.to(chosen)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.module(x.to(chosen, non_blocking=True)).float().cpu()

    return replace(model, backbone=OnDevice(model.backbone).eval())


def model_id(model: Model) -> str:
    """The model's label and a digest of its files: what the cache calls the same model."""
    digest = hashlib.sha256()
    for name in ("model.json", "model.safetensors"):
        with open(model.folder / name, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return f"{model.label} sha256:{digest.hexdigest()[:16]}"


def tag_fields(outcome: Outcome, model_label: str) -> dict[str, str | float]:
    """The tags for a predicted outcome; valence, arousal and quadrant where the model's
    classes are the four quadrants."""
    assert outcome.mood is not None and outcome.confidence is not None
    fields: dict[str, str | float] = {
        MOOD: outcome.mood,
        CONFIDENCE: outcome.confidence,
        MODEL: model_label,
    }
    if outcome.valence is not None and outcome.arousal is not None:
        fields[VALENCE] = outcome.valence
        fields[AROUSAL] = outcome.arousal
    if outcome.quadrant in QUADRANTS:
        fields[QUADRANT] = outcome.quadrant
    return fields


def _unit(x: float) -> float:
    return min(1.0, max(0.0, float(x)))  # sums of probabilities can be 1 + 1e-16


# ------------------------------------------------------------------------------ analysis


ExtrasKey = tuple[tuple[str, tuple[str, ...]], ...]  # (extractor, features used) pairs


def extras_key(model: Model) -> ExtrasKey:
    """What a worker needs to compute the model's extractor features (picklable)."""
    card = model.extras.to_card() if model.extras else []
    return tuple((entry["name"], tuple(entry["features"])) for entry in card)


@cache
def _song_extras(key: ExtrasKey) -> SongExtras:
    return SongExtras.of([name for name, _ in key], dict(key))


def analyse(
    path: str,
    spec: FrontEndSpec,
    clip: bool,
    extras: ExtrasKey = (),
    send: Callable[[object], None] | None = None,
) -> Analysis | str:
    """Decode a file into what the model eats; a failure's reason. A worker passes `send`:
    segment batches go out as they are made (`_Gather` receives them), so the worker
    never holds a long file's segments, and the analysis it returns has none."""
    start = time.perf_counter()
    try:
        frames = song = None
        if clip:
            frames, segments = _clip_input(path, spec)
        else:
            segments = _segments(path, spec, send)
        if extras:
            song = _song_extras(extras)(path)
    except MerError as error:
        return getattr(error, "reason", str(error))
    except Exception as error:  # a decoder's bug must not stop the run
        return f"{type(error).__name__}: {error}"
    return Analysis(segments, time.perf_counter() - start, frames, song)


def _segments(
    path: str, spec: FrontEndSpec, send: Callable[[object], None] | None = None
) -> np.ndarray | None:
    """`features.file_segments` gathered into one array sized from the header's duration,
    so a long file's segments are held once rather than as batches plus their copy; with
    `send`, the expected count and then each batch are sent instead (None returned)."""
    from mer_plugin.audio import audio_info
    from mer_plugin.features import iter_segments

    duration = audio_info(path).duration or 0.0
    frames = duration * spec.sample_rate / spec.hop_length + 1
    expected = int(frames / spec.segment_hop_frames) + 2 if duration else 0
    if send is not None:
        send(("expect", expected))
        for batch in iter_segments(path, spec):
            send(batch)
        return None
    gather = _Gather(expected, spec)
    for batch in iter_segments(path, spec):
        gather.add(batch)
    return gather.array()


class _Gather:
    """Segment batches into one array allocated for the expected count (grown, doubling,
    if the header said less); untouched rows of the allocation never become resident."""

    def __init__(self, expected: int, spec: FrontEndSpec) -> None:
        self.shape = (spec.segment_frames, spec.n_mels)
        self.out = np.empty((expected, *self.shape), np.float32)
        self.n = 0

    def add(self, batch: np.ndarray) -> None:
        self.claim(len(batch))[:] = batch

    def claim(self, k: int) -> np.ndarray:
        """The next `k` rows, to be filled by the caller."""
        if self.n + k > len(self.out):
            grown = np.empty((max(self.n + k, 2 * len(self.out)), *self.shape), np.float32)
            grown[: self.n] = self.out[: self.n]
            self.out = grown
        self.n += k
        return self.out[self.n - k : self.n]

    def array(self) -> np.ndarray:
        return self.out[: self.n]


def _clip_input(path: str, spec: FrontEndSpec) -> tuple[np.ndarray, np.ndarray]:
    """All frames and their segments, as `model.predict_file` builds them for clip models."""
    from mer_plugin.features import clip_frames

    frames = clip_frames(path, spec)
    starts = range(0, len(frames) - spec.segment_frames + 1, spec.segment_hop_frames)
    return frames, np.stack([frames[s : s + spec.segment_frames] for s in starts])


def _init_worker() -> None:
    """Worker processes: one thread each, and Ctrl-C is the main process's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import numba

    numba.set_num_threads(1)


_POLL_S = 0.1  # how often a wait for the workers looks at Ctrl-C
CRASH_ENV = "MER_TEST_WORKER_CRASH"  # test hook: a worker dies on names containing it


def _serve(jobs: Connection, results: Connection) -> None:
    """A worker process: analyse each (path, spec, clip, extras) received until None or
    EOF, streaming segment batches and then the rest of the analysis to `results`."""
    _init_worker()
    crash_on = os.environ.get(CRASH_ENV)
    while True:
        try:
            job = jobs.recv()
        except EOFError:
            return
        if job is None:
            return
        if crash_on and crash_on in job[0]:
            os._exit(70)
        _send(results, analyse(*job, send=partial(_send, results)))


_CHUNK = 1 << 24  # bytes per message: a receive buffers one message before copying it
_ARRAYS = ("segments", "frames", "extras")  # the arrays of an `Analysis`, sent raw


def _send(conn: Connection, item: object) -> None:
    """One message of a worker's stream: ("expect", n), a batch of segments, then the
    `Analysis` (its arrays' raw bytes after a header) or a failure's reason."""
    if isinstance(item, np.ndarray):
        conn.send(("batch", item.shape, item.dtype.str))
        _send_raw(conn, item)
    elif isinstance(item, Analysis):
        arrays = {name: array for name in _ARRAYS if (array := getattr(item, name)) is not None}
        layouts = [(n, a.shape, a.dtype.str) for n, a in arrays.items()]
        conn.send(("analysis", item.seconds, layouts))
        for array in arrays.values():
            _send_raw(conn, array)
    else:
        conn.send(item)


def _send_raw(conn: Connection, array: np.ndarray) -> None:
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    for start in range(0, len(flat), _CHUNK):
        conn.send_bytes(flat[start : start + _CHUNK])


def _receive(conn: Connection, spec: FrontEndSpec) -> Analysis | str:
    """A worker's whole stream for one file, batches gathered as they arrive."""
    gather = None
    while True:
        message = conn.recv()
        if isinstance(message, str):
            return message
        if message[0] == "expect":
            gather = _Gather(message[1], spec)
        elif message[0] == "batch":  # received straight into the gathered array
            assert gather is not None
            _, shape, dtype = message
            _receive_into(conn, gather.claim(shape[0]))
        else:
            _, seconds, layouts = message
            arrays = {name: _receive_raw(conn, shape, dtype) for name, shape, dtype in layouts}
            if gather is not None:
                arrays["segments"] = gather.array()
            return Analysis(seconds=seconds, **arrays)


def _receive_raw(conn: Connection, shape: tuple, dtype: str) -> np.ndarray:
    """Raw bytes received straight into an array allocated here."""
    return _receive_into(conn, np.empty(shape, dtype))


def _receive_into(conn: Connection, array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1).view(np.uint8)
    for start in range(0, len(flat), _CHUNK):
        conn.recv_bytes_into(flat, start)
    return array


Done = SimpleQueue  # of (worker, its result): what the workers' reader threads report


class _Worker:
    """One worker process, a pipe each way, and a thread in this process that receives
    its stream as it comes (so the worker never waits on the model). A death is pinned on
    the file it was given."""

    def __init__(self, done: Done, spec: FrontEndSpec) -> None:
        self.jobs, child_jobs = Pipe(duplex=False)[::-1]
        self.results, child_results = Pipe(duplex=False)
        context = get_context("spawn")
        args = (child_jobs, child_results)
        self.process = context.Process(target=_serve, args=args, daemon=True)
        self.process.start()
        child_jobs.close()
        child_results.close()
        self.task: Planned | None = None
        self.reader = threading.Thread(target=self._read, args=(done, spec), daemon=True)
        self.reader.start()

    def _read(self, done: Done, spec: FrontEndSpec) -> None:
        while True:
            try:
                result = _receive(self.results, spec)
            except (EOFError, OSError):
                done.put((self, WORKER_DIED))  # or stopped: then nobody waits for it
                return
            done.put((self, result))

    def give(self, planned: Planned, args: tuple) -> None:
        self.task = planned
        self.jobs.send((str(planned.path), *args))

    def stop(self, at_once: bool) -> None:
        if not at_once:
            with contextlib.suppress(OSError):
                self.jobs.send(None)
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.reader.join(timeout=5)  # the pipe's other end is gone: the thread sees EOF
        self.jobs.close()
        self.results.close()


class _Pipeline:
    """Analyses files in worker processes, one file each and one more queued, or inline
    (one job). Ctrl-C is looked at while waiting; an interrupted run terminates them."""

    def __init__(self, spec: FrontEndSpec, clip: bool, extras: ExtrasKey, jobs: int) -> None:
        self.args = (spec, clip, extras)
        self.jobs = jobs
        self.queued: deque[Planned] = deque()
        self.workers: list[_Worker] = []
        self.ready: deque[tuple[Planned, Analysis | str]] = deque()
        self.done: Done = SimpleQueue()

    def __enter__(self) -> _Pipeline:
        if self.jobs > 1:
            self.workers = [self._new_worker() for _ in range(self.jobs)]
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        for worker in self.workers:
            worker.stop(at_once=kind is not None)

    @property
    def busy(self) -> int:
        return len(self.in_flight())

    @property
    def has_room(self) -> bool:
        return self.busy < (self.jobs + 1 if self.workers else 1)

    def in_flight(self) -> list[Planned]:
        working = [w.task for w in self.workers if w.task is not None]
        return [*self.queued, *working, *(planned for planned, _ in self.ready)]

    def submit(self, planned: Planned) -> None:
        self.queued.append(planned)
        self._dispatch()

    def _dispatch(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker.task is None and self.queued:
                try:
                    worker.give(self.queued[0], self.args)
                except OSError:  # died idle: replace it, give the file to the new one
                    worker.stop(at_once=True)
                    self.workers[i] = worker = self._new_worker()
                    worker.give(self.queued[0], self.args)
                self.queued.popleft()

    def next_done(self, interrupts: _Interrupts) -> tuple[Planned, Analysis | str]:
        """A finished file: inline, the next one; else the first any worker finishes."""
        if not self.workers:
            with interrupts.interruptible():
                result = analyse(str(self.queued[0].path), *self.args)
            return self.queued.popleft(), result
        while not self.ready:
            self._collect(interrupts)
        return self.ready.popleft()

    def _collect(self, interrupts: _Interrupts) -> None:
        """Wait a moment for a worker's result (looking at Ctrl-C); a dead worker is
        replaced."""
        try:
            worker, result = self.done.get(timeout=_POLL_S)
        except Empty:
            worker, result = None, None
        interrupts.check()
        if worker is None or worker.task is None or worker not in self.workers:
            return  # nothing yet, or a stopped worker's end of stream
        self.ready.append((worker.task, result))
        worker.task = None
        if result is WORKER_DIED:
            worker.stop(at_once=True)
            self.workers[self.workers.index(worker)] = self._new_worker()
        self._dispatch()

    def _new_worker(self) -> _Worker:
        return _Worker(self.done, self.args[0])


# ------------------------------------------------------------------------------ Ctrl-C


class _Interrupts:
    """SIGINT sets a flag that the run checks between steps (`check`); only inside
    `interruptible()` (decoding inline, predicting: no state shared with anything else) it
    raises KeyboardInterrupt at once. A tag write and its cache row are never cut."""

    def __init__(self) -> None:
        self.pending = False
        self.raising = False
        self._previous: object = None

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        self.pending = True
        if self.raising:
            self.raising = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self.check()
        self.raising = True
        try:
            yield
        finally:
            self.raising = False

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt


# ------------------------------------------------------------------------------ cache


def cache_folder(override: str | Path | None = None) -> Path:
    """``override``, else ``$MER_CACHE_DIR``, ``$XDG_CACHE_HOME/mer``, ``~/.cache/mer``."""
    if override:
        return Path(override)
    if env := os.environ.get("MER_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mer"


_SCHEMA = """CREATE TABLE IF NOT EXISTS tagged (
    path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    model TEXT NOT NULL, quadrant TEXT, mood TEXT, valence REAL, arousal REAL,
    confidence REAL, tagged_at REAL NOT NULL)"""
_RESULT = ("quadrant", "mood", "valence", "arousal", "confidence")


class ResultCache:
    """Which files this model tagged, as they were right after: real path, size, mtime."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if read_only:
            self.db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30)
            with self.db:
                self.db.execute(_SCHEMA)

    def lookup(self, key: bytes, info: os.stat_result, model: str) -> dict | None:
        """The cached result when the file is as this model left it, else None."""
        row = self.db.execute(
            f"SELECT {', '.join(_RESULT)} FROM tagged"
            " WHERE path = ? AND size = ? AND mtime_ns = ? AND model = ?",
            (key, info.st_size, info.st_mtime_ns, model),
        ).fetchone()
        return dict(zip(_RESULT, row, strict=True)) if row else None

    def store(self, key: bytes, info: os.stat_result, model: str, outcome: Outcome) -> None:
        values = [getattr(outcome, name) for name in _RESULT]
        with self.db:  # one transaction
            self.db.execute(
                "INSERT OR REPLACE INTO tagged VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, info.st_size, info.st_mtime_ns, model, *values, time.time()),
            )

    def close(self) -> None:
        self.db.close()


def open_cache(options: TagOptions, warnings: list[str]) -> ResultCache | None:
    """The results cache (read-only for a dry run), or None with a warning if unusable."""
    if not options.use_cache:
        return None
    path = cache_folder(options.cache_dir) / CACHE_FILE
    if options.dry_run and not path.is_file():
        return None
    try:
        return ResultCache(path, read_only=options.dry_run)
    except (OSError, sqlite3.Error) as error:
        warnings.append(f"results cache {shown(path)} unusable ({error}); running without it")
        return None


# ------------------------------------------------------------------------------ the run


class Tagger:
    """The policy and the per-file steps of a run; `run` drives them through the pipeline."""

    def __init__(self, model: Model, options: TagOptions, cache: ResultCache | None) -> None:
        self.model = model
        self.options = options
        self.cache = cache
        self.model_id = model_id(model)
        self.seconds: Counter = Counter()

    # --------------------------------------------------------------- before analysis

    def check(self, path: Path) -> Planned | Outcome:
        """The policy: what to do with a file, before anything is decoded."""
        start = time.perf_counter()
        try:
            return self._check(path)
        finally:
            self.seconds["check"] += time.perf_counter() - start

    def _check(self, path: Path) -> Planned | Outcome:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return Outcome(path, SKIPPED, VANISHED)
        except OSError as error:
            return Outcome(path, FAILED, f"cannot read: {error.strerror or error}")
        key = os.fsencode(os.path.realpath(path))
        force = self.options.force
        if not force and (hit := self._cached(key, info)) is not None:
            return Outcome(path, SKIPPED, CACHED, **hit, previous_mood=hit["mood"])
        try:
            tags = read_tags(path)
        except TagError as error:
            return Outcome(path, FAILED, _unreadable(path, error))
        previous = tags.get(MOOD)
        if not force and tags.get(MODEL) == self.model.label:
            return self._already_tagged(path, key, info, tags)
        if not force and foreign_mood(tags):
            return Outcome(path, SKIPPED, OWN_MOOD, previous_mood=previous)
        if reason := read_only(path):
            return Outcome(path, FAILED, reason, previous_mood=previous)
        return Planned(path, key, info, previous)

    def _cached(self, key: bytes, info: os.stat_result) -> dict | None:
        if self.cache is None:
            return None
        try:
            return self.cache.lookup(key, info, self.model_id)
        except sqlite3.Error:
            return None

    def _already_tagged(self, path: Path, key: bytes, info: os.stat_result, tags: dict) -> Outcome:
        """Skipped: tagged by this model in a run whose cache row is missing; record it."""
        outcome = Outcome(path, SKIPPED, SAME_MODEL, previous_mood=tags.get(MOOD))
        outcome.mood, outcome.quadrant = tags.get(MOOD), tags.get(QUADRANT)
        for name, tag in (("valence", VALENCE), ("arousal", AROUSAL), ("confidence", CONFIDENCE)):
            with contextlib.suppress(KeyError, ValueError):
                setattr(outcome, name, float(tags[tag]))
        self._store(key, info, outcome)
        return outcome

    # --------------------------------------------------------------- after analysis

    def finish(self, planned: Planned, analysis: Analysis | str) -> Outcome:
        """Predict from the analysis, then write the tags (unless a dry run)."""
        outcome = self.predict(planned, analysis)
        if outcome.status == WOULD_TAG and not self.options.dry_run:
            outcome = self.write(planned, outcome)
        return outcome

    def predict(self, planned: Planned, analysis: Analysis | str) -> Outcome:
        """ "would tag" with the prediction, or "failed" with the reason."""
        from mer_plugin.model import predict_segments

        if isinstance(analysis, str):
            return Outcome(planned.path, FAILED, analysis, previous_mood=planned.previous_mood)
        self.seconds["analyse"] += analysis.seconds
        start = time.perf_counter()
        try:
            prediction = predict_segments(
                self.model, analysis.segments, analysis.frames, analysis.extras
            )
        except Exception as error:  # ModelError (no segments), a backbone's error
            reason = str(error) if isinstance(error, MerError) else f"model failed: {error}"
            return Outcome(planned.path, FAILED, reason, previous_mood=planned.previous_mood)
        finally:
            self.seconds["model"] += time.perf_counter() - start
        return _predicted(planned, prediction)

    def write(self, planned: Planned, outcome: Outcome) -> Outcome:
        """Write a predicted outcome's tags and cache it: "tagged", else why not."""
        start = time.perf_counter()
        fields = tag_fields(outcome, self.model.label)
        try:
            if (moved := _moved(planned)) is not None:
                return _skipped(outcome, moved)
            write_tags(planned.path, fields, keep_mtime=self.options.keep_mtime)
        except TagError as error:
            moved = _moved(planned)  # vanished or rewritten during the write itself
            return _skipped(outcome, moved) if moved else _failed(outcome, error.reason)
        finally:
            self.seconds["write"] += time.perf_counter() - start
        outcome.status = TAGGED
        with contextlib.suppress(OSError):
            self._store(planned.key, os.stat(planned.path), outcome)
        return outcome

    def _store(self, key: bytes, info: os.stat_result, outcome: Outcome) -> None:
        if self.cache is None or self.options.dry_run:
            return
        with contextlib.suppress(sqlite3.Error):  # the tags are written; a rerun sees them
            self.cache.store(key, info, self.model_id, outcome)

    # --------------------------------------------------------------- the loop

    def run(self, files: Sequence[Path], record: Callable[[Outcome], None]) -> list[Outcome]:
        """Tag `files`, calling `record` with each outcome. Interrupted (Ctrl-C): the
        files not done, as "not done" outcomes; else an empty list."""
        jobs = max(1, min(self.options.jobs, len(files)))
        model = self.model
        pipeline = _Pipeline(model.spec, model.method == "clip", extras_key(model), jobs)
        waiting: deque[Path] = deque(files)
        current: list[Planned] = []  # the file between the pipeline and `record`
        with _Interrupts() as interrupts:
            try:
                with pipeline:
                    while waiting or pipeline.busy:
                        self._fill(pipeline, waiting, record, interrupts)
                        if pipeline.busy:
                            planned, analysis = pipeline.next_done(interrupts)
                            current[:] = [planned]
                            self._step(planned, analysis, record, interrupts)
                            current.clear()
            except KeyboardInterrupt:
                return _not_done([*current, *pipeline.in_flight()], waiting)
        return []

    def _step(
        self, planned: Planned, analysis: Analysis | str, record: Callable, interrupts: _Interrupts
    ) -> None:
        with interrupts.interruptible():
            outcome = self.predict(planned, analysis)
        if outcome.status == WOULD_TAG and not self.options.dry_run:
            outcome = self.write(planned, outcome)
        record(outcome)

    def _fill(
        self, pipeline: _Pipeline, waiting: deque, record: Callable, interrupts: _Interrupts
    ) -> None:
        while waiting and pipeline.has_room:
            interrupts.check()
            checked = self.check(waiting.popleft())
            if isinstance(checked, Outcome):
                record(checked)
            else:
                pipeline.submit(checked)


def _not_done(planned: list[Planned], waiting: deque[Path]) -> list[Outcome]:
    outcomes = {
        p.path: Outcome(p.path, NOT_DONE, "interrupted", previous_mood=p.previous_mood)
        for p in planned
    }
    for path in waiting:
        outcomes.setdefault(path, Outcome(path, NOT_DONE, "interrupted"))
    return list(outcomes.values())


def _unreadable(path: Path, error: TagError) -> str:
    """Why a file's tags cannot be read: the decoder's reason when it cannot read the file
    either (clearer: "empty file", "not a recognised audio file"), else mutagen's."""
    from mer_plugin.audio import audio_info

    try:
        audio_info(path)
    except MerError as audio_error:
        return getattr(audio_error, "reason", str(audio_error))
    return error.reason


def _moved(planned: Planned) -> str | None:
    """VANISHED or CHANGED when the file is not as `check` saw it, else None."""
    try:
        now = os.stat(planned.path)
    except FileNotFoundError:
        return VANISHED
    before = planned.info
    same = (now.st_ino, now.st_size, now.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    return None if same else CHANGED


def _predicted(planned: Planned, p: Prediction) -> Outcome:
    return Outcome(
        planned.path,
        WOULD_TAG,
        quadrant=p.label,
        mood=p.mood or p.label,
        valence=None if p.valence is None else _unit(p.valence),
        arousal=None if p.arousal is None else _unit(p.arousal),
        confidence=_unit(p.confidence),
        previous_mood=planned.previous_mood,
    )


def _skipped(outcome: Outcome, reason: str) -> Outcome:
    outcome.status, outcome.reason = SKIPPED, reason
    return outcome


def _failed(outcome: Outcome, reason: str) -> Outcome:
    outcome.status, outcome.reason = FAILED, reason
    return outcome


def read_only(path: Path) -> str | None:
    """Why the file cannot be rewritten (tags.py's rule: no write bit is read-only, even
    for root), or None; checked before decoding so a read-only library costs no decoding."""
    real = Path(os.path.realpath(path))
    try:
        for target, access, what in (
            (real, os.W_OK, "file"),
            (real.parent, os.W_OK | os.X_OK, "folder"),
        ):
            if not (os.stat(target).st_mode & 0o222 and os.access(target, access)):
                if os.statvfs(target).f_flag & os.ST_RDONLY:
                    return "read-only file system"
                return f"{what} is read-only (permission denied)"
    except OSError:
        return None  # vanished: the write will say so
    return None


def tag_library(
    library: Library,
    model: Model,
    options: TagOptions = TagOptions(),
    on_outcome: Callable[[Outcome], None] | None = None,
) -> TagRun:
    """Tag every file of a walked library (its problems are failed outcomes); see the
    module docstring. Outcomes come back in the library's order."""
    run = TagRun(model.label, options.dry_run)
    start = time.perf_counter()

    def record(outcome: Outcome) -> None:
        run.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    for problem in library.problems:
        record(Outcome(problem.path, FAILED, problem.reason))
    cache = open_cache(options, run.warnings)
    try:
        tagger = Tagger(model, options, cache)
        left = tagger.run(library.files, record)
    finally:
        if cache is not None:
            cache.close()
    run.interrupted = bool(left)
    done = {outcome.path for outcome in run.outcomes}
    run.outcomes += [outcome for outcome in left if outcome.path not in done]
    run.seconds.update(tagger.seconds)
    run.seconds["wall"] = time.perf_counter() - start
    order = {path: i for i, path in enumerate([p.path for p in library.problems] + library.files)}
    run.outcomes.sort(key=lambda o: order.get(o.path, len(order)))
    return run


# ------------------------------------------------------------------------------ reports

REPORT_COLUMNS = ("path", "status", "reason", *_RESULT, "previous_mood")
REPORT_SUFFIXES = (".json", ".csv")


def write_report(run: TagRun, path: Path) -> None:
    """Every file with its result or error, as JSON or CSV (by the extension); written to
    a temporary sibling and renamed, so a report is whole or absent."""
    rows = [outcome.row() for outcome in run.outcomes]
    if path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        meta = {"model": run.model, "dry_run": run.dry_run, "interrupted": run.interrupted}
        text = json.dumps({**meta, "summary": run.summary(), "files": rows}, indent=1) + "\n"
    part = path.with_name(f".{path.name}.part")
    try:
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
