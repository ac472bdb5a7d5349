"""The Classroom on photos that are not FairFace crops, through the page as a class would use it (AppTest, the real
model and MTCNN): a picture with no face, a wide photo, profile faces and a coin-toss answer."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from streamlit.testing.v1 import AppTest

from faircam.audit import classroom
from faircam.cli import main
from faircam.config import PROJECT_ROOT, settings
from faircam.data.fairface import LABEL_COLUMNS
from faircam.data.images import read_image
from faircam.evaluation.cache import read_cache, write_cache
from faircam.models import registry
from faircam.vision.quality import FRONTAL_DEGREES, measure

TIMEOUT = 600


@pytest.fixture(scope="module")
def rows():
    return read_cache(settings().cache_path).rows


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.error, *at.warning, *at.info])


def lesson(step: int, upload: bytes | None = None, picked: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/10_Classroom.py")
    # What the uploader's callback and a pick do (AppTest cannot drive an uploader).
    if upload is not None:
        at.session_state["image_upload"] = upload
        at.session_state["image_source"] = "Upload a photo"
    else:
        at.session_state["picked"] = {c: picked[c] for c in LABEL_COLUMNS}
        at.session_state["image_source"] = "FairFace sample"
    at.session_state["lesson_step"] = step
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def homework() -> bytes:
    """A page of homework: lines of text on white, no face."""
    page = Image.new("RGB", (600, 800), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=22)
    for i in range(20):
        draw.text((40, 40 + 36 * i), f"{i + 1}. Solve x + {i} = {2 * i + 3} and show your working.", fill="black",
                  font=font)
    return png(page)


def landscape(fairface) -> bytes:
    """A FairFace face in the middle of a wide photo (three times as wide as tall), beside a plain wall."""
    face = Image.open(fairface / "val/26.jpg").convert("RGB")
    wall = Image.new("RGB", (face.width * 3, face.height), tuple(int(v) for v in np.asarray(face).mean((0, 1))))
    wall.paste(face, (face.width, 0))
    return png(wall)


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_photo_without_a_face_stops_the_lesson(step):
    at = lesson(step, upload=homework())
    said = texts(at)
    assert "No face was found in this picture, so the lesson stops here" in said
    assert "never seen this person" not in said and "The model says" not in said and "heat" not in said
    assert not [b for b in at.button if b.label == "Next →"]
    next(b for b in at.button if b.label == "Choose another face").click().run()
    assert at.session_state["lesson_step"] == 0 and not at.exception


def test_a_wide_photo_is_answered_as_explore_answers_it(fairface):
    photo = landscape(fairface)
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/1_Explore.py")
    at.session_state["image_upload"] = photo
    at.session_state["image_source"] = "Upload a photo"
    at.run()
    assert not at.exception
    explore = re.search(r"The model says \*\*(\w+)\*\* \((\d+)% sure\)",
                        next(m.value for m in at.markdown if "The model says" in m.value))

    at = lesson(1, upload=photo)
    said = texts(at)
    size = registry.load_model(None).input_size  # the model's input: size x size pixels, three numbers each
    assert "The face was cut out of the photo first" in said and f"**{size * size * 3:,} numbers**" in said
    next(b for b in at.button if b.label == "Next →").click().run()
    assert f"The model says **{explore[1]}**, {explore[2]}% sure." in texts(at)


def test_the_model_input_is_shown_pixelated_with_the_filler_hatched(pipeline, fairface):
    from faircam.charts.figures import PIXELATED_SIDE, model_input

    photo = read_image(fairface / "val/26.jpg")
    wide = np.concatenate([np.full_like(photo, 128), photo, np.full_like(photo, 128)], axis=1)
    explanation = pipeline.explain(wide)
    shown = model_input(explanation)
    side = explanation.view.image.shape[0]
    factor = -(-PIXELATED_SIDE // side)
    assert shown.shape[:2] == (side * factor, side * factor)
    # Each of the model's dots is a square of equal pixels, the photo's dots as the model gets them.
    dots = shown[::factor, ::factor]
    assert (shown == np.repeat(np.repeat(dots, factor, 0), factor, 1)).all()
    valid = explanation.view.valid
    assert 0.5 < 1 - valid.mean() and (dots[valid] == explanation.view.image[valid]).all()


def test_the_lesson_offers_only_faces_turned_to_the_camera(rows, tmp_path, monkeypatch, capsys):
    # An evaluation of 240 val faces with its head turns measured, as `faircam add-quality` adds them.
    bundled = read_cache(settings().cache_path)
    meta = {k: v for k, v in bundled.meta.items() if k not in ("schema_version", "rows", "checksum")}
    path = tmp_path / "eval.parquet"
    write_cache(rows.head(240), path, meta)
    assert main(["add-quality", str(path)]) == 0, capsys.readouterr().err
    measured = read_cache(path).rows.set_index("file")
    profiles = measured[measured["quality_yaw"].abs() >= FRONTAL_DEGREES]
    # Without the rule, the lesson's first set would hold a face in profile.
    unfiltered = classroom.examples(measured.drop(columns="quality_yaw").reset_index(), exists=lambda file: True)
    assert set(unfiltered["file"]) & set(profiles.index)

    monkeypatch.setenv("FAIRCAM_CACHE", str(path))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/10_Classroom.py").run()
    assert not at.exception, [e.value for e in at.exception]
    offered = [b.key.removeprefix("face-") for b in at.button if b.label == "This one"]
    # The lesson's own set of these faces (on 240 faces a hesitant face may also be a wrong one: five or six).
    assert set(offered) == set(classroom.examples(measured.reset_index(), exists=lambda file: True)["file"])
    assert len(offered) >= 5 and (measured.loc[offered, "quality_yaw"].abs() < FRONTAL_DEGREES).all()


def test_a_profile_face_is_told_as_it_is(rows, pipeline, fairface):
    # val/48.jpg: a face in profile (its landmarks give a turn of about 70°).
    profile = rows.set_index("file").loc["val/48.jpg"].to_dict() | {"file": "val/48.jpg"}
    said = texts(lesson(3, picked=profile))
    assert "turned away from the camera" in said and "got the most heat" not in said
    said = texts(lesson(4, picked=profile))
    assert "barely moves" not in said and "something around the face" not in said
    # Step 5 says what this crop did: its turn, its scale and its share of grey filler.
    photo = read_image(fairface / "val/48.jpg")
    change = classroom.crop_change(pipeline.explain(photo).view, pipeline.explain(photo, crop=True, blur=True).view)
    assert change.filler > 0.1 and change.words() in said
    assert f"filled **{change.filler:.0%}** of the square with grey" in change.words()


def test_a_frontal_face_names_the_region_with_most_heat(rows, pipeline, fairface):
    frontal = next(f for f in rows[rows["face_found"].astype(bool)]["file"].head(30)
                   if abs(measure(image := read_image(fairface / f), pipeline.detector.detect(image))["quality_yaw"])
                   < 5)
    face = rows.set_index("file").loc[frontal].to_dict() | {"file": frontal}
    said = texts(lesson(3, picked=face))
    assert "got the most heat" in said and "turned away" not in said


def test_a_coin_toss_answer_is_worded_as_one(rows):
    found = rows[rows["face_found"].astype(bool) & ~rows["correct"].astype(bool)]
    row = found.loc[found["prob"].idxmin()]
    assert row["prob"] < classroom.COIN_TOSS
    said = texts(lesson(2, picked=row.to_dict()))
    assert f"{row['prob']:.0%} sure" in said and "close to tossing a coin" in said
    assert "very sure and still wrong" not in said and "wrong side" in said


@pytest.mark.parametrize(("probability", "right", "words"), [
    (0.52, False, "close to tossing a coin: it hardly knows, and the coin fell on the wrong side."),
    (0.55, None, "close to tossing a coin: it hardly knows."),
    (0.97, False, "can be very sure and still wrong"),
    (0.75, False, "fairly sure, and still wrong"),
    (0.75, True, "fairly sure, not very sure"),
])
def test_confidence_words(probability, right, words):
    assert words in classroom.confidence_words(probability, right)


def test_crop_change_words():
    assert classroom.CropChange(turned=-31.2, scale=1.8, filler=0.62).words() == (
        "The crop turned the picture by **31°** to level the eyes, drew the face **1.8 times as large** and filled "
        "**62%** of the square with grey, where it reached beyond the photo.")
    assert classroom.CropChange(turned=0.5, scale=0.5, filler=0).words() == (
        "The crop shrank the face to **50% of its size**.")
    assert "hardly changed" in classroom.CropChange(turned=1, scale=1.05, filler=0.001).words()
