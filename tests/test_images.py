"""decode_image / read_image on real FairFace JPEGs and on every awkward kind of upload."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faircam.config import MAX_IMAGE_SIDE, PROJECT_ROOT
from faircam.data.images import decode_image, read_image, resize_square
from faircam.errors import ImageError

PHOTO = "val/4.jpg"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def jpeg_bytes(fairface) -> bytes:
    return (fairface / PHOTO).read_bytes()


@pytest.fixture(scope="module")
def photo(jpeg_bytes) -> Image.Image:
    with Image.open(io.BytesIO(jpeg_bytes)) as image:
        return image.convert("RGB")


def assert_readable_error(info: pytest.ExceptionInfo, *words: str) -> None:
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), message


# --- real images and colour modes ------------------------------------------------------------


def test_real_jpeg(jpeg_bytes, photo, fairface):
    out = decode_image(jpeg_bytes)
    assert out.dtype == np.uint8 and out.shape == (224, 224, 3)
    np.testing.assert_array_equal(out, np.asarray(photo))
    np.testing.assert_array_equal(read_image(fairface / PHOTO), out)
    assert out.std() > 10  # a real photo, not a blank


def test_grayscale_becomes_three_equal_channels(photo):
    gray = photo.convert("L")
    out = decode_image(encode(gray, "PNG"))
    assert out.shape == (224, 224, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], np.asarray(gray))


def test_rgba_is_composited_on_white(photo):
    rgba = photo.convert("RGBA")
    alpha = np.full((224, 224), 255, dtype=np.uint8)
    alpha[:, :112] = 0  # left half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    out = decode_image(encode(rgba, "PNG"))
    assert out.shape == (224, 224, 3)
    assert (out[:, :112] == 255).all()
    np.testing.assert_array_equal(out[:, 112:], np.asarray(photo)[:, 112:])


def test_palette_image(photo):
    palette = photo.convert("P")
    out = decode_image(encode(palette, "PNG"))
    np.testing.assert_array_equal(out, np.asarray(palette.convert("RGB")))


def test_cmyk_jpeg(photo):
    data = encode(photo.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert out.shape == (224, 224, 3)
    # Colours survive (not inverted, not swapped): close to the RGB original.
    difference = np.abs(out.astype(int) - np.asarray(photo).astype(int))
    assert difference.mean() < 4, difference.mean()


def test_sixteen_bit_png_is_stretched_to_eight_bits(photo):
    values = (np.asarray(photo.convert("L")).astype(np.uint16) * 40 + 1000).astype(np.uint16)
    image = Image.fromarray(values)
    data = encode(image, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = decode_image(data)
    low, high = float(values.min()), float(values.max())
    expected = ((values - low) / (high - low) * 255).astype(np.uint8)
    assert out.shape == (224, 224, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], expected)
    assert out.min() == 0 and out.max() == 255  # not clipped to white as a plain convert would


def test_exif_orientation_is_applied():
    # 200 wide x 100 high: left half red, right half blue. Orientation 6 means "rotate 90
    # degrees clockwise to display", after which the image is 100 wide x 200 high, red on top.
    array = np.zeros((100, 200, 3), dtype=np.uint8)
    array[:, :100] = (255, 0, 0)
    array[:, 100:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_image(encode(Image.fromarray(array), "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (200, 100, 3)
    top, bottom = out[:90].reshape(-1, 3).mean(axis=0), out[110:].reshape(-1, 3).mean(axis=0)
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


# --- refused input ---------------------------------------------------------------------------


def test_zero_bytes():
    with pytest.raises(ImageError) as info:
        decode_image(b"")
    assert_readable_error(info, "empty")


def test_random_bytes():
    with pytest.raises(ImageError) as info:
        decode_image(np.random.default_rng(0).bytes(5000))
    assert_readable_error(info, "not an image")


def test_text_file_with_image_name(tmp_path):
    path = tmp_path / "face.jpg"
    path.write_text("this is not a photo\n")
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert_readable_error(info, "not an image")


def test_truncated_jpeg(jpeg_bytes):
    with pytest.raises(ImageError) as info:
        decode_image(jpeg_bytes[: len(jpeg_bytes) // 2])
    assert_readable_error(info, "truncated")


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / "nope.jpg")
    assert_readable_error(info, "cannot read", "nope.jpg")


def test_huge_image_is_refused():
    # 13000 x 13000 (169 megapixels, over the limit) is only a few kB as a 1-bit PNG.
    data = encode(Image.new("1", (13000, 13000)), "PNG")
    assert len(data) < 1_000_000
    with pytest.raises(ImageError) as info:
        decode_image(data)
    assert_readable_error(info, "pixels")


def png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is rewritten to declare width x height (with a valid CRC)."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_declared_size_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError) as info:
        decode_image(png_declaring(20000, 20000))
    assert_readable_error(info, "pixels")


def test_large_photo_is_downscaled():
    array = np.zeros((3000, 5000, 3), dtype=np.uint8)
    array[:, :2500] = (200, 30, 30)
    for fmt in ("JPEG", "PNG"):
        out = decode_image(encode(Image.fromarray(array), fmt))
        assert out.shape == (round(3000 * MAX_IMAGE_SIDE / 5000), MAX_IMAGE_SIDE, 3), fmt
        assert out[:, :1000].mean(axis=(0, 1))[0] > 150 and out[:, -1000:].max() < 30
    portrait = decode_image(encode(Image.fromarray(array.transpose(1, 0, 2).copy()), "PNG"), max_side=500)
    assert portrait.shape == (500, 300, 3)


def test_small_image_is_not_enlarged(photo):
    assert decode_image(encode(photo, "PNG")).shape == (224, 224, 3)


def test_resize_square(photo):
    image = np.asarray(photo)
    assert resize_square(image, 224) is image
    assert resize_square(image, 160).shape == (160, 160, 3)
    assert resize_square(image[:100, :50], 160).shape == (160, 160, 3)


def test_float_tiff_is_stretched_like_sixteen_bit(photo):
    # A 32-bit float TIFF (mode "F") of values 0 to 1, as scientific and HDR tools write it, with a NaN,
    # +inf and -inf: stretched over its finite values, not clipped to black.
    gray = np.asarray(photo.convert("L"))
    values = gray.astype(np.float32) / 255
    values[0, :3] = [np.nan, np.inf, -np.inf]
    data = encode(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    out = decode_image(data)
    finite = values[np.isfinite(values)].astype(np.float64)
    low, high = finite.min(), finite.max()
    expected = ((np.nan_to_num(values.astype(np.float64), nan=low, posinf=high, neginf=low) - low)
                / (high - low) * 255).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], expected)
    assert list(out[0, :3, 0]) == [0, 255, 0]  # NaN and -inf dark, +inf white
    assert out.std() > 40  # the photo, not a black frame


def test_float_tiff_without_finite_values_is_black():
    data = encode(Image.fromarray(np.full((20, 30), np.nan, dtype=np.float32)), "TIFF")
    assert (decode_image(data) == 0).all()


def test_phone_jpeg_with_an_embedded_second_image_is_its_first_image(photo):
    # Phones store a gain map or a preview after the photo (MPF); Pillow reads such a JPEG as a two-frame MPO.
    buffer = io.BytesIO()
    photo.save(buffer, "MPO", save_all=True, append_images=[photo.convert("L").resize((56, 56))], quality=95)
    opened = Image.open(io.BytesIO(buffer.getvalue()))
    assert (opened.format, opened.n_frames) == ("MPO", 2)
    out = decode_image(buffer.getvalue())
    np.testing.assert_array_equal(out, np.asarray(opened.convert("RGB")))


# --- memory: a small file declaring nearly the 100-megapixel limit -----------------------------

SIDE = 9999
# `read_image`, as `faircam explain` and the pages call it, in a process of its own: how much its peak RSS
# grew (MB) and the seconds it took. The peak is the kernel's VmHWM, which starts afresh at exec; ru_maxrss
# would start at the forking test process's size.
DECODE_PEAK = """
import sys, time
from faircam.data.images import read_image
def peak():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
before, start = peak(), time.perf_counter()
shape = read_image(sys.argv[1]).shape
print(peak() - before, time.perf_counter() - start, *shape)
"""


def huge_png(path: Path, mode: str) -> Path:
    """A 9999x9999 PNG of a horizontal ramp, a few hundred kB: 16-bit grayscale ("I;16") or 8-bit "RGB"."""
    ramp = np.arange(SIDE, dtype=np.uint32)
    if mode == "I;16":
        pixels = np.broadcast_to((ramp * 6 % 65536).astype(np.uint16), (SIDE, SIDE))
    else:
        pixels = np.broadcast_to((ramp % 256).astype(np.uint8)[None, :, None], (SIDE, SIDE, 3))
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)
    return path


@pytest.mark.parametrize(("mode", "pixel_bytes"), [("I;16", 2), ("RGB", 4)])
def test_a_100_megapixel_png_decodes_within_the_readme_bound(tmp_path, mode, pixel_bytes):
    path = huge_png(tmp_path / "huge.png", mode)
    assert path.stat().st_size < 400_000 and Image.open(path).mode == mode
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", DECODE_PEAK, str(path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    grown, seconds, *shape = done.stdout.split()
    assert [int(n) for n in shape] == [MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 3]
    # README, "Handled inputs": the pixels as Pillow decodes them (2 bytes a pixel for 16-bit grayscale, 4 for
    # RGB) and at most about 70 MB more; no full-size copy in another mode (it was 2.2 GB for the 16-bit file).
    decoded = SIDE * SIDE * pixel_bytes / 1024**2
    assert float(grown) < decoded + 70, f"{mode}: peak grew {float(grown):.0f} MB in {float(seconds):.1f} s"
