"""`mer tag`'s engine in process: the walk, the policy, the cache, the odd cases, the reports.

Real files in every format (conftest's encoders), a real model trained in a second
(tiny_model.py), tags read back with mutagen and tinytag.
"""

from __future__ import annotations

import csv
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mutagen.flac import FLAC
from tiny_model import train_tiny_model
from tinytag import TinyTag

from mer_plugin.audio import open_stream
from mer_plugin.budget import DEFAULT_BUDGET, FULL, Budget
from mer_plugin.errors import AudioError, TagError
from mer_plugin.hookspecs import TagWriter, hookimpl
from mer_plugin.inference import Model, predict_file
from mer_plugin.library import taggable_extensions, walk
from mer_plugin.plugins import get_plugins
from mer_plugin.safe_write import CRASH_IN_WRITE_BACK_ENV, journal_of
from mer_plugin.tagging import (
    BUSY,
    CACHE_FILE,
    CACHED,
    CHANGED,
    HARD_LINKED,
    OWN_MOOD,
    SAME_MODEL,
    VANISHED,
    WORKER_DIED,
    HardLinks,
    Status,
    Tagger,
    TagOptions,
    TagRun,
    analyse,
    load_for_tagging,
    predict_files,
    skip_reason,
    tag_fields,
    tag_library,
    write_report,
)
from mer_plugin.tagging.workers import WORKER_CRASH_ENV, WORKER_STOP_ENV
from mer_plugin.tags import FIELD_NAMES, read_tags

MAKE = Callable[..., Path]
FORMATS = ("wav", "aiff", "flac", "mp3", "ogg", "opus", "m4a", "mp4")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return load_for_tagging(train_tiny_model(tmp_path_factory.mktemp("tiny")), "cpu")


@pytest.fixture
def options(tmp_path: Path) -> TagOptions:
    return TagOptions(jobs=1, cache_dir=tmp_path / "cache")


def song(make_audio: MAKE, name: str, seconds: float = 3.5, **kw) -> Path:
    rate = 48000 if name.endswith(".opus") else 44100
    return make_audio(name, seconds, sample_rate=rate, **kw)


def tag(paths: list[Path], model: Model, options: TagOptions, **changes) -> TagRun:
    return tag_library(walk(paths), model, replace(options, **changes))


def by_name(run: TagRun) -> dict[str, object]:
    return {o.path.name: o for o in run.outcomes}


def decoded(path: Path) -> np.ndarray:
    return np.concatenate(list(open_stream(path, 16000)))


def tinytag_fields(path: Path) -> dict[str, str]:
    """mer's fields as tinytag (its own parser) reads them."""
    other = TinyTag.get(path).other
    mood = other.get("tmoo") or other.get("mood")
    found = {k: other[k.lower()][0] for k in ("MER_VALENCE", "MER_MODEL") if k.lower() in other}
    return {"mood": mood[0], **found} if mood else found


# ------------------------------------------------------------------------------ walk


def test_walk_finds_each_taggable_file_once_in_order(make_audio: MAKE, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    for name in ("b.flac", "A.MP3", "sub/c.m4a", ".hidden.flac", "x/.y/z.ogg", "@eaDir/t.mp3"):
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        make_audio("tmp.wav", 0.2).rename(lib / name)
    for name in ("cover.jpg", "notes.txt", "old.wma"):  # wma: tags, but no decoder
        (lib / name).write_bytes(b"x")
    stale = lib / ".b.flac.mer-tmp-abcd1234.flac"  # left by a killed run
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600,) * 2)
    (lib / "sub" / "loop").symlink_to("..")  # a symlink loop
    (lib / "alias.flac").symlink_to("b.flac")  # the same file twice
    os.link(lib / "b.flac", lib / "sub" / "hard.flac")  # and a hard link
    (lib / "sub" / "dangling.mp3").symlink_to("nowhere.mp3")
    assert walk([lib], clean=False).files and stale.exists()  # a dry run cleans nothing
    found = walk([lib, lib / "sub" / "c.m4a", lib / ".hidden.flac", lib / "notes.txt"])
    names = [str(p.relative_to(lib)) for p in found.files]
    assert names == ["A.MP3", "alias.flac", "sub/c.m4a", ".hidden.flac"]
    assert [(p.path.name, p.reason[:22]) for p in found.problems] == [
        ("notes.txt", "unsupported format .tx")
    ]
    assert not stale.exists()
    assert found.ignored == {".wma": 1}  # walked past, and counted for the summary
    assert {".mp3", ".flac", ".m4a", ".opus", ".wav", ".aiff"} <= taggable_extensions()
    assert ".wma" not in taggable_extensions()


