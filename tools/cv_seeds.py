"""How much a cross-validated score moves with the fold split: the 5-fold grouped CV of
one configuration repeated over several fold seeds (the cached embeddings stay those of
seed 0, so only the split and the head's initialisation change).

    python tools/cv_seeds.py ../shared/data/4q-dev --backbone musicnn-msd --views 3
    python tools/cv_seeds.py ../shared/data/4q-dev --backbone musicnn-msd-pool --views 1
    python tools/cv_seeds.py ../shared/data/4q-dev --extractor essentia --set song_c=0
    python tools/cv_seeds.py ../shared/data/4q-dev --add build/midi/vgmidi/manifest.csv
    python tools/cv_seeds.py ../shared/data/4q-dev --method sssl --unlabelled MUSIC_FOLDER
    python tools/cv_seeds.py ../shared/data/4q-dev --method sssl --set finetune=2 \
      --set epochs=8 --set warmup_epochs=2 --set rampup_epochs=3

Prints each seed's mean macro-F1 over folds, then their mean and standard deviation; with
`--extractor`, the method with the extractor's features in stage 2 beside it, on the
same splits. With `--record FILE`, each finished fold is appended to FILE (JSON lines)
and a rerun with the same arguments skips the folds already there, so a run of hours
that is stopped loses at most the fold in progress.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mer_plugin.datasets import load_dataset, load_unlabelled
from mer_plugin.song_extras import SongExtras
from mer_plugin.training.evaluate import metrics
from mer_plugin.training.methods import fit, predict
from mer_plugin.training.prepare import prepare
from mer_plugin.training.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--backbone", default="musicnn-msd")
    parser.add_argument("--method", default="segment", choices=("clip", "segment", "sssl"))
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="fold seeds from this one")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--group-by", default="Artist")
    parser.add_argument("--extractor", action="append", default=[])
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE (Settings)")
    parser.add_argument("--add", action="append", default=[], help="a train-only dataset")
    parser.add_argument("--unlabelled", help="a folder of music without labels (sssl)")
    parser.add_argument("--record", type=Path, help="JSON lines of finished folds, resumed")
    args = parser.parse_args()
    done = _recorded_folds(args)

    data = load_dataset(args.dataset, args.group_by)
    settings = Settings(views=args.views).with_overrides(args.set)
    extras = SongExtras.of(args.extractor) if args.extractor else None
    clip_level = args.method == "clip"
    train_only = [load_dataset(path) for path in args.add]
    unlabelled = load_unlabelled(args.unlabelled) if args.unlabelled else None
    prepared = prepare(
        data, args.backbone, settings, clip_level=clip_level, extras=extras,
        train_only=train_only, unlabelled=unlabelled,
    )  # fmt: skip
    print(f"caches ready in {prepared.seconds:.0f} s", flush=True)
    with_extras = prepared.ctx
    runs = {args.method: replace(with_extras, extras=None)}
    if extras:
        runs[f"{args.method}+{'+'.join(extras.names)}"] = with_extras
    means: dict[str, list[float]] = {name: [] for name in runs}
    seconds: dict[str, list[float]] = {name: [] for name in runs}  # training, per fold
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name, ctx in runs.items():
            scores = []
            for k, (train, test) in enumerate(ctx.folds(args.folds, seed)):
                if (name, seed, k) in done:
                    score, spent = done[name, seed, k]
                    print(f"  fold {k}: {score:.3f} ({spent:.0f} s, recorded)", flush=True)
                else:
                    started = time.perf_counter()
                    fitted = fit(args.method, ctx, train, 100 * seed + k)
                    spent = time.perf_counter() - started
                    probs = predict(fitted, ctx, test)
                    score = metrics(probs, ctx.clip_labels[test], data.classes)["macro_f1"]
                    print(f"  fold {k}: {score:.3f} ({spent:.0f} s)", flush=True)
                    _record(args, name, seed, k, score, spent)
                scores.append(score)
                seconds[name].append(spent)
            means[name].append(float(np.mean(scores)))
            print(
                f"fold seed {seed}, {name}: macro-F1 {means[name][-1]:.3f} ± "
                f"{np.std(scores, ddof=1):.3f}",
                flush=True,
            )
    for name, values in means.items():
        spread = f"{np.std(values, ddof=1):.3f}" if len(values) > 1 else "n/a (one seed)"
        print(
            f"{args.backbone}, {name}, views {args.views}: mean over {args.seeds} fold seeds "
            f"{np.mean(values):.3f}, seed-to-seed standard deviation {spread}, "
            f"training {np.mean(seconds[name]):.1f} ± {np.std(seconds[name], ddof=1):.1f} s / fold"
        )


def _run_arguments(args: argparse.Namespace) -> dict:
    """What makes two runs' folds the same: every argument but the seeds and the file."""
    skip = {"record", "seeds", "first_seed"}
    return {key: value for key, value in vars(args).items() if key not in skip}


def _recorded_folds(args: argparse.Namespace) -> dict[tuple[str, int, int], tuple[float, float]]:
    """(run name, fold seed, fold) -> (macro-F1, training seconds) from `--record`'s file."""
    if args.record is None or not args.record.exists():
        return {}
    done = {}
    for line in args.record.read_text().splitlines():
        row = json.loads(line)
        if row["arguments"] != _run_arguments(args):
            sys.exit(f"{args.record} records a run with other arguments: {row['arguments']}")
        done[row["name"], row["seed"], row["fold"]] = (row["macro_f1"], row["seconds"])
    return done


def _record(args: argparse.Namespace, name: str, seed: int, fold: int, score: float,
            seconds: float) -> None:  # fmt: skip
    if args.record is None:
        return
    row = {"arguments": _run_arguments(args), "name": name, "seed": seed, "fold": fold,
           "macro_f1": score, "seconds": seconds}  # fmt: skip
    with args.record.open("a") as out:
        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
