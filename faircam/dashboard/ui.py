"""Streamlit glue shared by the pages: cached loading, the sidebar, and friendly errors.

Pages stay thin: everything they compute comes from `faircam`; this module only decides
what is loaded once per process (`st.cache_resource`), what is memoised per input
(`st.cache_data`), and how problems are told to the person at the screen.
"""

from __future__ import annotations

import hashlib
import runpy
import shlex
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from faircam import glossary, wording
from faircam.audit import groups
from faircam.config import DEFAULT_MODEL_NAME, MAX_UPLOAD_MB, PROJECT_ROOT, cache_path_for, settings
from faircam.data.fairface import describe_dropped, read_data_image
from faircam.data.images import decode_image
from faircam.data.labelled import data_splits
from faircam.errors import KNOWN_ERRORS, CacheError, ImageError, ModelError
from faircam.evaluation.cache import EvalCache, read_cache
from faircam.models import registry, store
from faircam.models.checkpoint import file_sha256, read_metadata
from faircam.tasks import DEFAULT_TASK, TASKS
from faircam.text import md

if TYPE_CHECKING:
    import plotly.graph_objects as go

    # torch comes in with these: only pages that run the model import them, inside `pipeline()`.
    from faircam.vision.explain import Explanation, Pipeline
    from faircam.vision.preprocess import FaceDetector

THUMBNAIL_SIDE = 224


# Session key of presentation mode (plain, like MODEL_KEY); `?present=1` in a link turns it on.
PRESENT_KEY = "faircam_present"
# Tables up to this many rows are drawn whole (race × gender has 14); in presentation mode all are.
WHOLE_TABLE_ROWS = 20
# From 800 px up: columns wrap instead of shrinking below a readable width (map tiles, face buttons,
# toggles), and a wrapped column keeps its width (a last map alone on its row would fill it). Where the page's
# own width is narrow (an 800 px window with the sidebar open leaves it about 500 px; a container query, as the
# window's width does not say whether the sidebar is open), its columns of text and tables take the whole width,
# one under another. Labels and metric values wrap rather than end in "…"; a static table too wide scrolls.
# Presentation mode adds larger type, the full width, and wider tiles (three to a row at 800 px); up to 1000 px
# its columns of text and tables take the whole width too.
_LAYOUT_CSS = """
[data-testid="stMainBlockContainer"] { container-type: inline-size; }
[data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"] { min-width: min(140px, 100%); flex-grow: 0; }
@container (max-width: 640px) {
  [data-testid="stHorizontalBlock"] > [data-testid="stColumn"]:not(:has([data-testid="stImage"])) { min-width: 100%; }
}
[data-testid="stWidgetLabel"] [data-testid="stMarkdownContainer"], [data-testid="stWidgetLabel"] p,
[data-testid="stButton"] button [data-testid="stMarkdownContainer"], [data-testid="stButton"] button p,
[data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"], [data-testid="stMetricLabel"] p,
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * {
  white-space: normal; overflow: visible; }
[data-testid="stTable"] { overflow-x: auto; }
"""
_PRESENT_CSS = """
html { font-size: 20px; }
.block-container { max-width: 100%; padding-left: 1.5rem; padding-right: 1.5rem; padding-top: 2.5rem; }
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"] { min-width: min(220px, 100%); }
@media (max-width: 1000px) {
  [data-testid="stHorizontalBlock"] > [data-testid="stColumn"]:not(:has([data-testid="stImage"])) { min-width: 100%; }
}
"""

# The script that folds the sidebar away.
_FOLD_SIDEBAR = """<script>setTimeout(() => {
  const bar = document.querySelector('[data-testid="stSidebar"]');
  if (bar && bar.getAttribute("data-collapsed") === "false")
    document.querySelector('[data-testid="stSidebarCollapseButton"] button')?.click();
}, 300)</script>"""


def presenting() -> bool:
    """Whether the session shows the app for a projector (larger type, sidebar collapsed, whole tables)."""
    return bool(st.session_state.get(PRESENT_KEY, False))


