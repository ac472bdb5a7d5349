"""Every page through Streamlit's AppTest: it renders, without exceptions, what a user needs."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from streamlit.testing.v1 import AppTest
from test_task_measures import shown_tables

from faircam import wording
from faircam.config import PROJECT_ROOT
from faircam.text import md
from faircam.vision.cams import METHODS

TIMEOUT = 180


def run(page: str) -> AppTest:
    """The app as a browser opens it: the router script, switched to `page`."""
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    if page != "app.py":
        at.switch_page(page)
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.error, *at.warning, *at.info])


def linked_images(at: AppTest) -> list[str]:
    """The images that the page's links open on Explore (`?image=`)."""
    links = [link.proto for link in at.get("page_link") if link.proto.page == "Explore"]
    return [parse_qs(link.query_string)["image"][0] for link in links if link.query_string]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_router_opens_home():
    at = run("app.py")
    assert_clean(at)
    assert "FairFace folder" in texts(at)
    assert "Model:" in texts(at)


@pytest.mark.parametrize("page", ["pages/0_Home.py", "pages/2_Evaluation.py", "pages/3_About.py"])
def test_page_renders(page):
    at = run(page)
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]


def test_explore_pick_a_face_then_crop_and_blur():
    at = run("pages/1_Explore.py")
    assert_clean(at)
    at.button[1].click().run()  # button 0 shuffles; the next ones pick thumbnails
    assert_clean(at)
    said = texts(at)
    assert "The model says" in said and "FairFace label" in said
    (shares,) = shown_tables(at)
    assert list(shares.index) == [*METHODS, wording.CHANCE]
    assert (shares[wording.FACE_COLUMN].between(0, 1)).all()
    # Every map's caption gives its focus score and its chance level, in the page's one wording.
    captions = [c for image in at.get("image") for c in image.captions]
    for method in METHODS:
        focus = shares.loc[method, wording.FACE_COLUMN]
        chance = shares.loc[wording.CHANCE, wording.FACE_COLUMN]
        assert wording.share_caption(method, focus, chance) in captions, captions
    plain = [m.value for m in at.markdown if "The model says" in m.value]

    at.toggle[0].set_value(True).run()
    at.toggle[1].set_value(True).run()
    assert_clean(at)
    assert "The model says" in texts(at)
    assert at.session_state["picked"]["file"].startswith("val/")
    assert plain  # the same face, now cropped and blurred, was explained again without error


def test_explore_filters_narrow_the_grid():
    at = run("pages/1_Explore.py")
    at.multiselect[0].set_value(["Indian"]).run()
    at.multiselect[1].set_value(["Female"]).run()
    assert_clean(at)
    labels = [b.label for b in at.button][1:]
    assert labels and all(label.startswith(md("Indian, Female")) for label in labels)


def test_evaluation_shows_counts_and_intervals():
    at = run("pages/2_Evaluation.py")
    assert_clean(at)
    assert [m.label for m in at.metric] == ["Accuracy", "95% interval", "Images"]
    assert [t.label for t in at.tabs] == ["race", "gender", "race × gender", "age", "Group by…"]
    assert "Accuracy by group" in texts(at)


def test_evaluation_without_cache_says_how_to_make_one(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRCAM_CACHE", str(tmp_path / "missing.parquet"))
    at = run("pages/2_Evaluation.py")
    assert_clean(at)
    assert any("No usable evaluation" in e.value for e in at.error)


def test_damaged_cache_is_reported(monkeypatch, tmp_path):
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 this is not parquet")
    monkeypatch.setenv("FAIRCAM_CACHE", str(damaged))
    at = run("pages/2_Evaluation.py")
    assert_clean(at)
    assert any("damaged" in e.value for e in at.error)


def test_damaged_model_is_reported(monkeypatch, tmp_path):
    broken = tmp_path / "model.pt"
    broken.write_bytes(b"not a checkpoint")
    monkeypatch.setenv("FAIRCAM_MODEL", str(broken))
    at = run("pages/3_About.py")
    assert_clean(at)
    assert any("model cannot be loaded" in e.value for e in at.error)


def test_no_data_folder_still_allows_uploads(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRCAM_DATA", str(tmp_path / "nowhere"))
    at = run("pages/1_Explore.py")
    assert_clean(at)
    assert any("No FairFace folder found" in i.value for i in at.info)


def verdicts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "The model says" in m.value]


def test_explore_choice_survives_another_page():
    at = run("pages/1_Explore.py")
    at.multiselect[0].set_value(["Black"]).run()
    at.button[2].click().run()
    at.toggle[0].set_value(True).run()
    at.toggle[1].set_value(True).run()
    picked, shown = at.session_state["picked"], verdicts(at)
    assert picked["race"] == "Black" and shown

    at.switch_page("pages/2_Evaluation.py").run()
    assert_clean(at)
    assert not at.main.toggle  # Explore's widgets are gone, and Streamlit dropped their keys
    at.switch_page("pages/1_Explore.py").run()
    assert_clean(at)
    assert [t.value for t in at.main.toggle][:2] == [True, True]  # crop and blur (then "Show the raw maps")
    assert at.multiselect[0].value == ["Black"]
    assert at.session_state["picked"] == picked
    assert verdicts(at) == shown  # the same face, cropped and blurred, explained again


def test_explore_link_opens_that_image(val_split):
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/1_Explore.py")
    at.query_params["image"] = "val/123.jpg"
    at.run()
    assert_clean(at)
    assert at.session_state["picked"]["file"] == "val/123.jpg"
    label = val_split.rows.set_index("file").loc["val/123.jpg", "gender"]
    assert f"FairFace label: {label}" in verdicts(at)[0]
    at.button[1].click().run()  # a pick in the grid replaces the linked image
    assert at.session_state["picked"]["file"] != "val/123.jpg"


@pytest.mark.parametrize("value", ["val/no-such-image.jpg", "../fairface_label_val.csv", "/etc/passwd",
                                   "val/1.jpg\n# heading"])
def test_explore_link_to_anything_else_is_refused_in_one_line(value):
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/1_Explore.py")
    at.query_params["image"] = value
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "This link cannot be opened" in errors[0] and "\n" not in errors[0]
    assert "picked" not in at.session_state and not verdicts(at)


def test_presentation_mode_from_a_link_then_off_in_the_sidebar():
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/2_Evaluation.py")
    at.query_params["present"] = "1"
    at.run()
    assert_clean(at)
    assert at.session_state["faircam_present"] and at.sidebar.toggle[0].value
    # Static tables, whole, in the page's larger type; no scrolling data grid.
    assert len(at.table) >= 2 and not at.dataframe
    at.sidebar.toggle[0].set_value(False).run()
    assert_clean(at)
    # The per-class and focus tables stay static, their cells wrapping in a narrow column (every column in view).
    assert not at.session_state["faircam_present"] and len(at.table) == 4 and at.dataframe
    # The choice belongs to the session: another page keeps it.
    at.switch_page("pages/3_About.py").run()
    assert not at.sidebar.toggle[0].value
