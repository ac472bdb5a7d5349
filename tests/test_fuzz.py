"""Fuzzing the upload path (decode -> view -> prediction, CAMs and focus scores) with hypothesis.

Random bytes, damaged real photos and random valid images of every mode, format, size and EXIF
orientation go through `decode_image` and the real pipeline. Only faircam's own errors
(`faircam.errors`), which the app shows as a message, may escape; a valid image under the size
limits must always be explained. `HYPOTHESIS_PROFILE=long` runs many more cases than CI's default.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from faircam.config import MAX_IMAGE_SIDE
from faircam.data.images import decode_image
from faircam.errors import KNOWN_ERRORS
from faircam.vision.cams import METHODS
from faircam.vision.focus import REGIONS

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow], database=None)
settings.register_profile("long", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

# (mode, format) pairs Pillow can write; every one of them must be readable. "MPO" is a phone's JPEG with a
# second picture after the photo (a gain map, a preview).
SAVABLE = [
    ("1", "PNG"), ("1", "BMP"), ("1", "TIFF"), ("1", "GIF"), ("1", "JPEG"),
    ("L", "PNG"), ("L", "JPEG"), ("L", "WEBP"), ("L", "BMP"), ("L", "TIFF"), ("L", "GIF"),
    ("LA", "PNG"), ("LA", "WEBP"), ("LA", "TIFF"),
    ("P", "PNG"), ("P", "BMP"), ("P", "TIFF"), ("P", "GIF"),
    ("RGB", "PNG"), ("RGB", "JPEG"), ("RGB", "WEBP"), ("RGB", "BMP"), ("RGB", "TIFF"),
    ("RGBA", "PNG"), ("RGBA", "WEBP"), ("RGBA", "TIFF"),
    ("CMYK", "JPEG"), ("CMYK", "TIFF"),
    ("I;16", "PNG"), ("I;16", "TIFF"), ("I", "TIFF"), ("F", "TIFF"),
    ("RGB", "MPO"), ("L", "MPO"),
]
EXIF_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "MPO")
SAMPLE = [f"val/{n}.jpg" for n in range(1, 9)]


@pytest.fixture(scope="module")
def photos(fairface) -> dict[str, bytes]:
    return {file: (fairface / file).read_bytes() for file in SAMPLE}


def assert_explained(pipeline, image: np.ndarray, crop: bool, blur: bool, face: int) -> None:
    """The real pipeline on a decoded image, with what the page relies on checked."""
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert max(image.shape[:2]) <= MAX_IMAGE_SIDE and min(image.shape[:2]) >= 1
    explanation = pipeline.explain(image, crop=crop, blur=blur, face_index=face)
    assert explanation.label in pipeline.model.classes
    assert 0.5 <= explanation.probability <= 1
    size = pipeline.model.input_size
    assert explanation.view.image.shape == (size, size, 3)
    for method in METHODS:
        cam = explanation.maps[method]
        assert cam.shape == (size, size) and np.isfinite(cam).all()
        shares = explanation.focus[method]
        assert all(np.isfinite(shares[r]) for r in REGIONS)
        assert sum(shares[r] for r in REGIONS) == pytest.approx(1, abs=1e-3)


def through_upload_path(pipeline, data: bytes, crop: bool, blur: bool, face: int) -> None:
    try:
        image = decode_image(data)
    except KNOWN_ERRORS:
        return  # shown to the user as a message
    assert_explained(pipeline, image, crop, blur, face)


toggles = st.tuples(st.booleans(), st.booleans(), st.integers(0, 3))


@settings(settings.get_profile(PROFILE))
@given(data=st.binary(max_size=4096), prefix=st.sampled_from([b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n",
                                                              b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM", b"II*\x00",
                                                              b"GIF89a"]))
def test_random_bytes(pipeline, data, prefix):
    # A real format's magic bytes first, so the decoders themselves get fuzzed, not only the sniffing.
    through_upload_path(pipeline, prefix + data, False, False, 0)


@settings(settings.get_profile(PROFILE))
@given(file=st.sampled_from(SAMPLE), fmt=st.sampled_from(["JPEG", "PNG", "WEBP"]), cut=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=8), toggles=toggles)
def test_damaged_real_photos(pipeline, photos, file, fmt, cut, flips, toggles):
    data = photos[file]
    if fmt != "JPEG":
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buffer, fmt)
        data = buffer.getvalue()
    damaged = bytearray(data[: max(1, int(len(data) * cut))])
    for where, xor in flips:
        damaged[min(int(where * len(damaged)), len(damaged) - 1)] ^= xor
    through_upload_path(pipeline, bytes(damaged), *toggles)


def _pixels(mode: str, width: int, height: int, content: str, seed: int, face: np.ndarray) -> Image.Image:
    rng = np.random.default_rng(seed)
    if content == "face":
        rgb = Image.fromarray(face).resize((width, height))
    elif content == "flat":
        rgb = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
    else:
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * int(rng.integers(1, 258)))
    if mode == "I":
        values = np.asarray(rgb.convert("L"), dtype=np.int64) * int(rng.integers(-2**23, 2**23))
        return Image.fromarray(values.astype(np.int32))
    if mode == "F":
        values = np.asarray(rgb.convert("L"), dtype=np.float32) * float(rng.choice([1e-30, 1.0, 1e30]))
        if content == "noise":
            values.flat[rng.integers(0, values.size, 3)] = [np.nan, np.inf, -np.inf]
        return Image.fromarray(values)
    if mode == "LA":
        return Image.merge("LA", (rgb.convert("L"), Image.fromarray(rng.integers(0, 256, (height, width), np.uint8))))
    if mode == "RGBA":
        return Image.merge("RGBA", (*rgb.split(), Image.fromarray(rng.integers(0, 256, (height, width), np.uint8))))
    return rgb.convert(mode)


@settings(settings.get_profile(PROFILE))
@given(
    kind=st.sampled_from(SAVABLE),
    width=st.one_of(st.integers(1, 400), st.integers(1, 3000)),
    height=st.one_of(st.integers(1, 400), st.integers(1, 3000)),
    content=st.sampled_from(["face", "flat", "noise"]),
    seed=st.integers(0, 2**32 - 1),
    orientation=st.integers(0, 8),
    toggles=toggles,
)
def test_odd_valid_images_are_always_explained(pipeline, sample_images, kind, width, height, content, seed,
                                               orientation, toggles):
    mode, fmt = kind
    assume(width * height <= 4_000_000)  # big enough to be downscaled, small enough for CI
    image = _pixels(mode, width, height, content, seed, sample_images[seed % len(sample_images)])
    options = {}
    if orientation and fmt in EXIF_FORMATS:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    if fmt == "MPO":
        options |= {"save_all": True, "append_images": [image.resize((max(1, width // 4), max(1, height // 4)))]}
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    decoded = decode_image(buffer.getvalue())  # a valid image within the limits is never refused
    turned = orientation in (5, 6, 7, 8) and fmt in EXIF_FORMATS
    expected = (width, height) if turned else (height, width)
    scale = min(1.0, MAX_IMAGE_SIDE / max(width, height))
    assert abs(decoded.shape[0] - expected[0] * scale) <= 1 and abs(decoded.shape[1] - expected[1] * scale) <= 1
    assert_explained(pipeline, decoded, *toggles)