# --- Links that reproduce the view -----------------------------------------------------------------------------
# The address bar holds what a page shows: the model, the task and presentation mode on every page; on the pages of
# one face the image, its toggles and which face; on Explore the class the maps explain. Each page writes its part
# on every run (`link`), so a reload or a copied address shows the same view. The first run of a page in a session
# (a new tab, a reload, a page link) takes the address's parameters as the session's choices (`arrived`); later runs
# of the same page do not, as a rerun can carry an address from before the last run's writes. Streamlit empties the
# address's parameters on a change of page through its menu; the new page then writes its own.
LINK_PARAMS = ("model", "task", "present", "image", "crop", "blur", "face", "target")
SHARED_PARAMS = ("model", "task", "present")
# The page the session last drew; the link parameters this run arrived with; the sidebar's slot for the link.
_PAGE, _ARRIVED, _LINK_SLOT = "_faircam_page", "_faircam_link_arrived", "_faircam_link_slot"


def _receive_link(title: str) -> None:
    arriving = st.session_state.get(_PAGE) != title
    st.session_state[_ARRIVED] = {name: st.query_params[name] for name in LINK_PARAMS
                                  if arriving and name in st.query_params}


def arrived(name: str) -> str | None:
    """The value of the link parameter `name` when this run's address came from a link, not from this session."""
    return st.session_state.get(_ARRIVED, {}).get(name)


def arrived_flag(name: str) -> bool | None:
    """A yes/no link parameter ("1" or "0") that came with a link; None when absent or anything else."""
    return {"1": True, "0": False}.get(arrived(name))


def link(name: str, value: str | bool | int | None) -> None:
    """Write one part of the view's state into the address bar (a flag as "1"/"0"; None removes it), and refresh the
    sidebar's link to this view."""
    if isinstance(value, bool):
        value = "1" if value else "0"
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)
    slot = st.session_state.get(_LINK_SLOT)
    base = st.context.url
    if slot is not None and base:
        query = urlencode({n: st.query_params.get_all(n) for n in st.query_params}, doseq=True)
        slot.code(f"{base}?{query}" if query else base, language=None, wrap_lines=True)


def shared_params() -> dict[str, str]:
    """The link parameters every page shares (model, task, presentation mode), for a link to another page."""
    return {name: st.query_params[name] for name in SHARED_PARAMS if name in st.query_params}


_SCROLLED = "_faircam_scrolled"
_SCROLL_TO = """<div id="ANCHOR"></div><script>(() => {
  const wait = setInterval(() => {
    const here = document.getElementById("ANCHOR");
    const app = document.querySelector("[data-testid=stApp]");
    if (!here) { clearInterval(wait); return; }
    if (app && app.dataset.testScriptState === "notRunning") {
      clearInterval(wait);
      here.scrollIntoView({block: "start"});
    }
  }, 250);
})()</script>"""


def scroll_here(key: str) -> None:
    """Scroll the window to this point of the page when `key` (what is drawn from here on) is new to the session:
    a pick in a grid draws its result above the grid, off-screen on a projector."""
    if st.session_state.get(_SCROLLED) == key:
        return
    st.session_state[_SCROLLED] = key
    anchor = f"faircam-{image_key(key.encode())[:16]}"
    # Once the run has ended: while the result is computed the browser keeps the clicked grid in view, and the
    # result's height, added above it, would carry a scroll made earlier away again.
    st.html(_SCROLL_TO.replace("ANCHOR", anchor), unsafe_allow_javascript=True)


def glossary_link(term: str, text: str | None = None) -> str:
    """A Markdown link, worded `text` (the term's name by default), to the Glossary opened at `term`, carrying the
    session's model, task and presentation mode. Relative, so it holds under a server's base path; Streamlit opens
    it in a new tab, which keeps the reader's place."""
    name = glossary.find(term).name
    return f"[{md(text or name)}](Glossary?{urlencode({**shared_params(), 'term': name})})"


def page_link(page: str, label: str, icon: str | None = None, **params: str | list[str]) -> None:
    """`st.page_link` to `page` carrying the session's model, task and presentation mode, and `params`: opened in a
    new tab, it shows what this session would."""
    st.page_link(page, label=label, icon=icon, query_params={**shared_params(), **params})


