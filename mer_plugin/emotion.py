"""Russell's circumplex as mer uses it: four quadrants of valence x arousal, one mood each.

Q1 high arousal, positive valence; Q2 high arousal, negative; Q3 low arousal, negative;
Q4 low arousal, positive. Valence is P(Q1) + P(Q4), arousal P(Q1) + P(Q2).
"""

from __future__ import annotations

QUADRANTS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
MOODS: dict[str, str] = {"Q1": "Happy", "Q2": "Angry", "Q3": "Sad", "Q4": "Calm"}
