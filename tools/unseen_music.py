"""A model on real music far from 4Q, which no model of mer was trained on: game
soundtracks from Debian, whose titles or versions say what to expect.

- Wesnoth (`wesnoth-1.16-music`): tracks whose titles name a mood; does the song quadrant
  agree with the title?
- SuperTuxKart (`supertuxkart-data`): tracks that come in a slow and a fast version
  (`celtic.ogg` / `celtic_fast.ogg`); does the fast one get the higher arousal?

Get the audio (no installation; the packages' licences allow it):

    apt-get download wesnoth-1.16-music supertuxkart-data
    for d in *.deb; do dpkg-deb -x "$d" debs; done
    python tools/unseen_music.py debs/usr/share/games --model default --model path/to/model

Prints a markdown table per set and model, and the counts of agreement.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mer_plugin.errors import SilentTrack
from mer_plugin.inference import Model, Prediction, load_model, predict_file, resolve_model

# title -> the quadrants the title calls for (Q1 happy, Q2 angry/tense, Q3 sad, Q4 calm)
WESNOTH = {
    "battle": ("Q1", "Q2"),
    "battle-epic": ("Q1", "Q2"),
    "sad": ("Q3",),
    "defeat": ("Q3",),
    "defeat2": ("Q3",),
    "victory": ("Q1",),
    "victory2": ("Q1",),
    "love_theme": ("Q4", "Q1"),
    "silence": ("Q4", "Q3"),
    "suspense": ("Q2",),
    "frantic": ("Q1", "Q2"),
}
FAST_SUFFIXES = ("_fast", "_f")


def wesnoth(root: Path, model: Model) -> None:
    found = {p.stem: p for p in root.rglob("*.ogg") if "wesnoth" in str(p)}
    print(f"\n### Wesnoth, {model.release}\n")
    print("| track | says | P(Q1, Q2, Q3, Q4) | arousal | agrees with the title |")
    print("|---|---|---|---|---|")
    agree = heard = 0
    for title, wanted in WESNOTH.items():
        if title not in found:
            continue
        try:
            p = predict_file(model, found[title])
        except SilentTrack:  # silence.ogg: 10 s peaking at -78.5 dBFS, the game's "no music"
            print(f"| {title} | no mood: silent | | | (left out) |")
            continue
        ok = p.label in wanted
        agree += ok
        heard += 1
        print(f"| {title} | {p.mood} | {_probs(p)} | {p.arousal:.2f} | {'yes' if ok else 'no'} |")
    print(f"\n{agree} of {heard} agree with their titles.")


def supertuxkart(root: Path, model: Model) -> None:
    tracks = {p.stem: p for p in root.rglob("*.ogg") if "supertuxkart" in str(p)}
    pairs = [
        (stem[: -len(suffix)], stem)
        for stem in sorted(tracks)
        for suffix in FAST_SUFFIXES
        if stem.endswith(suffix) and stem[: -len(suffix)] in tracks
    ]
    print(f"\n### SuperTuxKart slow and fast versions, {model.release}\n")
    print("| track | arousal, slow | arousal, fast | says (slow, fast) | fast is higher |")
    print("|---|---|---|---|---|")
    higher = 0
    for slow, fast in pairs:
        a, b = predict_file(model, tracks[slow]), predict_file(model, tracks[fast])
        ok = b.arousal > a.arousal
        higher += ok
        print(
            f"| {slow} | {a.arousal:.2f} | {b.arousal:.2f} | {a.mood}, {b.mood} | "
            f"{'yes' if ok else 'no'} |"
        )
    print(f"\nThe fast version has the higher arousal in {higher} of {len(pairs)} pairs.")


def _probs(p: Prediction) -> str:
    return " ".join(f"{p.probabilities[q]:.2f}".lstrip("0") for q in ("Q1", "Q2", "Q3", "Q4"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="where the packages' audio was unpacked")
    parser.add_argument("--model", action="append", help="model folder or name (repeatable)")
    args = parser.parse_args()
    for name in args.model or [None]:
        model = load_model(resolve_model(name))
        wesnoth(args.root, model)
        supertuxkart(args.root, model)


if __name__ == "__main__":
    main()