def _route_through_app() -> None:
    # Until some session has called `st.navigation`, Streamlit treats pages/ as its older multipage layout: a deep
    # link after a server start (/Evaluation) runs that script alone, under a menu built from the file names, and
    # app.py (the navigation, the model's warm-up) never runs. Leaving that layout and running app.py, whose
    # navigation opens the same page (Streamlit keys a page by its URL path in both), fixes it. In this same run,
    # not a rerun: a rerun would drop the click (a button's value) that started this one. AppTest starts every run
    # in that layout, so there every click goes through here.
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(PROJECT_ROOT / "app.py"), run_name="__main__")
        st.stop()


def page_setup(title: str, icon: str = "🔍") -> None:
    """Every page's start: its browser title and layout, its heading, and the sidebar (model selector).
    A model registry that cannot be read stops the page with one warning saying which file to fix."""
    _route_through_app()
    _receive_link(title)
    if (present := arrived_flag("present")) is not None:
        st.session_state[PRESENT_KEY] = present
    present = presenting()
    st.set_page_config(page_title=f"{title} · faircam", page_icon=icon, layout="wide",
                       initial_sidebar_state="collapsed" if present else "auto")
    st.html(f"<style>{_LAYOUT_CSS}{_PRESENT_CSS if present else ''}</style>")
    if present and st.session_state.get(_PAGE) not in (None, title):
        # Streamlit folds the sidebar on the first page only (`initial_sidebar_state`): on a projector the menu
        # would then cover the next page once a person has opened it to change page.
        st.html(_FOLD_SIDEBAR, unsafe_allow_javascript=True)
    st.session_state[_PAGE] = title
    st.title(title)
    try:
        registry.entries()
    except ModelError as exc:
        st.warning(f"**The model registry cannot be used.** {md(exc)}")
        st.stop()
    if (model := arrived("model")) in registry.names():
        st.session_state[MODEL_KEY] = model
    elif model is not None:
        st.warning(f"This link names the model {md(model, code=True)}, which this server does not have: showing "
                   f"{md(selected_model(), code=True)}.")
    if (task := arrived("task")) in model_tasks():
        st.session_state[TASK_KEY] = task
    elif task is not None:
        st.warning(f"This link names the task {md(task, code=True)}, which {md(selected_model(), code=True)} does "
                   f"not have: showing {TASKS[selected_task()].title}.")
    sidebar_model()
    with st.sidebar:
        st.caption("The link to this view (the copy button at its right): it opens the same page, model, task and "
                   "image.")
        st.session_state[_LINK_SLOT] = st.empty()
    link("model", selected_model())
    link("task", selected_task())
    link("present", True if present else None)


def _md_label(label: object) -> object:
    return md(label) if isinstance(label, str) else label


# A static table's columns beside its leading ones (`table`'s `lead`): at 800 px beside the open sidebar (a page
# about 470 px wide) a group's name and three rates with their intervals fit, wrapped, with no sideways scrolling.
COLUMNS_PER_TABLE = 3


def table(data: pd.DataFrame, formats: str | dict[str, str] | None = None, hide_index: bool = False,
          na_rep: str | None = None, static: bool = False, lead: int = 0, **kwargs: Any) -> None:
    """A table drawn whole when it is short, never cut to a scrolling box; `formats` and `na_rep` as pandas'
    `Styler.format`, `kwargs` to `st.dataframe`. In presentation mode, and with `static`, a static table whose
    text wraps and grows with the page's type (a data grid's does not): it renders its cells, headers and index
    as Markdown, so every text in it is escaped (`md`), whatever mode draws it. With `lead`, static tables one under
    another, each of the first `lead` columns (what names a row) and at most `COLUMNS_PER_TABLE` others: a table too
    wide for a narrow page would scroll sideways, its last columns out of view."""
    if lead:
        width = len(data.columns)
        for start in range(lead, max(width, lead + 1), COLUMNS_PER_TABLE):
            part = data.iloc[:, [*range(lead), *range(start, min(start + COLUMNS_PER_TABLE, width))]]
            shown = {c: f for c, f in formats.items() if c in part} if isinstance(formats, dict) else formats
            table(part, shown, hide_index, na_rep, static=True)
        return
    if static or presenting():
        shown = data.map(_md_label).rename(index=_md_label, columns=_md_label)
        if isinstance(formats, dict):
            formats = {_md_label(column): format for column, format in formats.items()}
        st.table(shown.style.format(formats, na_rep=na_rep), hide_index=hide_index)
        return
    whole = len(data.index) <= WHOLE_TABLE_ROWS
    shown = data.style.format(formats, na_rep=na_rep) if formats or na_rep else data
    st.dataframe(shown, height="content" if whole else "auto", hide_index=hide_index, **kwargs)


