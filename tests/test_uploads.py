"""Every awkward upload through the real upload path: Explore's file uploader in Streamlit's AppTest.

Each file is uploaded as bytes, decoded, viewed and explained by the real model exactly as in the
app. Refused files must produce one clear `st.error` and no exception; odd but valid files must be
explained like the library explains the same bytes; a photo with two faces lets the user pick the
second one, and the prediction, maps and scores follow that face.
"""

from __future__ import annotations

import io
import re
import tomllib

import numpy as np
import pytest
from PIL import Image
from test_images import encode, png_declaring
from test_pages import run
from test_task_measures import shown_tables

from faircam import wording
from faircam.config import MAX_UPLOAD_MB, PROJECT_ROOT, SERVER_UPLOAD_MB
from faircam.data.images import decode_image, read_image
from faircam.vision.cams import METHODS
from faircam.vision.preprocess import NO_FACE_MESSAGE
from faircam.wording import FACE_COLUMN

VERDICT = re.compile(r"The model says \*\*(Female|Male)\*\* \((\d+)% sure\)")
# Two real FairFace val faces the bundled model tells apart once cropped: a boy (val/10.jpg) and a
# woman (val/26.jpg).
FEMALE, MALE = "val/26.jpg", "val/10.jpg"


def explore_upload(name: str, data: bytes, mime: str = "image/jpeg", crop: bool = False):
    at = run("pages/1_Explore.py")
    at.radio[0].set_value("Upload a photo").run()
    at.toggle[0].set_value(crop).run()
    at.file_uploader[0].set_value((name, data, mime)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def verdict(at) -> tuple[str, float]:
    found = [VERDICT.search(m.value) for m in at.markdown]
    found = [m for m in found if m]
    assert len(found) == 1, [m.value for m in at.markdown]
    return found[0].group(1), int(found[0].group(2)) / 100


def shown_shares(at):
    """The page's table of focus shares (CAM methods x regions)."""
    (table,) = shown_tables(at)
    return table.loc[list(METHODS)]


def assert_refused(at, *words: str) -> None:
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0].split("** ", 1)[-1] and "Traceback" not in errors[0]
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]
    assert not [m for m in at.markdown if "The model says" in m.value]


def assert_explained_like_library(at, data: bytes, pipeline, crop: bool = False, face: int = 0):
    assert not at.error, [e.value for e in at.error]
    expected = pipeline.explain(decode_image(data), crop=crop, face_index=face)
    label, probability = verdict(at)
    assert label == expected.label
    assert probability == pytest.approx(expected.probability, abs=0.006)
    shares = shown_shares(at)
    for method in METHODS:
        assert shares.loc[method, FACE_COLUMN] == pytest.approx(expected.focus[method]["face"], abs=1e-6)
    return expected


@pytest.fixture(scope="module")
def face_photo(fairface) -> Image.Image:
    with Image.open(fairface / MALE) as image:
        return image.convert("RGB")


# --- refused uploads -------------------------------------------------------------------------


def test_zero_byte_file():
    assert_refused(explore_upload("empty.jpg", b""), "empty")


def test_text_file_named_like_a_photo():
    assert_refused(explore_upload("notes.png", b"these are my notes, not a photo\n" * 20, "image/png"),
                   "not an image")


def test_random_bytes():
    assert_refused(explore_upload("noise.jpg", np.random.default_rng(1).bytes(20_000)), "not an image")


