"""tools/listener_check.py on an Emotify-shaped folder: which file each rating belongs to,
how the GEMS picks become listener arousal and valence, and the whole check run with a
shipped model on real mp3s."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from audio_factory import write_audio

TOOL = Path(__file__).resolve().parents[1] / "tools" / "listener_check.py"
HEADER = (
    "track id, genre, amazement, solemnity, tenderness, nostalgia, calmness, power, "
    "joyful_activation, tension, sadness, mood, liked, disliked, age, gender, mother tongue"
)
GENRES = ("classical", "rock", "electronic", "pop")
# per song number: each listener's picks, in the header's order of the nine emotions
LISTENERS = {
    1: ["000010000", "001000000", "000000001", "000100000"],  # all low arousal
    2: ["000001010", "000001100", "000010000", "000001000"],  # 5 high, 1 low
    3: ["000000010", "000000001", "100000000", "000000010"],  # 2 high, 1 low
}


def _tool():
    spec = importlib.util.spec_from_file_location("listener_check", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _emotify_folder(root: Path) -> Path:
    """Three songs a genre, ids 100 apart between genres as in Emotify, one row per
    listener; song n is an mp3 whose loudness rises with n."""
    rows = [HEADER]
    for place, genre in enumerate(GENRES):
        for number, picks in LISTENERS.items():
            mp3 = root / "emotifymusic" / genre / f"{number}.mp3"
            mp3.parent.mkdir(parents=True, exist_ok=True)
            write_audio(mp3, 4.0, kind="noise", amplitude=0.1 * number, seed=number)
            song_id = 100 * place + number
            rows += [f"{song_id},{genre},{','.join(p)},3,0,0,30,1,Dutch" for p in picks]
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root


def test_ratings_become_listener_arousal_and_valence(tmp_path: Path) -> None:
    tool = _tool()
    songs = tool.read_songs(_emotify_folder(tmp_path / "emotify"))
    assert [(s.genre, s.path.name) for s in songs[:4]] == [
        ("classical", "1.mp3"), ("classical", "2.mp3"), ("classical", "3.mp3"), ("rock", "1.mp3"),
    ]  # fmt: skip
    assert all(s.path.is_file() and len(s.picks) == 4 for s in songs)
    arousal = [s.share(tool.AROUSAL) for s in songs[:3]]
    assert arousal == pytest.approx([0.0, 5 / 6, 2 / 3])
    # song 3: tension twice and sadness are negative, amazement positive
    assert songs[2].share(tool.VALENCE) == pytest.approx(1 / 4)


def test_check_runs_a_shipped_model_and_saves_every_song(tmp_path: Path) -> None:
    root = _emotify_folder(tmp_path / "emotify")
    saved = tmp_path / "songs.csv"
    command = [sys.executable, TOOL, root, "--model", "fast", "--save", saved]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "12 songs, 48 listener ratings" in done.stdout
    assert "### Arousal" in done.stdout and "### Valence" in done.stdout
    with open(saved, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert all(0 <= float(r["mer-4q 2 arousal"]) <= 1 for r in rows)
    loudness = [float(r["loudness dB arousal"]) for r in rows[:3]]
    assert loudness == sorted(loudness)  # amplitude 0.1, 0.2, 0.3