# Presentation mode's chart type against the normal one: the page's 20 px over Plotly's 12.
PRESENT_CHART_SCALE = 20 / 12


def chart(figure: go.Figure, **kwargs: Any) -> None:
    """`st.plotly_chart` with `kwargs`; in presentation mode the chart's type and markers grow with the page's."""
    if presenting():
        from faircam.charts.plots import scaled

        figure = scaled(figure, PRESENT_CHART_SCALE)
    st.plotly_chart(figure, **kwargs)


def open_tab(labels: list[str], key: str) -> tuple[Any, str]:
    """Tabs of which only the open one is drawn: its container and label. Choosing another tab reruns
    the page, so a page computes only what the open tab shows (the first page opens faster)."""
    tabs = st.tabs(labels, key=key, on_change="rerun")
    return next((tab, label) for tab, label in zip(tabs, labels) if tab.open)


# The last tab of a table page: any grouping of the cache, or the intersection of two.
GROUP_BY = "Group by…"
NO_SECOND = "(none)"


def choose_grouping(options: dict[str, list[str]], key: str, where: Any = st) -> tuple[str, list[str]]:
    """A "Group by" choice of any grouping in `options` (`groups.groupings`), the first beyond FairFace's labels
    by default, and an optional second one: the grouping's name and its columns ("race × lighting": the
    intersection of two)."""
    singles = [n for n, by in options.items() if len(by) == 1]
    default = next((i for i, n in enumerate(singles) if n not in groups.GROUPINGS), 0)
    first_column, second_column = where.columns(2)
    first = first_column.selectbox("Group by", singles, key=f"{key}-by", index=default)
    second = second_column.selectbox("and by (the intersection of two)", [NO_SECOND, *[n for n in singles
                                                                                        if n != first]],
                                     key=f"{key}-and")
    if second == NO_SECOND:
        return first, options[first]
    return groups.intersection(first, second), options[first] + options[second]


def grouping_tab(options: dict[str, list[str]], key: str) -> tuple[Any, str, list[str]]:
    """Tabs of FairFace's groupings present in `options` and a last one, `GROUP_BY`, choosing any grouping or the
    intersection of two (`choose_grouping`): the open tab's container, the grouping's name and its columns."""
    standard = [n for n in groups.GROUPINGS if n in options]
    tab, label = open_tab([*standard, GROUP_BY], key=key)
    if label != GROUP_BY:
        return tab, label, options[label]
    with tab:
        name, by = choose_grouping(options, key)
    return tab, name, by


def grouping_radio(options: dict[str, list[str]], key: str, where: Any = st, default: str = "race",
                   label: str = "Groups") -> tuple[str, list[str]]:
    """`grouping_tab` as a radio labelled `label`, for pages that choose a grouping beside other choices."""
    standard = [n for n in groups.GROUPINGS if n in options]
    labels = [*standard, GROUP_BY]
    label = where.radio(label, labels, index=labels.index(default) if default in labels else 0, horizontal=True,
                        key=key)
    return (label, options[label]) if label != GROUP_BY else choose_grouping(options, key, where)


# Session key of the model chosen in the sidebar (a plain key: widget keys are dropped when
# the page that drew the widget changes).
MODEL_KEY = "faircam_model"


def selected_model() -> str:
    """The registry name of the model chosen in the sidebar (default: faircam's own)."""
    name = st.session_state.get(MODEL_KEY, DEFAULT_MODEL_NAME)
    return name if name in registry.names() else DEFAULT_MODEL_NAME


# Session key of the task chosen in the sidebar: the decision every page audits (gender, race or age).
TASK_KEY = "faircam_task"


