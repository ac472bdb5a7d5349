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


def small_share(share: float) -> str:
    """A share that may be a sliver, as people read it: "12%", or "under 1%" rather than a "0%" that is not nothing."""
    return "under 1%" if 0 < share < 0.005 else f"{share:.0%}"


def percent(share: float, digits: int = 1) -> str:
    """A proportion as a percentage: "87.1%" ("–" when unknown)."""
    if share is None or math.isnan(share):
        return "–"
    return f"{share:.{digits}%}"


def percent_range(low: float, high: float, digits: int = 0) -> str:
    """An interval as people read it: "82–93%" ("–" when unknown)."""
    if math.isnan(low) or math.isnan(high):
        return "–"
    return f"{low * 100:.{digits}f}–{high * 100:.{digits}f}%"


def q_value(q: float) -> str:
    """A q value (a p value corrected for the many comparisons made) as people read it: "0.042", or "under 0.001"
    rather than a "0.000" that reads as certainty ("–" when unknown)."""
    if q is None or math.isnan(q):
        return "–"
    return "under 0.001" if q < 0.001 else f"{q:.3f}"


def points(difference: float, digits: int = 1, signed: bool = False) -> str:
    """A difference between two proportions in percentage points: "8.3 points", or with `signed` a change: "+8.3
    points" ("–" when unknown)."""
    if difference is None or math.isnan(difference):
        return "–"
    return f"{difference * 100:{'+' if signed else ''}.{digits}f} points"


# What predicting race and age from a face is and is not: said once here, shown by the About page in full and
# wherever race or age predictions appear in short (the Evaluation and Fairness pages, the model card, the report).
RACE_AGE_IS = ("A model that predicts race or age from a face learns to reproduce FairFace's labels: seven race "
               "categories and nine age bins, each given by annotators who looked at the photo. Those labels are "
               "annotators' perceptions of a face, not a person's identity, ancestry or birth date, and not "
               "biological facts; the model's answer is a guess at what the annotators would have said.")
RACE_AGE_MUST_NOT = ("Such predictions must not be used to decide anything about a person: not to sort, admit, "
                     "refuse, price, police or profile anyone.")
RACE_AGE_WHY = ("faircam predicts them only to audit its own model: to see where it fails (whose faces it misreads) "
                "and whether its gender errors follow the faces' perceived race and age, since a network that has "
                "learned to see race and age can lean on them for its gender answer. An audit looks at them because "
                "a model that errs more for some groups harms those groups, and one cannot measure that without "
                "naming the groups.")
RACE_AGE_CAPTION = ("Race and age predictions are here only as subjects of the audit: FairFace's race and age labels "
                    "are annotators' perceptions, not identity or biological facts, and such predictions must not be "
                    "used to decide anything about a person.")

# A black box's maps (`faircam.vision.occlusion`): the method's name, and what every page showing them says.
OCCLUSION = "Occlusion"
OCCLUSION_MAPS = ("These are **occlusion maps, not CAMs**: the model runs as a black box (onnxruntime, its graph has "
                  "an operator faircam cannot convert to torch), so faircam hides one square of the image at a time "
                  "(Captum's Occlusion) and maps how much the answer's probability falls. They show what the answer "
                  "depends on at the square's scale, not what a layer saw.")