# ------------------------------------------------------------------------------ tagging


def test_every_format_is_tagged_as_predict_says(make_audio: MAKE, model, options) -> None:
    paths = [song(make_audio, f"song.{fmt}", kind="noise", seed=i) for i, fmt in enumerate(FORMATS)]
    audio = {p.name: decoded(p) for p in paths}
    run = tag(paths, model, options)
    assert [o.status for o in run.outcomes] == [Status.TAGGED] * len(FORMATS), run.outcomes
    for outcome in run.outcomes:
        path = outcome.path
        expected = predict_file(model, path)
        assert (outcome.quadrant, outcome.mood) == (expected.label, expected.mood)
        tags = read_tags(path)  # mutagen
        assert tags["mood"] == expected.mood and tags["MER_QUADRANT"] == expected.label
        assert tags["MER_MODEL"] == "tiny-tagger 1" and tags["mood_source"] == "mer"
        assert float(tags["MER_VALENCE"]) == pytest.approx(expected.valence, abs=5e-4)
        assert float(tags["MER_AROUSAL"]) == pytest.approx(expected.arousal, abs=5e-4)
        assert tinytag_fields(path) == {
            "mood": expected.mood,
            "MER_VALENCE": tags["MER_VALENCE"],
            "MER_MODEL": "tiny-tagger 1",
        }
        assert np.array_equal(decoded(path), audio[path.name])  # the audio is untouched


def test_a_clip_model_tags_as_predict_says(make_audio: MAKE, options, tmp_path: Path) -> None:
    """Clip models see the whole clip's frames: the workers build them as predict_file does."""
    clip_model = load_for_tagging(train_tiny_model(tmp_path / "clip", method="clip"), "cpu")
    paths = [song(make_audio, "a.mp3", 7.0, kind="noise"), song(make_audio, "b.ogg", 7.0)]
    expected = [predict_file(clip_model, path) for path in paths]
    run = tag(paths, clip_model, options)
    for outcome, prediction in zip(run.outcomes, expected, strict=True):
        assert (outcome.status, outcome.quadrant) == (Status.TAGGED, prediction.label)
        assert outcome.valence == pytest.approx(prediction.valence, abs=1e-6)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize(("budget", "stride"), [(FULL, 1), (Budget(max_segments=10), 4)])
def test_pipeline_streams_the_segments_of_a_whole_analysis(
    make_audio: MAKE, jobs: int, budget: Budget, stride: int
) -> None:
    """The batches a pipeline streams (inline, from a worker) are the segments of one
    whole analysis: all of them, or every stride-th under a budget (at most 10 of 31:
    every 4th), then on a second pass the rest."""
    from mer_plugin.frontend import MUSICNN
    from mer_plugin.tagging.interrupts import Interrupts
    from mer_plugin.tagging.policy import Planned
    from mer_plugin.tagging.workers import Pipeline

    path = song(make_audio, "long.mp3", 95.0, kind="noise")
    whole = analyse(str(path), MUSICNN, False)
    assert not isinstance(whole, str) and len(whole.segments) == 31  # 95 s in 3 s segments
    batches = []
    pipeline = Pipeline(MUSICNN, False, (), jobs, lambda _, b: batches.append(b), 120, budget)
    planned = Planned(path, bytes(path), path.stat(), None)
    with Interrupts() as interrupts, pipeline:
        pipeline.submit(planned)
        _, streamed = pipeline.next_done(interrupts)
        first = len(batches)
        pipeline.submit(planned, rest=True)
        _, rest = pipeline.next_done(interrupts)
    assert not isinstance(streamed, str) and streamed.segments is None
    assert first > 1  # sent as decoded
    assert (streamed.stride, streamed.rest) == (stride, False)
    np.testing.assert_array_equal(np.concatenate(batches[:first]), whole.segments[::stride])
    assert not isinstance(rest, str) and rest.rest
    expected_rest = np.delete(whole.segments, np.s_[::stride], axis=0)
    assert sum(len(b) for b in batches[first:]) == len(expected_rest)
    if len(expected_rest):
        np.testing.assert_array_equal(np.concatenate(batches[first:]), expected_rest)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_near_tie_is_analysed_whole_and_a_clear_song_from_its_budget(
    make_audio: MAKE, model, options, jobs: int
) -> None:
    """`mer tag`'s budget: every third segment; on a near tie (any margin is one, below
    1), the rest too, and then the song and timeline are the full analysis'."""
    paths = [song(make_audio, f"{i}.mp3", 40.0, kind="noise", seed=i) for i in range(2)]
    full = {path: predict_file(model, path) for path in paths}
    for budget, picked in (
        (Budget(3, near_tie=1.0), slice(None)),
        (Budget(3), slice(None, None, 3)),
    ):
        run = tag(paths, model, options, budget=budget, jobs=jobs, dry_run=True, timeline=True)
        for outcome in run.outcomes:
            assert outcome.status == Status.WOULD_TAG, outcome
            expected = full[outcome.path].timeline[picked]
            assert [s.start for s in outcome.timeline] == pytest.approx([s.start for s in expected])
            for got, want in zip(outcome.timeline, expected, strict=True):
                assert got.probabilities == pytest.approx(want.probabilities, abs=1e-5)
            if budget.near_tie:
                assert outcome.valence == pytest.approx(full[outcome.path].valence, abs=1e-5)


