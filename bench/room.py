"""A room of students: N sessions at once on one server, each picking FairFace faces on Explore and toggling crop.

A session here is Streamlit's own protocol, not a browser: a websocket to `/_stcore/stream` on the loopback
address that sends what the browser sends (a script run for the Explore page, then a click on a face's button or
on the crop toggle, as widget states) and reads what the browser reads (the page's elements, until the run
ends). Thirty browsers would need more CPU than the two cores the server has; this client costs almost none, so
what is timed is the server. Each action is timed from its message to the end of the script run it starts:
pick-to-maps is that time for a pick (the verdict and its four maps are in the run's elements; their images,
fetched by a browser afterwards, are not counted). The run counts errors (an exception element, a run that never
ends within the bound), the "Busy: N ahead of you" notes the sessions saw, and the server's memory (peak RSS from
the kernel's high-water mark, VmHWM, of the server's process tree).

Bounded: a fixed number of sessions and actions, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request

from bench.app import _free_port, memory_mb
from bench.common import child_env, median
from faircam.config import PROJECT_ROOT

VERDICT = "The model says"
BUSY = re.compile(r"Busy: (\d+) ahead of you")


def start_server(script: str = "app.py", timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """`streamlit run` of `script` (a path from the checkout's root) on a free loopback port, as served to users
    (faircam's model warms up after the first page); its process and URL once healthy."""
    port = _free_port()
    env = child_env(FAIRCAM_PRELOAD="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("bench: error: streamlit did not start")


class Session:
    """One browser tab's worth of Streamlit protocol: script runs and the widgets they drew."""

    def __init__(self, socket, timeout: float) -> None:
        self.socket, self.timeout = socket, timeout
        self.buttons: dict[str, str] = {}  # widget id -> label
        self.toggles: dict[str, tuple[str, bool]] = {}  # widget id -> label, value
        self.texts: list[str] = []

    async def run(self, states: list | None = None) -> float:
        """Send a script run with `states` (widget states) and read until it ends; its seconds."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        message = BackMsg()
        message.rerun_script.page_name = "Explore"
        message.rerun_script.query_string = ""
        message.rerun_script.widget_states.widgets.extend(states or [])
        self.texts = []
        start = time.perf_counter()
        await self.socket.send(message.SerializeToString())
        await asyncio.wait_for(self._until_finished(), self.timeout)
        return time.perf_counter() - start

    async def _until_finished(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        while True:
            message = ForwardMsg()
            message.ParseFromString(await self.socket.recv())
            kind = message.WhichOneof("type")
            if kind == "script_finished":
                return
            if kind != "delta":
                continue
            delta = message.delta.WhichOneof("type")
            if delta == "new_transient":  # a spinner's words, shown while the run waits
                self.texts += [e.spinner.text for e in message.delta.new_transient.elements]
                continue
            if delta != "new_element":
                continue
            element = message.delta.new_element
            shown = element.WhichOneof("type")
            if shown == "button":
                self.buttons[element.button.id] = element.button.label
            elif shown == "checkbox":
                self.toggles[element.checkbox.id] = (element.checkbox.label, element.checkbox.default)
            elif shown == "exception":
                self.texts.append(f"EXCEPTION {element.exception.message}")
            elif shown == "markdown":
                self.texts.append(element.markdown.body)

    def toggle_state(self, label: str, value: bool):
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        (widget,) = [i for i, (text, _) in self.toggles.items() if text.startswith(label)]
        return WidgetState(id=widget, bool_value=value)

    def pick_state(self, index: int):
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        faces = sorted(i for i in self.buttons if "-pick" in i)
        return WidgetState(id=faces[index % len(faces)], trigger_value=True)


async def student(url: str, number: int, picks: int, timeout: float, results: dict) -> None:
    """One student: opens Explore, then picks `picks` faces, toggling crop after each."""
    import websockets

    async with websockets.connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=None, open_timeout=timeout) as socket:
        session = Session(socket, timeout)
        results["open"].append(await session.run())
        crop = False
        for k in range(picks):
            # A different face for each student and pick: every pick is new to the server's memo.
            seconds = await session.run([session.pick_state(number * picks + k),
                                         session.toggle_state("Crop and align the face", crop)])
            said = "\n".join(session.texts)
            results["pick"].append(seconds)
            results["errors"] += said.count("EXCEPTION") + (VERDICT not in said)
            results["busy"] += [int(n) for n in BUSY.findall(said)]
            crop = not crop
            seconds = await session.run([session.toggle_state("Crop and align the face", crop)])
            said = "\n".join(session.texts)
            results["toggle"].append(seconds)
            results["errors"] += said.count("EXCEPTION") + (VERDICT not in said)
            results["busy"] += [int(n) for n in BUSY.findall(said)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


async def _room(url: str, students: int, picks: int, timeout: float) -> dict:
    results: dict = {"open": [], "pick": [], "toggle": [], "errors": 0, "busy": []}
    outcomes = await asyncio.gather(*(student(url, n, picks, timeout, results) for n in range(students)),
                                    return_exceptions=True)
    failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    results["errors"] += len(failed)
    results["failures"] = failed[:3]
    return results


def run(students: int = 30, picks: int = 2, timeout: float = 300) -> dict:
    """`students` sessions at once, each opening Explore and then picking `picks` faces (crop toggled between):
    the figures of the room."""
    server, url = start_server()
    try:
        # One session first, alone: the model's load is not what the room measures.
        asyncio.run(_room(url, 1, 1, timeout))
        before = memory_mb(server.pid)
        start = time.perf_counter()
        results = asyncio.run(_room(url, students, picks, timeout))
        wall = time.perf_counter() - start
        after = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    picks_s, toggles_s = results["pick"], results["toggle"]
    return {
        "sessions": students, "picks per session": picks,
        "errors": results["errors"], "failures": results["failures"],
        "pick -> maps (s): median / p95 / max": [round(median(picks_s), 2), round(percentile(picks_s, 0.95), 2),
                                                 round(max(picks_s), 2)] if picks_s else None,
        "crop toggle -> maps (s): median / p95": [round(median(toggles_s), 2),
                                                  round(percentile(toggles_s, 0.95), 2)] if toggles_s else None,
        "Explore opened (s): median / p95": [round(median(results["open"]), 2),
                                             round(percentile(results["open"], 0.95), 2)],
        "runs that said 'Busy: N ahead of you'": len(results["busy"]),
        "largest N ahead": max(results["busy"], default=0),
        "room wall time (s)": round(wall, 1),
        "maps per second": round((len(picks_s) + len(toggles_s)) / wall, 2),
        "server memory before the room (MB)": before,
        "server memory after the room (MB)": after,
    }
