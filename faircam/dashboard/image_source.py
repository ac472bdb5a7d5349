"""The one image source of every page that shows one face: a FairFace face (filtered by split, race,
gender and age) or an upload, which face of the photo, and the crop and blur toggles.

The choice belongs to the browser session, not to a page: Explore, Inside, Compare and the Classroom
show the same face with the same toggles, and it survives visits to other pages. Streamlit drops a
widget's key when a page without that widget runs, so each choice lives under a plain session key
and its widget is seeded from it before it is drawn (as `ui.MODEL_KEY` does for the model).
A link `?image=val/123.jpg&crop=1` to the Explore, Inside or Compare page opens that FairFace image with those
toggles, and those pages keep their choice in the address bar (`ui.link`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from faircam.audit import groups
from faircam.charts.figures import numbered_faces
from faircam.config import MAX_UPLOAD_MB, settings
from faircam.dashboard import ui
from faircam.data.fairface import (
    AGES,
    GENDERS,
    RACES,
    FairFaceSplit,
    describe_dropped,
    filter_rows,
    find_image,
    grid_sample,
    label_file,
    read_data_image,
)
from faircam.data.images import decode_image
from faircam.data.labelled import data_splits, load_data
from faircam.errors import DataError
from faircam.text import md

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

    from faircam.vision.explain import Explanation

SOURCES = ("FairFace sample", "Upload a photo")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"]
GRID = 12
# The width at which a photo of several faces is shown whole, with its faces numbered.
WHOLE_PHOTO_SHOWN = 320
EXPLORE = "pages/1_Explore.py"
# Plain session keys of the choice (two keep the names Explore gave them before the choice was shared).
PICKED, SHUFFLE, UPLOAD, FACES = "picked", "shuffle", "image_upload", "image_faces"


@dataclass(frozen=True)
class Choice:
    """The image the person chose (the FairFace face `truth["file"]` of the data folder `root`, or uploaded bytes),
    the toggles, and which face; `face_slot` is where the page draws the face selector once it knows how many
    faces the photo holds."""

    root: Path | None
    upload: bytes | None
    truth: dict[str, str] | None
    crop: bool
    blur: bool
    face: int
    face_slot: DeltaGenerator | None = None

    @property
    def key(self) -> str:
        """The image's identity: its path, or the uploaded bytes' hash."""
        return str(self.root / self.truth["file"]) if self.root is not None else ui.image_key(self.upload)

    def image(self) -> np.ndarray:
        """The decoded image (`ImageError` if it cannot be read)."""
        return read_data_image(self.root, self.truth["file"]) if self.root is not None else decode_image(self.upload)

    def explain(self, model: str | None = None, task: str | None = None,
                target: str | None = None) -> Explanation | None:
        """Its explanation, with the chosen toggles and face, by a model (default: the selected one): the maps
        explain `task`'s (default: the model's first, gender) class `target` (default: the predicted one)."""
        if self.root is not None:
            return ui.explain_file(self.root, self.truth["file"], self.crop, self.blur, self.face, model=model,
                                   task=task, target=target)
        return ui.explain_upload(self.upload, self.crop, self.blur, self.face, model=model, task=task, target=target)


def _widget(name: str) -> str:
    return f"_image_{name}"


def _keep(name: str) -> None:
    st.session_state[f"image_{name}"] = st.session_state[_widget(name)]


def _seeded(name: str, default: Any, allowed: list | tuple | None = None) -> dict[str, Any]:
    """Widget arguments that draw the session's choice `name` and write the person's changes back."""
    value = st.session_state.get(f"image_{name}", default)
    st.session_state[_widget(name)] = value if allowed is None or value in allowed else default
    return {"key": _widget(name), "on_change": _keep, "args": (name,)}


@st.cache_data(show_spinner=False)
def _split(root: str, split: str, labels: str | None) -> FairFaceSplit:
    return load_data(root, split, labels)


def _labels() -> str | None:
    """The label file of a labelled data folder (`FAIRCAM_LABELS`), or None for FairFace's layout."""
    labels = settings().labels_path
    return None if labels is None else str(labels)


def _open_link(data: Path | None) -> None:
    """Make the choice a link arrived with the session's: the FairFace image named by `?image=` (or a line saying
    why it cannot be opened), its crop and blur toggles (`?crop=1`, `?blur=0`); its face is taken in `choose`."""
    file = ui.arrived("image")
    if file is not None:
        _open_image(data, file)
    source = "upload" if st.session_state.get("image_source") == SOURCES[1] else "fairface"
    for name, key in (("crop", f"crop:{source}"), ("blur", "blur")):
        if (value := ui.arrived_flag(name)) is not None:
            st.session_state[f"image_{key}"] = value