def test_a_track_of_fewer_than_twenty_segments_is_analysed_whole(
    make_audio: MAKE, model, options
) -> None:
    """`mer tag`'s budget skips none of a short track's segments (on 30-s clips every
    third segment cost 0.009 macro-F1: docs/performance.md); a longer track's first pass
    takes every third."""
    short = song(make_audio, "short.mp3", 45.0, kind="noise", seed=0)  # 15 segments of 3 s
    long = song(make_audio, "long.mp3", 66.0, kind="noise", seed=1)  # 22
    budget = replace(DEFAULT_BUDGET, near_tie=0.0)  # its first pass alone
    run = tag([short, long], model, options, budget=budget, dry_run=True, timeline=True)
    analysed = {outcome.path: len(outcome.timeline) for outcome in run.outcomes}
    full = {path: len(predict_file(model, path).timeline) for path in (short, long)}
    assert full[short] < DEFAULT_BUDGET.whole_below <= full[long]
    assert analysed == {short: full[short], long: math.ceil(full[long] / 3)}


def test_gathering_grows_past_a_short_estimate() -> None:
    from mer_plugin.frontend import MUSICNN
    from mer_plugin.tagging.analysis import Gather

    rng = np.random.default_rng(0)
    batches = [rng.random((k, 187, 96), dtype=np.float32) for k in (3, 1, 5)]
    gather = Gather(2, MUSICNN)  # the header said 2 segments; there are 9
    for batch in batches:
        gather.add(batch)
    np.testing.assert_array_equal(gather.array(), np.concatenate(batches))


def test_workers_analyse_without_torch(make_audio: MAKE) -> None:
    """A worker (segments, a clip's frames, extractor features) never loads torch: its
    ~0.7 GB would be paid once per job."""
    import subprocess
    import sys

    path = song(make_audio, "a.flac", 4.0)
    code = (
        "import sys; from mer_plugin.tagging import analyse; "
        "from mer_plugin.frontend import MUSICNN; "
        f"result = analyse({str(path)!r}, MUSICNN, True, (('essentia', ('tempo_bpm',)),)); "
        "assert not isinstance(result, str), result; "
        "assert 'torch' not in sys.modules, 'torch loaded'"
    )
    # cwd: not the checkout, whose source folders would shadow the installed package
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=path.parent
    )
    assert run.returncode == 0, run.stderr


def test_device_choice(model) -> None:
    import torch

    from mer_plugin.errors import MerError
    from mer_plugin.inference.device import on_device

    assert on_device(model, "cpu") is model
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the no-CUDA error cannot be shown")
    assert on_device(model, "auto") is model
    with pytest.raises(MerError, match="no CUDA device"):
        on_device(model, "cuda")


def test_rerun_skips_what_is_tagged(make_audio: MAKE, model, options, tmp_path: Path) -> None:
    paths = [song(make_audio, "a.flac"), song(make_audio, "b.mp3", kind="noise")]
    first = tag(paths, model, options)
    assert [o.status for o in first.outcomes] == [Status.TAGGED, Status.TAGGED]
    second = tag(paths, model, options)
    assert [(o.status, o.reason) for o in second.outcomes] == [(Status.SKIPPED, CACHED)] * 2
    assert [o.mood for o in second.outcomes] == [o.mood for o in first.outcomes]
    assert second.seconds["analyse"] == 0  # nothing decoded
    (tmp_path / "cache" / CACHE_FILE).unlink()  # a lost cache: the tags still say so
    third = tag(paths, model, options)
    assert [(o.status, o.reason) for o in third.outcomes] == [(Status.SKIPPED, SAME_MODEL)] * 2
    assert [o.reason for o in tag(paths, model, options).outcomes] == [CACHED] * 2
    forced = tag(paths, model, options, force=True)
    assert [o.status for o in forced.outcomes] == [Status.TAGGED, Status.TAGGED]


