"""Face detection (MTCNN), crop/alignment, background blur, and face geometry in model coordinates.

Every geometric step (upscaling for the detector, rotation, crop, resize) is a 2x3 affine
matrix, and the face geometry follows the image by applying the same matrices, so the box and
landmarks of a `View` are always in the coordinates of the exact image the model sees.

Coordinates are continuous with pixel edges on integers: pixel (row i, column j) covers
[j, j + 1) x [i, i + 1). In that convention a resize is a pure scale matrix (it matches
`cv2.resize`), and only the call to `cv2.warpAffine`, which samples at integer pixel centres,
needs a half-pixel shift.

No view invents pixels: where a crop or the square frame reaches beyond the photo, the view
holds the constant `FILL` and its `valid` mask is False. faircam's own crop maps the five
landmarks onto a template, the mean landmark positions of FairFace's training faces
(`measure_template`, stored in assets/face_template.json), so a cropped face is framed the way
FairFace framed the faces the model learned from.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils import detect_face as _mtcnn_stages

from faircam.config import FACE_TEMPLATE_PATH, TEMPLATE_FRAME
from faircam.data.images import FILL, resize_square
from faircam.errors import DataError

# MTCNN's image pyramid is empty (and facenet-pytorch crashes) when the short side is below
# min_face; small images are upscaled to this short side before detection instead.
_MIN_DETECT_SIDE = 64
# Larger photos are shrunk to this long side before detection (and tiny ones never upscaled past
# it): MTCNN's cost grows with the pixels, and a face that is small in a 1024-pixel copy is too
# small to classify anyway. `min_face` therefore counts pixels of that copy.
_MAX_DETECT_SIDE = 1024
# MTCNN crops each candidate box for its second and third stages, and facenet-pytorch clips the
# box to the image instead of padding it, so a face that fills the frame (every FairFace image)
# reaches those stages squashed and its landmarks land tens of pixels off. A replicated border of
# this fraction of the long side gives MTCNN the context back.
_DETECT_MARGIN = 0.25
# Images per MTCNN forward pass in detect_batch: bounds memory on the full FairFace folders.
_BATCH_SIZE = 32
# The sharp ellipse is the face box's inscribed ellipse grown by this factor, so hair at the
# temples and the chin, which MTCNN boxes clip, stay sharp.
_ELLIPSE_GROWTH = 1.25
# Gaussian sigmas above this are applied on a downscaled copy: a 2048-pixel photo would
# otherwise need kernels hundreds of pixels wide, and a heavy blur loses nothing by it.
_MAX_DIRECT_SIGMA = 6.0

NO_FACE_MESSAGE = "No face found: showing the full image without crop or blur."
# dlib's mean face (the 68-point template of its get_face_chip_details) at MTCNN's five landmarks:
# the eye centres (means of dlib's six points per eye), the nose tip (point 30) and the mouth
# corners (48, 54), in the unit square of an unpadded chip.
_DLIB_MEAN_FACE = np.array(
    [[0.2255, 0.2160], [0.7548, 0.2160], [0.4901, 0.5156], [0.2541, 0.7802], [0.7261, 0.7802]]
)
# dlib's default chip padding, which its gender classifier was trained with.
_DLIB_CHIP_PADDING = 0.2
# face-api.js crops the bounding box of its 68 landmarks grown by 10% per side; MTCNN's box, which
# spans about the same brow-to-chin height, stands in for it (align_crop also levels the eyes).
_FACE_BOX_PADDING = 0.1


# --- affine matrices (2x3, continuous coordinates) -------------------------------------------


def _identity() -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _scale(sx: float, sy: float | None = None) -> np.ndarray:
    sy = sx if sy is None else sy
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]])


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])


def _rotate(angle: float, centre: np.ndarray) -> np.ndarray:
    """Rotation by `angle` radians about `centre` that maps direction `angle` onto the +x axis."""
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = float(centre[0]), float(centre[1])
    # y points down, so this is the on-screen counter-clockwise turn that undoes a clockwise tilt.
    return np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]])


def _chain(*steps: np.ndarray) -> np.ndarray:
    """The matrix applying `steps` in the order given (first step first)."""
    total = np.eye(3)
    for step in steps:
        total = np.vstack([step, [0.0, 0.0, 1.0]]) @ total
    return total[:2]


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    # warpAffine samples at integer pixel centres, which are at +0.5 in our convention.
    to_index = _chain(_translate(0.5, 0.5), matrix, _translate(-0.5, -0.5))
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        to_index,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(FILL, FILL, FILL),
    )


def valid_mask(matrix: np.ndarray, source_shape: tuple[int, ...], size: int) -> np.ndarray:
    """size x size booleans: True where the pixel's centre comes from inside the source image under
    the 2x3 `matrix` (source coords to view coords), False where the view holds `FILL`."""
    back = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    centres = np.arange(size, dtype=np.float64) + 0.5
    xs = back[0, 0] * centres[None, :] + back[0, 1] * centres[:, None] + back[0, 2]
    ys = back[1, 0] * centres[None, :] + back[1, 1] * centres[:, None] + back[1, 2]
    height, width = source_shape[:2]
    return (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)


def fit_square(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole image scaled to fit size x size with its aspect ratio kept, centred, the rest `FILL`;
    and the matrix from source to square coordinates. A square image is only resized."""
    h, w = image.shape[:2]
    factor = size / max(h, w)
    width, height = max(1, round(w * factor)), max(1, round(h * factor))
    resized, matrix = _resize(image, width, height)
    left, top = (size - width) // 2, (size - height) // 2
    if (width, height) == (size, size):
        return resized, matrix
    square = cv2.copyMakeBorder(np.ascontiguousarray(resized), top, size - height - top, left, size - width - left,
                                cv2.BORDER_CONSTANT, value=(FILL, FILL, FILL))
    return square, _chain(matrix, _translate(left, top))


