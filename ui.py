"""Streamlit glue shared by the pages: cached loading, the sidebar, and friendly errors.

Pages stay thin: everything they compute comes from `faircam`; this module only decides
what is loaded once per process (`st.cache_resource`), what is memoised per input
(`st.cache_data`), and how problems are told to the person at the screen.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from faircam import registry
from faircam.cache import EvalCache, read_cache
from faircam.config import DEFAULT_MODEL_NAME, MAX_UPLOAD_MB, cache_path_for
from faircam.errors import CacheError, ImageError, ModelError
from faircam.explain import Explanation, Pipeline
from faircam.images import decode_image, read_image
from faircam.preprocess import FaceDetector


def page_setup(title: str, icon: str = "🔍") -> None:
    st.set_page_config(page_title=f"{title} · faircam", page_icon=icon, layout="wide")
    st.title(title)


# Session key of the model chosen in the sidebar (a plain key: widget keys are dropped when
# the page that drew the widget changes).
MODEL_KEY = "faircam_model"


def selected_model() -> str:
    """The registry name of the model chosen in the sidebar (default: faircam's own)."""
    name = st.session_state.get(MODEL_KEY, DEFAULT_MODEL_NAME)
    return name if name in registry.names() else DEFAULT_MODEL_NAME


@st.cache_resource(show_spinner="Loading the face detector…")
def _detector() -> FaceDetector:
    return FaceDetector()


@st.cache_resource(show_spinner="Loading the model…")
def _pipeline(name: str, weights: str) -> Pipeline:
    # `weights` is part of the key so that FAIRCAM_MODEL changes reload the default model.
    return Pipeline.load(name, detector=_detector())


def pipeline(name: str | None = None) -> Pipeline:
    """A model (default: the selected one) with the shared detector and its explainer, loaded once
    per process; stops the page if the model is unusable."""
    name = name or selected_model()
    try:
        return _pipeline(name, str(registry.entries()[name].weights))
    except ModelError as exc:
        st.error(f"**The model cannot be loaded.** {exc}\n\nSet `FAIRCAM_MODEL` to a faircam checkpoint, "
                 "or restore the model files in `assets/` from the repository.")
        st.stop()


@st.cache_data(show_spinner=False, max_entries=8)
def _cache(path: str, mtime: float) -> EvalCache:
    return read_cache(path)


def read_evaluation(name: str) -> EvalCache:
    """A model's evaluation cache, memoised on its file's modification time; `CacheError` if unusable."""
    path = cache_path_for(name)
    return _cache(str(path), path.stat().st_mtime if path.exists() else 0.0)


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
        st.error(f"**No usable evaluation.** {exc}")
        st.code(f"faircam evaluate --split val --model {name} --out {cache_path_for(name)}", language="bash")
        return None


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_data(show_spinner=False, max_entries=64)
def _explain(key: str, _data: bytes | None, path: str | None, crop: bool, blur: bool, face: int,
             model: str) -> Explanation:
    # `key` (the bytes' hash) stands for `_data`, which Streamlit then need not hash itself.
    image = decode_image(_data) if _data is not None else read_image(path)
    return pipeline(model).explain(image, crop=crop, blur=blur, face_index=face)


def explain_upload(data: bytes, crop: bool, blur: bool, face: int = 0, model: str | None = None) -> Explanation | None:
    """Explanation of uploaded bytes by a model (default: the selected one), memoised on their
    hash, the toggles and the model."""
    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(f"The file is larger than {MAX_UPLOAD_MB} MB. Please upload a smaller photo.")
        return None
    try:
        with st.spinner("Computing the four maps…"):
            return _explain(image_key(data), data, None, crop, blur, face, model or selected_model())
    except ImageError as exc:
        st.error(f"**This file cannot be used.** {exc}")
        return None


def explain_file(path: Path, crop: bool, blur: bool, face: int = 0, model: str | None = None) -> Explanation | None:
    """Explanation of a dataset image by a model (default: the selected one), memoised on its path,
    the toggles and the model."""
    try:
        with st.spinner("Computing the four maps…"):
            return _explain(str(path), None, str(path), crop, blur, face, model or selected_model())
    except ImageError as exc:
        st.error(f"**This image cannot be used.** {exc}")
        return None


def _remember_model() -> None:
    st.session_state[MODEL_KEY] = st.session_state["_model_select"]


def sidebar_model() -> None:
    """The model selector and what the registry and the model's cache say about it, on every page.
    Nothing here loads a model."""
    entries = registry.entries()
    names = list(entries)
    current = selected_model()
    with st.sidebar:
        st.selectbox("Model", names, index=names.index(current), key="_model_select", on_change=_remember_model,
                     format_func=lambda n: f"{n}: {entries[n].title}",
                     help="The model every page audits. Compare models side by side on *Compare models*.")
        entry = entries[current]
        st.caption(f"{entry.origin} · licence {entry.licence} · input {entry.input}")
        try:
            rows = read_evaluation(current).rows
        except CacheError:
            st.warning("This model has no evaluation cache yet: run `faircam evaluate --model "
                       f"{current}` to measure its accuracy.")
            return
        st.caption(f"Validation accuracy {rows['correct'].mean():.1%} on {len(rows):,} FairFace images.")
