"""A picture of a song's emotion: valence and arousal over time on the quadrants'
colours, and the segments on the valence-arousal plane with the song's result.

    plot_prediction(predict_file(model, "song.flac"), "song.flac", Path("song.png"))

Needs matplotlib (`pip install "mer-plugin[plot]"`); the format follows the extension
(png, svg, pdf). The file is written whole or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mer_plugin.emotion import MOODS, QUADRANTS, valence_arousal
from mer_plugin.errors import MerError

if TYPE_CHECKING:
    from mer_plugin.inference.predict import Prediction

COLOURS = {"Q1": "#f2b134", "Q2": "#d9534f", "Q3": "#5b7fbf", "Q4": "#5cb85c"}
# where each quadrant sits on the plane: (valence, arousal) of its corner
CORNERS = {"Q1": (1, 1), "Q2": (0, 1), "Q3": (0, 0), "Q4": (1, 0)}


class PlotError(MerError):
    """The picture cannot be drawn or written."""


def check_plot_target(out: Path) -> None:
    """Before any work: matplotlib is there and writes `out`'s format into its folder."""
    _pyplot()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = FigureCanvasAgg.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in formats:
        shown = ", ".join(f".{f}" for f in sorted(formats))
        raise PlotError(f"{out}: cannot draw {out.suffix or 'a file without extension'} ({shown})")
    if not out.parent.is_dir():
        raise PlotError(f"{out}: no such folder {out.parent}")


def plot_prediction(prediction: Prediction, title: str, out: Path) -> None:
    """Draw `prediction` (quadrant classes) into the image file `out`."""
    plt = _pyplot()
    heard = [s for s in prediction.timeline if not s.silent]  # silence is left blank
    points = [valence_arousal(s.probabilities) for s in heard]
    if prediction.valence is None or None in points:
        raise PlotError("--plot draws quadrant models only (classes Q1-Q4)")
    figure, (timeline, plane) = plt.subplots(
        1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2.2, 1]}, layout="constrained"
    )
    _draw_timeline(timeline, prediction, heard, points)
    _draw_plane(plane, prediction, heard, points)
    mood = f" {prediction.mood}" if prediction.mood else ""
    figure.suptitle(
        f"{title}: {prediction.label}{mood}, valence {prediction.valence:.2f}, "
        f"arousal {prediction.arousal:.2f}, confidence {prediction.confidence:.2f} "
        f"({prediction.model})"
    )
    _save(figure, out)
    plt.close(figure)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotError('--plot needs matplotlib: pip install "mer-plugin[plot]"') from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _draw_timeline(ax, prediction: Prediction, heard: list, points: list) -> None:
    """Valence and arousal per segment heard; behind them each one's quadrant colour."""
    for segment in heard:
        quadrant = max(segment.probabilities, key=segment.probabilities.get)
        ax.axvspan(segment.start, segment.end, color=COLOURS[quadrant], alpha=0.25, lw=0)
    middles = [(s.start + s.end) / 2 for s in heard]
    ax.plot(middles, [v for v, _ in points], "-o", ms=3, color="#333333", label="valence")
    ax.plot(middles, [a for _, a in points], "-o", ms=3, color="#8e44ad", label="arousal")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="time (s)", ylim=(0, 1), xlim=(0, prediction.timeline[-1].end))
    ax.set_ylabel("valence, arousal (0-1)")
    handles, labels = ax.get_legend_handles_labels()
    for quadrant in QUADRANTS:
        handles.append(ax.fill_between([], [], color=COLOURS[quadrant], alpha=0.4))
        labels.append(f"{quadrant} {MOODS[quadrant]}")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)


def _draw_plane(ax, prediction: Prediction, heard: list, points: list) -> None:
    """Each segment on the valence-arousal plane (size: confidence), the song as a star."""
    for quadrant, (v, a) in CORNERS.items():
        ax.add_patch(_square(v, a, COLOURS[quadrant]))
        ax.text(0.05 + 0.9 * v, 0.05 + 0.9 * a, f"{quadrant} {MOODS[quadrant]}",
                ha="right" if v else "left", va="top" if a else "bottom", fontsize=9)  # fmt: skip
    sizes = [10 + 60 * s.confidence for s in heard]
    ax.scatter(*zip(*points, strict=True), s=sizes, color="#333333", alpha=0.6, label="segments")
    ax.scatter([prediction.valence], [prediction.arousal], marker="*", s=320,
               color="black", label="song")  # fmt: skip
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
    ax.set(xlabel="valence (dots: segments, sized by confidence)", ylabel="arousal")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)


def _square(v: int, a: int, colour: str):
    from matplotlib.patches import Rectangle

    return Rectangle((0.5 * v, 0.5 * a), 0.5, 0.5, color=colour, alpha=0.25, lw=0)


def _save(figure, out: Path) -> None:
    part = out.with_name(f".{out.name}.part{out.suffix}")
    try:
        figure.savefig(part, dpi=110)
        os.replace(part, out)
    except (OSError, ValueError) as error:  # no such folder, unknown image format
        raise PlotError(f"{out}: cannot write the picture: {error}") from None
    finally:
        part.unlink(missing_ok=True)
