"""App latency through a real browser (Debian's Chromium driven by Playwright), and the app's memory.

Times `streamlit run app.py` from process start to the first rendered Evaluation page (cache only):
when its numbers show and when its charts are drawn, then the same page with the server warm in a
fresh browser (what Streamlit's frontend and plotly.js cost alone). Then Explore: opening it the first
time (which loads the model and MTCNN), and an upload to the four maps shown, for several photos and a
repeated one. Then a session's clicks: FairFace faces picked, the crop and blur toggles, every page
switched to twice by its sidebar link (first visit, then warm) and Compare's crop toggle, each timed
from the click to the end of the script run it starts. The server's peak RSS comes from the kernel's
high-water mark (VmHWM), before and after the model is loaded.
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

import cv2

from bench.common import OUT, child_env, median, status_kb
from faircam.config import PROJECT_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
# The maps are shown: the verdict is there, the script has finished, and the input view and the four
# overlays are decoded images in the page.
MAPS_SHOWN = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  const images = [...document.querySelectorAll("[data-testid='stImage'] img")]
    .filter(i => i.complete && i.naturalWidth);
  return app && app.getAttribute("data-test-script-state") === "notRunning"
    && document.body.innerText.includes("The model says") && images.length >= 5;
}"""
PAGE_IDLE = """() => document.querySelector("[data-testid='stApp']")?.getAttribute("data-test-script-state")
  === "notRunning" """
# The page's numbers and tables are there (the script has finished); its charts may still be drawing.
PAGE_CONTENT = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  return app && app.getAttribute("data-test-script-state") === "notRunning"
    && document.body.innerText.includes("Accuracy by group");
}"""
PAGE_SHOWN = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  return app && app.getAttribute("data-test-script-state") === "notRunning"
    && document.body.innerText.includes("Accuracy by group")
    && document.querySelectorAll(".js-plotly-plot .main-svg").length > 0;
}"""

# Set before an action: `window.faircamDone` turns true once a script run has started and then ended.
WATCH_RUN = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  window.faircamDone = false;
  let ran = false;
  const seen = new MutationObserver(() => {
    const state = app.getAttribute("data-test-script-state");
    if (state === "running") ran = true;
    if (ran && state === "notRunning") { window.faircamDone = true; seen.disconnect(); }
  });
  seen.observe(app, {attributes: true});
}"""
RUN_DONE = "() => window.faircamDone === true"
# The pages a session moves between, by their sidebar links' paths (Explore last: the others show its face).
SWITCHES = ("Evaluation", "Fairness", "Attention", "Faithfulness", "Gallery", "Inside", "Compare", "Classroom", "About",
            "Explore")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def memory_mb(pid: int) -> dict[str, float]:
    """Current and peak RSS of a process tree, in MB (peaks summed: an upper bound for a tree)."""
    pids = _tree(pid)
    return {"rss_mb": round(sum(status_kb(p, "VmRSS") for p in pids) / 1024, 1),
            "peak_mb": round(sum(status_kb(p, "VmHWM") for p in pids) / 1024, 1),
            "processes": len(pids)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree so far (children that exited are not counted)."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _torch_loaded(pid: int) -> bool:
    return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()


def large_photo(source: Path) -> Path:
    """A 1280x960 JPEG like a phone portrait: a FairFace face enlarged, the frame widened by its borders."""
    image = cv2.imread(str(source))
    face = cv2.resize(image, (720, 720), interpolation=cv2.INTER_CUBIC)
    wide = cv2.copyMakeBorder(face, 120, 120, 280, 280, cv2.BORDER_REFLECT)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "upload-1280x960.jpg"
    cv2.imwrite(str(path), wide, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def _timed(page, action, timeout: float) -> float:
    """Seconds from an action (a click) to the end of the script run it starts."""
    page.evaluate(WATCH_RUN)
    t = time.perf_counter()
    action()
    page.wait_for_function(RUN_DONE, timeout=timeout * 1000, polling=20)
    return round(time.perf_counter() - t, 2)


def interactions(page, url: str, timeout: float) -> dict:
    """A session's clicks after its first page: picking FairFace faces, the crop and blur toggles, switching
    between every page twice (first visit, then warm), and Compare's crop toggle (three models)."""
    page.goto(f"{url}/Explore?image=val/26.jpg")
    page.wait_for_function(MAPS_SHOWN, timeout=timeout * 1000, polling=50)
    thumbnails = page.locator("[data-testid='stButton'] button")
    picks = [_timed(page, lambda i=i: thumbnails.nth(i).click(), timeout) for i in (1, 2, 3)]
    toggles = {}
    for name, label in (("crop on", "Crop and align the face"), ("blur on", "Blur the background"),
                        ("crop off", "Crop and align the face"), ("blur off", "Blur the background")):
        toggles[name] = _timed(page, lambda label=label: page.get_by_text(label).first.click(), timeout)
    def link(path: str):
        # By the link's path: the sidebar's titles are not always the navigation's (see the README).
        return page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']")

    switches = {}
    for visit in ("first", "again"):
        for name in SWITCHES:
            switches[f"{name} ({visit})"] = _timed(page, lambda name=name: link(name).click(), timeout)
    _timed(page, lambda: link("Compare").click(), timeout)
    compare_crop = _timed(page, lambda: page.get_by_text("Crop and align the face").first.click(), timeout)
    warm = [t for name, t in switches.items() if name.endswith("(again)")]
    return {"pick a FairFace face, uncached (s)": picks, "Explore toggles (s)": toggles,
            "page switches (s)": switches, "page switch, warm (s, median / max)": [median(warm), max(warm)],
            "Compare: crop toggled, three models (s)": compare_crop,
            "met": {"warm switches and toggles < 1.5 s": max([*warm, *toggles.values(), *picks]) < 1.5,
                    "Compare < 3 s": compare_crop < 3.0}}


