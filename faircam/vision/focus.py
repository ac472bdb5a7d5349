"""Face-region masks from the five MTCNN landmarks, and where a CAM puts its energy.

`region_masks` splits an image into `REGIONS` (eyes, nose, mouth, rest of face, background):
disjoint boolean masks that cover every valid pixel exactly once (pixels beyond the photo's
edge, where a view holds only filler, are in none: they count neither for the map nor for
chance). Their sizes scale with the inter-ocular distance, so the same face at another
resolution gets the same split.
`focus_scores` gives each region's share of a CAM's total energy and `area_shares` the
share a uniform map would give, which is the chance baseline the shares are read against.

Coordinates follow MTCNN and PIL: x is the column, y the row, and pixel (row j, column i)
covers [i, i + 1) x [j, j + 1), so its centre is at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from faircam.config import FACE_REGIONS

if TYPE_CHECKING:
    from faircam.vision.preprocess import FaceGeometry

REGIONS = (*FACE_REGIONS, "background")
FACE = "face"

# Region sizes as multiples of the inter-ocular distance d. The eye ellipse is shifted up
# and taller than a disc around the landmark would be so that it takes in the brow.
EYE_ALONG = 0.38
EYE_ACROSS = 0.35
EYE_LIFT = 0.08
# The nose starts a quarter of the way from the eye midpoint to the tip (above that is the
# bridge between the eyes, which the eye regions already claim) and ends below the tip so
# the nostrils count as nose.
NOSE_START = 0.25
NOSE_BELOW_TIP = 0.15
NOSE_HALF_WIDTH = 0.25
MOUTH_EXTRA = 0.15
MOUTH_HALF_HEIGHT = 0.25
# Share of the box width that stands in for d when the eye landmarks coincide.
FALLBACK_EYE_SHARE = 0.4


def _shape2(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"shape needs height and width, got {shape!r}")
    height, width = int(shape[0]), int(shape[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"shape must be positive, got {shape!r}")
    return height, width


def _geometry(face: FaceGeometry | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Box and landmarks as float64 arrays, or None when there is no usable face."""
    if face is None:
        return None
    box = np.asarray(face.box, dtype=np.float64).reshape(-1)
    landmarks = np.asarray(face.landmarks, dtype=np.float64)
    if box.shape != (4,) or landmarks.shape != (5, 2):
        raise ValueError(f"face needs a (4,) box and (5, 2) landmarks, got {box.shape} and {landmarks.shape}")
    # A half-detected face is better treated as no face than given regions in the wrong place.
    if not (np.isfinite(box).all() and np.isfinite(landmarks).all()):
        return None
    return box, landmarks


class _Grid:
    """Pixel-centre coordinates of one image, kept as a row and a column for broadcasting."""

    def __init__(self, shape: tuple[int, int]) -> None:
        height, width = shape
        self.shape = shape
        self.xs = (np.arange(width, dtype=np.float64) + 0.5)[None, :]
        self.ys = (np.arange(height, dtype=np.float64) + 0.5)[:, None]

    def ellipse(self, centre: np.ndarray, along: float, across: float, angle: float) -> np.ndarray:
        """Pixels whose centre lies in the ellipse with semi-axes along/across, rotated by angle."""
        # Sub-pixel ellipses would vanish and make a zero division; half a pixel keeps the centre.
        along, across = max(float(along), 0.5), max(float(across), 0.5)
        cos, sin = float(np.cos(angle)), float(np.sin(angle))
        mask = np.zeros(self.shape, dtype=bool)
        # Only the ellipse's bounding window is evaluated: features cover a few percent of the
        # image and this keeps a full set of masks to a couple of milliseconds.
        reach_x = np.hypot(along * cos, across * sin)
        reach_y = np.hypot(along * sin, across * cos)
        height, width = self.shape
        x0 = max(int(np.floor(centre[0] - reach_x)), 0)
        x1 = min(int(np.ceil(centre[0] + reach_x)) + 1, width)
        y0 = max(int(np.floor(centre[1] - reach_y)), 0)
        y1 = min(int(np.ceil(centre[1] + reach_y)) + 1, height)
        if x0 >= x1 or y0 >= y1:
            return mask
        dx, dy = self.xs[:, x0:x1] - centre[0], self.ys[y0:y1] - centre[1]
        u = (dx * cos + dy * sin) / along
        v = (dy * cos - dx * sin) / across
        mask[y0:y1, x0:x1] = u * u + v * v <= 1.0
        return mask


def _eye_angle(landmarks: np.ndarray) -> float:
    dx, dy = landmarks[1] - landmarks[0]
    return float(np.arctan2(dy, dx)) if dx or dy else 0.0


