"""Russell's circumplex as mer uses it: four quadrants of valence x arousal, one mood each.

Q1 high arousal, positive valence; Q2 high arousal, negative; Q3 low arousal, negative;
Q4 low arousal, positive. Valence is P(Q1) + P(Q4), arousal P(Q1) + P(Q2).
"""

from __future__ import annotations

from collections.abc import Mapping

QUADRANTS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
MOODS: dict[str, str] = {"Q1": "Happy", "Q2": "Angry", "Q3": "Sad", "Q4": "Calm"}


def valence_arousal(probabilities: Mapping[str, float]) -> tuple[float, float] | None:
    """(valence, arousal) in [0, 1] from quadrant probabilities; None without all four."""
    if not all(q in probabilities for q in QUADRANTS):
        return None
    p = probabilities
    return p["Q1"] + p["Q4"], p["Q1"] + p["Q2"]