def test_a_users_mood_is_kept_unless_forced(make_audio: MAKE, model, options) -> None:
    path = song(make_audio, "mine.flac")
    audio = FLAC(path)
    audio["MOOD"] = "Melancholy"
    audio.save()
    kept = tag([path], model, options).outcomes[0]
    assert (kept.status, kept.reason, kept.previous_mood) == (
        Status.SKIPPED,
        OWN_MOOD,
        "Melancholy",
    )
    assert read_tags(path)["mood"] == "Melancholy"
    forced = tag([path], model, options, force=True).outcomes[0]
    assert forced.status == Status.TAGGED and forced.previous_mood == "Melancholy"
    assert read_tags(path)["mood"] == forced.mood != "Melancholy"


def test_a_mood_corrected_by_hand_is_kept_from_another_model(
    make_audio: MAKE, model, options
) -> None:
    corrected, untouched = song(make_audio, "corrected.flac"), song(make_audio, "mer's.flac")
    assert all(
        o.status == Status.TAGGED for o in tag([corrected, untouched], model, options).outcomes
    )
    audio = FLAC(corrected)
    audio["MOOD"] = "Melancholy"  # the user's correction; the MER_* numbers stay
    audio.save()
    other_model = load_for_tagging(None, "cpu")  # the shipped model: another MER_MODEL
    run = by_name(tag([corrected, untouched], other_model, options))
    assert (run["corrected.flac"].status, run["corrected.flac"].reason) == (
        Status.SKIPPED,
        OWN_MOOD,
    )
    assert read_tags(corrected)["mood"] == "Melancholy"
    assert run["mer's.flac"].status == Status.TAGGED  # mer's own mood: the new model's now
    assert read_tags(untouched)["MER_MODEL"] == other_model.release


class RenamingWriter:
    """A third party's FLAC tag writer whose `read` renames mer's field names."""

    def __init__(self, rename: Callable[[str], str]) -> None:
        self.rename = rename

    @hookimpl
    def mer_tag_writers(self) -> list[TagWriter]:
        return [TagWriter("renaming", (".flac",), self.write, self.read, priority=20)]

    def write(self, path: Path, fields: dict[str, str]) -> None:
        audio = FLAC(path)
        audio.update(fields)
        audio.save()

    def read(self, path: Path) -> dict[str, str]:
        ours = {name.lower() for name in FIELD_NAMES}
        tags = FLAC(path).tags or {}
        return {self.rename(key): value for key, value in tags if key.lower() in ours}


@pytest.fixture
def register_writer():
    plugins = get_plugins()
    yield lambda writer: plugins.register(writer, name="renaming_writer")
    if plugins.manager.has_plugin("renaming_writer"):
        plugins.unregister("renaming_writer")


def test_a_writer_reading_upper_case_names_keeps_a_users_mood(
    make_audio: MAKE, model, options, register_writer
) -> None:
    register_writer(RenamingWriter(str.upper))  # MOOD, MER_MODEL...
    path = song(make_audio, "mine.flac")
    audio = FLAC(path)
    audio["mood"] = "Melancholy"
    audio.save()
    kept = tag([path], model, options).outcomes[0]
    assert (kept.status, kept.reason) == (Status.SKIPPED, OWN_MOOD)
    forced = tag([path], model, options, force=True).outcomes[0]
    assert forced.status == Status.TAGGED
    assert read_tags(path)["MER_MODEL"] == "tiny-tagger 1"  # read back through the plugin
    assert tag([path], model, options).outcomes[0].reason in (SAME_MODEL, CACHED)


def test_a_writer_reading_unknown_names_is_refused(
    make_audio: MAKE, model, options, register_writer
) -> None:
    register_writer(RenamingWriter(lambda key: "FEELING" if key.lower() == "mood" else key))
    path = song(make_audio, "mine.flac")
    audio = FLAC(path)
    audio["mood"] = "Melancholy"
    audio.save()
    refused = tag([path], model, options).outcomes[0]
    assert refused.status == Status.FAILED
    assert "tag writer 'renaming' of plugin renaming_writer read unknown" in refused.reason
    assert "FEELING" in refused.reason and FLAC(path)["mood"] == ["Melancholy"]


