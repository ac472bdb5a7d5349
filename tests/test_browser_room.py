"""A real room in headless Chromium: first visits by a deep link to a cold server, links that reproduce the view
after a reload, and the projector's layout. Uses the server, browser and screenshot helpers of `test_browser`."""

from __future__ import annotations

import re

import pytest
from test_browser import _no_exception, _serve, browser, server, shots  # noqa: F401 (fixtures)
from test_browser import _settle as _settle_within

pytestmark = pytest.mark.browser
# The app's own navigation: its titles and icons (Streamlit's folder-built menu says "app" and "11 Failures").
# Generous: these run beside a training job on two cores.
WAIT_S = 600


def _settle(page) -> None:
    _settle_within(page, timeout=WAIT_S)


APP_MENU = "() => [...document.querySelectorAll(\"[data-testid='stSidebarNav'] a\")].map(a => a.textContent)"


@pytest.mark.parametrize(("width", "path", "shows"), [(800, "Evaluation", "Confusion matrix"),
                                                      (1440, "Explore?image=val/26.jpg", "The model says")])
def test_a_cold_servers_first_visit_by_a_deep_link_runs_the_app(browser, shots, width, path, shows):  # noqa: F811
    starting = _serve({})
    url = next(starting)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_S * 1000)
    try:
        page.goto(f"{url}/{path}")
        _settle(page)
        page.get_by_text(shows).first.wait_for(timeout=WAIT_S * 1000)
        _settle(page)
        _no_exception(page)
        menu = page.evaluate(APP_MENU)
        said = " | ".join(menu)
        assert "🔦Where does it fail?" in said and "🧠Inside the network" in said and "app" not in menu, menu
        # The address keeps the page and what the link asked for.
        assert page.url.startswith(f"{url}/{path.split('?')[0]}"), page.url
        if "image=" in path:
            assert "image=val%2F26.jpg" in page.url or "image=val/26.jpg" in page.url, page.url
        page.screenshot(path=shots / f"cold-{width}-{path.split('?')[0]}.png")
    finally:
        context.close()
        next(starting, None)  # the server ends


def test_a_projector_at_800_by_600(server, browser, shots):  # noqa: F811
    context = browser.new_context(viewport={"width": 800, "height": 600})
    page = context.new_page()
    page.set_default_timeout(WAIT_S * 1000)
    try:
        page.goto(f"{server}/Explore?present=1")
        _settle(page)
        picks = page.locator("[data-testid='stButton'] button").filter(has_text=re.compile(r", (Female|Male), "))
        picks.nth(7).click()
        _settle(page)
        verdict = page.get_by_text("The model says").first
        verdict.wait_for(timeout=WAIT_S * 1000)
        _settle(page)
        # The pick scrolls the window to its result, drawn above the grid; the picked face is highlighted.
        top = verdict.bounding_box()["y"]
        assert 0 <= top < 600, top
        assert page.locator("[data-testid='stBaseButton-primary']").count() == 1
        page.screenshot(path=shots / "projector-explore-pick.png")

        # Another page through the menu: the sidebar folds away again, and the per-class table shows every column.
        page.locator("[data-testid='stExpandSidebarButton']").first.click()
        page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Evaluation").click()
        _settle(page)
        page.get_by_text("Confusion matrix").first.wait_for(timeout=WAIT_S * 1000)
        page.wait_for_timeout(1000)
        box = page.locator("[data-testid='stSidebar']").bounding_box()
        assert box is None or box["x"] + box["width"] <= 50, box
        table = page.locator("[data-testid='stTable']").first
        widths = table.evaluate("t => [t.getBoundingClientRect().right, t.scrollWidth - t.clientWidth]")
        assert widths[0] <= 800 and widths[1] <= 1, widths
        assert "F1" in table.inner_text()
        _no_exception(page)
        page.screenshot(path=shots / "projector-evaluation.png", full_page=True)
    finally:
        context.close()