def test_truncated_jpeg(fairface):
    data = (fairface / MALE).read_bytes()
    assert_refused(explore_upload("cut.jpg", data[: len(data) // 2]), "damaged or truncated")


def test_truncated_png(face_photo):
    data = encode(face_photo, "PNG")
    assert_refused(explore_upload("cut.png", data[: len(data) // 2], "image/png"), "damaged or truncated")


def test_corrupt_png(face_photo):
    data = bytearray(encode(face_photo, "PNG"))
    data[len(data) // 2 : len(data) // 2 + 500] = bytes(500)  # zeroed pixel data, header intact
    assert_refused(explore_upload("corrupt.png", bytes(data), "image/png"), "damaged")


def test_12000_by_12000_image():
    data = encode(Image.new("1", (12000, 12000)), "PNG")  # 144 megapixels in a few kB
    assert_refused(explore_upload("scan.png", data, "image/png"), "12000x12000", "megapixels")


def test_decompression_bomb():
    # A 1x1 PNG whose header declares 60000 x 60000 pixels: refused before anything is decoded.
    assert_refused(explore_upload("bomb.png", png_declaring(60000, 60000), "image/png"), "megapixels", "bomb")


def test_file_over_the_upload_limit(fairface):
    # A real JPEG padded past the limit (decoders ignore trailing bytes): refused by size, in code.
    data = (fairface / MALE).read_bytes() + bytes(MAX_UPLOAD_MB * 1024 * 1024)
    assert_refused(explore_upload("huge.jpg", data), f"larger than {MAX_UPLOAD_MB} MB")


def test_upload_limit_in_config_matches_code(fairface):
    """The server takes a brought model's upload; the photo uploaders still ask for MAX_UPLOAD_MB."""
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == SERVER_UPLOAD_MB
    for page in ("pages/1_Explore.py", "pages/10_Classroom.py"):
        at = run(page)
        if page == "pages/1_Explore.py":
            at.radio[0].set_value("Upload a photo").run()
        assert [u.proto.max_upload_size_mb for u in at.file_uploader] == [MAX_UPLOAD_MB], page


# --- odd but valid uploads -------------------------------------------------------------------


def test_grayscale(face_photo, pipeline):
    data = encode(face_photo.convert("L"), "JPEG", quality=95)
    assert_explained_like_library(explore_upload("gray.jpg", data), data, pipeline)


def test_rgba_png(face_photo, pipeline):
    rgba = face_photo.convert("RGBA")
    rgba.putalpha(200)
    data = encode(rgba, "PNG")
    assert_explained_like_library(explore_upload("alpha.png", data, "image/png"), data, pipeline)


def test_cmyk_jpeg(face_photo, pipeline):
    data = encode(face_photo.convert("CMYK"), "JPEG", quality=95)
    expected = assert_explained_like_library(explore_upload("print.jpg", data), data, pipeline)
    # Colours came through: the same answer as for the RGB original.
    assert expected.label == pipeline.explain(np.asarray(face_photo)).label


def test_sixteen_bit_png(face_photo, pipeline):
    values = np.asarray(face_photo.convert("L")).astype(np.uint16) * 257
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert_explained_like_library(explore_upload("deep.png", data, "image/png"), data, pipeline)


def test_phone_photo_with_an_embedded_gain_map(face_photo, pipeline):
    # A phone JPEG carrying a second image after the photo (MPF: a gain map, a preview), which Pillow reads as MPO.
    buffer = io.BytesIO()
    gain_map = face_photo.convert("L").resize((56, 56))
    face_photo.save(buffer, "MPO", save_all=True, append_images=[gain_map], quality=95)
    data = buffer.getvalue()
    opened = Image.open(io.BytesIO(data))
    assert (opened.format, opened.n_frames) == ("MPO", 2)
    expected = assert_explained_like_library(explore_upload("PXL_0001.jpg", data), data, pipeline)
    assert expected.label == pipeline.explain(np.asarray(face_photo)).label


def test_float_tiff(face_photo, pipeline):
    # A 32-bit float TIFF of values 0 to 1, with a NaN and an infinity: explained like the 8-bit photo it holds.
    gray = face_photo.convert("L")
    values = np.asarray(gray, dtype=np.float32) / 255
    values[0, :2] = [np.nan, np.inf]
    data = encode(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    at = explore_upload("scan.tif", data, "image/tiff")
    assert_explained_like_library(at, data, pipeline)
    eight_bit = pipeline.explain(np.asarray(gray.convert("RGB")))
    label, probability = verdict(at)
    assert label == eight_bit.label and probability == pytest.approx(eight_bit.probability, abs=0.03)


def test_exif_rotated_photo_is_shown_upright(face_photo, pipeline):
    # Pixels stored lying on their side, with the EXIF tag (6: rotate 90 degrees clockwise) a phone writes.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(face_photo.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif.tobytes())
    at = explore_upload("phone.jpg", data)
    expected = assert_explained_like_library(at, data, pipeline)
    upright = pipeline.explain(np.asarray(face_photo))
    assert expected.view.face is not None
    assert expected.label == upright.label
    assert expected.probability == pytest.approx(upright.probability, abs=0.05)


def test_photo_without_a_face(pipeline):
    sky = np.zeros((300, 400, 3), dtype=np.uint8)
    sky[..., 2] = np.linspace(120, 255, 400, dtype=np.uint8)[None, :]
    data = encode(Image.fromarray(sky), "PNG")
    at = explore_upload("sky.png", data, "image/png", crop=True)
    assert [w.value for w in at.warning] == [NO_FACE_MESSAGE]
    assert any("No face was found" in i.value for i in at.info)
    shares = shown_shares(at)
    assert (shares[FACE_COLUMN] == 0).all()  # everything counts as background
    # The whole image is still classified and mapped, but the headline gives no verdict.
    said = "\n".join(m.value for m in at.markdown)
    assert "No face found: this answer is about the whole picture and means little" in said
    assert not VERDICT.search(said)


def test_uploads_are_cropped_by_default_and_keep_their_shape(face_photo, pipeline):
    at = run("pages/1_Explore.py")
    assert at.toggle[0].value is False  # FairFace faces are shown as they are
    at.radio[0].set_value("Upload a photo").run()
    assert at.toggle[0].value is True
    assert any("trained on FairFace's face crops" in c.value for c in at.caption)
    # A wide photo: the raw view pads it to a square instead of squashing the face.
    wide = Image.new("RGB", (3 * face_photo.width, face_photo.height), (30, 90, 30))
    wide.paste(face_photo, (face_photo.width, 0))
    data = encode(wide, "PNG")
    at.toggle[0].set_value(False).run()
    at.file_uploader[0].set_value(("wide.png", data, "image/png")).run()
    assert not at.exception
    expected = assert_explained_like_library(at, data, pipeline)
    assert expected.view.invalid_share == pytest.approx(2 / 3, abs=0.02)
    said = f"The hatched grey area ({expected.view.invalid_share:.0%} of the view) lies beyond the photo's edge"
    assert any(said in c.value for c in at.caption)


# --- several faces: the user picks one -------------------------------------------------------


@pytest.fixture(scope="module")
def two_faces(fairface) -> bytes:
    side_by_side = np.concatenate([read_image(fairface / FEMALE), read_image(fairface / MALE)], axis=1)
    return encode(Image.fromarray(side_by_side), "PNG")


def face_picker(at):
    pickers = [s for s in at.selectbox if s.label == "Face"]
    assert len(pickers) == 1
    return pickers[0]


def test_two_faces_pick_the_second_cropped(two_faces, pipeline):
    at = explore_upload("pair.png", two_faces, "image/png", crop=True)
    picker = face_picker(at)
    assert picker.options == ["face 1 of 2 (largest)", "face 2 of 2"]
    first = assert_explained_like_library(at, two_faces, pipeline, crop=True, face=0)

    picker.set_value(1).run()
    assert not at.exception
    second = assert_explained_like_library(at, two_faces, pipeline, crop=True, face=1)
    assert face_picker(at).value == 1
    # The other face is another person: a different answer and different maps.
    assert {first.label, second.label} == {"Female", "Male"}
    assert not np.allclose(first.maps["Grad-CAM"], second.maps["Grad-CAM"])


def test_two_faces_without_crop_scores_follow_the_pick(two_faces, pipeline):
    at = explore_upload("pair.png", two_faces, "image/png")
    first = shown_shares(at)[FACE_COLUMN]
    face_picker(at).set_value(1).run()
    assert_explained_like_library(at, two_faces, pipeline, face=1)
    # The model sees the whole photo either way; the face regions scored are the picked face's.
    assert not np.allclose(first.to_numpy(float), shown_shares(at)[FACE_COLUMN].to_numpy(float))


def test_face_choice_does_not_carry_over_to_the_next_photo(two_faces, fairface, pipeline):
    at = explore_upload("pair.png", two_faces, "image/png")
    face_picker(at).set_value(1).run()
    single = (fairface / MALE).read_bytes()
    at.file_uploader[0].set_value(("one.jpg", single, "image/jpeg")).run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert not [s for s in at.selectbox if s.label == "Face"]
    assert_explained_like_library(at, single, pipeline)


def test_upload_and_face_choice_survive_another_page(two_faces, pipeline):
    at = explore_upload("pair.png", two_faces, "image/png", crop=True)
    face_picker(at).set_value(1).run()
    at.switch_page("pages/2_Evaluation.py").run()
    at.switch_page("pages/1_Explore.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio[0].value == "Upload a photo" and face_picker(at).value == 1
    assert_explained_like_library(at, two_faces, pipeline, crop=True, face=1)
    assert any("uploaded earlier in this session" in c.value for c in at.caption)


def test_removing_the_upload_forgets_it(fairface):
    at = explore_upload("one.jpg", (fairface / MALE).read_bytes())
    verdict(at)
    at.file_uploader[0].set_value(None).run()
    assert not at.exception and not [m for m in at.markdown if "The model says" in m.value]


@pytest.mark.parametrize(("share", "said"), [(0.0031, "under 1%"), (0.0, "0%"), (0.006, "1%"), (2 / 3, "67%")])
def test_a_sliver_beyond_the_photo_is_not_called_0_percent(share, said):
    assert wording.small_share(share) == said
