"""Face detection, alignment, blur and view geometry, with the real MTCNN on real FairFace faces."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torchvision
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils import detect_face as facenet_stages

from faircam.config import SHARED_FAIRFACE, TEMPLATE_FRAME
from faircam.data.fairface import load_split, read_data_image
from faircam.data.images import read_image
from faircam.vision.focus import FACE, area_shares, region_masks
from faircam.vision.preprocess import (
    FILL,
    NO_FACE_MESSAGE,
    FaceDetector,
    FaceGeometry,
    _per_image_nms,
    align_crop,
    blur_background,
    make_view,
    measure_template,
    read_template,
    template_crop,
)

VAL = SHARED_FAIRFACE / "val"
pytestmark = pytest.mark.skipif(not VAL.is_dir(), reason="FairFace sample not available")

SAMPLE_IDS = (1, 2, 3, 4, 5)
# Faces tilted by 10 to 18 degrees according to MTCNN, so alignment has real work to do.
TILTED_IDS = (63, 31, 9)


def _val(index: int) -> np.ndarray:
    return read_image(VAL / f"{index}.jpg")


def _eye_angle(face: FaceGeometry) -> float:
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def samples(detector: FaceDetector) -> dict[int, tuple[np.ndarray, list[FaceGeometry]]]:
    ids = SAMPLE_IDS + TILTED_IDS
    images = [_val(i) for i in ids]
    return dict(zip(ids, zip(images, detector.detect_batch(images))))


# --- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize("index", SAMPLE_IDS)
def test_detection_finds_a_plausible_face(samples, index):
    image, faces = samples[index]
    assert len(faces) >= 1
    face = faces[0]
    assert face.box.dtype == np.float32 and face.box.shape == (4,)
    assert face.landmarks.dtype == np.float32 and face.landmarks.shape == (5, 2)
    assert 0.9 < face.score <= 1.0

    x1, y1, x2, y2 = face.box
    h, w = image.shape[:2]
    inside = (min(x2, w) - max(x1, 0)) * (min(y2, h) - max(y1, 0))
    assert inside / ((x2 - x1) * (y2 - y1)) > 0.6, "box mostly outside the image"
    assert (x2 - x1) > 0.4 * w, "FairFace crops are mostly face"

    xs, ys = face.landmarks[:, 0], face.landmarks[:, 1]
    assert np.all((xs > x1) & (xs < x2) & (ys > y1) & (ys < y2))
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0], "'left' means image left"
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_faces_are_sorted_largest_first(detector):
    a, b = _val(1), _val(2)
    # Same face twice, the second copy at half size: the big one must come first.
    canvas = np.full((224, 336, 3), 128, np.uint8)
    canvas[:, :224] = a
    canvas[56:168, 224:] = cv2.resize(b, (112, 112), interpolation=cv2.INTER_AREA)
    faces = detector.detect(canvas)
    assert len(faces) >= 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert faces[0].landmarks[:, 0].max() < 224 < faces[1].landmarks[:, 0].min()


def test_batch_detection_matches_single(detector, samples):
    # facenet-pytorch's batched NMS mixes up images whose boxes reach outside the frame.
    for index in (1, 63):
        image, batch_faces = samples[index]
        single = detector.detect(image)
        assert len(single) == len(batch_faces)
        np.testing.assert_allclose(single[0].box, batch_faces[0].box, atol=1e-2)
        np.testing.assert_allclose(single[0].landmarks, batch_faces[0].landmarks, atol=1e-2)


def test_batch_fix_wraps_facenet_pytorch_without_changing_it():
    # The library stays as shipped, for every other user of it in the process.
    FaceDetector()
    assert facenet_stages.batched_nms is torchvision.ops.boxes.batched_nms
    assert MTCNN.detect.__globals__["detect_face"] is facenet_stages.detect_face
    # Two images' boxes: the second reaches above and left of its image. The library's offsets then
    # push it into the first image's box, and its third stage ("Min" overlap) drops one of them.
    boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0], [-40.0, -40.0, 5.0, 5.0]])
    scores, images = torch.tensor([0.9, 0.8]), torch.tensor([0, 1])
    assert len(facenet_stages.batched_nms_numpy(boxes, scores, images, 0.7, "Min")) == 1
    for nms, args in ((facenet_stages.batched_nms_numpy, (0.7, "Min")), (facenet_stages.batched_nms, (0.7,))):
        assert sorted(_per_image_nms(nms)(boxes, scores, images, *args).tolist()) == [0, 1]


def test_blank_and_tiny_images_have_no_face(detector):
    for shape in ((200, 200, 3), (1, 1, 3), (5, 7, 3), (15, 15, 3), (1, 300, 3)):
        assert detector.detect(np.full(shape, 128, np.uint8)) == []
    assert detector.detect_batch([]) == []


def test_tiny_face_is_detected_in_source_coordinates(detector, samples):
    image, faces = samples[1]
    tiny = cv2.resize(image, (40, 40), interpolation=cv2.INTER_AREA)
    found = detector.detect(tiny)
    assert len(found) == 1
    # Upscaled for MTCNN, then mapped back: landmarks agree with the full-size detection.
    np.testing.assert_allclose(found[0].landmarks * (224 / 40), faces[0].landmarks, atol=6)


def test_large_photo_is_detected_in_source_coordinates(detector, samples):
    image, faces = samples[2]
    canvas = np.full((300, 1200, 3), 60, np.uint8)
    canvas[40:264, 700:924] = image
    found = detector.detect(canvas)  # shrunk to 1024 wide for MTCNN, then mapped back
    assert len(found) >= 1
    np.testing.assert_allclose(found[0].landmarks - [700, 40], faces[0].landmarks, atol=4)


def test_detect_rejects_non_rgb(detector):
    with pytest.raises(ValueError):
        detector.detect(np.zeros((50, 50, 4), np.uint8))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((50, 50, 3), np.float32))


# --- geometry ---------------------------------------------------------------------------------


def test_transformed_reboxes_the_inscribed_ellipse():
    face = FaceGeometry(
        box=np.array([0, 0, 10, 20], np.float32),
        landmarks=np.array([[2, 5], [8, 5], [5, 10], [3, 15], [7, 15]], np.float32),
        score=0.5,
    )
    quarter_turn = np.array([[0.0, -1.0, 100.0], [1.0, 0.0, 0.0]])  # (x, y) -> (100 - y, x)
    moved = face.transformed(quarter_turn)
    np.testing.assert_allclose(moved.box, [80, 0, 100, 10])
    np.testing.assert_allclose(moved.landmarks[0], [95, 2])
    assert moved.score == 0.5 and moved.box.dtype == np.float32


def _blob_image(centre: tuple[float, float], shape: tuple[int, int] = (300, 300)) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]] + 0.5  # pixel centres in faircam's convention
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 3.0**2))
    return np.repeat((40 + 200 * blob)[..., None], 3, axis=2).round().astype(np.uint8)


def _centroid(image: np.ndarray) -> np.ndarray:
    weight = np.clip(image[..., 0].astype(np.float64) - 40, 0, None)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]] + 0.5
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


@pytest.mark.parametrize("size", [224, 48])  # upscaling warp, and warp-then-shrink
def test_align_crop_pixels_follow_the_matrix(size):
    # A synthetic face tilted by about 20 degrees; each landmark is a Gaussian blob in its own
    # image, and the blob must land where the returned matrix says, to a fraction of a pixel.
    landmarks = np.array([[120, 130], [170, 148], [140, 165], [118, 185], [158, 199]], np.float32)
    face = FaceGeometry(box=np.array([100, 100, 190, 215], np.float32), landmarks=landmarks, score=1.0)
    for point in landmarks:
        crop, matrix = align_crop(_blob_image(tuple(point)), face, size)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        expected = matrix[:, :2] @ point + matrix[:, 2]
        tolerance = 0.25 if size == 224 else 0.15
        np.testing.assert_allclose(_centroid(crop), expected, atol=tolerance)
    aligned = face.transformed(matrix)
    assert abs(aligned.landmarks[0, 1] - aligned.landmarks[1, 1]) < 1e-3


@pytest.mark.parametrize("padding", [0.25, 0.5])
def test_align_crop_pads_the_face_box(padding):
    # Eyes already level: no rotation, so the box must sit centred with `padding` of its side
    # on every side of the crop.
    face = FaceGeometry(
        box=np.array([50, 60, 150, 160], np.float32),
        landmarks=np.array([[80, 95], [120, 95], [100, 115], [85, 135], [115, 135]], np.float32),
        score=1.0,
    )
    _, matrix = align_crop(np.zeros((200, 200, 3), np.uint8), face, 120, padding=padding)
    margin = 120 * padding / (1 + 2 * padding)
    np.testing.assert_allclose(
        face.transformed(matrix).box, [margin, margin, 120 - margin, 120 - margin], atol=1e-3
    )


def test_align_crop_fills_beyond_the_photo():
    image = np.full((120, 120, 3), 200, np.uint8)
    face = FaceGeometry(
        box=np.array([0, 0, 110, 110], np.float32),
        landmarks=np.array([[30, 40], [80, 30], [55, 60], [35, 85], [80, 80]], np.float32),
        score=1.0,
    )
    view = make_view(image, 96, None, crop=True, blur=False, faces=[face], alignment="face-box")
    assert 0.05 < view.invalid_share < 0.9  # the square reaches far outside a tilted frame
    assert (view.image[~view.valid] == FILL).all()
    assert (view.image[view.valid] != FILL).all()


@pytest.mark.parametrize("index", TILTED_IDS)
def test_template_crop_levels_the_eyes_of_tilted_faces(detector, samples, index):
    image, faces = samples[index]
    assert abs(_eye_angle(faces[0])) > 10
    crop, matrix = template_crop(image, faces[0], 224)
    # The five landmarks are fitted together onto FairFace's mean face (eyes within 1.2 degrees of
    # level), so the eyes come out nearly, not exactly, level.
    assert abs(_eye_angle(faces[0].transformed(matrix))) < 7
    assert detector.detect(crop), "the aligned face must still be found"


# --- the template crop ------------------------------------------------------------------------

TEMPLATE_SAMPLE = 64
# The stored template is a mean over about 2,000 faces; one of 64 differs from it by its sampling
# error (landmark spread about 7 px / sqrt(64)), well under this.
TEMPLATE_TOLERANCE = 3.0


def test_stored_template_matches_a_recomputed_sample(detector):
    train = load_split(SHARED_FAIRFACE, "train")
    files = train.rows["file"].sample(TEMPLATE_SAMPLE, random_state=1).tolist()
    measured, found = measure_template([read_data_image(train.root, f) for f in files], detector)
    assert found >= 0.9 * TEMPLATE_SAMPLE
    np.testing.assert_allclose(measured, read_template() * TEMPLATE_FRAME, atol=TEMPLATE_TOLERANCE)


def test_template_command_writes_what_the_crop_reads(tmp_path, capsys):
    from faircam.cli import main

    out = tmp_path / "template.json"
    assert main(["template", "--data", str(SHARED_FAIRFACE), "--out", str(out), "--limit", "8"]) == 0
    # Eight faces already land within a few pixels of the 2,000-face mean.
    np.testing.assert_allclose(read_template(out), read_template(), atol=12 / TEMPLATE_FRAME)
    assert main(["template", "--data", str(SHARED_FAIRFACE), "--out", str(tmp_path / "t.txt")]) == 2
    assert "faircam: error: --out" in capsys.readouterr().err


def test_the_crop_of_a_fairface_face_is_near_the_identity(detector, samples):
    # FairFace's faces are already cut by the recipe the template measures: the crop levels the
    # eyes and barely rescales or moves the face, and the face keeps its share of the picture.
    for index in SAMPLE_IDS:
        image, faces = samples[index]
        raw = make_view(image, 160, detector, crop=False, blur=False, faces=faces)
        crop = make_view(image, 160, detector, crop=True, blur=False, faces=faces)
        scale = float(np.hypot(*crop.matrix[:, 0])) / float(np.hypot(*raw.matrix[:, 0]))
        assert 0.8 < scale < 1.25, (index, scale)
        shares = [area_shares(region_masks(v.face, (160, 160), v.valid))[FACE] for v in (raw, crop)]
        assert abs(shares[0] - shares[1]) < 0.1, (index, shares)


def _content_free(view, other) -> bool:
    """True when `view` and `other`, made from an image and its negative, agree wherever `view` is invalid."""
    return bool((view.image[~view.valid] == FILL).all() and (other.image[~view.valid] == FILL).all())


@pytest.mark.parametrize("blur", [False, True])
def test_no_pixel_beyond_the_photo_carries_image_content(detector, samples, blur):
    # Real FairFace faces (the tilted ones leave corners beyond the photo), and a synthetic photo
    # with a face at its very edge: wherever the view reaches beyond the photo it holds FILL,
    # whatever the photo, and the validity mask says so.
    cases = [(samples[i][0], samples[i][1]) for i in TILTED_IDS]
    image, faces = samples[1]
    photo = np.pad(image, ((40, 40), (0, 300), (0, 0)), mode="constant", constant_values=30)
    edge = np.ascontiguousarray(photo[:, 60:])  # the face's left part is cut off by the photo's edge
    cases.append((edge, [f.transformed(_translation(-60, 40)) for f in faces]))
    for image, faces in cases:
        view = make_view(image, 160, detector, crop=True, blur=blur, faces=faces)
        negative = make_view(255 - image, 160, detector, crop=True, blur=blur, faces=faces)
        assert view.invalid_share > 0
        assert _content_free(view, negative)
        assert (view.image != negative.image)[view.valid].mean() > 0.9, "valid pixels show the photo"
    assert view.invalid_share > 0.1, "the face at the edge leaves a large area beyond the photo"


def test_uploads_keep_their_aspect_ratio(detector, samples):
    image, faces = samples[1]
    wide = np.ascontiguousarray(np.pad(image, ((0, 0), (112, 112), (0, 0)), mode="constant", constant_values=30))
    view = make_view(wide, 112, detector, crop=False, blur=False, faces=[f.transformed(_translation(112, 0))
                                                                        for f in faces])
    # 448 x 224 fits as 112 x 56, centred: rows 28 to 84 show the photo, the rest is FILL.
    assert view.valid[28:84].all() and not view.valid[:28].any() and not view.valid[84:].any()
    assert (view.image[~view.valid] == FILL).all()
    np.testing.assert_allclose(view.face.landmarks, faces[0].landmarks * 0.25 + [28, 28], atol=1e-4)


# --- blur# --- blur -------------------------------------------------------------------------------------


def _sharpness(patch: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_blur_background_keeps_face_and_blurs_the_rest(samples):
    image, faces = samples[1]
    # A FairFace crop is nearly all face: mirror it outwards to get a textured background.
    canvas = np.pad(image, ((112, 112), (112, 112), (0, 0)), mode="reflect")
    face = faces[0].transformed(_translation(112, 112))
    out = blur_background(canvas, face)
    assert out.shape == canvas.shape and out.dtype == np.uint8

    for corner in (np.s_[:60, :60], np.s_[:60, -60:], np.s_[-60:, :60], np.s_[-60:, -60:]):
        assert _sharpness(out[corner]) < 0.2 * _sharpness(canvas[corner])
    cx, cy = (int(v) for v in face.landmarks[2])  # the nose
    centre = np.s_[cy - 10 : cy + 10, cx - 10 : cx + 10]
    assert np.abs(out[centre].astype(int) - canvas[centre].astype(int)).max() <= 1


def test_blur_background_mask_is_an_enlarged_feathered_ellipse():
    # On a pixel checkerboard the blur gives flat 127.5, so the change at each pixel reads off
    # the mask directly: change / 127.5 = 1 - mask.
    checker = (np.indices((300, 300)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    face = FaceGeometry(
        box=np.array([100, 100, 200, 200], np.float32),
        landmarks=np.array([[130, 130], [170, 130], [150, 150], [135, 175], [165, 175]], np.float32),
        score=1.0,
    )
    blurred_share = np.abs(blur_background(image, face).astype(float) - image).mean(axis=2) / 127.5
    row = blurred_share[150]  # through the ellipse centre
    assert row[140:160].max() < 0.01, "face centre untouched"
    assert row[:20].min() > 0.95 and row[-20:].min() > 0.95, "background fully blurred"
    assert row[200] < 0.5, "the sharp ellipse reaches past the box edge"
    # Feathered with sigma = 0.12 * 100 px: 5%..95% takes about 3.3 sigma, not one pixel.
    ramp = row[150:]
    width = np.argmax(ramp > 0.95) - np.argmax(ramp > 0.05)
    assert 25 < width < 60, width


# --- make_view --------------------------------------------------------------------------------


def test_make_view_resize_scales_geometry(detector, samples):
    image, faces = samples[1]
    view = make_view(image, 112, detector, crop=False, blur=False, faces=faces)
    assert view.image.shape == (112, 112, 3) and view.image.dtype == np.uint8
    assert (view.cropped, view.blurred, view.faces_found, view.message) == (False, False, 1, "")
    np.testing.assert_allclose(view.face.landmarks, faces[0].landmarks * 0.5, atol=1e-4)
    np.testing.assert_allclose(view.face.box, faces[0].box * 0.5, atol=1e-4)

    # Non-square sources keep their aspect ratio: 160 x 224 fits as 80 x 112, 16 columns of FILL each side.
    narrow = np.ascontiguousarray(image[:, 32:192])
    narrow_faces = [f.transformed(_translation(-32, 0)) for f in faces]
    view = make_view(narrow, 112, detector, crop=False, blur=False, faces=narrow_faces)
    np.testing.assert_allclose(view.face.landmarks, narrow_faces[0].landmarks * 0.5 + [16, 0], atol=1e-4)
    assert view.valid[:, 16:96].all() and not view.valid[:, :16].any() and not view.valid[:, 96:].any()


def test_make_view_crop_and_blur(detector, samples):
    image, faces = samples[63]
    view = make_view(image, 160, detector, crop=True, blur=True, faces=faces)
    assert view.image.shape == (160, 160, 3)
    assert view.cropped and view.blurred and view.message == ""
    expected = faces[0].transformed(view.matrix)
    np.testing.assert_allclose(view.face.landmarks, expected.landmarks)
    assert abs(_eye_angle(view.face)) < 7
    crop, _ = template_crop(image, faces[0], 160)
    assert not np.array_equal(view.image, crop), "blur must have changed the crop"


def test_make_view_without_a_face(detector):
    gray = np.full((200, 200, 3), 128, np.uint8)
    view = make_view(gray, 224, detector, crop=True, blur=False)
    assert view.face is None and view.faces_found == 0
    assert not view.cropped and not view.blurred
    assert view.message == NO_FACE_MESSAGE
    assert view.image.shape == (224, 224, 3)
    quiet = make_view(gray, 224, detector, crop=False, blur=False, faces=[])
    assert quiet.message == "" and quiet.face is None


def test_make_view_picks_the_requested_face(detector):
    pair = np.hstack([_val(1), _val(2)])
    faces = detector.detect(pair)
    assert len(faces) >= 2
    centres = [float(f.landmarks[:, 0].mean()) for f in faces[:2]]
    assert min(centres) < 224 < max(centres), "one face on each half"

    first = make_view(pair, 224, detector, crop=True, blur=False, face_index=0, faces=faces)
    second = make_view(pair, 224, detector, crop=True, blur=False, face_index=1, faces=faces)
    assert first.faces_found == second.faces_found == len(faces)
    np.testing.assert_allclose(second.face.landmarks, faces[1].transformed(second.matrix).landmarks)
    assert np.abs(first.image.astype(int) - second.image.astype(int)).mean() > 10

    clamped = make_view(pair, 224, detector, crop=True, blur=False, face_index=9, faces=faces)
    np.testing.assert_allclose(clamped.face.landmarks, faces[-1].transformed(clamped.matrix).landmarks)
    assert clamped.message
