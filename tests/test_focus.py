"""Known-answer tests of the face-region masks and CAM focus scores on synthetic geometry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from faircam.config import FACE_REGIONS
from faircam.vision.focus import (
    FACE,
    REGIONS,
    area_shares,
    focus_from_masks,
    focus_scores,
    region_masks,
)

SIZE = 160
LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT = (60, 80), (100, 80), (80, 100), (65, 120), (95, 120)


@dataclass
class Face:
    """Stands in for faircam.vision.preprocess.FaceGeometry, which focus only reads duck-typed."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float = 0.99


def make_face(scale: float = 1.0) -> Face:
    box = np.array([40, 50, 120, 150], dtype=np.float32) * scale
    landmarks = np.array([LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT], dtype=np.float32) * scale
    return Face(box=box, landmarks=landmarks)


def at(mask: np.ndarray, point: tuple[float, float]) -> bool:
    x, y = point
    return bool(mask[int(y), int(x)])


def summary(cam: np.ndarray, face: Face | None, shape: tuple[int, int] = (SIZE, SIZE)) -> dict[str, float]:
    """A map's focus row as `explain_views` makes it: the view's region masks, then the map's shares."""
    return focus_from_masks(cam, region_masks(face, shape))


def gaussian(shape: tuple[int, int], centre: tuple[float, float], sigma: float) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]] + 0.5
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))


@pytest.fixture(scope="module")
def masks() -> dict[str, np.ndarray]:
    return region_masks(make_face(), (SIZE, SIZE))


def test_masks_partition_the_image(masks):
    assert set(masks) == {*REGIONS, "face"}
    stack = np.stack([masks[name] for name in REGIONS]).astype(int)
    assert stack.shape == (len(REGIONS), SIZE, SIZE)
    assert (stack.sum(axis=0) == 1).all()
    union = np.logical_or.reduce([masks[name] for name in FACE_REGIONS])
    assert np.array_equal(masks["face"], union)
    for name in REGIONS:
        assert masks[name].dtype == bool and masks[name].any(), name


def test_landmarks_fall_in_their_regions(masks):
    assert at(masks["eyes"], LEFT_EYE) and at(masks["eyes"], RIGHT_EYE)
    assert at(masks["nose"], NOSE)
    assert at(masks["mouth"], (80, 120))
    assert at(masks["background"], (0, 0))
    assert at(masks["rest of face"], (80, 140))  # chin
    # The regions are sized like features, not like the whole face.
    assert masks["eyes"].sum() < masks["rest of face"].sum()


def test_face_ellipse_follows_box_and_eye_line():
    ellipse = region_masks(make_face(), (SIZE, SIZE))["face"]
    ys, xs = np.nonzero(ellipse)
    assert 39 <= xs.min() <= 42 and 118 <= xs.max() <= 121
    assert abs(ellipse.sum() - np.pi * 40 * 50) / (np.pi * 40 * 50) < 0.02
    # Rolling the face by 90 degrees swaps the ellipse's extent.
    tilted = make_face()
    tilted.landmarks[1] = (60, 120)
    ys, xs = np.nonzero(region_masks(tilted, (SIZE, SIZE))["face"])
    assert np.ptp(xs) > np.ptp(ys)
    assert not region_masks(None, (SIZE, SIZE))["face"].any()


def test_indicator_of_mouth_gives_all_mouth(masks):
    shares = focus_scores(masks["mouth"].astype(np.float32), masks)
    assert shares["mouth"] == pytest.approx(1.0)
    assert shares["face"] == pytest.approx(1.0)
    assert shares["background"] == 0.0


@pytest.mark.parametrize("fill", [0.7, 0.0, np.nan])
def test_uniform_and_flat_maps_score_the_area_shares(masks, fill):
    cam = np.full((SIZE, SIZE), fill, dtype=np.float32)
    shares = focus_scores(cam, masks)
    baseline = area_shares(masks)
    assert set(shares) == {*REGIONS, "face"}
    assert all(np.isfinite(value) for value in shares.values())
    for name in shares:
        assert shares[name] == pytest.approx(baseline[name])
    assert sum(shares[name] for name in REGIONS) == pytest.approx(1.0)


def test_random_map_shares_add_to_one_and_ignore_negatives(masks):
    rng = np.random.default_rng(0)
    cam = rng.random((SIZE, SIZE))
    shares = focus_scores(cam, masks)
    assert sum(shares[name] for name in REGIONS) == pytest.approx(1.0)
    assert shares["face"] == pytest.approx(sum(shares[name] for name in FACE_REGIONS))
    negative = np.where(masks["background"], -5.0, cam)
    assert focus_scores(negative, masks)["face"] == pytest.approx(1.0)


