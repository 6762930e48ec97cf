"""Decoding in worker processes: the protocol, one worker, and the pool of them.

Workers are spawned ('spawn': Numba's OpenMP layer is not fork-safe), run one thread
each, leave Ctrl-C to the main process, and never import torch. A worker streams a
file's segment batches as they are made; a reader thread per worker in the main process
receives them into a short queue, from which the main thread feeds them to the model:
no process ever holds a long file's segments, and a worker that runs ahead of the model
waits (the queue and the pipe are full). A death is pinned on the file it was given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from multiprocessing import Pipe, get_context
from multiprocessing.connection import Connection
from queue import Empty, Full, Queue

import numpy as np

from mer_plugin import plugins
from mer_plugin.budget import FULL, Budget
from mer_plugin.frontend import FrontEndSpec
from mer_plugin.heap import RELEASE_EVERY, release_free_memory
from mer_plugin.logs import show_logs
from mer_plugin.tagging.analysis import Analysis, ExtrasKey, analyse
from mer_plugin.tagging.interrupts import Interrupts
from mer_plugin.tagging.outcomes import WORKER_DIED
from mer_plugin.tagging.policy import Planned


def _init_worker() -> None:
    """Worker processes: one thread each; Ctrl-C and the plugins' warnings are the main
    process's to handle (it loaded the same plugins and reported them once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    show_logs()  # --verbose reaches the workers through the environment
    logging.getLogger(plugins.__name__).setLevel(logging.ERROR)
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    import numba

    numba.set_num_threads(1)


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored while a worker is spawned: an ignored signal stays ignored across
    exec, so the child never sees a Ctrl-C meant for the main process, not even while it
    imports (which once printed tracebacks)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_with(parent: int) -> None:
    """A worker's watch: when the main process is gone (killed with -9, say), leave at
    once and quietly, even in the middle of decoding a file."""
    while os.getppid() == parent:
        time.sleep(_POLL_S)
    os._exit(0)


_POLL_S = 0.1  # how often a wait for the workers looks at Ctrl-C
WORKER_CRASH_ENV = "MER_TEST_WORKER_CRASH"  # test hook: a worker dies on names containing it
WORKER_STOP_ENV = "MER_TEST_WORKER_STOP"  # test hook: a worker stops itself (SIGSTOP) on them


def _serve(jobs: Connection, results: Connection) -> None:
    """A worker process: analyse each (path, *Pipeline.args) received until None or EOF,
    streaming segment batches and then the rest of the analysis to `results`."""
    _init_worker()
    crash_on = os.environ.get(WORKER_CRASH_ENV)
    stop_on = os.environ.get(WORKER_STOP_ENV)
    while True:
        try:
            job = jobs.recv()
            if job is None:
                return
            if crash_on and crash_on in job[0]:
                os._exit(70)
            if stop_on and stop_on in job[0]:
                os.kill(os.getpid(), signal.SIGSTOP)
            _send(results, analyse(*job, send=_streamer(results)))
        except (EOFError, BrokenPipeError, ConnectionResetError):  # the main process is gone
            os._exit(0)


def _streamer(results: Connection) -> Callable[[np.ndarray], None]:
    """Sends a file's segment batches as they are made, handing freed heap memory back
    to the OS every few (a long file's decoding would otherwise keep some)."""
    sent = 0

    def send(batch: np.ndarray) -> None:
        nonlocal sent
        _send(results, batch)
        sent += 1
        if sent % RELEASE_EVERY == 0:
            release_free_memory()

    return send


_CHUNK = 1 << 24  # bytes per message: a receive buffers one message before copying it
_ARRAYS = ("segments", "frames", "extras")  # the arrays of an `Analysis`, sent raw


def _send(conn: Connection, item: object) -> None:
    """One message of a worker's stream: a batch of segments, then the `Analysis` (its
    arrays' raw bytes after a header) or a failure's reason."""
    if isinstance(item, np.ndarray):
        conn.send(("batch", item.shape, item.dtype.str))
        _send_raw(conn, item)
    elif isinstance(item, Analysis):
        arrays = {name: array for name in _ARRAYS if (array := getattr(item, name)) is not None}
        layouts = [(n, a.shape, a.dtype.str) for n, a in arrays.items()]
        facts = (item.seconds, item.note, item.stride, item.rest, item.duration)
        conn.send(("analysis", layouts, *facts))
        for array in arrays.values():
            _send_raw(conn, array)
    else:
        conn.send(item)


