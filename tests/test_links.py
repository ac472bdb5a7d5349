"""Links that reproduce the view: the address bar holds the page's state, and a session opened on that address (a
reload, a copied link, a new tab) shows the same thing. Through Streamlit's AppTest, as a browser opens the app."""

from __future__ import annotations

from urllib.parse import parse_qs

from streamlit.testing.v1 import AppTest

from faircam.config import DEFAULT_MODEL_NAME, PROJECT_ROOT

TIMEOUT = 900
FACE = "val/26.jpg"


def open_address(page: str, params: dict[str, str], **state) -> AppTest:
    """A new browser session opening `page` at an address with `params`, its session state seeded with `state`."""
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    at.query_params.update(params)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def view(at: AppTest) -> dict:
    """What Explore shows: the face, the toggles, the task, the class the maps explain, the verdict and the maps."""
    verdicts = [m.value for m in at.markdown if "the model says" in m.value.lower()]
    target = next(s for s in at.selectbox if "class the maps explain" in s.label)
    return {"face": at.session_state["picked"]["file"], "toggles": [t.value for t in at.main.toggle][:2],
            "task": at.sidebar.selectbox[1].value, "target": target.value, "verdicts": verdicts,
            "captions": [c for image in at.get("image") for c in image.captions if "focus score" in c]}


def test_explore_keeps_its_view_in_the_address_and_a_reload_shows_it_again():
    at = open_address("pages/1_Explore.py", {"image": FACE})
    assert_clean(at)
    # The linked image stays in the address bar once loaded (it used to be dropped, so a reload lost the face).
    assert at.query_params["image"] == FACE
    at.sidebar.selectbox[1].set_value("race").run()
    at.main.toggle[0].set_value(True).run()  # crop
    at.main.toggle[1].set_value(True).run()  # blur
    target = next(s for s in at.selectbox if "class the maps explain" in s.label)
    target.set_value(next(c for c in ("Indian", "White") if c != target.value)).run()
    assert_clean(at)
    shown = view(at)
    assert shown["task"] == "race" and shown["toggles"] == [True, True] and "not the model's answer" in " ".join(
        m.value for m in at.markdown)
    address = dict(at.query_params)
    assert address == {"model": DEFAULT_MODEL_NAME, "task": "race", "image": FACE, "crop": "1", "blur": "1",
                       "target": shown["target"]}, address

    reloaded = open_address("pages/1_Explore.py", address)
    assert_clean(reloaded)
    assert view(reloaded) == shown
    assert dict(reloaded.query_params) == address


def test_links_to_explore_carry_the_model_task_and_presentation_mode():
    # The race Gallery: each face's link opens Explore on race, in presentation mode, with that face.
    at = open_address("pages/7_Gallery.py", {"task": "race", "present": "1"})
    assert_clean(at)
    assert at.sidebar.selectbox[1].value == "race" and at.session_state["faircam_present"]
    links = [parse_qs(link.proto.query_string) for link in at.get("page_link") if link.proto.page == "Explore"]
    assert links and all(q["task"] == ["race"] and q["present"] == ["1"] and q["model"] == [DEFAULT_MODEL_NAME]
                         and q["image"][0].startswith("val/") for q in links), links
    # Presentation mode turned off leaves the address bar (a copied link then opens in the normal layout).
    at.sidebar.toggle[0].set_value(False).run()
    assert "present" not in at.query_params and at.query_params["task"] == "race"


def test_a_link_naming_a_model_or_task_this_server_lacks_says_so_in_one_line_each():
    at = open_address("pages/3_About.py", {"model": "no-such-model", "task": "height\n# big"})
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 2 and "no-such-model" in warnings[0] and "showing" in warnings[1], warnings
    assert all("\n" not in w for w in warnings), warnings
    assert at.query_params["model"] == DEFAULT_MODEL_NAME and at.query_params["task"] == "gender"
