"""A model on listener-rated music of four genres, none of it from 4Q: the Emotify set
(Aljanaki, Wiering & Veltkamp, "Studying emotion induced by music through a
crowdsourcing game", Information Processing & Management, 2015): 400 one-minute
excerpts, 100 each of classical, rock, electronic and pop, and for each 11 to 59
listeners who picked up to three emotions of the GEMS scale they felt.

The GEMS emotions are read as arousal and valence directions (solemnity as neither,
amazement as positive only, nostalgia, "dreamy, melancholic", as low arousal only):

    high arousal: power, joyful activation, tension
    low arousal:  calmness, tenderness, nostalgia, sadness
    positive:     amazement, tenderness, calmness, power, joyful activation
    negative:     tension, sadness

A song's listener arousal is the share of its high-arousal picks among its high and
low ones (valence likewise). Per genre and model, the script prints the Spearman
correlation of MER_AROUSAL with listener arousal; the AUC of MER_AROUSAL between the
genre's third of songs with the highest listener arousal and the third with the lowest;
whether its scale carries over (the share of the top third with MER_AROUSAL above 0.5,
of the bottom third below); the same for valence but the scale (listeners pick far
more positive emotions than negative ones); and beside them, as a reference from
the same run, a song's loudness (RMS of the decoded 16 kHz signal, in dB) as an arousal
estimate.
Emotions here are felt (induced), not perceived as in 4Q: a harder, noisier target.
How far listeners agree among themselves is printed beside (split-half, stepped up).

    python tools/listener_check.py EMOTIFY_FOLDER --model default --model fast

EMOTIFY_FOLDER holds `data.csv` (one line per listener and song) and
`emotifymusic/<genre>/<n>.mp3`, song id = n + 100 x the genre's place in
classical, rock, electronic, pop.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from mer_plugin.audio import open_stream
from mer_plugin.inference import load_model, predict_file, resolve_model

GENRES = ("classical", "rock", "electronic", "pop")
EMOTIONS = (
    "amazement", "solemnity", "tenderness", "nostalgia", "calmness",
    "power", "joyful_activation", "tension", "sadness",
)  # fmt: skip
AROUSAL = (
    ("power", "joyful_activation", "tension"),
    ("calmness", "tenderness", "nostalgia", "sadness"),
)
VALENCE = (
    ("amazement", "tenderness", "calmness", "power", "joyful_activation"),
    ("tension", "sadness"),
)
LOUDNESS = "loudness dB"  # the reference arousal estimate
Axis = tuple[tuple[str, ...], tuple[str, ...]]  # the emotions read as high, and as low


@dataclass
class Song:
    path: Path
    genre: str
    picks: list[list[int]] = field(default_factory=list)  # a row per listener, EMOTIONS order

    def share(self, axis: Axis, listeners: np.ndarray | None = None) -> float:
        """The share of high picks among the high and low ones (of some listeners)."""
        rows = np.asarray(self.picks)[listeners if listeners is not None else ...]
        totals = dict(zip(EMOTIONS, rows.sum(0), strict=True))
        up, down = (sum(totals[e] for e in side) for side in axis)
        return up / (up + down) if up + down else float("nan")


def read_songs(root: Path) -> list[Song]:
    songs: dict[int, Song] = {}
    with open(root / "data.csv", newline="") as f:
        for row in csv.DictReader(f, skipinitialspace=True):
            song_id, genre = int(row["track id"]), row["genre"].strip()
            number = song_id - 100 * GENRES.index(genre)
            song = songs.setdefault(
                song_id, Song(root / "emotifymusic" / genre / f"{number}.mp3", genre)
            )
            song.picks.append([int(row[e]) for e in EMOTIONS])
    return [song for _, song in sorted(songs.items())]


def listener_agreement(songs: list[Song], axis: Axis, splits: int = 20) -> float:
    """How well listeners agree with each other: the Spearman rho between the shares of
    two random halves of each song's listeners, over songs, its median over `splits`
    splits, stepped up to all listeners (Spearman-Brown)."""
    rng = np.random.default_rng(0)
    rhos = []
    for _ in range(splits):
        halves = [rng.permutation(len(song.picks)) for song in songs]
        a = [song.share(axis, h[: len(h) // 2]) for song, h in zip(songs, halves, strict=True)]
        b = [song.share(axis, h[len(h) // 2 :]) for song, h in zip(songs, halves, strict=True)]
        rhos.append(spearmanr(a, b, nan_policy="omit").statistic)
    rho = float(np.median(rhos))
    return 2 * rho / (1 + rho)


def loudness_db(path: Path) -> float:
    """Mean power over every sample (the last block is shorter than the rest), in dB."""
    energy = samples = 0
    for block in open_stream(path, 16000):
        energy += float(np.sum(np.square(block, dtype=np.float64)))
        samples += len(block)
    return 10 * float(np.log10(energy / max(samples, 1) + 1e-12))


def agreement(listeners: np.ndarray, estimate: np.ndarray, scaled: bool) -> str:
    """Spearman rho; the AUC between the songs of the top and bottom thirds of the
    listeners' measure; and, for a probability (`scaled`), the share of the top third
    above 0.5 and of the bottom third below it."""
    rho = float(spearmanr(listeners, estimate).statistic)
    low_cut, high_cut = np.quantile(listeners, [1 / 3, 2 / 3])
    high, low = listeners > high_cut, listeners < low_cut
    keep = high | low
    auc = roc_auc_score(high[keep], estimate[keep]) if high.any() and low.any() else np.nan
    cell = f"{rho:.2f}, {auc:.2f}"
    if scaled:
        cell += f", {np.mean(estimate[high] > 0.5):.2f} / {np.mean(estimate[low] < 0.5):.2f}"
    return cell


def report(
    title: str, songs: list[Song], axis: Axis, estimates: dict[str, np.ndarray], scale: bool
) -> None:
    listeners = np.array([song.share(axis) for song in songs])
    genres = np.array([song.genre for song in songs])
    scaled = {name: scale and name != LOUDNESS for name in estimates}
    names = " | ".join(
        f"{name}: rho, AUC" + (", thirds right" if scaled[name] else "") for name in estimates
    )
    print(f"\n### {title}\n")
    print(f"| genre | songs | listeners' agreement, rho | {names} |")
    print("|---|---|---|" + "---|" * len(estimates))
    for genre in (*GENRES, "all"):
        mask = ((genres == genre) | (genre == "all")) & ~np.isnan(listeners)
        cells = [agreement(listeners[mask], e[mask], scaled[n]) for n, e in estimates.items()]
        among = listener_agreement([songs[i] for i in np.flatnonzero(mask)], axis)
        print(f"| {genre} | {mask.sum()} | {among:.2f} | " + " | ".join(cells) + " |")


def save(path: Path, songs: list[Song], columns: dict[str, np.ndarray]) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["file", "genre", "listeners", "listener_arousal", "listener_valence", *columns]
        )
        for i, song in enumerate(songs):
            shares = (f"{song.share(AROUSAL):.4f}", f"{song.share(VALENCE):.4f}")
            values = [f"{v[i]:.4f}" for v in columns.values()]
            out.writerow([song.path.name, song.genre, len(song.picks), *shares, *values])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the Emotify folder (data.csv, emotifymusic/)")
    parser.add_argument("--model", action="append", help="model folder or name (repeatable)")
    parser.add_argument("--save", type=Path, help="write every song's numbers to this CSV")
    args = parser.parse_args()
    if not (args.root / "data.csv").is_file():
        parser.error(f"{args.root}: no data.csv here (the Emotify annotations)")
    songs = read_songs(args.root)
    listeners = np.array([len(song.picks) for song in songs])
    print(f"{len(songs)} songs, {listeners.sum()} listener ratings", end=" ")
    print(f"({listeners.min()} to {listeners.max()} a song)")
    arousal = {LOUDNESS: np.array([loudness_db(song.path) for song in songs])}
    valence: dict[str, np.ndarray] = {}
    for name in args.model or ["default"]:
        model = load_model(resolve_model(name))
        predictions = [predict_file(model, song.path) for song in songs]
        label = model.release if model.release not in valence else f"{model.release} ({name})"
        arousal[label] = np.array([p.arousal for p in predictions])
        valence[label] = np.array([p.valence for p in predictions])
    report("Arousal", songs, AROUSAL, arousal, scale=True)
    report("Valence", songs, VALENCE, valence, scale=False)
    if args.save:
        columns = {f"{n} arousal": v for n, v in arousal.items()}
        save(args.save, songs, columns | {f"{n} valence": v for n, v in valence.items()})


if __name__ == "__main__":
    main()
