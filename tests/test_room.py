"""Explore in front of a room, through Streamlit's AppTest: a photo of two faces shown whole with its faces numbered,
a tiny photo's low-resolution note, a photo without a face, and the crop caption that follows the toggle."""

from __future__ import annotations

import cv2
import numpy as np
from streamlit.testing.v1 import AppTest

from faircam.config import PROJECT_ROOT, SHARED_FAIRFACE
from faircam.data.images import read_image
from faircam.vision.cams import METHODS

TIMEOUT = 900


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def explore_upload(photo: np.ndarray, crop: bool) -> AppTest:
    """Explore with `photo` as the session's upload (as the uploader, or the Classroom, leaves it) and crop set."""
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/1_Explore.py")
    at.session_state["image_source"] = "Upload a photo"
    at.session_state["image_upload"] = png(photo)
    at.session_state["image_crop:upload"] = crop
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_two_faces_are_shown_whole_and_numbered():
    pair = np.concatenate([read_image(SHARED_FAIRFACE / "val" / "26.jpg"),
                           read_image(SHARED_FAIRFACE / "val" / "10.jpg")], axis=1)
    at = explore_upload(pair, crop=True)
    whole = [(image, caption) for image in at.get("image") for caption in image.captions
             if caption.startswith("The whole photo")]
    assert len(whole) == 1 and "2 faces" in whole[0][1] and "face 1 (orange)" in whole[0][1], whole
    assert any(s.label == "Face" for s in at.selectbox)


def test_a_tiny_face_gets_a_low_resolution_note():
    tiny = cv2.resize(read_image(SHARED_FAIRFACE / "val" / "26.jpg"), (20, 20), interpolation=cv2.INTER_AREA)
    at = explore_upload(tiny, crop=True)
    warnings = " ".join(w.value for w in at.warning)
    assert "Low resolution" in warnings and "pixels across" in warnings, warnings
    assert "Cropping is on" in " ".join(c.value for c in at.caption)


def test_a_photo_without_a_face_says_so_once_and_the_crop_caption_follows_the_toggle():
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    at = explore_upload(noise, crop=False)
    assert any("No face found" in m.value for m in at.markdown)
    captions = " ".join(c.value for c in at.caption)
    assert "Cropping is off" in captions and "Cropping is on" not in captions
    # No focus score under each map (it said "focus score 0% (chance level 0%)" four times), and no size warning.
    map_captions = [c for image in at.get("image") for c in image.captions if c in METHODS or "focus score" in c]
    assert sorted(map_captions) == sorted(METHODS), map_captions
    assert not any("Low resolution" in w.value for w in at.warning)


def test_presentation_charts_scale_type_markers_and_height():
    import pandas as pd

    from faircam.charts.plots import BASE_FONT, interval_dots, scaled

    table = pd.DataFrame({"group": ["Black", "White"], "n": [500, 40], "small": [False, False],
                          "accuracy": [0.87, 0.93], "accuracy_low": [0.83, 0.85], "accuracy_high": [0.90, 0.97]})
    normal = interval_dots(table, "accuracy")
    big = scaled(interval_dots(table, "accuracy"), 20 / 12)
    assert big.layout.font.size == 20 and (normal.layout.font.size or BASE_FONT) == 12
    assert big.data[0].marker.size == round(normal.data[0].marker.size * 20 / 12)
    assert big.data[0].textfont.size == round(normal.data[0].textfont.size * 20 / 12)
    assert big.layout.height == round(normal.layout.height * 20 / 12)
