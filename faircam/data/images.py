"""Turning files and uploaded bytes into RGB arrays, safely.

Everything that decodes a picture goes through `decode_image`: it refuses what is not an
image, is animated or is too large before decoding it, applies the EXIF orientation, and converts
every mode (grayscale, palette, RGBA, CMYK, 16-bit) to 8-bit RGB. `read_image` reads only regular
files (never waits on a FIFO or device) and checks their size before reading them.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faircam.config import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MAX_UPLOAD_MB
from faircam.errors import ImageError

# What a view holds where the photo has no pixels: the bundled model's normalisation mean (127 of
# 255, i.e. 0 after normalising), so the model gets no signal there; dlib and face-api subtract
# nearly the same means.
FILL = 127

# Our own size check below comes first; PIL's bomb guard stays as the backstop at the same limit.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS



def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: stretch to 8 bits instead of letting PIL clip at 255.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


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
        if getattr(image, "is_animated", False):
            raise ImageError(f"The image is animated ({image.n_frames} frames); faircam reads still photos. "
                             "Please save the frame you want as PNG or JPEG.")
        # JPEG can decode at 1/2, 1/4 or 1/8 scale: far less memory for huge photos.
        image.draft("RGB", (max_side, max_side))
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
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
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()


def read_image(path: Path | str, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """`decode_image` for a regular file on disk of at most `MAX_UPLOAD_MB`, the upload limit."""
    path = Path(path)
    try:
        # Non-blocking open: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"Cannot read {path}: not a regular file.")
        if info.st_size > MAX_UPLOAD_MB * 1024 * 1024:
            raise ImageError(f"{path} is larger than {MAX_UPLOAD_MB} MB. Please use a smaller copy.")
        try:
            data = file.read(MAX_UPLOAD_MB * 1024 * 1024 + 1)
        except OSError as exc:
            raise ImageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    return decode_image(data, max_side)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size (area filter when shrinking, as in training and evaluation)."""
    if image.shape[:2] == (size, size):
        return image
    shrinking = max(image.shape[:2]) > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
