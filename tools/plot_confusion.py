"""Draw the summed cross-validation confusion matrix of one method from a `mer eval --json`
report as a PNG (for docs/model.md).

    python tools/plot_confusion.py build/default-model-eval.json segment docs/confusion.png

Needs matplotlib (`pip install ".[docs]"`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MOODS = {"Q1": "Happy", "Q2": "Angry", "Q3": "Sad", "Q4": "Calm"}


def plot(report_path: Path, method: str, out: Path) -> None:
    report = json.loads(report_path.read_text())
    counts = np.array(report["results"][method]["confusion"])  # row: true, column: predicted
    classes = [f"{c}\n{MOODS.get(c, '')}" for c in report["classes"]]
    share = counts / counts.sum(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=150)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        colour = "white" if share[i, j] > 0.5 else "black"
        ax.text(j, i, f"{n}\n{share[i, j]:.0%}", ha="center", va="center", color=colour)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    folds = report["protocol"]["folds"]
    ax.set_title(f"{report['dataset']}: {method}, {folds} folds by artist", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    plot(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