class RaisingWriter(RenamingWriter):
    def write(self, path: Path, fields: dict[str, str]) -> None:
        raise RuntimeError("disk quota in the cloud")


def test_a_raising_writer_is_named_with_its_plugin(
    make_audio: MAKE, model, options, register_writer
) -> None:
    register_writer(RaisingWriter(str))
    path = song(make_audio, "a.flac")
    before = path.read_bytes()
    failed = tag([path], model, options).outcomes[0]
    assert failed.status == Status.FAILED and path.read_bytes() == before
    assert failed.reason == (
        "tag writer 'renaming' of plugin renaming_writer failed: "
        "RuntimeError: disk quota in the cloud"
    )


def test_dry_run_writes_nothing(make_audio: MAKE, model, options, tmp_path: Path) -> None:
    paths = [song(make_audio, "a.ogg"), song(make_audio, "b.m4a")]
    before = [p.read_bytes() for p in paths]
    run = tag(paths, model, options, dry_run=True)
    assert [o.status for o in run.outcomes] == [Status.WOULD_TAG] * 2
    assert all(o.mood and o.previous_mood is None for o in run.outcomes)
    assert [p.read_bytes() for p in paths] == before
    assert not (tmp_path / "cache").exists()


def test_keep_mtime(make_audio: MAKE, model, options) -> None:
    kept, bumped = song(make_audio, "kept.mp3"), song(make_audio, "bumped.mp3")
    old = time.time_ns() - 86_400 * 10**9
    for path in (kept, bumped):
        os.utime(path, ns=(old, old))
    tag([kept], model, options, keep_mtime=True)
    tag([bumped], model, options)
    assert os.stat(kept).st_mtime_ns == old < os.stat(bumped).st_mtime_ns


def test_reports(make_audio: MAKE, make_broken: MAKE, model, options, tmp_path: Path) -> None:
    good, bad = song(make_audio, "good.wav"), make_broken("bad.flac", "text")
    run = tag([good, bad], model, options)
    write_report(run, tmp_path / "r.json")
    write_report(run, tmp_path / "r.csv")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"] == "tiny-tagger 1" and not report["interrupted"]
    assert [(f["path"], f["status"]) for f in report["files"]] == [
        (str(good), Status.TAGGED),
        (str(bad), Status.FAILED),
    ]
    assert report["summary"]["tagged"] == 1 and report["files"][1]["reason"]
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == [Status.TAGGED, Status.FAILED]
    assert rows[0]["mood"] == report["files"][0]["mood"]


def test_predict_files_reads_and_writes_nothing(make_audio, make_broken, model, tmp_path) -> None:
    """What an application that keeps its own results (beets) gets: every readable file
    predicted, however it is tagged or locked, nothing written, no cache."""
    mine = song(make_audio, "mine.flac")
    audio = FLAC(mine)
    audio["MOOD"] = "Melancholy"
    audio.save()
    locked = song(make_audio, "locked.wav")
    os.chmod(locked, 0o444)
    paths = [mine, locked, make_broken("bad.mp3", "text"), tmp_path / "gone.flac"]
    before = [p.read_bytes() for p in paths[:3]]
    seen = []
    run = predict_files(paths, model, jobs=2, on_outcome=seen.append)
    assert [(o.status, o.reason) for o in run.outcomes] == [
        (Status.WOULD_TAG, ""),
        (Status.WOULD_TAG, ""),
        (Status.FAILED, "not a recognised audio file (unknown format or corrupt data)"),
        (Status.SKIPPED, VANISHED),
    ]
    assert sorted(map(id, seen)) == sorted(map(id, run.outcomes))
    assert [p.read_bytes() for p in paths[:3]] == before
    expected = predict_file(model, mine)
    fields = tag_fields(run.outcomes[0], model.release)
    assert fields["mood"] == expected.mood and fields["MER_MODEL"] == model.release
    assert fields["MER_VALENCE"] == pytest.approx(expected.valence)
    assert not (tmp_path / "cache").exists()