def _open_image(data: Path | None, file: str) -> None:
    for split in data_splits(data, settings().labels_path):
        try:
            row = find_image(_split(str(data), split, _labels()), file)
        except DataError:
            continue
        pick(row.to_dict(), split)
        return
    st.error(f"**This link cannot be opened.** {md(file, code=True)} is not an image of the FairFace folder"
             f"{f' {md(data)}' if data is not None else ' (none is set: `FAIRCAM_DATA`)'}.")


def pick(row: dict[str, str], split: str | None = None) -> None:
    """Make a FairFace row the session's choice (the Classroom's lesson face, a link)."""
    st.session_state[PICKED] = row
    st.session_state["image_source"] = SOURCES[0]
    if split is not None:
        st.session_state["image_split"] = split


def picked() -> dict[str, str] | None:
    """The session's FairFace face, whichever page picked it."""
    return st.session_state.get(PICKED)


def use_upload(data: bytes) -> None:
    """Make an uploaded photo the session's choice (the Classroom's "use your own photo")."""
    st.session_state[UPLOAD] = data
    st.session_state["image_source"] = SOURCES[1]


def uploaded() -> bytes | None:
    """The session's uploaded photo when it is the chosen source, whichever page took it."""
    return st.session_state.get(UPLOAD) if st.session_state.get("image_source") == SOURCES[1] else None


def _crop_name(uploading: bool) -> str:
    return f"crop:{'upload' if uploading else 'fairface'}"


def crop_setting(uploading: bool) -> bool:
    """The crop toggle's setting for uploads or for FairFace faces, as Explore last drew it (the Classroom
    classifies with it too). On by default for uploads: the model learned from FairFace's face crops, which
    the crop reproduces; a FairFace image already is such a crop."""
    return st.session_state.get(f"image_{_crop_name(uploading)}", uploading)


def _choose_fairface(data: Path | None) -> dict[str, str] | None:
    splits = data_splits(data, settings().labels_path)
    if not splits:
        if data is not None:
            try:
                load_data(data, "val", _labels())
            except DataError as exc:
                st.error(f"**The data folder cannot be used.** {md(exc)}")
        st.info("No FairFace folder found. Set `FAIRCAM_DATA` to a folder in FairFace's layout "
                "(or run `faircam fetch-fairface`), or upload a photo instead.")
        return None
    c1, c2, c3, c4 = st.columns([1, 2, 1, 2])
    split = c1.selectbox("Split", splits, **_seeded("split", "val" if "val" in splits else splits[0], splits))
    races = c2.multiselect("Race", RACES, placeholder="all", **_seeded("races", []))
    genders = c3.multiselect("Gender", GENDERS, placeholder="all", **_seeded("genders", []))
    ages = c4.multiselect("Age", AGES, placeholder="all", **_seeded("ages", []))
    try:
        labels = _split(str(data), split, _labels())
    except DataError as exc:
        st.error(f"**The data folder cannot be used.** {md(exc)}")
        return None
    if not labels.dropped.empty:
        named = settings().labels_path or label_file(data, split)
        st.warning(f"Some rows of {md(named.name, code=True)} are left out. "
                   f"{md(describe_dropped(labels.dropped))}")
    rows = filter_rows(labels.rows, races, genders, ages)
    if rows.empty:
        st.warning("No image matches these filters.")
        return picked()
    shuffle = st.session_state.setdefault(SHUFFLE, 0)
    sample = grid_sample(rows, GRID, seed=shuffle)
    st.caption(f"{len(rows):,} images match; showing {len(sample)}, balanced across race and gender.")
    if st.button("🔀 Show other faces"):
        st.session_state[SHUFFLE] += 1
        st.rerun()
    columns = st.columns(6)
    for i, (_, row) in enumerate(sample.iterrows()):
        with columns[i % 6]:
            thumbnail = ui.thumbnail(data, row["file"])
            if thumbnail is None:
                st.warning(f"{md(row['file'], code=True)} cannot be read.")
                continue
            st.image(thumbnail, width="stretch")
            said = [groups.label(row[c]) for c in ("race", "gender", "age") if pd.notna(row[c])]
            # A callback, so that the pick is the session's before the grid is drawn: the picked face's button is
            # highlighted in the same run.
            current = (picked() or {}).get("file") == row["file"]
            st.button(md(", ".join(said) or row["file"]), key=f"pick{row['file']}", on_click=pick,
                      args=(row.to_dict(),), type="primary" if current else "secondary", icon="👉" if current else None)
    return picked()


def _keep_upload() -> None:
    file = st.session_state[_widget("upload")]
    st.session_state[UPLOAD] = None if file is None else file.getvalue()


