"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

Starts `streamlit run app.py` on a free local port, clicks through every page as a user would,
and saves screenshots (to FAIRCAM_SCREENSHOTS, or pytest's tmp folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from faircam.config import PROJECT_ROOT

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env: dict[str, str]):
    """`streamlit run app.py` on a free port with `env` added to this process's environment: its URL, then
    the server ends."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "FAIRCAM_PRELOAD": "1", **env},  # as served to users: the model loads after the first page
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("streamlit did not start within 90 s")
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def server():
    yield from _serve({})


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (Debian package `chromium`); `bash run.sh test` installs it.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("FAIRCAM_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _settle(page, timeout: float = 120) -> None:
    """Wait until Streamlit has finished running the script (no spinner, no 'Running' badge)."""
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout * 1000)
    page.wait_for_timeout(400)  # a click's rerun starts a moment later
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout * 1000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSpinner\"]')", timeout=timeout * 1000)
    page.wait_for_timeout(500)


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("body")[:2000]


def test_home_page(server, page, shots):
    page.goto(server)
    _settle(page)
    page.get_by_text("why does a face classifier decide").first.wait_for()
    # The model selector and what the default model's cache says about it.
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.locator("[data-testid='stSelectbox']").first.wait_for(timeout=120_000)
    sidebar.get_by_text("Validation accuracy").wait_for(timeout=120_000)
    _no_exception(page)
    page.screenshot(path=shots / "home.png")


def test_explore_pick_face_toggle_crop_and_blur(server, page, shots):
    page.goto(f"{server}/Explore")
    _settle(page)
    page.get_by_text("images match").first.wait_for()
    # The first thumbnail's caption button picks that face.
    page.locator("[data-testid='stButton'] button").nth(1).click()
    _settle(page)
    page.get_by_text("The model says").first.wait_for(timeout=120_000)
    page.get_by_text("Download the figure").wait_for()
    body = page.inner_text("body")
    assert "FairFace label" in body and "Grad-CAM++" in body and "focus score" in body
    # The input view and the four overlays, beside the twelve thumbnails.
    assert page.locator("[data-testid='stImage']").count() >= 12 + 5
    page.screenshot(path=shots / "explore.png")

    page.get_by_text("Crop and align the face").click()
    _settle(page)
    page.get_by_text("Blur the background").click()
    _settle(page)
    assert "The model says" in page.inner_text("body")
    _no_exception(page)
    page.screenshot(path=shots / "explore-crop-blur.png")


def _choose(page, label: str, option: str) -> None:
    """Pick `option` in the multiselect labelled `label`, as a user types and confirms it."""
    page.locator("[data-testid='stMultiSelect']").filter(has_text=label).locator("input").click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    _settle(page)


def test_explore_filter_then_pick_a_face(server, page, shots):
    page.goto(f"{server}/Explore")
    _settle(page)
    _choose(page, "Race", "Indian")
    _choose(page, "Gender", "Female")
    thumbnails = page.locator("[data-testid='stButton'] button").filter(has_text=re.compile(r", (Female|Male), "))
    # Only once the rerun has replaced the unfiltered grid are all twelve Indian women.
    expect(thumbnails.filter(has_text=re.compile(r"^Indian, Female, "))).to_have_count(12, timeout=60_000)
    expect(thumbnails).to_have_count(12, timeout=60_000)
    picks = thumbnails
    label = picks.nth(2).inner_text()
    picks.nth(2).click()
    _settle(page)
    verdict = page.get_by_text("The model says").first
    verdict.wait_for(timeout=120_000)
    assert "FairFace label: Female" in verdict.inner_text()
    assert "Indian, Female" in label
    _no_exception(page)
    page.screenshot(path=shots / "explore-filtered.png")


def test_explore_two_faces_pick_the_second(server, page, shots, tmp_path):
    import numpy as np
    from PIL import Image

    from faircam.config import SHARED_FAIRFACE
    from faircam.data.images import read_image

    pair = np.concatenate([read_image(SHARED_FAIRFACE / "val" / "26.jpg"),
                           read_image(SHARED_FAIRFACE / "val" / "10.jpg")], axis=1)
    photo = tmp_path / "two-faces.png"
    Image.fromarray(pair).save(photo)
    page.goto(f"{server}/Explore")
    _settle(page)
    page.get_by_text("Upload a photo", exact=True).click()
    _settle(page)  # uploads are cropped by default
    page.locator("input[type='file']").set_input_files(str(photo))
    page.get_by_text("The model says").first.wait_for(timeout=120_000)
    _settle(page)
    first = page.get_by_text("The model says").first.inner_text()
    page.locator("[data-testid='stSelectbox']").filter(has_text="Face").click()
    page.get_by_role("option", name="face 2 of 2").click()
    _settle(page)
    second = page.get_by_text("The model says").first.inner_text()
    assert "Male" in first and "Female" in second, (first, second)
    _no_exception(page)
    page.screenshot(path=shots / "explore-second-face.png")


def test_explore_upload_photo_and_not_a_photo(server, page, shots, tmp_path):
    from faircam.config import SHARED_FAIRFACE

    page.goto(f"{server}/Explore")
    _settle(page)
    page.get_by_text("Upload a photo", exact=True).click()
    _settle(page)
    page.locator("input[type='file']").set_input_files(str(SHARED_FAIRFACE / "val" / "3.jpg"))
    page.get_by_text("The model says").first.wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page)
    page.screenshot(path=shots / "explore-upload.png")

    fake = tmp_path / "notes.png"
    fake.write_text("this is not a picture")
    page.locator("input[type='file']").set_input_files(str(fake))
    page.get_by_text("This file cannot be used").first.wait_for(timeout=60_000)
    _no_exception(page)


def test_evaluation_page(server, page, shots):
    page.goto(f"{server}/Evaluation")
    _settle(page)
    # Each waited for: a lazy tab may rerun the page once more after its first run.
    for text in ("Confusion matrix", "Accuracy by group", "95% interval", "Images", "Gap between best and worst race"):
        page.get_by_text(text).first.wait_for(timeout=60_000)
    page.get_by_role("tab", name="race × gender").click()
    # Lazy tabs: the click reruns the page, which then draws this tab's gap and table.
    page.get_by_text("Gap between best and worst race × gender").first.wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page)
    page.screenshot(path=shots / "evaluation.png")


def test_about_page(server, page, shots):
    page.goto(f"{server}/About")
    _settle(page)
    page.get_by_text("How to read a class activation map").first.wait_for()
    _no_exception(page)
    page.screenshot(path=shots / "about.png")


# --- two people at once ----------------------------------------------------------------------

SHOWN = re.compile(r"The model says (Female|Male) \((\d+)% sure\)")
ON_FACE = re.compile(r"(Grad-CAM\+\+|Grad-CAM|XGrad-CAM|LayerCAM): focus score (\d+)%")


def _shown(page) -> dict:
    """The verdict and each method's face share, as the page prints them."""
    body = page.inner_text("body")
    verdicts = SHOWN.findall(body)
    assert len(verdicts) == 1, body[:2000]
    return {"prediction": verdicts[0][0], "percent": int(verdicts[0][1]),
            "face": {m: int(v) for m, v in ON_FACE.findall(body)}}