def model_tasks(name: str | None = None) -> tuple[str, ...]:
    """The tasks a model (default: the selected one) predicts, in `TASKS`' order, read without torch: a checkpoint's
    from its metadata, another kind's from its evaluation cache (a brought model may have no gender head); gender
    where neither says."""
    entry = registry.entries()[name or selected_model()]
    if (brought := store.get(entry.name)) is not None:
        tasks = brought.facts.get("tasks")
    elif entry.kind == "checkpoint":
        tasks = checkpoint(entry.name).get("tasks")
    else:
        try:
            tasks = read_evaluation(entry.name).tasks
        except CacheError:
            tasks = None
    return tuple(t for t in TASKS if t in tasks) if isinstance(tasks, dict) and tasks else (DEFAULT_TASK,)


def selected_task() -> str:
    """The task chosen in the sidebar, if the selected model has it; else gender, or the model's first task."""
    task = st.session_state.get(TASK_KEY, DEFAULT_TASK)
    tasks = model_tasks()
    return task if task in tasks else DEFAULT_TASK if DEFAULT_TASK in tasks else tasks[0]


def lacking(cache: EvalCache, task: str, what: str = "numbers") -> str:
    """One line naming a task an evaluation lacks (its model has no such head, or its data no such labels) and the
    tasks it has: said instead of an error or a 0%."""
    return (f"This evaluation has no {TASKS[task].title} {what}: its model has no {TASKS[task].title} head or its "
            f"data no {TASKS[task].title} labels. It holds {', '.join(TASKS[t].title for t in cache.tasks)} only.")


def map_kind_note(methods: Iterable[str]) -> None:
    """On every page that shows maps: one line saying they are a black box's occlusion maps, not CAMs, where they
    are."""
    if wording.OCCLUSION in methods:
        st.info(wording.OCCLUSION_MAPS)


def task_or_stop(cache: EvalCache, what: str = "numbers") -> str:
    """The selected task when `cache` holds its predictions; otherwise the page says so in one line and stops."""
    task = selected_task()
    if task not in cache.tasks:
        st.info(lacking(cache, task, what))
        st.stop()
    return task


@st.cache_resource(show_spinner="Loading the face detector…")
def _detector() -> FaceDetector:
    from faircam.vision.preprocess import FaceDetector

    return FaceDetector()


@st.cache_data(show_spinner=False, max_entries=16)
def _face_boxes(key: str, _image: np.ndarray) -> list[np.ndarray]:
    return [face.box for face in _detector().detect(_image)]


def face_boxes(key: str, image: np.ndarray) -> list[np.ndarray]:
    """The boxes of the faces the detector finds in `image` (identified by `key`), largest first: the order in which
    the pages number them and crop face N."""
    return _face_boxes(key, image)


@st.cache_resource(show_spinner="Loading the model…")
def _pipeline(name: str, weights: str) -> Pipeline:
    # `weights` is part of the key so that FAIRCAM_MODEL changes reload the default model.
    from faircam.vision.explain import Pipeline

    return Pipeline.load(name, detector=_detector())