def test_blob_on_left_eye_is_mostly_eyes(masks):
    shares = focus_scores(gaussian((SIZE, SIZE), LEFT_EYE, sigma=5.0), masks)
    assert max(REGIONS, key=shares.get) == "eyes"
    assert shares["eyes"] > 0.8


def test_shares_are_scale_invariant():
    small = (SIZE, SIZE)
    large = (2 * SIZE, 2 * SIZE)
    for centre, sigma in [(NOSE, 12.0), (MOUTH_LEFT, 8.0), ((80, 60), 20.0)]:
        shares_small = summary(gaussian(small, centre, sigma), make_face(), small)
        big_centre = (2 * centre[0], 2 * centre[1])
        shares_large = summary(gaussian(large, big_centre, 2 * sigma), make_face(2.0), large)
        for name in (*REGIONS, "face", "face_baseline"):
            assert shares_large[name] == pytest.approx(shares_small[name], abs=0.02), name


def test_no_face_is_all_background():
    masks = region_masks(None, (SIZE, SIZE))
    assert masks["background"].all() and not masks["face"].any()
    row = summary(gaussian((SIZE, SIZE), NOSE, 10.0), None)
    assert row["background"] == pytest.approx(1.0)
    assert row["face"] == 0.0 and row["face_baseline"] == 0.0
    assert row["face_lift"] == 1.0


def test_summary_lift_measures_focus_beyond_chance():
    row = summary(gaussian((SIZE, SIZE), NOSE, 10.0), make_face())
    assert set(row) == {*REGIONS, "face", "face_baseline", "face_lift"}
    assert row["face_baseline"] == pytest.approx(
        area_shares(region_masks(make_face(), (SIZE, SIZE)))["face"]
    )
    assert row["face_lift"] == pytest.approx(row["face"] / row["face_baseline"])
    assert row["face_lift"] > 2.0
    flat = summary(np.zeros((SIZE, SIZE)), make_face())
    assert flat["face_lift"] == pytest.approx(1.0)


def test_shape_mismatch_raises(masks):
    with pytest.raises(ValueError):
        focus_scores(np.zeros((SIZE, SIZE + 1)), masks)
    with pytest.raises(ValueError):
        focus_scores(np.zeros((SIZE, SIZE, 3)), masks)
    with pytest.raises(ValueError):
        summary(np.zeros((SIZE, SIZE)), make_face(), (224, 224))


def test_non_finite_landmarks_mean_no_face():
    face = make_face()
    face.landmarks[2] = np.nan
    assert region_masks(face, (SIZE, SIZE))["background"].all()


def test_explanations_score_each_map_as_its_own_masks_do(pipeline, sample_images):
    # explain_views draws a view's region masks once for all its maps; the scores must not change.
    from faircam.vision.explain import explain_views
    from faircam.vision.preprocess import make_view

    views = [make_view(image, pipeline.model.input_size, pipeline.detector, crop=crop, blur=False)
             for image in sample_images for crop in (False, True)]
    assert any(not view.valid.all() for view in views), "some crop reaches beyond its photo"
    for explanation in explain_views(views, pipeline.model, pipeline.explainer):
        view = explanation.view
        assert view.face is not None
        masks = region_masks(view.face, view.image.shape[:2], view.valid)
        for method, cam in explanation.maps.items():
            assert explanation.focus[method] == pytest.approx(focus_from_masks(cam, masks), abs=1e-12), method
        assert explanation.chance == area_shares(masks)


def test_focus_shares_ignore_invalid_pixels():
    # The right half lies beyond the photo (a crop's filler): no region holds it, and heat there
    # counts neither for the map nor for chance.
    valid = np.zeros((SIZE, SIZE), dtype=bool)
    valid[:, : SIZE // 2] = True
    masks = region_masks(make_face(), (SIZE, SIZE), valid)
    stack = np.stack([masks[name] for name in REGIONS]).sum(axis=0)
    assert (stack[valid] == 1).all() and (stack[~valid] == 0).all()
    whole = region_masks(make_face(), (SIZE, SIZE))
    chance = area_shares(masks)
    assert chance[FACE] == pytest.approx(np.count_nonzero(whole[FACE] & valid) / np.count_nonzero(valid))
    assert sum(chance[name] for name in REGIONS) == pytest.approx(1.0)

    beyond = np.where(valid, 0.0, 1.0)
    assert focus_scores(beyond, masks) == chance, "heat only beyond the photo says nothing"
    mouth = masks["mouth"] & valid
    assert mouth.any()
    shares = focus_scores(mouth + 50 * beyond, masks)
    assert shares["mouth"] == pytest.approx(1.0) and shares["background"] == 0.0
    assert focus_scores(mouth + 50 * beyond, whole)["mouth"] < 0.1, "without the mask the filler's heat dominates"
