"""The Classroom lesson's choices: which faces are worth a lesson, how its verdicts are drawn, and
what it may say about the model (from the model's own description, never from the bundled model's).

No torch and no Streamlit: the page only words what these functions decide.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from faircam.models.registry import ModelEntry
from faircam.vision.focus import REGIONS
from faircam.vision.quality import SLICES, frontal, yaw

if TYPE_CHECKING:  # the lesson reads views' geometry; it imports no torch
    from faircam.vision.preprocess import View

CHILD_AGES = ("0-2", "3-9", "10-19")
# The cache column of each face's head turn (`faircam evaluate` and `faircam add-quality` measure it).
TURN = SLICES["head turn"].column
# Focus on the face minus chance: above CLEAR the model looked clearly at the face, above SLIGHT a little.
CLEAR_LIFT, SLIGHT_LIFT = 0.15, 0.05
# An answer this sure is "sure"; a confidence drop larger than LOST counts as "became much less sure".
SURE, LOST = 0.9, 0.1
# A fresh set's hesitant face: an answer within this of a coin toss (0.5).
HESITANT = 0.15
# An answer under this is worded as a coin toss (two classes: within 10 points of 50%).
COIN_TOSS = 0.6
# The crop "turned" the picture above this many degrees, and changed the face's size when it scaled it by more
# than SIZE_CHANGE (either way).
TURNED_DEGREES, SIZE_CHANGE = 2.0, 0.1


def examples(rows: pd.DataFrame, exists: Callable[[str], bool], draw: int = 0) -> pd.DataFrame:
    """Six faces worth a lesson from an evaluation's rows (a face found, the image on disk, and where the cache
    measured head turns, `quality_yaw`, a frontal face): a right and a wrong answer per gender (adults), a
    hesitant adult, and a child of 3-9. Draw 0 takes the surest right and wrong answers, the most hesitant adult
    and the surest child; every other draw is a fresh set of the same kinds (sure right answers, wrong ones,
    hesitant ones), reproducible by its number. In a shuffled order, so right and wrong are not told apart by
    position."""
    found = rows[rows["face_found"] & rows["file"].map(exists)]
    if TURN in found:
        # Profile faces are skipped: the lesson names eyes, nose and mouth, which their landmarks misplace.
        found = found[found[TURN].map(frontal)]
    adults = found[~found["age"].isin(CHILD_AGES)]
    right, wrong = adults[adults["correct"]], adults[~adults["correct"]]
    children = found[found["age"] == "3-9"]
    doubt = (adults["prob"] - 0.5).abs()
    if draw == 0:
        picks = [
            right.sort_values("prob", ascending=False).drop_duplicates("gender").head(2),
            wrong.sort_values("prob", ascending=False).drop_duplicates("gender").head(2),
            adults.loc[doubt.sort_values(kind="stable").index].head(1),
            children.sort_values("prob", ascending=False).head(1),
        ]
    else:
        def one_per_gender(pool: pd.DataFrame) -> pd.DataFrame:
            return pool.sample(frac=1, random_state=draw).drop_duplicates("gender").head(2)

        picks = [one_per_gender(right[right["prob"] > SURE]), one_per_gender(wrong),
                 adults[doubt < HESITANT].sample(frac=1, random_state=draw).head(1),
                 children.sample(frac=1, random_state=draw).head(1)]
    return pd.concat(picks).drop_duplicates("file").sample(frac=1, random_state=draw).reset_index(drop=True)


def attention_level(focus: dict[str, float], chance: dict[str, float]) -> str:
    """'clear', 'slight' or 'none': how much more heat the face got than its share of the picture."""
    lift = focus["face"] - chance["face"]
    return "clear" if lift > CLEAR_LIFT else "slight" if lift > SLIGHT_LIFT else "none"


def most_looked_at(focus: dict[str, float], chance: dict[str, float]) -> str:
    """The face region with the most heat for its size (heat share over area share)."""
    return max(REGIONS, key=lambda r: focus[r] / max(chance[r], 1e-6))


def is_sure(probability: float) -> bool:
    return probability > SURE


def is_coin_toss(probability: float) -> bool:
    """An answer so close to 50% that it is closer to a coin toss than to a judgement."""
    return probability < COIN_TOSS


def confidence_words(probability: float, right: bool | None) -> str:
    """What an answer's confidence means, in a sentence: `right` is None where nobody labelled the photo."""
    if is_coin_toss(probability):
        return (f"At {probability:.0%} it is close to tossing a coin: it hardly knows"
                + (", and the coin fell on the wrong side." if right is False else "."))
    if is_sure(probability):
        return ("Being sure is not the same as being right: the model can be very sure and still wrong."
                if right is not True else "It was very sure, and right this time; but it can be very sure and "
                "still wrong.")
    return ("It was fairly sure, and still wrong: being sure is not the same as being right." if right is False
            else "It was fairly sure, not very sure.")