def _resize(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize with the project's filter choice, and the scale matrix that goes with it."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image, _identity()
    if width == height:
        resized = resize_square(image, width)
    else:
        shrinking = width < w or height < h
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        resized = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)
    return resized, _scale(width / w, height / h)


# --- geometry ---------------------------------------------------------------------------------


@dataclass
class FaceGeometry:
    """One detected face: box x1, y1, x2, y2 and 5 landmarks, in some image's pixel coordinates.

    Landmark order is MTCNN's: left eye, right eye, nose, mouth left, mouth right, where "left"
    means image left (the person's right eye). Boxes may reach outside the image.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    def transformed(self, matrix: np.ndarray) -> FaceGeometry:
        """The same face after the 2x3 affine `matrix`; the box becomes the bounds of its inscribed
        ellipse (the face region `faircam.vision.focus` draws) after the matrix. The bounds of the box's
        corners would grow with every rotation, so a levelled face would get a region larger than the face."""
        x1, y1, x2, y2 = (float(v) for v in self.box)
        centre = _apply(matrix, np.array([(x1 + x2) / 2, (y1 + y2) / 2]))[0]
        half = np.hypot(*(matrix[:, :2] * np.array([x2 - x1, y2 - y1]) / 2).T)
        box = np.concatenate([centre - half, centre + half])
        return FaceGeometry(
            box=box.astype(np.float32),
            landmarks=_apply(matrix, self.landmarks).astype(np.float32),
            score=self.score,
        )


def _box_centre(face: FaceGeometry) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2])


def _box_side(face: FaceGeometry) -> float:
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return max(x2 - x1, y2 - y1, 1.0)


@dataclass
class View:
    """The image the model sees, with the face geometry in its coordinates."""

    image: np.ndarray
    face: FaceGeometry | None
    cropped: bool
    blurred: bool
    faces_found: int
    message: str
    # Source-image coordinates to `image` coordinates, e.g. to draw a heatmap back on the photo.
    matrix: np.ndarray = field(default_factory=_identity)
    # True where `image` shows the photo, False where it holds `FILL` (beyond the photo's edge).
    valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.valid is None:
            self.valid = np.ones(self.image.shape[:2], dtype=bool)

    @property
    def detail(self) -> float:
        """The side, in the photo's own pixels, of what the model looks at: the face box's longer side, or with no
        face the photo's shorter side (`LOW_DETAIL_SIDE` says when that is too little)."""
        scale = float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))
        if self.face is not None:
            return _box_side(self.face) / scale
        return min(np.count_nonzero(self.valid.any(axis=0)), np.count_nonzero(self.valid.any(axis=1))) / scale

    @property
    def invalid_share(self) -> float:
        """The share of the view beyond the photo's edge (shown as `FILL`)."""
        return 1.0 - float(np.count_nonzero(self.valid)) / self.valid.size


