"""Image-quality slices on real FairFace faces and real MTCNN: each number moves the way its picture does (a blurred
face is less sharp, a darkened one darker, a mirrored one turned the other way, an enlarged one larger);
`faircam add-quality` adds them to an existing cache from the images alone, keeping its predictions and checksum;
"Where does it fail?" ranks the slices, links each to the Gallery, and says when a slice explains a group gap."""

from __future__ import annotations

import math
from urllib.parse import parse_qs

import cv2
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_cli import assert_one_line_error
from test_cli import run as cli
from test_task_measures import shown_tables

from faircam.audit import failures
from faircam.audit.groups import GroupFrame
from faircam.config import DEFAULT_MODEL_NAME, PROJECT_ROOT, cache_path_for
from faircam.data.labelled import Attribute
from faircam.evaluation.cache import read_cache, write_cache
from faircam.vision.quality import NO_FACE, SLICES, measure

FILES = ("val/1.jpg", "val/2.jpg", "val/3.jpg", "val/6.jpg")


@pytest.fixture(scope="module")
def detector():
    from faircam.vision.preprocess import FaceDetector

    return FaceDetector()


def quality(image: np.ndarray, detector) -> dict[str, float]:
    return measure(image, detector.detect(image))


@pytest.mark.parametrize("file", FILES)
def test_each_number_follows_its_picture(fairface, detector, file):
    from faircam.data.images import read_image

    image = read_image(fairface / file)
    base = quality(image, detector)
    assert all(not math.isnan(v) for v in base.values()), base
    blurred = quality(cv2.GaussianBlur(image, (0, 0), 3), detector)
    assert blurred["quality_sharpness"] < base["quality_sharpness"] / 2
    darker = quality((image * 0.4).astype(np.uint8), detector)
    assert darker["quality_brightness"] == pytest.approx(base["quality_brightness"] * 0.4, rel=0.1)
    larger = quality(cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR), detector)
    assert larger["quality_face_px"] == pytest.approx(2 * base["quality_face_px"], rel=0.1)
    assert 0.5 < base["quality_confidence"] <= 1


def test_a_turned_head_turns_the_other_way_in_a_mirror(fairface, detector):
    from faircam.data.images import read_image

    frontal = quality(read_image(fairface / "val/1.jpg"), detector)["quality_yaw"]
    turned = read_image(fairface / "val/9.jpg")  # a face turned well away from the camera
    yaw, mirrored = quality(turned, detector)["quality_yaw"], quality(turned[:, ::-1].copy(), detector)["quality_yaw"]
    assert abs(frontal) < 15 and abs(yaw) >= 35
    # MTCNN's landmarks move a few degrees between an image and its mirror; the turn's side does not.
    assert np.sign(mirrored) == -np.sign(yaw) and abs(mirrored) >= 25


def test_levels_are_plain_names_and_no_face_is_its_own():
    size = SLICES["face size"]
    assert size.level([30, 64, 100, 500, np.nan]).tolist() == [
        "small (under 64 px)", "medium (64–128 px)", "medium (64–128 px)", "large (128 px or more)", NO_FACE]
    assert SLICES["head turn"].level([-40, 5, 20]).tolist() == [
        "far turned (35° or more)", "frontal (under 15°)", "turned (15–35°)"]


@pytest.fixture
def small_cache(tmp_path) -> tuple:
    """The bundled cache's first 48 rows without quality columns, as a cache of its own."""
    bundled = read_cache(cache_path_for(DEFAULT_MODEL_NAME))
    rows = bundled.rows.head(48).drop(columns=[c for s in SLICES.values() for c in (s.column, s.name)
                                               if c in bundled.rows])
    rows = rows.apply(lambda c: c.astype(object).where(c.notna(), None) if isinstance(c.dtype, pd.CategoricalDtype)
                      else c)
    meta = {k: v for k, v in bundled.meta.items() if k not in ("schema_version", "rows", "checksum")}
    meta["attributes"] = [a for a in meta.get("attributes", []) if a.get("source") != "quality"]
    path = tmp_path / "small.parquet"
    write_cache(rows, path, meta, bundled.averages)
    return path, rows


def test_add_quality_adds_the_columns_from_the_images_alone(capsys, small_cache, fairface):
    path, before = small_cache
    code, out, err = cli(capsys, "add-quality", path)
    assert code == 0, err
    cache = read_cache(path)  # the checksum holds
    rows = cache.rows
    # Nothing the model computed changed; the quality columns sit after faces_found, as `faircam evaluate` puts them.
    pd.testing.assert_frame_equal(rows[list(before.columns)].reset_index(drop=True), before.reset_index(drop=True),
                                  check_dtype=False)
    at = list(rows.columns).index("faces_found")
    assert list(rows.columns)[at + 1:at + 1 + 2 * len(SLICES)] == [
        *[s.column for s in SLICES.values()], *SLICES]
    assert [a.name for a in cache.attributes if a.source == "quality"] == list(SLICES)
    assert cache.averages is not None
    # The same numbers as the measure itself on one of the images.
    from faircam.data.images import read_image
    from faircam.vision.preprocess import FaceDetector

    image = read_image(fairface / rows["file"].iloc[0])
    direct = measure(image, FaceDetector().detect(image))
    # (MTCNN in a batch and alone differ in the last digits.)
    assert rows.iloc[0][list(direct)].to_numpy(float) == pytest.approx(list(direct.values()), rel=1e-3, nan_ok=True)
    # Run again: the same columns once, the same values.
    assert cli(capsys, "add-quality", path)[0] == 0
    again = read_cache(path).rows
    assert list(again.columns) == list(rows.columns)
    pd.testing.assert_frame_equal(again, rows)