def run(uploads: list[Path], shots: Path | None = None, timeout: float = 180) -> dict:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit("bench: error: Chromium is not installed (apt-get install chromium)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env()
    with sync_playwright() as playwright:
        # The browser starts first: what is timed is the app, not Chromium's own start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        page = context.new_page()
        page.set_default_timeout(timeout * 1000)
        start = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                        break
                except OSError:
                    if time.perf_counter() - start > timeout or server.poll() is not None:
                        raise SystemExit("bench: error: streamlit did not start") from None
                    time.sleep(0.05)
            healthy = time.perf_counter() - start
            page.goto(f"{url}/Evaluation")
            page.wait_for_function(PAGE_CONTENT, timeout=timeout * 1000, polling=50)
            content = time.perf_counter() - start
            page.wait_for_function(PAGE_SHOWN, timeout=timeout * 1000, polling=50)
            first_page = time.perf_counter() - start
            first_page_cpu = cpu_seconds(server.pid)
            light = {**memory_mb(server.pid), "torch_loaded": _torch_loaded(server.pid)}
            if shots:
                page.screenshot(path=shots / "bench-evaluation.png")
            # The same page again with the server warm (imports done) in a browser with an empty cache:
            # what is left is Streamlit's frontend and plotly.js, which no server work can shorten.
            again = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
            t = time.perf_counter()
            again.goto(f"{url}/Evaluation")
            again.wait_for_function(PAGE_CONTENT, timeout=timeout * 1000, polling=50)
            warm_content = time.perf_counter() - t
            again.wait_for_function(PAGE_SHOWN, timeout=timeout * 1000, polling=50)
            warm_page = time.perf_counter() - t
            again.context.close()

            def upload(path: Path, name: str) -> float:
                t = time.perf_counter()
                page.goto(f"{url}/Explore")
                page.get_by_text("Upload a photo", exact=True).click()
                page.locator("input[type='file']").wait_for(state="attached", timeout=timeout * 1000)
                page.wait_for_function(PAGE_IDLE)
                explore_opened.setdefault(name, time.perf_counter() - t)
                t, cpu = time.perf_counter(), cpu_seconds(server.pid)
                page.locator("input[type='file']").set_input_files(str(path))
                page.wait_for_function(MAPS_SHOWN, timeout=timeout * 1000, polling=50)
                elapsed = time.perf_counter() - t
                server_cpu[name] = round(cpu_seconds(server.pid) - cpu, 2)
                if shots:
                    page.screenshot(path=shots / f"bench-{name}.png")
                return elapsed

            server_cpu: dict[str, float] = {}
            explore_opened: dict[str, float] = {}

            cold = upload(uploads[0], "upload-cold")
            warm = [upload(p, f"upload-{i}") for i, p in enumerate(uploads[1:], 1)]
            repeat = upload(uploads[1], "upload-repeat")
            t = time.perf_counter()
            with page.expect_download() as download:
                page.get_by_text("Download the figure").click()
            figure = Path(download.value.path()).read_bytes()
            if not figure.startswith(b"\x89PNG"):
                raise SystemExit("bench: error: the figure download is not a PNG")
            download_s = time.perf_counter() - t
            session = interactions(page, url, timeout)
            loaded = {**memory_mb(server.pid), "torch_loaded": _torch_loaded(server.pid)}
        finally:
            server.terminate()
            server.wait(timeout=30)
            browser.close()
    return {
        "server healthy after start (s)": round(healthy, 2),
        "Evaluation page's numbers and tables shown after start (s)": round(content, 2),
        "first Evaluation page rendered after start, charts drawn (s)": round(first_page, 2),
        "server CPU until then (s; includes streamlit's own start)": round(first_page_cpu, 2),
        "Evaluation page again, server warm, fresh browser: numbers shown / charts drawn (s)":
            [round(warm_content, 2), round(warm_page, 2)],
        "Explore page first opened, loads model + MTCNN (s)": round(explore_opened["upload-cold"], 2),
        "first upload -> four maps (s)": round(cold, 2),
        "upload -> four maps, model loaded (s, median)": round(median(warm), 2),
        "upload -> four maps, each (s)": {p.name: round(t, 2) for p, t in zip(uploads[1:], warm)},
        "same upload again, memoised (s)": round(repeat, 2),
        "server CPU per upload (s)": server_cpu,
        "figure download, drawn on click (s)": round(download_s, 2),
        "app memory after the Evaluation page": light,
        "app memory after the uploads": loaded,
        "a session's clicks": session,
        "targets": "first page < 3 s; upload answered < 1.5 s; page switches and toggles < 1.5 s warm; Compare < 3 s",
        "met": {"first page": first_page < 3.0, "upload": median(warm) < 1.5, **session["met"]},
    }
