"""The Attention, Faithfulness and Inside pages in headless Chromium, with screenshots.

Uses the app's own cache (the bundled one unless FAIRCAM_CACHE says otherwise) and the server,
browser and screenshot fixtures of `test_browser`.
"""

from __future__ import annotations

import pytest
from test_browser import _no_exception, _settle, browser, page, server, shots  # noqa: F401 (fixtures)

from faircam.config import settings
from faircam.models.checkpoint import read_metadata

pytestmark = pytest.mark.browser


def _all_images_loaded(tab) -> None:
    # Streamlit draws images lazily: scroll through the page, then wait until every one has loaded.
    tab.mouse.wheel(0, 20_000)
    tab.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=60_000)
    tab.wait_for_timeout(500)


def test_attention_page(server, page, shots):  # noqa: F811
    page.goto(f"{server}/Attention")
    _settle(page)
    page.get_by_text("Where the maps fall, group by group").wait_for()
    body = page.inner_text("body")
    assert "look at the mouth more for some groups" in body and "Counterfactual views" in body
    assert "Group average maps" in body
    page.get_by_text("gender", exact=True).first.click()
    _settle(page)
    assert "The share of heat on the mouth ranges from" in page.inner_text("body")
    _all_images_loaded(page)
    _no_exception(page)
    page.screenshot(path=shots / "attention.png", full_page=True)


def test_faithfulness_page(server, page, shots):  # noqa: F811
    page.goto(f"{server}/Faithfulness")
    _settle(page)
    page.get_by_text("Which map is the most faithful?").wait_for()
    assert "Do the four maps agree?" in page.inner_text("body")
    _all_images_loaded(page)
    _no_exception(page)
    page.screenshot(path=shots / "faithfulness.png", full_page=True)


def test_inside_page(server, page, shots):  # noqa: F811
    page.goto(f"{server}/Inside")
    _settle(page)
    # Inside shares Explore's image source: nothing runs until a face is picked (button 0 shuffles the grid).
    page.locator("[data-testid='stButton'] button").nth(1).click()
    page.get_by_text("The model says").first.wait_for(timeout=120_000)
    page.get_by_text("The first layer's filters").wait_for()
    # Under load the stages can still be arriving when the filters' heading is drawn.
    grid = read_metadata(settings().model_path)["input_size"] // 32  # the CAM layer's grid: 6×6 at 192 px
    page.get_by_text(f"1280 channels of {grid}×{grid}").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "CAM layer" in body and f"1280 channels of {grid}×{grid}" in body
    # The input view, six default stages and the filters.
    assert page.locator("[data-testid='stImage']").count() >= 1 + 6 + 1
    _all_images_loaded(page)
    _no_exception(page)
    page.screenshot(path=shots / "inside.png", full_page=True)