def _face_ellipse(grid: _Grid, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    # The box alone sits too high (it includes forehead) and the landmarks alone too low
    # (they stop at the mouth); halfway between is a fair centre for the whole face.
    box_centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    centre = (box_centre + landmarks.mean(axis=0)) / 2
    half_width, half_height = abs(box[2] - box[0]) / 2, abs(box[3] - box[1]) / 2
    return grid.ellipse(centre, half_width, half_height, _eye_angle(landmarks))


def region_masks(face: FaceGeometry | None, shape: tuple[int, int],
                 valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Disjoint boolean HxW masks for every name in `REGIONS`, plus "face" (their face part).

    Every valid pixel (`valid`, a view's mask; None: all) is in exactly one of `REGIONS`, an
    invalid one in none. Eyes, nose and mouth are ellipses sized by the inter-ocular distance and
    clipped to the face ellipse; where they overlap, eyes win over mouth and mouth over nose.
    Without a face every valid pixel is background and "face" is empty.
    """
    masks = _all_regions(face, _shape2(shape))
    if valid is None:
        return masks
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != masks[FACE].shape:
        raise ValueError(f"valid has shape {valid.shape} but the image has {masks[FACE].shape}")
    return {name: mask & valid for name, mask in masks.items()}


def _all_regions(face: FaceGeometry | None, size: tuple[int, int]) -> dict[str, np.ndarray]:
    geometry = _geometry(face)
    if geometry is None:
        empty = np.zeros(size, dtype=bool)
        masks = {name: empty.copy() for name in FACE_REGIONS}
        masks["background"] = np.ones(size, dtype=bool)
        masks[FACE] = empty
        return masks

    box, landmarks = geometry
    grid = _Grid(size)
    left_eye, right_eye, nose_tip, mouth_left, mouth_right = landmarks
    eye_angle = _eye_angle(landmarks)
    d = float(np.hypot(*(right_eye - left_eye)))
    if d < 1.0:
        d = max(FALLBACK_EYE_SHARE * abs(box[2] - box[0]), 1.0)

    face_mask = _face_ellipse(grid, box, landmarks)

    # "Up" is perpendicular to the eye line, so a tilted head keeps its brows inside the region.
    up = np.array([np.sin(eye_angle), -np.cos(eye_angle)])
    eyes = np.zeros(size, dtype=bool)
    for eye in (left_eye, right_eye):
        eyes |= grid.ellipse(eye + EYE_LIFT * d * up, EYE_ALONG * d, EYE_ACROSS * d, eye_angle)

    eye_mid = (left_eye + right_eye) / 2
    down = nose_tip - eye_mid
    length = float(np.hypot(*down))
    direction = down / length if length > 1e-6 else -up
    top = eye_mid + NOSE_START * down
    bottom = nose_tip + NOSE_BELOW_TIP * d * direction
    nose_angle = float(np.arctan2(direction[1], direction[0]))
    nose = grid.ellipse(
        (top + bottom) / 2, float(np.hypot(*(bottom - top))) / 2, NOSE_HALF_WIDTH * d, nose_angle
    )

    corners = mouth_right - mouth_left
    corner_distance = float(np.hypot(*corners))
    mouth_angle = float(np.arctan2(corners[1], corners[0])) if corner_distance > 1e-6 else eye_angle
    mouth = grid.ellipse(
        (mouth_left + mouth_right) / 2,
        corner_distance / 2 + MOUTH_EXTRA * d,
        MOUTH_HALF_HEIGHT * d,
        mouth_angle,
    )

    eyes &= face_mask
    mouth &= face_mask & ~eyes
    nose &= face_mask & ~eyes & ~mouth
    rest = face_mask & ~(eyes | mouth | nose)
    return {
        "eyes": eyes,
        "nose": nose,
        "mouth": mouth,
        "rest of face": rest,
        "background": ~face_mask,
        FACE: face_mask,
    }


def _mask_shape(masks: dict[str, np.ndarray]) -> tuple[int, ...]:
    return np.shape(masks["background"])


def area_shares(masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Each region's share of the valid area: what a uniform CAM scores, the chance baseline."""
    counts = {name: float(np.count_nonzero(masks[name])) for name in REGIONS}
    total = sum(counts.values()) or 1.0
    shares = {name: counts[name] / total for name in REGIONS}
    shares[FACE] = sum(shares[name] for name in FACE_REGIONS)
    return shares


def focus_scores(cam: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of the CAM's energy on the valid pixels in each of `REGIONS` and in "face"; the
    `REGIONS` add to 1, and heat beyond the photo's edge counts for nothing.

    Negative values count as 0. A map with no usable energy on the valid pixels (all zero, or any
    NaN/inf) gets the area shares, because such a map says nothing about where the model looked.
    """
    cam = np.asarray(cam)
    expected = _mask_shape(masks)
    if cam.shape != tuple(expected):
        raise ValueError(f"cam has shape {cam.shape} but the masks have {tuple(expected)}")
    cam = np.clip(cam.astype(np.float64, copy=False), 0.0, None)
    energy = {name: float(cam[masks[name]].sum()) for name in REGIONS}
    total = sum(energy.values())
    if not np.isfinite(cam).all() or total <= 0.0:
        return area_shares(masks)
    shares = {name: energy[name] / total for name in REGIONS}
    # Summing the parts keeps "face" exactly consistent with the rows shown beside it.
    shares[FACE] = sum(shares[name] for name in FACE_REGIONS)
    return shares


def focus_from_masks(cam: np.ndarray, masks: dict[str, np.ndarray],
                     chance: dict[str, float] | None = None) -> dict[str, float]:
    """One flat row for tables: the `REGIONS` and "face" shares, "face_baseline" and "face_lift".

    "face_baseline" is the face's share of the image area and "face_lift" the face share over
    it (above 1: the CAM favours the face beyond chance); the lift is 1.0 without a face. `masks`
    are the view's `region_masks` (and `chance` their `area_shares`), which every map of the view
    shares: the masks cost more to draw than a map costs to score.
    """
    summary = focus_scores(cam, masks)
    baseline = (chance or area_shares(masks))[FACE]
    summary["face_baseline"] = baseline
    has_face = bool(masks[FACE].any())
    summary["face_lift"] = summary[FACE] / baseline if has_face and baseline > 0 else 1.0
    return summary