def _send_raw(conn: Connection, array: np.ndarray) -> None:
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    for start in range(0, len(flat), _CHUNK):
        conn.send_bytes(flat[start : start + _CHUNK])


def _receive(
    conn: Connection, heard: Callable[[], None], deliver: Callable[[np.ndarray], None]
) -> Analysis | str:
    """A worker's whole stream for one file: each batch of segments to `deliver` as it
    arrives, then the analysis (or the failure) returned; `heard` is called on each
    message (the watchdog's sign of progress)."""
    while True:
        message = conn.recv()
        heard()
        if isinstance(message, str):
            return message
        if message[0] == "batch":
            _, shape, dtype = message
            deliver(_receive_raw(conn, shape, dtype))
        else:
            _, layouts, seconds, note, stride, rest, duration = message
            arrays = {name: _receive_raw(conn, shape, dtype) for name, shape, dtype in layouts}
            segments = arrays.pop("segments", None)  # None: streamed
            facts = {"note": note, "stride": stride, "rest": rest, "duration": duration}
            return Analysis(segments, seconds, **facts, **arrays)


def _receive_raw(conn: Connection, shape: tuple, dtype: str) -> np.ndarray:
    """Raw bytes received straight into an array allocated here."""
    array = np.empty(shape, dtype)
    flat = array.reshape(-1).view(np.uint8)
    for start in range(0, len(flat), _CHUNK):
        conn.recv_bytes_into(flat, start)
    return array


# what the workers' reader threads report, in order: (worker, a batch of its file's
# segments) and (worker, the file's analysis or failure); bounded, so that a worker
# decoding ahead of the model waits rather than filling memory
Done = Queue
_QUEUED_BATCHES = 8  # per worker


class _Worker:
    """One worker process, a pipe each way, and a thread in this process that receives
    its stream as it comes into the pipeline's queue. A death is pinned on
    the file it was given."""

    def __init__(self, done: Done) -> None:
        self.jobs, child_jobs = Pipe(duplex=False)[::-1]
        self.results, child_results = Pipe(duplex=False)
        context = get_context("spawn")
        args = (child_jobs, child_results)
        self.process = context.Process(target=_serve, args=args, daemon=True)
        with _sigint_ignored():  # a Ctrl-C while the child starts up is not its to see
            self.process.start()
        child_jobs.close()
        child_results.close()
        self.task: Planned | None = None
        self.heard = time.monotonic()  # when the worker last sent something, or got a file
        self.stopping = threading.Event()
        self.reader = threading.Thread(target=self._read, args=(done,), daemon=True)
        self.reader.start()

    def _read(self, done: Done) -> None:
        def report(item: object) -> None:  # waits while the queue is full, unless stopping
            while not self.stopping.is_set():
                with contextlib.suppress(Full):
                    done.put((self, item), timeout=_POLL_S)
                    return

        while not self.stopping.is_set():
            try:
                result = _receive(self.results, self._heard, report)
            except (EOFError, OSError):
                report(WORKER_DIED)  # or stopped: then nobody waits for it
                return
            report(result)

    def _heard(self) -> None:
        self.heard = time.monotonic()

    def give(self, planned: Planned, args: tuple, rest: bool) -> None:
        self.task = planned
        self.heard = time.monotonic()
        self.jobs.send((str(planned.path), *args, rest))

    def stalled(self, limit_s: float) -> bool:
        """Working on a file and silent for more than `limit_s` (stuck, or stopped)."""
        return self.task is not None and time.monotonic() - self.heard > limit_s

    def stop(self, at_once: bool) -> None:
        self.stopping.set()
        if not at_once:
            with contextlib.suppress(OSError):
                self.jobs.send(None)
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()  # SIGKILL: a stopped (SIGSTOP) worker ends too
            self.process.join(timeout=5)
        self.reader.join(timeout=5)  # the pipe's other end is gone: the thread sees EOF
        self.jobs.close()
        self.results.close()


Segments = Callable[[Planned, np.ndarray], None]  # where a file's segment batches go