def test_skip_reason_of_the_fields_a_library_holds() -> None:
    release = "tiny-tagger 1"
    assert skip_reason({"mood": "Happy", "MER_MODEL": release}, release) == SAME_MODEL
    assert skip_reason({"mood": "Blue"}, release) == OWN_MOOD
    mers = {"mood": "Happy", "MER_QUADRANT": "Q1", "MER_MODEL": "old 0"}
    assert skip_reason(mers, release) is None  # mer's own mood: a new model replaces it
    assert skip_reason({**mers, "mood": "Sad"}, release) == OWN_MOOD  # corrected by hand
    assert skip_reason({}, release) is None
    assert skip_reason({"mood": "Blue"}, release, force=True) is None


# ------------------------------------------------------------------------------ odd cases


@pytest.mark.parametrize("what", ["file", "folder"])
def test_read_only_file_or_folder(make_audio: MAKE, model, options, tmp_path, what) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = make_audio("ro/locked.flac", 3.5)
    before = path.read_bytes()
    target = path if what == "file" else folder
    os.chmod(target, 0o444 if what == "file" else 0o555)  # read-only even for root
    try:
        run = tag([path], model, options)
    finally:
        os.chmod(target, 0o755)
    (outcome,) = run.outcomes
    assert (outcome.status, outcome.reason) == (
        Status.FAILED,
        f"{what} is read-only (permission denied)",
    )
    assert run.seconds["analyse"] == 0  # refused before decoding
    assert path.read_bytes() == before


def test_a_file_that_vanishes_or_changes_mid_run(make_audio: MAKE, model, options) -> None:
    tagger = Tagger(model, options, None)
    spec = model.spec
    gone, busy = song(make_audio, "gone.mp3"), song(make_audio, "busy.wav")
    plans = [tagger.check(p) for p in (gone, busy)]
    analyses = [analyse(str(p), spec, False) for p in (gone, busy)]
    gone.unlink()  # deleted between decoding and writing
    with open(busy, "ab") as f:  # still being written (a download, a rip)
        f.write(b"\0" * 4096)
    after = busy.read_bytes()
    outcomes = [tagger.finish(p, a) for p, a in zip(plans, analyses, strict=True)]
    assert [(o.status, o.reason) for o in outcomes] == [
        (Status.SKIPPED, VANISHED),
        (Status.SKIPPED, CHANGED),
    ]
    assert busy.read_bytes() == after and not gone.exists()
    early = song(make_audio, "early.flac")
    library = walk([early])
    early.unlink()  # deleted between the walk and its turn
    (outcome,) = tag_library(library, model, options).outcomes
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, VANISHED)


def test_a_file_swapped_for_a_fifo_fails_and_never_hangs(make_audio: MAKE, model, options) -> None:
    fifo = song(make_audio, "pipe.flac")
    song(make_audio, "other.flac")
    library = walk([fifo.parent])
    fifo.unlink()
    os.mkfifo(fifo)  # a FIFO where the walk saw a song: opening it would block for ever
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the run hung on a FIFO"))
    signal.alarm(60)
    try:
        run = by_name(tag_library(library, model, options))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert (run["pipe.flac"].status, run["pipe.flac"].reason) == (
        Status.FAILED,
        "not a regular file (a FIFO)",
    )
    assert run["other.flac"].status == Status.TAGGED
    with pytest.raises(TagError, match="not a regular file .a FIFO."):
        read_tags(fifo)
    with pytest.raises(AudioError, match="not a regular file .a FIFO."):
        open_stream(fifo, 16000)


def test_a_corrupt_results_cache_is_moved_aside_once(make_audio: MAKE, model, options) -> None:
    path = song(make_audio, "a.flac")
    options.cache_dir.mkdir()
    (options.cache_dir / CACHE_FILE).write_bytes(b"not sqlite, a disk's bad day\n" * 100)
    first = tag([path], model, options)
    (warning,) = first.warnings
    assert "was corrupt: moved to tag-results.sqlite3.corrupt-" in warning
    assert first.outcomes[0].status == Status.TAGGED
    second = tag([path], model, options)
    assert second.warnings == [] and second.outcomes[0].reason == CACHED
    assert len(list(options.cache_dir.glob(f"{CACHE_FILE}.corrupt-*"))) == 1