def lost_confidence(before: float, after: float) -> bool:
    """Whether the model became much less sure of an answer it kept."""
    return before - after > LOST


@dataclass(frozen=True)
class ModelFacts:
    """What the lesson says about the model: the side of its square input and how many labelled
    photos it learnt from (None where its description does not say)."""

    input_size: int | None
    train_images: int | None


def model_facts(entry: ModelEntry, checkpoint: dict[str, Any]) -> ModelFacts:
    """The selected model's facts from its checkpoint metadata (faircam checkpoints) or its registry
    entry (third-party models)."""
    training = (checkpoint.get("info") or {}).get("training") or {}
    return ModelFacts(input_size=checkpoint.get("input_size") or entry.input_size,
                      train_images=training.get("train_images"))


@dataclass(frozen=True)
class CropChange:
    """What the lesson's crop did to the picture the model gets: the turn (degrees, on screen), how many times
    larger the face is drawn than before, and the share of the picture the crop filled with grey."""

    turned: float
    scale: float
    filler: float

    def words(self) -> str:
        """The change in a sentence: "The crop turned the picture by 31° to level the eyes, drew the face 1.8
        times as large and filled 62% of the square with grey, where it reached beyond the photo."""
        done = []
        if abs(self.turned) > TURNED_DEGREES:
            done.append(f"turned the picture by **{abs(self.turned):.0f}°** to level the eyes")
        if self.scale > 1 + SIZE_CHANGE:
            done.append(f"drew the face **{self.scale:.1f} times as large**")
        elif self.scale < 1 - SIZE_CHANGE:
            done.append(f"shrank the face to **{self.scale:.0%} of its size**")
        if self.filler >= 0.005:
            done.append(f"filled **{self.filler:.0%}** of the square with grey, where it reached beyond the photo")
        if not done:
            return "The crop hardly changed the picture: the face was already framed the way FairFace frames faces."
        return "The crop " + (", ".join(done[:-1]) + " and " + done[-1] if len(done) > 1 else done[0]) + "."


def crop_change(before: View, after: View) -> CropChange:
    """What cutting out the face did between two views of one photo (their matrices from the photo)."""
    def angle_scale(matrix: np.ndarray) -> tuple[float, float]:
        # Image y points down: a positive angle is a clockwise turn on screen.
        return math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])), math.hypot(matrix[0, 0], matrix[1, 0])

    (turn_before, scale_before), (turn_after, scale_after) = angle_scale(before.matrix), angle_scale(after.matrix)
    turned = (turn_after - turn_before + 180) % 360 - 180
    return CropChange(turned=turned, scale=scale_after / scale_before, filler=after.invalid_share)


def landmarks_trusted(view: View) -> bool:
    """Whether the view's face looks at the camera, so its landmarks place eyes, nose and mouth well enough to
    name them."""
    return view.face is not None and frontal(yaw(view.face.landmarks))
