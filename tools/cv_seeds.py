"""How much a cross-validated score moves with the fold split: the 5-fold grouped CV of
one configuration repeated over several fold seeds (the cached embeddings stay those of
seed 0, so only the split and the head's initialisation change).

    python tools/cv_seeds.py ../shared/data/4q-dev --backbone musicnn-msd --views 3
    python tools/cv_seeds.py ../shared/data/4q-dev --backbone musicnn-msd-pool --views 1

Prints each seed's mean macro-F1 over folds, then their mean and standard deviation.
"""

from __future__ import annotations

import argparse

import numpy as np

from mer_plugin.datasets import grouped_folds, load_dataset
from mer_plugin.training.evaluate import metrics
from mer_plugin.training.methods import fit, predict
from mer_plugin.training.prepare import prepare
from mer_plugin.training.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--backbone", default="musicnn-msd")
    parser.add_argument("--method", default="segment", choices=("segment", "sssl"))
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--group-by", default="Artist")
    args = parser.parse_args()

    data = load_dataset(args.dataset, args.group_by)
    ctx = prepare(data, args.backbone, Settings(views=args.views), clip_level=False).ctx
    labels, classes = ctx.clip_labels, ctx.dataset.classes
    means = []
    for seed in range(args.seeds):
        scores = []
        for k, (train, test) in enumerate(grouped_folds(ctx.dataset, args.folds, seed)):
            probs = predict(fit(args.method, ctx, train, 100 * seed + k), ctx, test)
            scores.append(metrics(probs, labels[test], classes)["macro_f1"])
        means.append(float(np.mean(scores)))
        print(f"fold seed {seed}: macro-F1 {means[-1]:.3f} ± {np.std(scores, ddof=1):.3f}")
    print(
        f"{args.backbone}, {args.method}, views {args.views}: mean over {args.seeds} fold "
        f"seeds {np.mean(means):.3f}, seed-to-seed standard deviation {np.std(means, ddof=1):.3f}"
    )


if __name__ == "__main__":
    main()
