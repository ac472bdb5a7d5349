"""The Classroom lesson's choices: which faces are worth a lesson, how its verdicts are drawn, and
what it may say about the model (from the model's own description, never from the bundled model's).

No torch and no Streamlit: the page only words what these functions decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from faircam.models.registry import ModelEntry
from faircam.vision.focus import REGIONS

CHILD_AGES = ("0-2", "3-9", "10-19")
# Focus on the face minus chance: above CLEAR the model looked clearly at the face, above SLIGHT a little.
CLEAR_LIFT, SLIGHT_LIFT = 0.15, 0.05
# An answer this sure is "sure"; a confidence drop larger than LOST counts as "became much less sure".
SURE, LOST = 0.9, 0.1
# A fresh set's hesitant face: an answer within this of a coin toss (0.5).
HESITANT = 0.15


def examples(rows: pd.DataFrame, exists: Callable[[str], bool], draw: int = 0) -> pd.DataFrame:
    """Six faces worth a lesson from an evaluation's rows (a face found, the image on disk): a right and a
    wrong answer per gender (adults), a hesitant adult, and a child of 3-9. Draw 0 takes the surest right
    and wrong answers, the most hesitant adult and the surest child; every other draw is a fresh set of the
    same kinds (sure right answers, wrong ones, hesitant ones), reproducible by its number. In a shuffled
    order, so right and wrong are not told apart by position."""
    found = rows[rows["face_found"] & rows["file"].map(exists)]
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