def _cli(photo: Path, *flags: str) -> subprocess.Popen:
    """`faircam explain` on the same file, started now (it runs while the browser works)."""
    return subprocess.Popen([sys.executable, "-m", "faircam.cli", "explain", str(photo), *flags], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _printed(process: subprocess.Popen) -> dict:
    """What the command printed, in the page's whole percents."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    result = json.loads(out)
    return {"prediction": result["prediction"], "percent": round(100 * result["probability"]),
            "face": {m: round(100 * s) for m, s in result["focus_score"].items()}}


def _assert_same(shown: dict, expected: dict) -> None:
    # The CLI rounds to 4 decimals before we round to whole percents: allow that one point.
    assert shown["prediction"] == expected["prediction"], (shown, expected)
    assert abs(shown["percent"] - expected["percent"]) <= 1, (shown, expected)
    assert shown["face"].keys() == expected["face"].keys()
    for method, value in expected["face"].items():
        assert abs(shown["face"][method] - value) <= 1, (method, shown, expected)


def test_two_sessions_at_once_each_see_their_own_result(server, browser, shots):
    from faircam.config import SHARED_FAIRFACE

    photos = {"a": SHARED_FAIRFACE / "val" / "26.jpg", "b": SHARED_FAIRFACE / "val" / "10.jpg"}
    contexts = {k: browser.new_context(viewport={"width": 1400, "height": 2200}) for k in photos}
    pages = {k: c.new_page() for k, c in contexts.items()}
    shown = {}
    try:
        for page in pages.values():
            page.goto(f"{server}/Explore")
            _settle(page)
            page.get_by_text("Upload a photo", exact=True).click()
            _settle(page)
        # Uploads are cropped by default: B turns its crop off, A keeps it.
        pages["b"].get_by_text("Crop and align the face").click()
        _settle(pages["b"])
        # Both uploads are sent before either result is awaited: the two explanations run together.
        for key, page in pages.items():
            page.locator("input[type='file']").set_input_files(str(photos[key]))
        for key, page in pages.items():
            page.get_by_text("The model says").first.wait_for(timeout=180_000)
            _settle(page)
            _no_exception(page)
            shown[key] = _shown(page)
            page.screenshot(path=shots / f"two-sessions-{key}.png")

        # B's toggle changes nothing for A; A's own toggle then gives A's blurred result.
        pages["b"].get_by_text("Blur the background").click()
        _settle(pages["b"])
        assert _shown(pages["a"]) == shown["a"]
        shown["b blurred"] = _shown(pages["b"])
        pages["a"].get_by_text("Blur the background").click()
        _settle(pages["a"])
        shown["a blurred"] = _shown(pages["a"])
        assert "26.jpg" in pages["a"].locator("[data-testid='stFileUploader']").inner_text()
        assert "10.jpg" in pages["b"].locator("[data-testid='stFileUploader']").inner_text()
    finally:
        for context in contexts.values():
            context.close()

    # Each session saw what the command line says about its own photo and toggles.
    cli = {"a": _cli(photos["a"], "--crop"), "b": _cli(photos["b"]),
           "a blurred": _cli(photos["a"], "--crop", "--blur"), "b blurred": _cli(photos["b"], "--blur")}
    for key, process in cli.items():
        _assert_same(shown[key], _printed(process))
    assert shown["a"]["prediction"] != shown["b"]["prediction"]  # so a mix-up could not pass unseen


# --- narrow windows, projectors ----------------------------------------------------------------

PAGES = ("", "Explore?image=val/26.jpg", "Evaluation", "Fairness", "Attention", "Faithfulness", "Gallery",
         "Inside?image=val/26.jpg", "Compare?image=val/26.jpg", "Classroom", "About")
IMAGE_WIDTHS = ("() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
                ".map(i => i.getBoundingClientRect().width)")

# The width of a label's text as laid out, and of the box that shows it (an ellipsis hides the difference).
LABEL_WIDTHS = """e => { const range = document.createRange(); range.selectNodeContents(e);
  const box = e.closest("[data-testid='stMarkdownContainer']") || e;
  return [range.getBoundingClientRect().width, box.getBoundingClientRect().width]; }"""


def _open_at(browser, url: str, width: int, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(url)
    _settle(page)
    return context, page


@pytest.mark.parametrize(("width", "present", "smallest"), [(800, True, 160), (800, False, 120), (1440, True, 240)])
def test_maps_are_readable_from_800_px_and_on_a_projector(server, browser, shots, width, present, smallest):
    url = f"{server}/Explore?image=val/26.jpg" + ("&present=1" if present else "")
    context, page = _open_at(browser, url, width)
    try:
        page.get_by_text("The model says").first.wait_for(timeout=120_000)
        _settle(page)
        _no_exception(page)
        # The result (the face and its four maps) is drawn above the picker's thumbnails.
        tiles = page.evaluate(IMAGE_WIDTHS)[:5]
        assert len(tiles) == 5 and min(tiles) >= smallest, tiles
        page.screenshot(path=shots / f"maps-{width}{'-present' if present else ''}.png", full_page=True)
        # Presentation mode folds the sidebar away (it slides out of the window).
        box = page.locator("[data-testid='stSidebar']").bounding_box()
        assert (box is not None and box["x"] + box["width"] > 50) is not present, box
        # Toggle labels whole: the crop toggle's text fits its box (it wraps rather than ending in "…").
        text, box = page.get_by_text("Crop and align the face").first.evaluate(LABEL_WIDTHS)
        assert text <= box + 1, (text, box)
    finally:
        context.close()


@pytest.mark.parametrize("present", [True, False])
def test_race_by_gender_table_is_shown_whole(server, browser, shots, present):
    context, page = _open_at(browser, f"{server}/Evaluation" + ("?present=1" if present else ""), 800)
    try:
        page.get_by_role("tab", name="race × gender").click()
        page.get_by_text("Gap between best and worst race × gender").first.wait_for(timeout=60_000)
        _settle(page)
        _no_exception(page)
        if present:
            # A static table, whose text grows with the page's type: all fourteen groups, no scroll bar.
            rows = page.evaluate("() => [...document.querySelectorAll(\"[data-testid='stTable']\")].map("
                                 "t => [t.querySelectorAll('tbody tr').length, t.scrollHeight - t.clientHeight])")
            assert [14, 0] in rows, rows
        else:
            heights = page.evaluate("() => [...document.querySelectorAll(\"[data-testid='stDataFrame']\")]"
                                    ".map(e => e.getBoundingClientRect().height)")
            assert max(heights) >= 15 * 34, heights  # a scrolling box would show about ten rows
        page.screenshot(path=shots / f"evaluation-800{'-present' if present else ''}.png", full_page=True)
    finally:
        context.close()


def test_every_page_at_800_and_1440_px(server, browser, shots):
    """Screenshots to look at: every page, normal and presentation mode, at both widths."""
    for width in (800, 1440):
        for present in (False, True):
            for path in PAGES:
                joiner = "&" if "?" in path else "?"
                # Tall windows: Streamlit scrolls inside its own box, so a full-page screenshot shows one screen.
                context, page = _open_at(browser, f"{server}/{path}" + (f"{joiner}present=1" if present else ""),
                                         width, height=2400)
                try:
                    page.wait_for_timeout(1500)  # charts finish drawing
                    _no_exception(page)
                    name = path.split("?")[0] or "Home"
                    page.screenshot(path=shots / f"{width}{'-present' if present else ''}-{name}.png", full_page=True)
                finally:
                    context.close()


# --- a multi-task model: every answer, any task, any class ------------------------------------------------

MAP_SOURCES = ("() => [...document.querySelectorAll(\"[data-testid='stImage']\")]"
               ".filter(e => e.innerText.includes('focus score')).map(e => e.querySelector('img').src)")


@pytest.fixture(scope="module")
def multitask_server(multitask_files, tmp_path_factory):
    """A server whose registry holds the test session's multi-task checkpoint, with its cache folder."""
    from faircam.models.registry import register_checkpoint

    registry = tmp_path_factory.mktemp("multitask-registry") / "models.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAIRCAM_REGISTRY", str(registry))
        register_checkpoint("multitask", multitask_files["checkpoint"], 160, "efficientnet-lite0, 1 epoch")
    yield from _serve({"FAIRCAM_REGISTRY": str(registry), "FAIRCAM_CACHE_DIR": str(multitask_files["caches"])})