def _load_default_model() -> None:
    try:
        _pipeline(DEFAULT_MODEL_NAME, str(registry.entries()[DEFAULT_MODEL_NAME].weights))
    except ModelError:
        pass  # told on the first page that needs the model


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Starts loading the default model and the face detector in the background, once per server process,
    so the first face a person picks does not wait for them (a page that needs them earlier waits for
    this load rather than starting a second one: `st.cache_resource` computes each value once)."""
    thread = threading.Thread(target=_load_default_model, name="faircam-warm-up", daemon=True)
    thread.start()
    return thread


def _model_error(exc: ModelError, name: str | None = None) -> None:
    fix = ("Remove it on *Audit a model* and bring it again." if name and store.get(name) else
           "Set `FAIRCAM_MODEL` to a faircam checkpoint, or restore the model files in `assets/` from the repository.")
    st.error(f"**The model cannot be loaded.** {md(exc)}\n\n{fix}")
    st.stop()


def answers_only(name: str) -> bool:
    """Whether the registered model `name` is a table of answers brought to the store (no model to run)."""
    return registry.entries()[name].kind == store.ANSWERS


def pipeline(name: str | None = None) -> Pipeline:
    """A model (default: the selected one) with the shared detector and its explainer, loaded once
    per process; stops the page if the model is unusable or a table of answers."""
    name = name or selected_model()
    if answers_only(name):
        st.info(f"{md(name, code=True)} is a table of answers: no model ran, so it has no maps and cannot answer "
                "other faces.")
        st.stop()
    try:
        # A model brought again under a removed one's name is another model at the same path, and a brought model
        # whose user chose another layer explains another: its install time and layer are part of the key.
        brought = store.get(name)
        return _pipeline(name, str(registry.entries()[name].weights)
                         + (f"@{brought.installed}#{brought.facts.get('cam_layer', '')}" if brought else ""))
    except ModelError as exc:
        _model_error(exc, name)


@st.cache_data(show_spinner=False, max_entries=8)
def _checkpoint(path: str, kind: str, mtime: float) -> dict[str, Any]:
    # Third-party weights are not faircam checkpoints: their description comes from the registry.
    return {"path": path, "sha256": file_sha256(path), **(read_metadata(path) if kind == "checkpoint" else {})}


def checkpoint(name: str | None = None) -> dict[str, Any]:
    """A model's weights file: its sha256 and, for faircam checkpoints, their metadata (arch,
    input_size, classes, info), read without loading torch; stops the page if the file is unusable."""
    entry = registry.entries()[name or selected_model()]
    if (brought := store.get(entry.name)) is not None:
        # What its install recognised (a Hugging Face model is a folder, not one weights file).
        return {"path": str(brought.model), **{k: v for k, v in brought.facts.items() if v is not None}}
    try:
        if not entry.weights.is_file():
            raise ModelError(f"The weights of {entry.name!r} are missing ({entry.weights}).")
        return _checkpoint(str(entry.weights), entry.kind, entry.weights.stat().st_mtime)
    except ModelError as exc:
        _model_error(exc)


# A resource, not data: st.cache_data would pickle the rows on storing and unpickle a copy on every hit
# (0.1 s a page at 100,000 rows, bench/pages.py). Pages and faircam only read `EvalCache.rows`.
@st.cache_resource(show_spinner=False, max_entries=8)
def _cache(path: str, mtime: float) -> EvalCache:
    return read_cache(path)


def read_evaluation(name: str) -> EvalCache:
    """A model's evaluation cache, memoised on its file's modification time; `CacheError` if unusable."""
    path = cache_path_for(name)
    return _cache(str(path), path.stat().st_mtime if path.exists() else 0.0)


def evaluate_command(name: str | None = None) -> str:
    """The `faircam evaluate` command that (re)creates a model's (default: the selected one's) cache."""
    name = name or selected_model()
    return f"faircam evaluate --split val --model {shlex.quote(name)} --out {shlex.quote(str(cache_path_for(name)))}"


def no_maps_line(cache: EvalCache, what: str = "CAMs") -> str:
    """What a map page says of a cache without maps: a table of answers has none, any other cache was evaluated
    without them."""
    if cache.answers_only:
        return "This audit is of a table of answers (`faircam import-predictions`): no model ran, so it has no maps."
    return f"This evaluation cache has no {what}, so there is nothing to compare here. Run {evaluate_hint()} to " \
        "compute them."


def evaluate_hint(name: str | None = None) -> str:
    """`evaluate_command` as inline code for Markdown (a registered model's name is anyone's text)."""
    return md(evaluate_command(name), code=True)


def available_evaluations(names: list[str]) -> tuple[dict[str, EvalCache], list[str]]:
    """The usable caches of these models by name, and the names of those without one."""
    caches, missing = {}, []
    for name in names:
        try:
            caches[name] = read_evaluation(name)
        except CacheError:
            missing.append(name)
    return caches, missing


def evaluation_cache(name: str | None = None) -> EvalCache | None:
    """A model's cached evaluation (default: the selected model's), or None after telling the
    user why there is none."""
    name = name or selected_model()
    try:
        return read_evaluation(name)
    except CacheError as exc:
        st.error(f"**No usable evaluation.** {md(exc)}")
        st.code(evaluate_command(name), language="bash")
        offer_recompute(cache_path_for(name), model=name)
        return None


def evaluation_or_stop(name: str | None = None) -> EvalCache:
    """`evaluation_cache`, for pages that show nothing without one: the page stops after saying why."""
    cache = evaluation_cache(name)
    if cache is None:
        st.stop()
    return cache


def evaluated_images(cache: EvalCache) -> str:
    """The cache's images in words (Markdown): "2,500 images of the **val** split of `root`", or of a labelled
    folder with its label file."""
    data = cache.data_meta
    if data.get("labels"):
        return (f"**{len(cache.rows):,}** images of the labelled folder {md(data['root'], code=True)} (labels "
                f"{md(Path(data['labels']).name, code=True)})")
    return f"**{len(cache.rows):,}** images of the **{md(data['split'])}** split of {md(data['root'], code=True)}"


def left_out_rows(cache: EvalCache) -> str:
    """What an evaluation left out: dropped rows named, unreadable images counted; Markdown-escaped, as the rows
    quote label values."""
    data_meta = cache.data_meta
    unreadable = data_meta["unreadable"]
    said = describe_dropped(pd.DataFrame(data_meta["dropped"]), data_meta["dropped_total"])
    if unreadable:
        said += f" {unreadable} image{'s' if unreadable != 1 else ''} could not be read."
    return md(said.strip())


def _recompute_lock() -> threading.Lock:
    """The server's one evaluation at a time, shared with the background jobs of the "Audit a model" page."""
    from faircam.evaluation.jobs import evaluation_lock

    return evaluation_lock()


