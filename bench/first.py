"""First visits: a cold server's first page by a deep link, against a hello-world Streamlit page in the same run.

Each figure is from the server's process start (`streamlit run`) to what a visitor waits for, in Chromium:
- a hello-world page (one line of text): Streamlit's own start and first page, the floor no app can go under;
- a deep link to `/Evaluation` on a fresh faircam server: its first numbers (the metrics) shown;
- a deep link to `Explore?image=val/26.jpg` on a fresh server: its first answer (the verdict and four maps);
- then, on that warm server, the crop toggle and a page switch (Evaluation by the sidebar, and back), each from
  the click to the end of the script run it starts.
Hello world and Evaluation alternate, `rounds` times each, and the medians are compared (target: Evaluation
within 3 s and at most 2.5x hello world; Explore's first answer within 5 s; warm switches and toggles within
1.5 s).
"""

from __future__ import annotations

import time

from bench.app import ARGS, CHROMIUM, MAPS_SHOWN, _timed
from bench.common import OUT, median
from bench.room import start_server

HELLO = "Hello, world"
# The script has finished and the text is on the page.
SHOWS = """text => document.querySelector("[data-testid='stApp']")?.getAttribute("data-test-script-state")
  === "notRunning" && document.body.innerText.includes(text)"""
NUMBERS = """() => document.querySelectorAll("[data-testid='stMetricValue']").length >= 3"""


def _cold(browser, script: str, path: str, ready: str, arg: str | None = None, timeout: float = 180) -> float:
    """Seconds from a fresh server's process start to `ready` on its page `path`."""
    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    start = time.perf_counter()
    server, url = start_server(script)
    try:
        page.goto(f"{url}/{path}")
        page.wait_for_function(ready, arg=arg, timeout=timeout * 1000, polling=20)
        return round(time.perf_counter() - start, 2)
    finally:
        page.context.close()
        server.terminate()
        server.wait(timeout=30)


def run(rounds: int = 3, timeout: float = 180) -> dict:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    hello = OUT / "hello.py"
    hello.write_text(f'import streamlit as st\n\nst.write("{HELLO}")\n')
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            hellos, evaluations = [], []
            for _ in range(rounds):
                hellos.append(_cold(browser, str(hello), "", SHOWS, HELLO, timeout))
                evaluations.append(_cold(browser, "app.py", "Evaluation", NUMBERS, None, timeout))
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            page.set_default_timeout(timeout * 1000)
            start = time.perf_counter()
            server, url = start_server()
            try:
                page.goto(f"{url}/Explore?image=val/26.jpg")
                page.wait_for_function(MAPS_SHOWN, timeout=timeout * 1000, polling=20)
                explore = round(time.perf_counter() - start, 2)
                toggle = _timed(page, lambda: page.get_by_text("Crop and align the face").first.click(), timeout)
                link = "[data-testid='stSidebarNav'] a[href$='/{}']"
                switches = [_timed(page, lambda p=p: page.locator(link.format(p)).click(), timeout)
                            for p in ("Evaluation", "Explore", "Evaluation", "Explore")]
            finally:
                page.context.close()
                server.terminate()
                server.wait(timeout=30)
        finally:
            browser.close()
    ratio = median(evaluations) / median(hellos)
    return {
        "hello world: start -> page shown (s)": hellos,
        "deep link to Evaluation: start -> first numbers (s)": evaluations,
        "Evaluation / hello world (medians)": round(ratio, 2),
        "deep link to Explore with a face: start -> first answer, maps shown (s)": explore,
        "warm: crop toggled -> maps (s)": toggle,
        "warm: page switches Evaluation, Explore, Evaluation, Explore (s)": switches,
        "met": {"Evaluation within 3 s": median(evaluations) <= 3.0, "Evaluation at most 2.5x hello": ratio <= 2.5,
                "Explore's first answer within 5 s": explore <= 5.0,
                "warm switch and toggle within 1.5 s": max([toggle, *switches[2:]]) <= 1.5},
    }