class Pipeline:
    """Analyses files in worker processes, one file each and one more queued, or inline
    (one job). Each file's segment batches go to `segments` (the model) in the main
    thread as they come; a file is done when its analysis (without segments) comes back.
    Ctrl-C is looked at while waiting; an interrupted run terminates the workers."""

    def __init__(
        self,
        spec: FrontEndSpec,
        clip: bool,
        extras: ExtrasKey,
        jobs: int,
        segments: Segments,
        stall_s: float = 120,
        budget: Budget = FULL,
    ) -> None:
        self.args = (spec, clip, extras, budget)
        self.jobs = jobs
        self.segments = segments
        self.stall_s = stall_s  # a worker silent this long on a file is replaced
        # files waiting for a worker; True: for the segments their budget's first pass skipped
        self.queued: deque[tuple[Planned, bool]] = deque()
        self.workers: list[_Worker] = []
        self.ready: deque[tuple[Planned, Analysis | str]] = deque()
        self.done: Done = Queue(maxsize=_QUEUED_BATCHES * jobs)

    def __enter__(self) -> Pipeline:
        return self  # workers start with the first file: a run with nothing to do has none

    def __exit__(self, kind: type | None, *_: object) -> None:
        for worker in self.workers:
            worker.stop(at_once=kind is not None)

    @property
    def busy(self) -> int:
        return len(self.in_flight())

    @property
    def has_room(self) -> bool:
        return self.busy < (self.jobs + 1 if self.jobs > 1 else 1)

    def in_flight(self) -> list[Planned]:
        working = [w.task for w in self.workers if w.task is not None]
        waiting = (planned for planned, _ in self.queued)
        return [*waiting, *working, *(planned for planned, _ in self.ready)]

    def submit(self, planned: Planned, rest: bool = False) -> None:
        """Queue a file; with `rest`, for the segments its budget's first pass skipped
        (ahead of the files waiting, whose results it holds up)."""
        if self.jobs > 1 and not self.workers:
            self.workers = [self._new_worker() for _ in range(self.jobs)]
        if rest:
            self.queued.appendleft((planned, True))
        else:
            self.queued.append((planned, False))
        self._dispatch()

    def _dispatch(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker.task is None and self.queued:
                planned, rest = self.queued[0]
                try:
                    worker.give(planned, self.args, rest)
                except OSError:  # died idle: replace it, give the file to the new one
                    worker.stop(at_once=True)
                    self.workers[i] = worker = self._new_worker()
                    worker.give(planned, self.args, rest)
                self.queued.popleft()

    def next_done(self, interrupts: Interrupts) -> tuple[Planned, Analysis | str]:
        """A finished file: inline, the next one; else the first any worker finishes."""
        if self.jobs == 1:
            planned, rest = self.queued[0]
            with interrupts.interruptible():
                send = partial(self.segments, planned)
                result = analyse(str(planned.path), *self.args, rest, send=send)
            self.queued.popleft()
            return planned, result
        while not self.ready:
            self._collect(interrupts)
        return self.ready.popleft()

    def _collect(self, interrupts: Interrupts) -> None:
        """Wait a moment for what a worker sent: a batch of segments goes to the model, a
        file's end makes it ready; a dead worker is replaced."""
        try:
            worker, result = self.done.get(timeout=_POLL_S)
        except Empty:
            worker, result = None, None
        interrupts.check()
        if worker is None:
            self._replace_stalled()
            return
        if worker.task is None or worker not in self.workers:
            return  # a stopped worker's end of stream
        if isinstance(result, np.ndarray):
            self.segments(worker.task, result)
            return
        self.ready.append((worker.task, result))
        worker.task = None
        if result is WORKER_DIED:
            worker.stop(at_once=True)
            self.workers[self.workers.index(worker)] = self._new_worker()
        self._dispatch()

    def _replace_stalled(self) -> None:
        """The watchdog: a file whose worker made no progress for `stall_s` fails, and
        the worker is killed and replaced."""
        for i, worker in enumerate(self.workers):
            if worker.stalled(self.stall_s):
                reason = f"no progress for {self.stall_s:g} s (a stuck decoder?); skipped"
                self.ready.append((worker.task, reason))
                worker.task = None
                worker.stop(at_once=True)
                self.workers[i] = self._new_worker()
        self._dispatch()

    def _new_worker(self) -> _Worker:
        return _Worker(self.done)
