"""The words every page, the report and the CLI use for the focus score, its chance level and numbers.

One idea, one name: the share of a map's heat on the face is the *focus score*, the share a map spread
evenly over the picture would score is its *chance level*. Region tables say once how the shares add up.
Gaps between proportions are written in points, intervals as "82–93%". Standard library only: the
first page stays quick.
"""

from __future__ import annotations

import math

FOCUS_SCORE = "focus score"
CHANCE = "chance level"
# The JSON keys of `faircam explain` (the cache keeps its own column names: its schema is a contract).
FOCUS_KEY, CHANCE_KEY = "focus_score", "chance_level"
# Where regions are shown: the face is the sum of its four regions, so a row adds up to more than 100%.
SUM_RULE = ("The face column is the sum of eyes, nose, mouth and rest of face: those four and the background add up "
            "to 100%, so a whole row adds up to more.")
FOCUS_DEFINITION = (f"The **{FOCUS_SCORE}** is the share of a map's heat on the face; its **{CHANCE}** is what a map "
                    "spread evenly over the picture would score (the face's share of the picture). A focus score well "
                    "above its chance level means the model looked at the face.")
# The face column's name in region tables, and chance's row name.
FACE_COLUMN = f"face ({FOCUS_SCORE})"


def share_caption(method: str, focus: float, chance: float) -> str:
    """A map's caption: "Grad-CAM: focus score 62% (chance level 35%)"."""
    return f"{method}: {FOCUS_SCORE} {focus:.0%} ({CHANCE} {chance:.0%})"


def percent_range(low: float, high: float, digits: int = 0) -> str:
    """An interval as people read it: "82–93%" ("–" when unknown)."""
    if math.isnan(low) or math.isnan(high):
        return "–"
    return f"{low * 100:.{digits}f}–{high * 100:.{digits}f}%"


def points(difference: float, digits: int = 1) -> str:
    """A difference between two proportions in percentage points: "8.3 points" ("–" when unknown)."""
    if difference is None or math.isnan(difference):
        return "–"
    return f"{difference * 100:.{digits}f} points"