# --- detection --------------------------------------------------------------------------------


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB image of shape HxWx3, got shape {image.shape}.")
    if image.dtype != np.uint8:
        raise ValueError(f"Expected a uint8 image, got {image.dtype}.")
    return image


def _faces_from(boxes: object, probs: object, points: object) -> list[FaceGeometry]:
    # facenet-pytorch gives object arrays, and None (not an empty array) when nothing is found.
    if boxes is None or points is None or len(boxes) == 0:
        return []
    boxes = np.asarray(np.asarray(boxes).tolist(), dtype=np.float32).reshape(-1, 4)
    points = np.asarray(np.asarray(points).tolist(), dtype=np.float32).reshape(-1, 5, 2)
    scores = [float(p) for p in np.asarray(probs).reshape(-1)]
    faces = [FaceGeometry(box=b, landmarks=p, score=s) for b, p, s in zip(boxes, points, scores)]
    # MTCNN already sorts by area with select_largest, but callers rely on it, so make it explicit.
    faces.sort(key=lambda f: -float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
    return faces


def _per_image_nms(nms: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Fix facenet-pytorch's batched NMS, which keeps the images of a batch apart by offsetting each
    image's boxes by its index times the largest coordinate. That assumes no negative coordinates,
    but boxes often reach above or left of the image, then overlap the previous image's boxes and
    the wrong box wins: batch results differ from single-image ones. Shifting all boxes to
    non-negative first restores the separation, and NMS does not care about a common shift."""

    def wrapped(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, *args: object) -> torch.Tensor:
        if boxes.numel() and bool((idxs != idxs[0]).any()):
            boxes = boxes - boxes.min()
        return nms(boxes, scores, idxs, *args)

    return wrapped


def _rebound(function: Callable, **names: object) -> Callable:
    """A copy of a library `function` whose global lookups of `names` find the given objects instead.

    facenet-pytorch offers no way to pass its stages another NMS: `detect_face` calls the module
    globals `batched_nms` and `batched_nms_numpy`, and `MTCNN.detect` calls the global `detect_face`.
    Copies bound to a namespace with the fixed NMS leave the library's module and class untouched
    (other users of facenet-pytorch in the process see its own behaviour); a renamed global in a
    future version fails here, at import.
    """
    namespace = dict(function.__globals__)
    for name, value in names.items():
        if name not in namespace:
            raise ImportError(f"facenet-pytorch's {function.__qualname__} no longer calls a global {name!r}.")
        namespace[name] = value
    copy = types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    return copy


# MTCNN.detect with every batched NMS of its three stages kept per image (`_per_image_nms`).
_detect_per_image_nms = _rebound(
    MTCNN.detect,
    detect_face=_rebound(
        _mtcnn_stages.detect_face,
        batched_nms=_per_image_nms(_mtcnn_stages.batched_nms),
        batched_nms_numpy=_per_image_nms(_mtcnn_stages.batched_nms_numpy),
    ),
)


class FaceDetector:
    """MTCNN with all faces kept, raw (not standardised) outputs and batches that give each image's own
    detections (`_detect_per_image_nms`); weights ship in the wheel."""

    def __init__(self, device: str = "cpu", min_face: int = 20) -> None:
        self.device = device
        self.min_face = min_face
        self._mtcnn = MTCNN(keep_all=True, post_process=False, min_face_size=min_face, device=device)
        # Its input arrives channels-last (an RGB array); in that layout the nets' ceil-mode max pools
        # run 5-8x faster on a CPU, and detection takes a quarter less time (boxes move < 0.001 px).
        self._mtcnn.to(memory_format=torch.channels_last).eval()

    def _detection_input(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The image MTCNN gets (rescaled into its working range, with a context border) and the
        matrix from the original to it; None when the image is too small to hold a face."""
        h, w = image.shape[:2]
        short, long = min(h, w), max(h, w)
        if short == 0:
            return None
        factor = 1.0
        if long > _MAX_DETECT_SIDE:
            factor = _MAX_DETECT_SIDE / long
        elif short < _MIN_DETECT_SIDE:
            factor = min(_MIN_DETECT_SIDE / short, _MAX_DETECT_SIDE / long)
        if round(short * factor) < self.min_face:
            return None
        work, matrix = _resize(image, max(1, round(w * factor)), max(1, round(h * factor)))
        margin = round(_DETECT_MARGIN * max(work.shape[:2]))
        work = cv2.copyMakeBorder(
            np.ascontiguousarray(work), margin, margin, margin, margin, cv2.BORDER_REPLICATE
        )
        return work, _chain(matrix, _translate(margin, margin))

    def detect(self, image: np.ndarray) -> list[FaceGeometry]:
        """All faces in an RGB uint8 image, largest box first; [] when there are none."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[FaceGeometry]]:
        """`detect` for many images: one MTCNN pass per group of same-size images (all of FairFace)."""
        results: list[list[FaceGeometry]] = []
        # Chunks bound memory: the padded copies of a whole FairFace split would not fit.
        for start in range(0, len(images), _BATCH_SIZE):
            prepared = [
                self._detection_input(_as_rgb(image)) for image in images[start : start + _BATCH_SIZE]
            ]
            found: list[list[FaceGeometry]] = [[] for _ in prepared]
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, item in enumerate(prepared):
                if item is not None:
                    by_shape.setdefault(item[0].shape, []).append(i)
            for indices in by_shape.values():
                batch = np.stack([prepared[i][0] for i in indices])
                with torch.no_grad():
                    boxes, probs, points = _detect_per_image_nms(self._mtcnn, batch, landmarks=True)
                for i, b, p, q in zip(indices, boxes, probs, points):
                    back = cv2.invertAffineTransform(prepared[i][1])
                    found[i] = [face.transformed(back) for face in _faces_from(b, p, q)]
            results.extend(found)
        return results


# --- image operations -------------------------------------------------------------------------


def align_crop(
    image: np.ndarray, face: FaceGeometry, size: int, padding: float = _FACE_BOX_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the eye midpoint so the eyes are level, then crop a square around the face box
    enlarged by `padding` on each side, resized to size x size (face-api.js's crop). Returns (crop,
    2x3 affine matrix from source coords to crop coords). Beyond the source the crop holds `FILL`."""
    left_eye, right_eye = face.landmarks[0].astype(np.float64), face.landmarks[1].astype(np.float64)
    dx, dy = right_eye - left_eye
    rotate = _rotate(math.atan2(dy, dx), (left_eye + right_eye) / 2)

    # The box's own size, not the bounds of the rotated box, which grow with the tilt.
    side = _box_side(face) * (1 + 2 * padding)
    centre = _apply(rotate, _box_centre(face))[0]
    to_square = _chain(rotate, _translate(side / 2 - centre[0], side / 2 - centre[1]))
    return _warp_square(image, to_square, side, side, size)


def _warp_square(
    image: np.ndarray, to_square: np.ndarray, side: float, source_side: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Warp with `to_square` (source coords onto a square of `side`, `source_side` source pixels
    across) to a size x size image; returns it and the matrix from source coords to it."""
    if source_side <= size:
        matrix = _chain(to_square, _scale(size / side))
        return _warp(image, matrix, size), matrix
    # Shrinking: warp at the source's own resolution, then area-resize, because bilinear
    # warping straight to a small size would alias.
    native = math.ceil(source_side)
    matrix = _chain(to_square, _scale(native / side))
    crop, resize = _resize(_warp(image, matrix, native), size, size)
    return crop, _chain(matrix, resize)


def _warp_unit(image: np.ndarray, to_unit: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`_warp_square` for a matrix onto the unit square (a similarity)."""
    return _warp_square(image, to_unit, 1.0, 1 / math.hypot(to_unit[0, 0], to_unit[1, 0]), size)


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation, uniform scale and translation from `source` points onto `target`
    (Umeyama's method, as dlib's find_similarity_transform), as a 2x3 matrix."""
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - src_mean, target - dst_mean
    u, singular, vt = np.linalg.svd(dst.T @ src / len(source))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / (src**2).sum(axis=1).mean()
    linear = scale * rotation
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def five_point_chip(
    image: np.ndarray, face: FaceGeometry, size: int, padding: float = _DLIB_CHIP_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size chip aligned like dlib's extract_image_chip: the similarity transform that
    best maps the five landmarks onto dlib's mean face, grown by `padding` on each side. dlib
    aligns its own five points (eye corners, base of the nose); MTCNN's eye centres, nose tip and
    mouth corners are mapped onto the same template's matching points, an approximation."""
    template = (_DLIB_MEAN_FACE + padding) / (1 + 2 * padding)
    return _warp_unit(image, _similarity(face.landmarks.astype(np.float64), template), size)


@cache
def read_template(path: Path = FACE_TEMPLATE_PATH) -> np.ndarray:
    """The five mean landmark positions of FairFace's training faces, in the unit square (x, y)."""
    try:
        stored = json.loads(Path(path).read_text(encoding="utf-8"))
        landmarks = np.asarray(stored["landmarks"], dtype=np.float64) / float(stored["frame"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"The face template {path} cannot be read ({exc}); run `faircam template`.") from None
    if landmarks.shape != (5, 2):
        raise DataError(f"The face template {path} needs 5 landmarks of (x, y); run `faircam template`.")
    return landmarks


def measure_template(images: list[np.ndarray], detector: FaceDetector) -> tuple[np.ndarray, int]:
    """(mean position of the largest face's five landmarks in a `TEMPLATE_FRAME`-pixel square frame,
    number of images with a face) over `images`, FairFace crops, each scaled to that frame."""
    points = [faces[0].landmarks.astype(np.float64) * (TEMPLATE_FRAME / np.array(image.shape[1::-1]))
              for image, faces in zip(images, detector.detect_batch(images)) if faces]
    if not points:
        raise DataError("No face was found in any of the images, so there is no template to measure.")
    return np.mean(points, axis=0), len(points)


def template_crop(image: np.ndarray, face: FaceGeometry, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The face cut out the way FairFace cut its faces: the similarity transform (rotation, scale,
    shift) that best maps the five landmarks onto the template (`read_template`). On a FairFace image this is close
    to the identity with the eyes levelled. Returns (crop, 2x3 matrix from source to crop coords)."""
    return _warp_unit(image, _similarity(face.landmarks.astype(np.float64), read_template()), size)

# How each model wants its face cut out: faircam's own model sees the whole image (the template
# crop is used only when asked for); the others always get a face cut to their own geometry (a brought model
# trained on aligned crops, "face-template": FairFace's mean face always).
ALIGNMENTS: dict[str, Callable[[np.ndarray, FaceGeometry, int], tuple[np.ndarray, np.ndarray]]] = {
    "image": template_crop,
    "face-template": template_crop,
    "face-box": align_crop,
    "dlib-chip": five_point_chip,
}


def _gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 array, on a downscaled copy when the sigma is large."""
    if sigma <= 0:
        return values
    h, w = values.shape[:2]
    factor = max(1.0, sigma / _MAX_DIRECT_SIGMA)
    if factor == 1.0:
        return cv2.GaussianBlur(values, (0, 0), sigma)
    small_w, small_h = max(1, round(w / factor)), max(1, round(h / factor))
    small = cv2.resize(values, (small_w, small_h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma * small_w / w, sigmaY=sigma * small_h / h)
    blurred = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return blurred.reshape(values.shape)


def blur_background(
    image: np.ndarray, face: FaceGeometry, strength: float = 0.08, feather: float = 0.12
) -> np.ndarray:
    """Keep the face sharp and Gaussian-blur the rest, with a soft (feathered) edge. The sharp
    region is an ellipse fitted to the face box (slightly enlarged so hair/chin survive); the
    mask is feathered with a Gaussian whose sigma is `feather` * face size; blur sigma is
    `strength` * image side. Returns uint8 RGB of the same shape."""
    image = _as_rgb(image)
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in face.box)
    cx, cy = _box_centre(face)
    ax = max((x2 - x1) / 2 * _ELLIPSE_GROWTH, 1.0)
    ay = max((y2 - y1) / 2 * _ELLIPSE_GROWTH, 1.0)
    ys = (np.arange(h, dtype=np.float32)[:, None] + 0.5 - cy) / ay
    xs = (np.arange(w, dtype=np.float32)[None, :] + 0.5 - cx) / ax
    mask = (xs**2 + ys**2 <= 1.0).astype(np.float32)
    mask = np.clip(_gaussian(mask, feather * _box_side(face)), 0.0, 1.0)[..., None]

    pixels = image.astype(np.float32)
    blurred = _gaussian(pixels, strength * max(h, w))
    out = mask * pixels + (1.0 - mask) * blurred
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def make_view(
    image: np.ndarray,
    size: int,
    detector: FaceDetector,
    crop: bool,
    blur: bool,
    face_index: int = 0,
    faces: list[FaceGeometry] | None = None,
    alignment: str = "image",
) -> View:
    """The image the model sees with its face geometry and validity mask. Detect faces (unless
    `faces` is given, so callers can reuse a detection), pick face `face_index` (clamped), crop and
    align if asked, blur if asked (blur after crop, on the final image), and transform the face
    geometry into the final image's coordinates with the same affine maths. Without a crop the
    whole image is fitted into size x size with its aspect ratio kept (`fit_square`). `alignment`
    (a key of ALIGNMENTS) is how the face is cut out; other than "image" it always is. With no
    face: the fitted image, face=None, cropped=blurred=False, and a message when crop, blur or an
    alignment was asked."""
    image = _as_rgb(image)
    if faces is None:
        faces = detector.detect(image)
    if not faces:
        fitted, matrix = fit_square(image, size)
        message = NO_FACE_MESSAGE if crop or blur or alignment != "image" else ""
        return View(fitted, None, False, False, 0, message, matrix, valid_mask(matrix, image.shape, size))

    index = min(max(face_index, 0), len(faces) - 1)
    message = ""
    if index != face_index:
        message = f"Only {len(faces)} face(s) found: showing face {index + 1}."
    crop = crop or alignment != "image"
    final, matrix = ALIGNMENTS[alignment](image, faces[index], size) if crop else fit_square(image, size)
    valid = valid_mask(matrix, image.shape, size)
    face = faces[index].transformed(matrix)
    if blur:
        # Blurring at model resolution keeps the blur strength the same whatever the photo size.
        final = blur_background(final, face)
    if not valid.all():
        # Bilinear sampling and the blur both spread edge pixels a little past the photo's edge.
        final[~valid] = FILL
    return View(final, face, crop, blur, len(faces), message, matrix, valid)