def test_add_quality_refuses_what_it_cannot_read(capsys, small_cache, tmp_path):
    path, _ = small_cache
    assert_one_line_error(*cli(capsys, "add-quality", tmp_path / "none.parquet"), "No evaluation cache")
    assert_one_line_error(*cli(capsys, "add-quality", path, "--data", tmp_path / "elsewhere"), "no such folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*cli(capsys, "add-quality", path, "--data", tmp_path / "empty"),
                          "cannot read", "was evaluated on with --data")
    assert read_cache(path).rows.shape[0] == 48  # the cache is as it was


def test_a_slice_that_explains_a_group_gap_is_said_in_words():
    """Group B's photos are mostly dark; dark photos are misread as often in both groups: the whole race gap follows
    brightness, and the standardised gap is about 0."""
    rng = np.random.default_rng(0)
    n = 4000
    race = rng.choice(["A", "B"], n)
    dark = rng.random(n) < np.where(race == "B", 0.7, 0.1)
    correct = rng.random(n) < np.where(dark, 0.7, 0.95)
    rows = pd.DataFrame({"race": race, "gender": "Male", "pred": np.where(correct, "Male", "Female"),
                         "correct": correct})
    rows["brightness"] = pd.Categorical(np.where(dark, "dark (under 70)", "normal (70–180)"),
                                        categories=["dark (under 70)", "normal (70–180)"], ordered=True)
    attribute = Attribute("brightness", "brightness", ("dark (under 70)", "normal (70–180)"), True, "quality")
    found = failures.explained_gap(rows, attribute, "race", ["race"], n_boot=300)
    raw = GroupFrame(rows, ["race"]).gap("accuracy gap").value
    assert found.raw == pytest.approx(raw) and raw > 0.1
    assert abs(found.standardised) < 0.03 and found.low <= found.standardised <= found.high
    assert found.share > 0.8 and found.worst == "B" and found.level == "dark (under 70)"
    assert found.words().startswith("Part of the race gap follows brightness: B's photos are more often dark")


@pytest.mark.parametrize("name", [DEFAULT_MODEL_NAME, "dlib", "face-api"])
def test_the_bundled_caches_hold_the_quality_slices(name):
    cache = read_cache(cache_path_for(name))
    assert [a.name for a in cache.attributes if a.source == "quality"] == list(SLICES)
    faces = cache.rows["face_found"].astype(bool)
    assert cache.rows.loc[faces, "quality_face_px"].notna().all()
    assert (cache.rows.loc[~faces, "face size"].astype(str) == NO_FACE).all()


def test_where_does_it_fail_ranks_slices_and_links_them_to_the_gallery():
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=240)
    at.switch_page("pages/11_Failures.py")
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    cache = read_cache(cache_path_for(DEFAULT_MODEL_NAME))
    found = failures.slices(cache.rows, cache.attributes)
    worst = found[~found["small"]]
    links = [parse_qs(link.proto.query_string)["filter"] for link in at.get("page_link")
             if link.proto.page == "Gallery"]
    assert links, "no slice links to the Gallery"
    first = worst.iloc[0]
    assert links[0] == [f"{c}={v}" for c, v in first["filters"].items()]
    said = "\n".join(m.value for m in at.markdown)
    assert f"{first['accuracy']:.1%} (" in said
    # Every slice in four columns that fit a projector (seven scrolled sideways at 800 px): n and the small mark
    # beside the slice's name, the q value starred where the slice stands apart.
    (every,) = [t for t in shown_tables(at) if list(t.columns)[:1] == ["slice"]]
    assert len(every) == len(found) and len(every.columns) == 4
    assert every["slice"].str.contains(r"\(n=\d").all()
    assert every["slice"].str.endswith("⚠ small").sum() == found["small"].sum()
    assert every.iloc[:, -1].str.endswith("★").sum() == found["flagged"].sum()
    # A q value under 0.001 says so (`wording.q_value`), not "0.000", which reads as certainty.
    tiny = (found["q"] < 0.001).sum()
    assert tiny and every.iloc[:, -1].str.startswith("under 0.001").sum() == tiny
    assert not every.iloc[:, -1].str.startswith("0.000").any()