def offer_recompute(path: Path, split: str = "val", model: str | None = None) -> None:
    """A button that recomputes a model's (default: the selected one's) evaluation cache at `path`
    here, with a progress bar, then reloads."""
    data = settings().data_dir
    if split not in data_splits(data, settings().labels_path):
        st.caption(f"To recompute it here, set `FAIRCAM_DATA` to a FairFace folder with a {md(split)} split.")
        return
    if not st.button(f"Recompute the evaluation now ({split} split of {md(data)}; faithfulness is left to "
                     "`faircam evaluate`)", key=f"recompute-{path}"):
        return
    from faircam.evaluation.evaluate import EvalOptions, run_evaluation  # torch: only once asked

    lock = _recompute_lock()
    if not lock.acquire(blocking=False):
        st.warning("Another evaluation is running on this server right now. Reload this page when it is done.")
        return
    try:
        bar = st.progress(0.0, text=f"Evaluating the {split} split of {md(data)}: a few images a second…")
        pipe = pipeline(model)
        # Faithfulness (ROAD) costs seconds per image: left to `faircam evaluate`, so the button ends in minutes.
        run_evaluation(data, split, path, pipe.model, pipe.detector, pipe.explainer, progress=False,
                       options=EvalOptions(faithfulness_per_cell=0), labels=settings().labels_path,
                       on_progress=lambda done, total: bar.progress(done / max(total, 1),
                                                                    text=f"{done:,} of {total:,} images"))
    except KNOWN_ERRORS as exc:
        st.error(f"**The evaluation could not be recomputed.** {md(exc)}")
        return
    finally:
        lock.release()
    st.rerun()


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_data(show_spinner=False, max_entries=64)
def _explain(key: str, _data: bytes | None, root: str | None, file: str | None, crop: bool, blur: bool, face: int,
             model: str, task: str | None, target: str | None) -> Explanation:
    # `key` (the bytes' hash) stands for `_data`, which Streamlit then need not hash itself.
    image = decode_image(_data) if _data is not None else read_data_image(root, file)
    return pipeline(model).explain(image, crop=crop, blur=blur, face_index=face, task=task, target=target)


def _computing(model: str) -> str:
    """The spinner's words while the maps are computed: sessions take turns at the CAM pass (`Turns`), so in a
    full room it says how many are ahead."""
    ahead = pipeline(model).explainer.turns.ahead
    return (f"Busy: {ahead} ahead of you. " if ahead else "") + "Computing the four maps…"


