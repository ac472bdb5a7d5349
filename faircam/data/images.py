"""Turning files and uploaded bytes into RGB arrays, safely.

Everything that decodes a picture goes through `decode_image`: it refuses what is not an
image, is animated or is too large before decoding it, applies the EXIF orientation, and converts
every mode (grayscale, palette, RGBA, CMYK, 16-bit, 32-bit and float) to 8-bit RGB, a tile at a time, so
memory holds little more than the decoded pixels. `read_open_file` reads only regular files (never waits
on a FIFO or device) and checks their size before reading them.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from faircam.config import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MAX_UPLOAD_MB
from faircam.errors import ImageError

# What a view holds where the photo has no pixels: the bundled model's normalisation mean (127 of
# 255, i.e. 0 after normalising), so the model gets no signal there; dlib and face-api subtract
# nearly the same means.
FILL = 127

# Our own size check below comes first; PIL's bomb guard stays as the backstop at the same limit.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Images are converted in tiles of this many pixels a side (2 MB as float64).
TILE_SIDE = 512


def _high_bit_depth(image: Image.Image) -> bool:
    return image.mode in ("I", "F") or image.mode.startswith("I;16")


def _tiles(width: int, height: int, factor: int) -> list[tuple[int, int, int, int]]:
    """Boxes of about `TILE_SIDE` pixels a side covering the image, their edges on multiples of `factor`."""
    side = factor * max(1, TILE_SIDE // factor)
    return [(x, y, min(x + side, width), min(y + side, height))
            for y in range(0, height, side) for x in range(0, width, side)]


def _value_range(image: Image.Image, tiles: list[tuple[int, int, int, int]]) -> tuple[float, float]:
    """The lowest and highest finite value of a 16-bit, 32-bit or float image ((inf, -inf) if it has none)."""
    low, high = np.inf, -np.inf
    for box in tiles:
        values = np.asarray(image.crop(box))
        values = values[np.isfinite(values)]
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    return low, high


def _to_rgb(image: Image.Image, value_range: tuple[float, float] | None = None) -> Image.Image:
    if value_range is not None:
        # 16-bit, 32-bit or float: stretch `value_range` to 8 bits instead of letting PIL clip at 255 (a float
        # image of 0 to 1 would be black). NaN and -inf are the darkest value, +inf the brightest.
        low, high = value_range
        if not high > low:
            return Image.new("RGB", image.size)
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), copy=False, nan=low, posinf=high, neginf=low)
        values -= low
        values /= high - low
        values *= 255
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _reduced_rgb(image: Image.Image, max_side: int) -> Image.Image:
    """The decoded `image` in RGB, box-reduced by a whole factor to under twice `max_side` on its long side.

    It is converted a tile at a time: beside the decoded pixels, memory holds one tile and the result (under
    4096 px a side, at most 64 MB), never a full-size copy in another mode.
    """
    width, height = image.size
    factor = max(1, max(width, height) // max_side)
    tiles = _tiles(width, height, factor)
    value_range = _value_range(image, tiles) if _high_bit_depth(image) else None
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for box in tiles:
        rgb = _to_rgb(image.crop(box), value_range)
        reduced.paste(rgb.reduce(factor) if factor > 1 else rgb, (box[0] // factor, box[1] // factor))
    return reduced


def decode_image(data: bytes, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """RGB uint8 array from image bytes, upright and no larger than `max_side` on its long side."""
    if not data:
        raise ImageError("The file is empty.")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageError(
                f"The image is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels. "
                "Please use a smaller copy."
            )
        # The further pictures of an MPO (a phone's gain map or preview, a stereo camera's other eye) belong to
        # the first, which is the photo.
        if getattr(image, "is_animated", False) and image.format != "MPO":
            raise ImageError(f"The image is animated ({image.n_frames} frames); faircam reads still photos. "
                             "Please save the frame you want as PNG or JPEG.")
        # JPEG can decode at 1/2, 1/4 or 1/8 scale: far less memory for huge photos.
        image.draft("RGB", (max_side, max_side))
        image.load()
        orientation = image.getexif().get(ExifTags.Base.Orientation)
        upright = _reduced_rgb(image, max_side)
        image.close()  # frees the decoded pixels before the last resampling
        upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        # Turned once small; the orientation is read from the file, which the converted copy does not carry.
        if orientation is not None:
            upright.getexif()[ExifTags.Base.Orientation] = orientation
            ImageOps.exif_transpose(upright, in_place=True)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(
            f"The image declares far more than {MAX_IMAGE_PIXELS // 1_000_000} megapixels, the limit: it may be a "
            "decompression bomb. Please use a smaller copy."
        ) from None
    except UnidentifiedImageError:
        raise ImageError("This file is not an image faircam can read (JPEG, PNG, WebP, BMP, TIFF).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"The image is damaged or truncated ({exc}).") from None
    return np.asarray(upright, dtype=np.uint8).copy()


def read_open_file(fd: int, name: str, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """`decode_image` for the file open as `fd` (closed here): a regular file of at most `MAX_UPLOAD_MB`, the upload
    limit. `name` is what messages call it."""
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"Cannot read {name}: not a regular file.")
        if info.st_size > MAX_UPLOAD_MB * 1024 * 1024:
            raise ImageError(f"{name} is larger than {MAX_UPLOAD_MB} MB. Please use a smaller copy.")
        try:
            data = file.read(MAX_UPLOAD_MB * 1024 * 1024 + 1)
        except OSError as exc:
            raise ImageError(f"Cannot read {name}: {exc.strerror or exc}.") from None
    return decode_image(data, max_side)


def read_image(path: Path | str, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """`read_open_file` for a file a person names (`faircam explain`); a data folder's images are read with
    `faircam.data.fairface.read_data_image`."""
    try:
        # Non-blocking open: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    return read_open_file(fd, str(path), max_side)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size (area filter when shrinking, as in training and evaluation)."""
    if image.shape[:2] == (size, size):
        return image
    shrinking = max(image.shape[:2]) > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
