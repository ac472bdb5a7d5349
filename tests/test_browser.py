"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

Starts `streamlit run app.py` on a free local port, clicks through every page as a user would,
and saves screenshots (to FAIRCAM_SCREENSHOTS, or pytest's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from faircam.config import PROJECT_ROOT

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
    sidebar.locator("[data-testid='stSelectbox']").wait_for(timeout=120_000)
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
    assert "FairFace label" in body and "Grad-CAM++" in body and "on the face" in body
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
    page.get_by_text("Confusion matrix").first.wait_for()
    body = page.inner_text("body")
    assert "Accuracy by group" in body and "95% interval" in body and "Images" in body
    page.get_by_role("tab", name="race x gender").click()
    page.wait_for_timeout(800)
    _no_exception(page)
    page.screenshot(path=shots / "evaluation.png")


def test_about_page(server, page, shots):
    page.goto(f"{server}/About")
    _settle(page)
    page.get_by_text("How to read a class activation map").first.wait_for()
    _no_exception(page)
    page.screenshot(path=shots / "about.png")