def test_a_reloaded_link_shows_the_same_view(server, browser, shots):  # noqa: F811
    context = browser.new_context(viewport={"width": 800, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_S * 1000)
    try:
        page.goto(f"{server}/Explore?image=val/26.jpg")
        _settle(page)
        page.get_by_text("The model says").first.wait_for(timeout=WAIT_S * 1000)
        page.get_by_text("Crop and align the face").click()
        _settle(page)
        page.get_by_text("The model says").first.wait_for(timeout=WAIT_S * 1000)
        verdict = page.get_by_text("The model says").first.inner_text()
        assert re.search(r"crop=1", page.url) and "image=val%2F26.jpg" in page.url, page.url
        # The sidebar's link to this view is the address itself.
        shown_link = page.locator("[data-testid='stSidebar'] [data-testid='stCode']").first.text_content()
        assert shown_link.strip() == page.url, (shown_link, page.url)
        address = page.url
        page.reload()
        _settle(page)
        page.get_by_text("The model says").first.wait_for(timeout=WAIT_S * 1000)
        _settle(page)
        assert page.get_by_text("The model says").first.inner_text() == verdict
        crop = page.locator("[data-testid='stCheckbox']").filter(has_text="Crop and align").locator("input")
        assert crop.is_checked()
        assert page.url == address
        _no_exception(page)
        page.screenshot(path=shots / "reloaded-800.png")
    finally:
        context.close()


@pytest.mark.parametrize("width", [800, 1440])
def test_evaluation_clips_nothing_with_the_sidebar_open(server, browser, shots, width):  # noqa: F811
    # An 800 px window with the sidebar open leaves the page about 500 px: the interval metric ended in "91.6–9…"
    # and the per-class table scrolled sideways, recall and F1 out of view.
    context = browser.new_context(viewport={"width": width, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(WAIT_S * 1000)
    try:
        page.goto(f"{server}/Evaluation")
        _settle(page)
        page.get_by_text("Per class").first.wait_for(timeout=WAIT_S * 1000)
        _settle(page)
        _no_exception(page)
        box = page.locator("[data-testid='stSidebar']").bounding_box()
        assert box is not None and box["x"] + box["width"] > 200, box  # the sidebar is open
        # A value cut to "…" is wider than its box: the box or a box inside it hides the rest.
        values = page.locator("[data-testid='stMetricValue']").evaluate_all(
            "es => es.map(e => [e.innerText, Math.max(...[e, ...e.querySelectorAll('*')].map("
            "x => x.scrollWidth - x.clientWidth)), e.getBoundingClientRect().right])")
        assert any(re.fullmatch(r"\d+\.\d–\d+\.\d%", v[0]) for v in values), values
        assert all(v[1] <= 1 and v[2] <= width for v in values), values
        # The per-class table, a static one whose cells wrap (a data grid scrolls sideways, its last columns hidden).
        table = page.locator("[data-testid='stTable']").filter(has_text="F1")
        assert table.count() == 1
        table = table.first
        right, hidden = table.evaluate("t => [t.getBoundingClientRect().right, t.scrollWidth - t.clientWidth]")
        assert right <= width and hidden <= 1, (right, hidden)
        page.screenshot(path=shots / f"evaluation-sidebar-{width}.png", full_page=True)
    finally:
        context.close()


# Each table's width hidden sideways (a data grid's in its scroller; a static table's in the most any box inside it
# scrolls) and its right edge.
TABLES_HIDDEN = """within => [...within.querySelectorAll("[data-testid='stTable'], [data-testid='stDataFrame']")]
  .map(t => [t.innerText.slice(0, 40), Math.max(...(t.dataset.testid === 'stDataFrame'
    ? [t.querySelector('.dvn-scroller') || t] : [t, ...t.querySelectorAll('*')]).map(
    e => e.scrollWidth - e.clientWidth)), t.getBoundingClientRect().right])"""
# Pages, the tab opened there and the expander (None: the whole page), whose tables' last columns scrolled out of
# view at 800 px.
WIDE_TABLES = [("Fairness", "race", None), ("Fairness?task=race", "gender", None), ("Evaluation", "race", None),
               ("About", None, None), ("Compare", "race", None), ("Explore?image=val/26.jpg", None, None),
               ("Attention", None, "Spread per region"), ("Attention", None, "The numbers"),
               ("Faithfulness", None, "Every pair"), ("Failures", None, "Every slice")]


@pytest.mark.parametrize(("width", "present"), [(800, False), (800, True), (1440, False)])
def test_no_table_scrolls_sideways(server, browser, shots, width, present):  # noqa: F811
    # Fairness's rate table (group, counts, accuracy, TPR, FPR, selection rate; or eight recalls for race) scrolled
    # sideways at 800 px, its rates out of view; so did the focus shares (Explore, Evaluation), the summary of models
    # (About, Compare), About's list of models, Attention's spread per region and its numbers, Faithfulness's agreement
    # of every pair and Failures' every slice. With the sidebar open the page is about 470 px wide.
    context = browser.new_context(viewport={"width": width, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(WAIT_S * 1000)
    try:
        for path, tab, expander in WIDE_TABLES:
            page.goto(f"{server}/{path}" + (("&" if "?" in path else "?") + "present=1" if present else ""))
            _settle(page)
            if tab is not None:
                page.get_by_role("tab", name=tab, exact=True).click()
                _settle(page)
            _no_exception(page)
            within = page.locator("body")
            if expander is not None:
                within = page.locator("[data-testid='stExpander']").filter(has_text=expander)
                within.locator("summary").click()
                page.wait_for_timeout(1000)
            page.evaluate("() => document.fonts.ready.then(() => true)")  # text in a fallback font is wider
            tables = within.evaluate(TABLES_HIDDEN)
            assert tables and all(hidden <= 1 and right <= width for _, hidden, right in tables), (path, tables)
            name = path.split("?image")[0].replace("?task=", "-")
            page.screenshot(path=shots / f"tables-{name}-{tab}-{width}{'-present' if present else ''}.png",
                            full_page=True)
    finally:
        context.close()