def _select(page, label: str, option: str | re.Pattern, where=None) -> None:
    """Pick `option` in the selectbox labelled `label` (in `where`, default the page), as a user clicks it."""
    (where or page).locator("[data-testid='stSelectbox']").filter(has_text=label).click()
    page.get_by_role("option", name=option).click()
    _settle(page)


def test_explore_switches_task_and_explained_class(multitask_server, page, shots):
    page.goto(f"{multitask_server}/Explore?image=val/26.jpg")
    _settle(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    _select(page, "Model", re.compile("^multitask"), sidebar)
    page.get_by_text("The model says").first.wait_for(timeout=120_000)
    body = page.inner_text("body")
    assert "All of the model's answers" in body and "Age group" in body and "subjects of the audit" in body
    gender = page.evaluate(MAP_SOURCES)
    assert len(gender) == 4

    _select(page, "Task", "race", sidebar)
    page.get_by_text("Race: the model says").first.wait_for(timeout=120_000)
    page.get_by_text("(the model's answer).").first.wait_for()
    race = page.evaluate(MAP_SOURCES)
    assert len(race) == 4 and not set(race) & set(gender), (gender, race)

    # Another race class: the maps are redrawn for it, and the page says which class they explain.
    page.locator("[data-testid='stSelectbox']").filter(has_text="class the maps explain").click()
    option = page.get_by_role("option").filter(has_not_text="the model's answer").nth(2)
    asked = option.inner_text().strip()
    option.click()
    _settle(page)
    page.get_by_text("not the model's answer").first.wait_for(timeout=120_000)
    assert f"The maps explain {asked} (not the model's answer" in page.inner_text("body")
    other = page.evaluate(MAP_SOURCES)
    assert len(other) == 4 and not set(other) & set(race), (race, other)

    page.get_by_text("Show the raw maps").click()
    _settle(page)
    page.get_by_text("Grad-CAM: the map alone", exact=True).wait_for(timeout=60_000)
    assert page.get_by_text(re.compile(r": the map alone$")).count() == 4
    assert page.evaluate(MAP_SOURCES) == other  # the overlays stay; the raw maps come beside them
    _no_exception(page)
    page.screenshot(path=shots / "explore-race.png", full_page=True)
