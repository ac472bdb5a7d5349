"""Image-quality slices: how large, sharp, bright and turned each face is, and how sure MTCNN was that it is one.

`faircam evaluate` measures every image's largest MTCNN face (`measure`) and stores the numbers as cache
columns (`quality_face_px`, `quality_sharpness`, `quality_brightness`, `quality_yaw`, `quality_confidence`)
beside a level column per slice in plain words ("face size": "small (under 64 px)", ...), which the pages,
the report and the model card group by like any other attribute (`attributes`). The levels' thresholds are
fixed here, so the same face gets the same level in every cache; an image without a face gets the level
`NO_FACE`. `faircam add-quality` adds these columns to an existing cache from the images alone.

The numbers, from the photo as it is (not the model's input):
- face size: the side of MTCNN's face box in the photo's pixels (the mean of its width and height);
- sharpness: the variance of the Laplacian of the face box in grey, resized to `SHARPNESS_SIDE` pixels so that
  faces of every size are judged at one scale (blur shows as a low variance);
- brightness: the face box's mean luminance (Rec. 601 grey, 0-255);
- head turn (yaw): from MTCNN's five landmarks, the nose tip's offset from the eyes' midpoint along the eye
  line, over half the eyes' distance, read as the tangent of the turn (a nose tip standing out from the eye
  line by half the eyes' distance, as on an average face): 0° frontal, signed (positive: nose to the
  image's right);
- detector confidence: MTCNN's probability that the box holds a face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from faircam.data.labelled import Attribute

if TYPE_CHECKING:  # the slices' names and levels are read by pages that import no torch
    from faircam.vision.preprocess import FaceGeometry

SHARPNESS_SIDE = 96
NO_FACE = "no face found"


@dataclass(frozen=True)
class Slice:
    """One quality measure: its grouping name (the level column's name), its value column, its unit, and the
    thresholds between its levels (`edges`, rising) with the levels' names; `absolute` bins the value's size
    (a head turned left or right)."""

    name: str
    column: str
    words: str
    edges: tuple[float, ...]
    levels: tuple[str, ...]
    absolute: bool = False

    def level(self, values: pd.Series | np.ndarray) -> pd.Series:
        """Each value's level name; `NO_FACE` where there is no value."""
        values = pd.Series(np.asarray(values, dtype=np.float64))
        index = np.searchsorted(np.asarray(self.edges), (values.abs() if self.absolute else values).to_numpy(),
                                side="right")
        named = pd.Series(np.asarray(self.levels, dtype=object)[np.minimum(index, len(self.levels) - 1)])
        return named.where(values.notna(), NO_FACE)


# The thresholds were chosen on FairFace's validation faces and what the literature calls small (MTCNN finds
# faces from 20 px; face models are trained on 100-200 px crops): README, "Where does it fail?".
SLICES: dict[str, Slice] = {s.name: s for s in (
    Slice("face size", "quality_face_px", "the side of the face box in the photo's pixels", (64, 128),
          ("small (under 64 px)", "medium (64–128 px)", "large (128 px or more)")),
    Slice("sharpness", "quality_sharpness", f"the variance of the Laplacian of the face at {SHARPNESS_SIDE} px",
          (100, 400), ("blurry (under 100)", "soft (100–400)", "sharp (400 or more)")),
    Slice("brightness", "quality_brightness", "the face's mean luminance, 0 (black) to 255 (white)", (70, 180),
          ("dark (under 70)", "normal (70–180)", "bright (180 or more)")),
    Slice("head turn", "quality_yaw", "the head's turn from the camera, in degrees, from the five landmarks",
          (15, 35), ("frontal (under 15°)", "turned (15–35°)", "far turned (35° or more)"), absolute=True),
    Slice("detector confidence", "quality_confidence", "MTCNN's probability that the box holds a face",
          (0.99, 0.999), ("unsure (under 0.99)", "fairly sure (0.99–0.999)", "sure (0.999 or more)")),
)}


def measure(image: np.ndarray, faces: list[FaceGeometry]) -> dict[str, float]:
    """The quality numbers of the largest face of an RGB uint8 image (`faces` as `FaceDetector.detect` gives them,
    in its pixels), by slice column; NaN without a face."""
    import cv2

    if not faces:
        return {s.column: math.nan for s in SLICES.values()}
    face = faces[0]
    x1, y1, x2, y2 = (float(v) for v in face.box)
    h, w = image.shape[:2]
    left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
    right, bottom = min(w, math.ceil(x2)), min(h, math.ceil(y2))
    values = {"quality_face_px": ((x2 - x1) + (y2 - y1)) / 2, "quality_confidence": float(face.score),
              "quality_yaw": yaw(face.landmarks)}
    if right - left < 2 or bottom - top < 2:  # a box outside the photo: nothing to measure in it
        return values | {"quality_sharpness": math.nan, "quality_brightness": math.nan}
    grey = cv2.cvtColor(np.ascontiguousarray(image[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    shrinking = grey.shape[0] > SHARPNESS_SIDE or grey.shape[1] > SHARPNESS_SIDE
    scaled = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE),
                        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return values | {"quality_sharpness": float(cv2.Laplacian(scaled, cv2.CV_64F).var()),
                     "quality_brightness": float(grey.mean())}


def yaw(landmarks: np.ndarray) -> float:
    """The head's turn in degrees from the five landmarks (left eye, right eye, nose, mouth corners), in any
    coordinates a similarity transform reaches (the photo's or the model's view): NaN for coincident eyes."""
    left, right, nose = (np.asarray(p, dtype=np.float64) for p in landmarks[:3])
    axis = right - left
    half = np.hypot(*axis) / 2
    if half == 0:
        return math.nan
    offset = float(np.dot(nose - (left + right) / 2, axis / (2 * half))) / half
    return math.degrees(math.atan(offset))


def quality_columns(images: list[np.ndarray], faces: list[list[FaceGeometry]]) -> pd.DataFrame:
    """One row per image: every slice's number and its level (the columns `faircam evaluate` stores)."""
    numbers = pd.DataFrame.from_records([measure(i, f) for i, f in zip(images, faces)],
                                        columns=[s.column for s in SLICES.values()])
    return numbers.assign(**{s.name: s.level(numbers[s.column]).to_numpy() for s in SLICES.values()})


def attributes() -> list[dict]:
    """The slices as a cache's attributes (`faircam.data.labelled.Attribute`): levels in order, `NO_FACE` last."""
    return [Attribute(s.name, s.name, (*s.levels, NO_FACE), ordered=True, source="quality", values=s.column).as_meta()
            for s in SLICES.values()]


# Below this turn (the "frontal" level of the head-turn slice) the landmarks place eyes, nose and mouth well enough
# to name them; MTCNN's five points drift on turned faces.
FRONTAL_DEGREES = SLICES["head turn"].edges[0]


def frontal(degrees: float) -> bool:
    """Whether a head turn (`yaw`) is frontal; False without a measure (NaN)."""
    return bool(abs(degrees) < FRONTAL_DEGREES)
