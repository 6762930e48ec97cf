"""`mer tag` as a user runs it: the installed console script on a generated library.

Every supported format, read back with mutagen and tinytag; dry run, report, rerun;
usage errors; Ctrl-C in the middle of a run; a full disk (a tiny tmpfs in a user
namespace, as tests/test_tags.py does).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import llvmlite
import pytest
from tiny_model import train_tiny_model
from tinytag import TinyTag

from mer_plugin.signals import unsafe_to_raise
from mer_plugin.tagging import CACHE_FILE
from mer_plugin.tags import read_tags

MER = Path(sys.executable).with_name("mer")
FORMATS = ("wav", "aiff", "flac", "mp3", "ogg", "opus", "m4a", "mp4")
FIELDS = {"mood", "MER_VALENCE", "MER_AROUSAL", "MER_QUADRANT", "MER_CONFIDENCE", "MER_MODEL"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("tiny"))


def mer_tag(*args: str | Path, cache: Path, **options) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MER_CACHE_DIR": str(cache)}
    cmd = [MER, "tag", *map(os.fsencode, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, **options)


def digest(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest()


def make_library(
    make_audio, root: Path, n: int = 1, seconds: float = 3.5, formats: tuple = FORMATS
) -> list[Path]:
    songs = []
    for i in range(n):
        for fmt in formats:
            rate = 48000 if fmt == "opus" else 44100
            name = f"{root.name}/{fmt}/{i:02d} song.{fmt}"
            (root / fmt).mkdir(parents=True, exist_ok=True)
            songs.append(make_audio(name, seconds, sample_rate=rate, kind="noise", seed=i))
    return songs


# ------------------------------------------------------------------------------ a library


def test_tag_a_library_of_every_format(make_audio, make_broken, model_dir, tmp_path) -> None:
    lib, cache = tmp_path / "lib", tmp_path / "cache"
    songs = make_library(make_audio, lib)
    latin = os.fsencode(lib) + b"/caf\xe9.flac"  # a name that is not UTF-8
    os.rename(make_audio("lib/latin.flac", 3.5), latin)
    broken = make_broken("lib/broken.mp3", "text")
    before = {p: digest(p) for p in [*songs, broken]}

    dry = mer_tag(lib, "--model", model_dir, "--dry-run", "--jobs", "1", cache=cache)
    assert dry.returncode == 1, dry.stderr
    would = [line for line in dry.stdout.splitlines() if line.startswith("would tag /")]
    assert len(would) == len(songs) + 1
    assert "caf\\xe9.flac: no mood -> " in dry.stdout
    assert {p: digest(p) for p in before} == before and not cache.exists()

    done = mer_tag(
        lib, "--model", model_dir, "--jobs", "2", "--report", tmp_path / "r.json", cache=cache
    )
    assert done.returncode == 1, done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("failed: ")]
    assert failed == [
        f"failed: {broken}: not a recognised audio file (unknown format or corrupt data)"
    ]
    assert "tagged" in done.stdout and "mood" in done.stdout
    assert f"{len(songs) + 1} tracks analysed in " in done.stdout
    audio = (len(songs) + 1) * 3.5  # every file's length, by its header
    assert f"{audio:.1f} s of audio, " in done.stdout and "x realtime)" in done.stdout
    for path in [*songs, latin]:
        tags = read_tags(path)
        assert set(tags) == FIELDS | {"mood_source"} and tags["MER_MODEL"] == "tiny-tagger 1"
        other = TinyTag.get(os.fsdecode(path)).other
        assert (other.get("tmoo") or other.get("mood")) == [tags["mood"]]
        assert other["mer_quadrant"] == [tags["MER_QUADRANT"]]
    report = json.loads((tmp_path / "r.json").read_text())
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert statuses.pop(str(broken)) == "failed"
    assert statuses.pop(str(lib / "caf\\xe9.flac")) == "tagged"
    assert statuses == {str(p): "tagged" for p in songs}


def test_the_default_model_tags_a_library(make_audio, tmp_path: Path) -> None:
    """The README's main command: `mer tag FOLDER` with the model shipped in the package."""
    songs = make_library(make_audio, tmp_path / "Music", formats=("flac", "mp3"))
    result = mer_tag(tmp_path / "Music", "--quiet", cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    for path in songs:
        tags = read_tags(path)
        assert tags["MER_MODEL"].startswith("mer-4q")
        assert tags["mood"] in {"Happy", "Angry", "Sad", "Calm"}


def test_the_summary_names_audio_files_mer_cannot_tag(make_audio, model_dir, tmp_path) -> None:
    (tmp_path / "lib").mkdir()
    make_audio("lib/a.flac", 1.0)
    for name in ("b.wv", "c.wv", "d.wma"):  # tag writers exist, decoders do not
        (tmp_path / "lib" / name).write_bytes(b"x")
    result = mer_tag(tmp_path / "lib", "--model", model_dir, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "not tagged: 2 .wv files (no decoder for .wv;" in result.stdout
    assert "not tagged: 1 .wma file (no decoder for .wma;" in result.stdout
    assert "1 track analysed in " in result.stdout  # one file: no rate, no plural
    assert "(1.0 s of audio, " in result.stdout


def test_a_folder_that_is_not_a_model_is_one_clear_line(make_audio, tmp_path: Path) -> None:
    result = mer_tag(make_audio("a.flac", 1.0), "--model", tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 2  # a usage error, as a bad option is
    assert result.stderr.count("\n") == 1 and "not a model folder" in result.stderr


def test_cuda_without_a_gpu_is_a_usage_error(make_audio, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = mer_tag(make_audio("a.flac", 1.0), "--device", "cuda", cache=tmp_path / "cache")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


def test_a_rerun_on_a_tagged_library_never_loads_the_model(make_audio, model_dir, tmp_path):
    """Nothing to analyse, nothing loaded: torch and the weights wait for a file that
    needs them, so a rerun over a tagged library is quick and small."""
    lib, cache = tmp_path / "lib", tmp_path / "cache"
    make_library(make_audio, lib, formats=("flac", "mp3"))
    assert mer_tag(lib, "--model", model_dir, cache=cache).returncode == 0
    loaded = "import atexit, sys; atexit.register(lambda: print('torch' in sys.modules))"
    run = "from mer_plugin.cli import main; sys.argv[0] = 'mer'; main()"
    env = {**os.environ, "MER_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-c", f"{loaded}; {run}", "tag", lib, "--model", model_dir]
    for reason in ("cached", "this model"):  # skipped by the results cache, then by the tags
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert reason in result.stdout
        assert result.stdout.splitlines()[-1] == "False"  # torch never imported
        shutil.rmtree(cache)


def test_weights_that_cannot_be_loaded_stop_the_run_before_any_write(
    make_audio, model_dir, tmp_path
) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    (tmp_path / "lib").mkdir()
    song = make_audio("lib/a.flac", 3.5)
    before = digest(song)
    result = mer_tag(song.parent, "--model", broken, cache=tmp_path / "cache")
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip()  # the progress bar may leave an empty line
    assert error.count("\n") == 0 and "cannot read the model" in error
    assert digest(song) == before


def test_an_unwritable_report_is_refused_before_any_work(make_audio, tmp_path: Path) -> None:
    song = make_audio("a.flac", 1.0)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    for report in (locked / "r.json", tmp_path / "missing" / "r.json"):
        result = mer_tag(song, "--report", report, cache=tmp_path / "cache")
        assert result.returncode == 2, result.stderr
        assert "cannot write" in result.stderr or "no such folder" in result.stderr
    assert "MER_MODEL" not in read_tags(song) and not (tmp_path / "cache").exists()


def test_a_report_path_that_is_a_folder_is_an_error_not_a_silent_skip(
    make_audio, model_dir, tmp_path: Path
) -> None:
    song = make_audio("a.flac", 3.5)
    report = tmp_path / "r.json"
    report.mkdir()
    result = mer_tag(song, "--model", model_dir, "--report", report, cache=tmp_path / "cache")
    assert result.returncode != 0 and f"{report}: cannot write" in result.stderr
    assert report.is_dir() and not list(tmp_path.glob(".r.json.part-*"))


def test_a_symlink_loop_on_the_command_line_is_one_failed_path(
    make_audio, model_dir, tmp_path: Path
) -> None:
    song = make_audio("a.flac", 3.5)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    result = mer_tag(loop, song, "--model", model_dir, cache=tmp_path / "cache")
    assert result.returncode == 1, result.stderr
    assert f"failed: {loop}: cannot read: Too many levels of symbolic links" in result.stderr
    assert read_tags(song)["MER_MODEL"] == "tiny-tagger 1"


@pytest.mark.parametrize(
    "args",
    [(), ("{song}", "--jobs", "0"), ("{song}", "--report", "out.txt"), ("{missing}",)]
    + [("{song}", "--device", "tpu"), ("{song}", "--full", "--max-segments", "4")],
    ids=["no-path", "jobs-0", "report-txt", "missing-path", "device", "full-and-a-cap"],
)
def test_usage_errors_exit_2(make_audio, tmp_path: Path, args: tuple[str, ...]) -> None:
    song, missing = make_audio("a.flac", 1.0), tmp_path / "missing"
    filled = [a.format(song=song, missing=missing) for a in args]
    result = mer_tag(*filled, cache=tmp_path / "cache")
    assert result.returncode == 2, result.stderr
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------ Ctrl-C


def cached_rows(cache: Path) -> dict[bytes, tuple[int, int]]:
    try:
        with sqlite3.connect(cache / CACHE_FILE) as db:
            rows = db.execute("SELECT path, size, mtime_ns FROM tagged").fetchall()
    except sqlite3.Error:  # not created yet
        return {}
    return {bytes(path): (size, mtime) for path, size, mtime in rows}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_leaves_every_file_whole_and_resumes(
    make_audio, model_dir, tmp_path, signum
) -> None:
    lib, cache = tmp_path / "lib", tmp_path / "cache"
    songs = make_library(make_audio, lib, n=5, seconds=6.0, formats=("flac", "wav"))
    before = {p: digest(p) for p in songs}
    env = {**os.environ, "MER_CACHE_DIR": str(cache)}
    cmd = [MER, "tag", lib, "--model", model_dir, "--jobs", "2", "--report", tmp_path / "r.json"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        deadline = time.monotonic() + 60
        while len(cached_rows(cache)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err  # 130 for Ctrl-C, 143 for SIGTERM
    assert "interrupted" in out.decode() and b"Traceback" not in err
    rows = cached_rows(cache)
    tagged = {p for p in songs if read_tags(p)}
    assert 2 <= len(tagged) < len(songs)  # it stopped in the middle
    for path in songs:  # fully tagged and cached as it is now, or untouched
        if path in tagged:
            assert set(read_tags(path)) == FIELDS | {"mood_source"}
            info = path.stat()
            assert rows[os.fsencode(path)] == (info.st_size, info.st_mtime_ns)
        else:
            assert digest(path) == before[path]
    assert len(rows) == len(tagged)
    assert not [p for p in lib.rglob("*") if ".mer-tmp-" in p.name]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] and len(report["files"]) == len(songs)
    assert report["summary"]["tagged"] + report["summary"]["not done"] == len(songs)

    resumed = mer_tag(lib, "--model", model_dir, "-q", "--report", tmp_path / "r.csv", cache=cache)
    assert (resumed.returncode, resumed.stdout, resumed.stderr) == (0, "", "")
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["reason"] == "already tagged by this model (cached)" for r in rows) == len(tagged)
    assert sum(r["status"] == "tagged" for r in rows) == len(songs) - len(tagged)
    assert all(read_tags(p) for p in songs)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("delay", [0.3, 1.5])  # imports, then model loading and workers
def test_a_signal_while_starting_ends_quietly(make_audio, tmp_path, signum, delay) -> None:
    song = make_audio("a.flac", 3.5)
    env = {**os.environ, "MER_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [MER, "tag", song.parent, "--jobs", "2"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        time.sleep(delay)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 128 + signum), err  # done before it arrived, or stopped
    assert b"Traceback" not in err and b"terminate called" not in err, err
    assert read_tags(song) == {} or read_tags(song)["MER_MODEL"].startswith("mer-4q")
    assert not [p for p in song.parent.iterdir() if ".mer-" in p.name]


HELD_IMPORT = """
import os, signal, time
os.kill(os.getpid(), signal.{name})  # as if it came while torch imported
time.sleep(0.2)
print("imported", flush=True)
"""
COMMAND_IMPORTING = """
import sys, time
import mer_plugin.cli.app as app_module
from mer_plugin.cli import main

def command() -> None:
    import held_import
    time.sleep(10)
    print("not stopped", flush=True)

app_module.app = command
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_an_import_waits_for_it_then_stops(tmp_path, signum) -> None:
    (tmp_path / "held_import.py").write_text(HELD_IMPORT.format(name=signum.name))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    cmd = [sys.executable, "-c", COMMAND_IMPORTING]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert (done.stdout, done.stderr) == ("imported\n", "interrupted\n")
    assert done.returncode == 128 + signum


def test_frames_called_back_from_c_are_unsafe_to_raise_in() -> None:
    callback = compile("frame = sys._getframe()", f"{Path(llvmlite.__file__).parent}/x.py", "exec")
    scope = {"sys": sys}
    exec(callback, scope)  # a frame of llvmlite's, as LLVM's ctypes callbacks run
    assert unsafe_to_raise(scope["frame"])
    assert not unsafe_to_raise(sys._getframe())


def test_two_runs_on_one_library_tag_each_file_once(make_audio, model_dir, tmp_path) -> None:
    lib = tmp_path / "lib"
    songs = make_library(make_audio, lib, n=4, seconds=6.0, formats=("flac", "mp3"))
    env = {**os.environ, "MER_CACHE_DIR": str(tmp_path / "cache")}
    runs = []
    for name in ("first", "second"):
        cmd = [MER, "tag", lib, "--model", model_dir, "--jobs", "1"]
        cmd += ["--report", tmp_path / f"{name}.json"]
        runs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    reports = [json.loads((tmp_path / f"{n}.json").read_text()) for n in ("first", "second")]
    tagged = [f["path"] for r in reports for f in r["files"] if f["status"] == "tagged"]
    assert sorted(tagged) == sorted(str(p) for p in songs)  # each file once, by one run
    reasons = {f["reason"] for r in reports for f in r["files"] if f["status"] == "skipped"}
    assert reasons <= {"being tagged by another mer run", "already tagged by this model",
                       "already tagged by this model (cached)"}  # fmt: skip


# ------------------------------------------------------------------------------ full disk


def test_full_disk(make_audio, model_dir, tmp_path: Path) -> None:
    """A real ENOSPC: the library on a 1 MiB tmpfs (a private user and mount namespace),
    filled until a copy of the big song no longer fits; the small one still does."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot mount a small tmpfs")
    (tmp_path / "src").mkdir()
    big = make_audio("src/big.wav", 4.0, sample_rate=44100, channels=2)  # 700 kB
    small = make_audio("src/small.mp3", 3.5)
    disk = tmp_path / "disk"
    disk.mkdir()
    fill = f"(head -c 2M /dev/zero > {disk}/filler 2>/dev/null; true)"  # until ENOSPC
    fill += f" && truncate -s -$(( $(stat -c %s {big}) / 2 )) {disk}/filler"
    check = f"cmp -s {big} {disk}/big.wav && echo big-unchanged; ls -a {disk}"
    script = f"mount -t tmpfs -o size=1m tmpfs {disk} && cp {big} {small} {disk} && {fill}"
    script += f' && {{ "$@"; rc=$?; {check}; exit $rc; }}'
    namespace = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]
    report = tmp_path / "r.json"
    cmd = [*namespace, MER, "tag", disk, "--model", model_dir, "--report", report, "-q"]
    env = {**os.environ, "MER_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if not report.exists() and "Traceback" not in done.stderr:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {done.stderr.strip()}")
    assert done.returncode == 1, done.stderr
    files = {Path(f["path"]).name: f for f in json.loads(report.read_text())["files"]}
    assert files["big.wav"]["status"] == "failed"
    assert files["big.wav"]["reason"] == "disk full (no space left on device)"
    assert files["small.mp3"]["status"] == "tagged"
    # the original is intact and no temporary copy is left behind
    assert done.stdout.split() == ["big-unchanged", ".", "..", "big.wav", "filler", "small.mp3"]
    assert f"failed: {disk / 'big.wav'}: disk full" in done.stderr