def explain_upload(data: bytes, crop: bool, blur: bool, face: int = 0, model: str | None = None,
                   task: str | None = None, target: str | None = None) -> Explanation | None:
    """Explanation of uploaded bytes by a model (default: the selected one): its maps for `task` (default: the
    model's first, gender) and its class `target` (default: the predicted one), memoised on the bytes' hash,
    the toggles, the model, the task and the target."""
    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(f"The file is larger than {MAX_UPLOAD_MB} MB. Please upload a smaller photo.")
        return None
    model = model or selected_model()
    try:
        with st.spinner(_computing(model)):
            return _explain(image_key(data), data, None, None, crop, blur, face, model, task, target)
    except ImageError as exc:
        st.error(f"**This file cannot be used.** {md(exc)}")
        return None


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(root: Path, file: str) -> np.ndarray | None:
    """A small copy of the data image `file` of the folder `root`, or None when it cannot be read or
    lies outside the folder (file names in a cache come from whoever wrote it)."""
    try:
        return read_data_image(root, file, max_side=THUMBNAIL_SIDE)
    except ImageError:
        return None


def explain_file(root: Path, file: str, crop: bool, blur: bool, face: int = 0, model: str | None = None,
                 task: str | None = None, target: str | None = None) -> Explanation | None:
    """Explanation of the image `file` of the data folder `root` by a model (default: the selected one): its maps
    for `task` (default: the model's first, gender) and its class `target` (default: the predicted one), memoised
    on its path,
    the toggles, the model, the task and the target."""
    model = model or selected_model()
    try:
        with st.spinner(_computing(model)):
            return _explain(str(root / file), None, str(root), file, crop, blur, face, model, task, target)
    except ImageError as exc:
        st.error(f"**This image cannot be used.** {md(exc)}")
        return None


def _remember_model() -> None:
    st.session_state[MODEL_KEY] = st.session_state["_model_select"]


def _remember_task() -> None:
    st.session_state[TASK_KEY] = st.session_state["_task_select"]


def _remember_presenting() -> None:
    st.session_state[PRESENT_KEY] = st.session_state["_present_toggle"]


def sidebar_model() -> None:
    """The model selector and what the registry and the model's cache say about it, on every page.
    Nothing here loads a model."""
    entries = registry.entries()
    names = list(entries)
    current = selected_model()
    with st.sidebar:
        st.toggle("Presentation mode", value=presenting(), key="_present_toggle", on_change=_remember_presenting,
                  help="For a projector: larger type, the sidebar folded away, tables shown whole and the maps "
                       "filling the width. Open the sidebar (› at the top left) to turn it off.")
        st.selectbox("Model", names, index=names.index(current), key="_model_select", on_change=_remember_model,
                     format_func=lambda n: f"{n}: {entries[n].title}",
                     help="The model every page audits. Compare models side by side on *Compare models*.")
        tasks = model_tasks(current)
        task = selected_task()
        st.selectbox("Task", tasks, index=tasks.index(task), key="_task_select", on_change=_remember_task,
                     format_func=lambda t: TASKS[t].title, disabled=len(tasks) == 1,
                     help="The decision every page audits: gender, or race or age for a model with those "
                          "heads. Race and age are here as subjects of the audit, not as features.")
        entry = entries[current]
        # The input's normalisation is for the About page: a room does not need "(x − 127) / 128".
        st.caption(f"{md(entry.origin)} · licence {md(entry.licence)}")
        try:
            rows = read_evaluation(current).rows
        except CacheError:
            st.warning(f"This model has no evaluation cache yet: run {evaluate_hint(current)} to measure its accuracy.")
            return
        if task not in read_evaluation(current).tasks:
            st.caption(f"Its evaluation cache holds no {TASKS[task].title} predictions.")
            return
        overall = groups.group_table(rows, [], task=read_evaluation(current).task(task)).iloc[0]
        accuracy = groups.with_interval(overall["accuracy"], overall["accuracy_low"], overall["accuracy_high"])
        what = "" if task == DEFAULT_TASK else f"{TASKS[task].title} "
        source = "labelled" if read_evaluation(current).meta["data"].get("labels") else "FairFace"
        st.caption(f"Validation {what}accuracy {accuracy} on {int(overall['accuracy_n']):,} {source} images.")
