"""Streamlit glue shared by the pages: cached loading, the sidebar, and friendly errors.

Pages stay thin: everything they compute comes from `faircam`; this module only decides
what is loaded once per process (`st.cache_resource`), what is memoised per input
(`st.cache_data`), and how problems are told to the person at the screen.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from faircam.cache import EvalCache, read_cache
from faircam.checkpoint import file_sha256, read_metadata
from faircam.config import MAX_UPLOAD_MB, settings
from faircam.data import available_splits, describe_dropped
from faircam.errors import KNOWN_ERRORS, CacheError, ImageError, ModelError
from faircam.images import decode_image, read_image

if TYPE_CHECKING:
    # torch comes in with these: only pages that run the model import them, inside `pipeline()`.
    from faircam.explain import Explanation, Pipeline

THUMBNAIL_SIDE = 224


def page_setup(title: str, icon: str = "🔍") -> None:
    st.set_page_config(page_title=f"{title} · faircam", page_icon=icon, layout="wide")
    st.title(title)


@st.cache_resource(show_spinner="Loading the model and the face detector…")
def _pipeline(model_path: str) -> Pipeline:
    from faircam.explain import Pipeline

    return Pipeline.load(model_path)


def _model_error(exc: ModelError) -> None:
    st.error(f"**The model cannot be loaded.** {exc}\n\nSet `FAIRCAM_MODEL` to a faircam checkpoint, "
             "or restore `assets/model.pt` from the repository.")
    st.stop()


def pipeline() -> Pipeline:
    """The model, detector and explainer, loaded once per process; stops the page if unusable."""
    path = settings().model_path
    try:
        return _pipeline(str(path))
    except ModelError as exc:
        _model_error(exc)


@st.cache_data(show_spinner=False, max_entries=8)
def _checkpoint(path: str, mtime: float) -> dict[str, Any]:
    return {"path": path, "sha256": file_sha256(path), **read_metadata(path)}


def _read_checkpoint() -> dict[str, Any]:
    path = settings().model_path
    return _checkpoint(str(path), path.stat().st_mtime if path.exists() else 0.0)


def checkpoint() -> dict[str, Any]:
    """The model file's sha256 and metadata (arch, input_size, classes, info) without loading torch;
    stops the page if the file is unusable."""
    try:
        return _read_checkpoint()
    except ModelError as exc:
        _model_error(exc)


@st.cache_data(show_spinner=False, max_entries=8)
def _cache(path: str, mtime: float) -> EvalCache:
    return read_cache(path)


def evaluation_cache() -> EvalCache | None:
    """The cached evaluation, or None after telling the user why there is none."""
    path = settings().cache_path
    try:
        return _cache(str(path), path.stat().st_mtime if path.exists() else 0.0)
    except CacheError as exc:
        st.error(f"**No usable evaluation.** {exc}")
        st.code(f"faircam evaluate --split val --out {path}", language="bash")
        offer_recompute(path)
        return None


def left_out_rows(data_meta: dict) -> str:
    """What an evaluation left out, from its cache's `data` metadata: dropped rows named, unreadable images counted."""
    unreadable = int(data_meta.get("unreadable") or 0)
    said = describe_dropped(pd.DataFrame(data_meta.get("dropped") or []), int(data_meta.get("dropped_total") or 0))
    if unreadable:
        said += f" {unreadable} image{'s' if unreadable != 1 else ''} could not be read."
    return said.strip()


@st.cache_resource
def _recompute_lock() -> threading.Lock:
    return threading.Lock()


def offer_recompute(path: Path, split: str = "val") -> None:
    """A button that recomputes the evaluation cache at `path` here, with a progress bar, then reloads."""
    data = settings().data_dir
    if split not in available_splits(data):
        st.caption(f"To recompute it here, set `FAIRCAM_DATA` to a FairFace folder with a {split} split.")
        return
    if not st.button(f"Recompute the evaluation now ({split} split of {data})", key=f"recompute-{path}"):
        return
    from faircam.evaluate import run_evaluation  # torch: only once asked

    lock = _recompute_lock()
    if not lock.acquire(blocking=False):
        st.warning("Another session is recomputing the evaluation right now. Reload this page when it is done.")
        return
    try:
        bar = st.progress(0.0, text=f"Evaluating the {split} split of {data}: a few images a second…")
        pipe = pipeline()
        extra = {}
        # `on_progress` arrives with the resumable evaluation (contracts §1); without it the bar waits.
        if "on_progress" in inspect.signature(run_evaluation).parameters:
            extra["on_progress"] = lambda done, total: bar.progress(done / max(total, 1),
                                                                     text=f"{done:,} of {total:,} images")
        run_evaluation(data, split, path, pipe.model, pipe.detector, pipe.explainer, progress=False, **extra)
    except KNOWN_ERRORS as exc:
        st.error(f"**The evaluation could not be recomputed.** {exc}")
        return
    finally:
        lock.release()
    st.rerun()


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_data(show_spinner=False, max_entries=64)
def _explain(key: str, _data: bytes | None, path: str | None, crop: bool, blur: bool, face: int) -> Explanation:
    # `key` (the bytes' hash) stands for `_data`, which Streamlit then need not hash itself.
    image = decode_image(_data) if _data is not None else read_image(path)
    return pipeline().explain(image, crop=crop, blur=blur, face_index=face)


def explain_upload(data: bytes, crop: bool, blur: bool, face: int = 0) -> Explanation | None:
    """Explanation of uploaded bytes, memoised on their hash and the toggles."""
    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(f"The file is larger than {MAX_UPLOAD_MB} MB. Please upload a smaller photo.")
        return None
    try:
        with st.spinner("Computing the four maps…"):
            return _explain(image_key(data), data, None, crop, blur, face)
    except ImageError as exc:
        st.error(f"**This file cannot be used.** {exc}")
        return None


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(path: Path) -> np.ndarray | None:
    """A small copy of a dataset image for the picker grid, or None when the file cannot be read."""
    try:
        return read_image(path, max_side=THUMBNAIL_SIDE)
    except ImageError:
        return None


def explain_file(path: Path, crop: bool, blur: bool, face: int = 0) -> Explanation | None:
    """Explanation of a dataset image, memoised on its path and the toggles."""
    try:
        with st.spinner("Computing the four maps…"):
            return _explain(str(path), None, str(path), crop, blur, face)
    except ImageError as exc:
        st.error(f"**This image cannot be used.** {exc}")
        return None


def sidebar_model() -> None:
    """Which model the app shows and how accurate it is, on every page, read without loading it."""
    try:
        model = _read_checkpoint()
    except ModelError as exc:
        st.sidebar.warning(f"**No usable model.** {exc}")
        return
    info = model.get("info") or {}
    metrics = info.get("metrics") or {}
    with st.sidebar:
        st.markdown(f"**Model:** {info.get('name') or Path(model['path']).name}")
        if "accuracy" in metrics:
            st.caption(f"Validation accuracy {metrics['accuracy']:.1%} on {metrics['n']:,} FairFace images.")
        else:
            st.warning("This model has no recorded validation accuracy: treat its maps as a demonstration only.")
        st.caption(f"`{Path(model['path']).name}` · sha256 {model['sha256'][:10]}")