def _keep_face(key: str) -> None:
    st.session_state.setdefault(FACES, {})[key] = st.session_state[_widget("face")]


def choose(from_link: bool = False,
           crop_help: str = "Cut the face out the way FairFace cut its faces, with the eyes level.",
           ) -> tuple[Choice | None, DeltaGenerator]:
    """Draw the source, the toggles and the picker (FairFace grid or uploader); return the choice (None
    until an image is picked or uploaded) and a container above the picker for the page's result.
    `from_link`: open the choice a link carries, and keep the choice in the address bar (Explore, Inside, Compare)."""
    data = settings().data_dir
    if from_link:
        _open_link(data)
    source = st.radio("Image source", SOURCES, horizontal=True, **_seeded("source", SOURCES[0], SOURCES))
    c1, c2, c3 = st.columns(3)
    uploading = source == SOURCES[1]
    # Kept per source (`crop_setting`).
    crop = c1.toggle("Crop and align the face", help=crop_help,
                     **_seeded(_crop_name(uploading), crop_setting(uploading)))
    blur = c2.toggle("Blur the background", help="Keep the face sharp and blur everything around it.",
                     **_seeded("blur", False))
    if uploading:
        st.caption("Cropping is on for uploads because the model was trained on FairFace's face crops." if crop else
                   "Cropping is off: the model sees the whole photo, shrunk, unlike the face crops it was trained on.")
    # The result is drawn above the picker grid, though it is computed after the pick.
    result = st.container()
    root, upload, truth = None, None, None
    if source == SOURCES[0]:
        truth = _choose_fairface(data)
        if truth is None:
            if from_link:
                _link(None)
            return None, result
        root = data
    else:
        # An uploader cannot be given a file back after a page change: the bytes are kept instead.
        shown = st.file_uploader("A photo with a face", type=UPLOAD_TYPES, key=_widget("upload"),
                                 on_change=_keep_upload, max_upload_size=MAX_UPLOAD_MB)
        upload = st.session_state.get(UPLOAD)
        if upload is None:
            if from_link:
                _link(None)
            return None, result
        if shown is None:
            st.caption("Showing the photo you uploaded earlier in this session; upload another to replace it.")
    choice = Choice(root, upload, truth, crop, blur, 0, face_slot=c3)
    face = ui.arrived("face")
    if from_link and face is not None and face.isdigit():
        st.session_state.setdefault(FACES, {})[choice.key] = int(face)
    choice = with_chosen_face(choice)
    if from_link:
        _link(choice)
    with result:
        ui.scroll_here(f"{choice.key}|{choice.face}")
    return choice, result



def with_chosen_face(choice: Choice) -> Choice:
    """The choice with the face the person last chose in its image (Explore's selector); the face choice belongs
    to one image: another image starts again at its largest face."""
    return replace(choice, face=st.session_state.get(FACES, {}).get(choice.key, 0))


def _link(choice: Choice | None) -> None:
    """The choice in the address bar: a FairFace image with its toggles and face (an upload cannot travel in a
    link: its toggles do, the photo does not)."""
    fairface = choice is not None and choice.root is not None
    ui.link("image", choice.truth["file"] if fairface else None)
    ui.link("crop", None if choice is None else choice.crop)
    ui.link("blur", None if choice is None else choice.blur)
    ui.link("face", choice.face if choice is not None and choice.face else None)


def face_selector(choice: Choice, faces_found: int) -> None:
    """The selector of which face of a photo with several is cropped, kept sharp and scored, and here the whole
    photo with its faces numbered as the selector numbers them (a crop alone shows one face)."""
    if faces_found <= 1:
        return
    image = choice.image()
    # Small: it sits above the answer, which a pick scrolls to.
    st.image(numbered_faces(image, ui.face_boxes(choice.key, image), choice.face),
             width=min(WHOLE_PHOTO_SHOWN, image.shape[1]),
             caption=f"The whole photo: {faces_found} faces, numbered largest first; face {choice.face + 1} "
                     "(orange) is the one cropped, kept sharp and scored.")
    st.session_state[_widget("face")] = min(choice.face, faces_found - 1)
    choice.face_slot.selectbox(
        "Face", range(faces_found), key=_widget("face"), on_change=_keep_face, args=(choice.key,),
        format_func=lambda i: f"face {i + 1} of {faces_found}" + (" (largest)" if i == 0 else ""),
        help="The face that is cropped, kept sharp and scored. Without cropping the model still sees the "
             "whole photo.")


def explore_link(file: str, label: str = "Open on Explore") -> None:
    """A link that opens a FairFace image (its `file` column) on the Explore page, with the session's model, task
    and presentation mode."""
    ui.page_link(EXPLORE, label=label, icon="🔍", image=file)

