"""Fault injection for `mer tag`: kill -9 of the main process or of a worker, Ctrl-C and
SIGTERM at random moments, over a library of every format, and what each left behind.

    python tools/faults.py --faults 100 --seed 0

Each round restores a pristine library (songs with an artist and a cover where the
format holds one), starts `mer tag LIBRARY --jobs 2` with the shipped model, injects one
fault after a random delay, then checks every file: its decoded audio, its other tags
and cover unchanged, mer's fields all there or none, no traceback on the terminal, no
process of the run alive 2 s later. Then it reruns `mer tag` to the end, which must
succeed with every file tagged and no temporary copy left. Prints the counts; the numbers
in docs/reliability.md come from here. Needs ffmpeg for the m4a file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import mutagen
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from audio_factory import write_audio  # noqa: E402

from mer_plugin.audio import open_stream  # noqa: E402
from mer_plugin.testing import MER_KEYS  # noqa: E402

MER = Path(sys.executable).with_name("mer")
FORMATS = ("wav", "aiff", "flac", "mp3", "ogg", "opus", "m4a")
FAULTS = ("kill -9 main", "kill -9 worker", "SIGINT", "SIGTERM")
FIELDS = 6  # mood and the five MER_* numbers


def make_library(folder: Path, seconds: float) -> None:
    for i, fmt in enumerate(FORMATS):
        rate = 48000 if fmt == "opus" else 44100
        path = write_audio(folder / f"{i:02d} ünï {fmt}.{fmt}", seconds, sample_rate=rate,
                           channels=2, kind="noise", seed=i)  # fmt: skip
        audio = mutagen.File(path, easy=True)
        if audio is not None and fmt in ("flac", "mp3", "ogg", "m4a"):
            if audio.tags is None:
                audio.add_tags()
            audio["artist"] = ["Zoë"]
            audio.save()
    _add_cover(next(folder.glob("*.flac")))


def _add_cover(path: Path) -> None:
    from mutagen.flac import FLAC, Picture

    picture = Picture()
    picture.type, picture.mime, picture.data = 3, "image/png", b"\x89PNG" + bytes(range(200))
    audio = FLAC(path)
    audio.add_picture(picture)
    audio.save()


def snapshot(path: Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """(decoded audio digest, other tags, mer's fields) of one file."""
    audio = hashlib.sha256(np.concatenate(list(open_stream(path, 16000))).tobytes()).hexdigest()
    parsed = mutagen.File(path)
    tags = dict(parsed.tags.items()) if parsed is not None and parsed.tags is not None else {}
    other = {k: repr(v) for k, v in tags.items() if k.lower() not in MER_KEYS}
    ours = {k: repr(v) for k, v in tags.items() if k.lower() in MER_KEYS}
    pictures = getattr(parsed, "pictures", [])
    other.update({f"picture {i}": repr(p.data) for i, p in enumerate(pictures)})
    return audio, other, ours


def run_tag(library: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "MER_CACHE_DIR": str(cache)}
    cmd = [MER, "tag", library, "--jobs", "2", "-q"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(pid)
    return found


def inject(proc: subprocess.Popen, fault: str, delay: float) -> list[int]:
    """Wait `delay` seconds, inject `fault`; return the run's processes seen before."""
    time.sleep(delay)
    family = [proc.pid, *children(proc.pid)]
    if proc.poll() is not None:
        return family
    if fault == "kill -9 main":
        proc.send_signal(signal.SIGKILL)
    elif fault == "kill -9 worker":
        workers = [p for p in children(proc.pid) if b"spawn_main" in _cmdline(p)]
        os.kill(random.choice(workers) if workers else proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGINT if fault == "SIGINT" else signal.SIGTERM)
    return family


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def check_files(library: Path, before: dict, counts: Counter) -> None:
    for path, (audio, other, _) in before.items():
        now_audio, now_other, ours = snapshot(path)
        counts["audio changed"] += now_audio != audio
        counts["foreign tags lost"] += now_other != other
        counts["half-tagged"] += len(ours) not in (0, FIELDS)


def _traceback(err: bytes, what: str, counts: Counter) -> None:
    """Count a traceback (or a C++ abort) on the terminal, and print it for the record."""
    if b"Traceback" in err or b"terminate called" in err:
        counts["tracebacks"] += 1
        print(f"--- traceback, {what}:\n{err.decode(errors='replace')}", flush=True)


def one_round(args, work: Path, pristine: Path, before_names: dict, counts: Counter) -> None:
    library, cache = work / "library", work / "cache"
    shutil.rmtree(library, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(pristine, library)
    before = {library / name: value for name, value in before_names.items()}
    fault = random.choice(FAULTS)
    delay = random.uniform(0.05, args.window)
    proc = run_tag(library, cache)
    family = inject(proc, fault, delay)
    _, err = proc.communicate(timeout=300)
    time.sleep(2)
    counts[f"fault: {fault}"] += 1
    counts["orphans after 2 s"] += len(alive(family[1:]))
    _traceback(err, f"{fault} after {delay:.2f} s", counts)
    check_files(library, before, counts)
    rerun = run_tag(library, cache)
    _, err = rerun.communicate(timeout=300)
    counts["reruns failed"] += rerun.returncode != 0
    _traceback(err, f"the rerun after {fault} at {delay:.2f} s", counts)
    counts["untagged after rerun"] += sum(len(snapshot(p)[2]) != FIELDS for p in before)
    counts["temp copies after rerun"] += sum(".mer-" in p.name for p in library.iterdir())
    check_files(library, before, counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each song")
    parser.add_argument("--window", type=float, default=8.0, help="latest fault, seconds")
    args = parser.parse_args()
    random.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="mer-faults-") as tmp:
        work = Path(tmp)
        pristine = work / "pristine"
        pristine.mkdir()
        make_library(pristine, args.seconds)
        before = {p.name: snapshot(p) for p in sorted(pristine.iterdir())}
        counts: Counter = Counter()
        start = time.monotonic()
        for i in range(args.faults):
            one_round(args, work, pristine, before, counts)
            print(f"{i + 1}/{args.faults} faults, {time.monotonic() - start:.0f} s", flush=True)
    for name in sorted(counts):
        print(f"{name}: {counts[name]}")


if __name__ == "__main__":
    main()