def test_the_cache_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pwd

    from mer_plugin.user_cache import cache_folder

    monkeypatch.delenv("MER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder() == tmp_path / "mer"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the spec: ignore it
    monkeypatch.setenv("HOME", "")  # and an empty HOME gives way to the account's
    assert cache_folder() == Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "mer"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_folder() == tmp_path / ".cache" / "mer"


def test_a_hard_linked_file_is_skipped_or_tagged_as_one_file(
    make_audio: MAKE, model, options, tmp_path: Path
) -> None:
    music = song(make_audio, "music.flac")
    (tmp_path / "downloads").mkdir()
    download = tmp_path / "downloads" / "music.flac"
    os.link(music, download)  # one file, two names
    before = music.read_bytes()
    (skipped,) = tag([music], model, options).outcomes
    assert (skipped.status, skipped.reason) == (Status.SKIPPED, HARD_LINKED)
    assert music.read_bytes() == before == download.read_bytes()

    inode, audio_before = os.stat(music).st_ino, decoded(music)
    (tagged,) = tag([music], model, options, hard_links=HardLinks.IN_PLACE).outcomes
    assert tagged.status == Status.TAGGED
    assert os.stat(music).st_ino == os.stat(download).st_ino == inode
    assert os.stat(music).st_nlink == 2
    assert read_tags(download)["MER_MODEL"] == "tiny-tagger 1"
    np.testing.assert_array_equal(decoded(download), audio_before)
    assert not list(music.parent.glob(".*mer-*"))
    (again,) = tag([download], model, options).outcomes  # the other name: the same file
    assert again.reason in (CACHED, SAME_MODEL)


def test_an_in_place_write_cut_short_is_finished_by_the_next_walk(make_audio: MAKE) -> None:
    music = song(make_audio, "music.flac")
    os.link(music, music.with_name("other name.flac"))
    audio_before = decoded(music)
    fields = {"mood": "Calm", "MER_MODEL": "crash 1"}
    code = "from mer_plugin.tags import write_tags\n"
    code += f"write_tags({str(music)!r}, {fields!r}, in_place=True)"
    env = {**os.environ, CRASH_IN_WRITE_BACK_ENV: "1"}
    crashed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert crashed.returncode == 1
    assert journal_of(music).exists()  # the tagged bytes, whole; the file half written
    walk([music.parent])  # the next run's walk replays the journal
    assert not journal_of(music).exists()
    assert read_tags(music.with_name("other name.flac"))["MER_MODEL"] == "crash 1"
    np.testing.assert_array_equal(decoded(music), audio_before)


def test_a_file_another_run_works_on_is_skipped(make_audio: MAKE, model, options) -> None:
    import fcntl

    path = song(make_audio, "a.flac")
    with open(path, "rb") as other_run:  # another mer run holds the file's lock
        fcntl.flock(other_run, fcntl.LOCK_EX)
        (busy,) = tag([path], model, options).outcomes
    assert (busy.status, busy.reason) == (Status.SKIPPED, BUSY)
    (tagged,) = tag([path], model, options).outcomes
    assert tagged.status == Status.TAGGED


def test_a_stopped_decoder_fails_its_file_and_the_run_goes_on(
    make_audio: MAKE, model, options, monkeypatch: pytest.MonkeyPatch
) -> None:
    songs = [song(make_audio, name) for name in ("0.flac", "stuck.flac", "2.flac", "3.flac")]
    monkeypatch.setenv(WORKER_STOP_ENV, "stuck")  # its worker stops (SIGSTOP) on that file
    start = time.monotonic()
    run = by_name(tag(songs, model, options, jobs=2, stall_timeout=3.0))
    assert time.monotonic() - start < 120
    stuck = run.pop("stuck.flac")
    assert (stuck.status, stuck.reason) == (
        Status.FAILED,
        "no progress for 3 s (a stuck decoder?); skipped",
    )
    assert {o.status for o in run.values()} == {Status.TAGGED}
    assert not [p for p in _children() if b"spawn_main" in _cmdline(p)]  # none left over


def _children() -> list[int]:
    me = os.getpid()
    return [int(p) for p in Path(f"/proc/{me}/task/{me}/children").read_text().split()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_trailing_junk_after_most_of_a_file_is_analysed_and_said(
    make_audio: MAKE, make_broken: MAKE, model, options
) -> None:
    junk = song(make_audio, "junk.flac", seconds=30.0)
    with open(junk, "ab") as f:  # a bad rip, a botched concatenation
        f.write(bytes(range(256)) * 2000)
    cut = make_broken("cut.flac", "truncated", seconds=30.0)  # half of it: not enough
    # mp3: the junk lies past the length the Info header declares: all of the audio decodes
    junk_mp3 = song(make_audio, "junk.mp3", seconds=30.0)
    with open(junk_mp3, "ab") as f:
        f.write(bytes(range(256)) * 2000)
    for jobs in (1, 2):  # inline and in workers
        files = [junk, cut, junk_mp3]
        run = by_name(tag(files, model, options, jobs=jobs, use_cache=False, force=True))
        assert run["junk.flac"].status == Status.TAGGED
        assert run["junk.flac"].reason.startswith("analysed the 29.")
        assert (
            "of 30.0 s that decode (corrupt or truncated audio data after"
            in run["junk.flac"].reason
        )
        assert run["cut.flac"].status == Status.FAILED
        assert (run["junk.mp3"].status, run["junk.mp3"].reason) == (Status.TAGGED, "")
    assert read_tags(junk)["MER_MODEL"] == "tiny-tagger 1"


def test_file_size_limit_fails_that_file_only(make_audio: MAKE, model, options) -> None:
    """EFBIG (RLIMIT_FSIZE below the file's size), the way tests/test_tags.py runs out of
    room without a full disk: the file fails, the original is intact, nothing is cached."""
    big = make_audio("big.wav", 4.0, sample_rate=44100, channels=2)  # 700 kB
    small = make_audio("small.mp3", 3.5)
    before = big.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (big.stat().st_size // 2, hard))
    try:
        run = tag([big, small], model, options)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    outcomes = by_name(run)
    assert outcomes["big.wav"].status == Status.FAILED
    assert outcomes["big.wav"].reason == "file too large (file size limit reached)"
    assert outcomes["small.mp3"].status == Status.TAGGED
    assert big.read_bytes() == before
    again = by_name(tag([big, small], model, options))
    assert (again["big.wav"].status, again["small.mp3"].reason) == (Status.TAGGED, CACHED)


def test_odd_names(make_audio: MAKE, model, options, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    make_audio("lib/Ünïcødé 音楽 🎵 [x].opus", 3.5, sample_rate=48000)
    make_audio("lib/" + "é" * 124 + ".mp3", 3.5)  # 253 bytes: near NAME_MAX
    raw = os.fsencode(lib) + b"/caf\xe9 latin-1.flac"  # not UTF-8
    os.rename(make_audio("lib/latin.flac", 3.5), raw)
    run = tag([lib], model, options)
    assert [o.status for o in run.outcomes] == [Status.TAGGED] * 3
    assert read_tags(raw)["MER_MODEL"] == "tiny-tagger 1"
    write_report(run, tmp_path / "r.json")
    paths = [f["path"] for f in json.loads((tmp_path / "r.json").read_text())["files"]]
    assert str(lib / "caf\\xe9 latin-1.flac") in paths
    assert not [n for n in os.listdir(os.fsencode(lib)) if b"mer-tmp" in n]


def test_bad_files_never_stop_the_run(make_audio, make_broken, model, options, monkeypatch) -> None:
    """Two worker processes; the broken files fail with their reasons (one kills its
    worker, through the test hook), the others are tagged as one process tags them."""
    good = [song(make_audio, f"{i}.{fmt}", kind="noise", seed=i) for i, fmt in enumerate(FORMATS)]
    bad = [
        make_broken("text.mp3", "text"),
        make_broken("cut.flac", "truncated", seconds=4.0),
        make_broken("cut.ogg", "truncated", seconds=4.0, kind="noise"),  # no declared length
        make_broken("cut.wav", "truncated", seconds=4.0),
        make_broken("empty.wav", "empty"),
        song(make_audio, "crash-here.flac"),
    ]
    monkeypatch.setenv(WORKER_CRASH_ENV, "crash-here")
    dry = {o.path: o for o in tag(good, model, options, dry_run=True).outcomes}
    run = tag(good + bad, model, options, jobs=2)
    assert [o.path for o in run.outcomes] == good + bad
    for outcome in run.outcomes[: len(good)]:
        assert outcome.status == Status.TAGGED
        expected = dry[outcome.path]
        assert outcome.quadrant == expected.quadrant
        # segments share batches across files: float32 rounding differs with the batch
        assert outcome.valence == pytest.approx(expected.valence, abs=1e-6)
    reasons = {o.path.name: o.reason for o in run.outcomes[len(good) :]}
    assert all(o.status == Status.FAILED for o in run.outcomes[len(good) :])
    assert "truncated" in reasons["cut.flac"] and "empty" in reasons["empty.wav"]
    assert "the file ends inside an Ogg page" in reasons["cut.ogg"]
    assert "of the 4.00 s declared by its header" in reasons["cut.wav"]
    assert reasons["crash-here.flac"] == WORKER_DIED
