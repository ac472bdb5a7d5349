"""Explore: one face, its prediction, and where each CAM method says the model looked."""

import pandas as pd
import streamlit as st

import ui
from faircam.config import settings
from faircam.data import (
    AGES,
    GENDERS,
    RACES,
    FairFaceSplit,
    available_splits,
    balanced_sample,
    describe_dropped,
    filter_rows,
    label_file,
    load_split,
)
from faircam.errors import DataError
from faircam.figures import draw_face, explanation_figure, map_overlay, png_bytes
from faircam.focus import REGIONS
from faircam.text import md

ui.page_setup("Explore a face")
ui.sidebar_model()
# Loaded on opening (the sidebar no longer does it): a broken model is reported at once, and picks are quick.
ui.pipeline()
GRID = 12

st.caption(
    "Pick a FairFace face or upload a photo. faircam shows the model's prediction and four class activation "
    "maps (CAMs): red marks the image areas that pushed the model towards its answer."
)


@st.cache_data(show_spinner=False)
def _split(root: str, split: str) -> FairFaceSplit:
    return load_split(root, split)


def choose_fairface() -> tuple[str, pd.Series] | None:
    data = settings().data_dir
    splits = available_splits(data)
    if not splits:
        if data is not None:
            try:
                load_split(data, "val")
            except DataError as exc:
                st.error(f"**The data folder cannot be used.** {md(exc)}")
        st.info("No FairFace folder found. Set `FAIRCAM_DATA` to a folder in FairFace's layout "
                "(or run `faircam fetch-fairface`), or upload a photo instead.")
        return None
    c1, c2, c3, c4 = st.columns([1, 2, 1, 2])
    split = c1.selectbox("Split", splits, index=splits.index("val") if "val" in splits else 0)
    races = c2.multiselect("Race", RACES, placeholder="all")
    genders = c3.multiselect("Gender", GENDERS, placeholder="all")
    ages = c4.multiselect("Age", AGES, placeholder="all")
    try:
        labels = _split(str(data), split)
    except DataError as exc:
        st.error(f"**The data folder cannot be used.** {md(exc)}")
        return None
    if not labels.dropped.empty:
        st.warning(f"Some rows of `{label_file(data, split).name}` are left out. "
                   f"{md(describe_dropped(labels.dropped))}")
    rows = filter_rows(labels.rows, races, genders, ages)
    if rows.empty:
        st.warning("No image matches these filters.")
        return None
    shuffle = st.session_state.setdefault("shuffle", 0)
    per_cell = max(1, GRID // (len(races or RACES) * len(genders or GENDERS)))
    sample = balanced_sample(rows, per_cell, seed=shuffle).sample(frac=1, random_state=shuffle).head(GRID)
    st.caption(f"{len(rows):,} images match; showing {len(sample)}, balanced across race and gender.")
    if st.button("🔀 Show other faces"):
        st.session_state["shuffle"] += 1
        st.rerun()
    columns = st.columns(6)
    for i, (_, row) in enumerate(sample.iterrows()):
        with columns[i % 6]:
            thumbnail = ui.thumbnail(data / row["file"])
            if thumbnail is None:
                st.warning(f"{md(row['file'], code=True)} cannot be read.")
                continue
            st.image(thumbnail, width="stretch")
            if st.button(f"{row['race'].replace('_', ' ')}, {row['gender']}, {row['age']}", key=f"pick{row['file']}"):
                st.session_state["picked"] = row.to_dict()
    picked = st.session_state.get("picked")
    if picked is None:
        return None
    return str(data / picked["file"]), pd.Series(picked)


def choose_upload() -> bytes | None:
    upload = st.file_uploader("A photo with a face", type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"])
    return upload.getvalue() if upload is not None else None


source = st.radio("Image source", ["FairFace sample", "Upload a photo"], horizontal=True)
c1, c2, c3 = st.columns(3)
uploading = source == "Upload a photo"
# On by default for uploads: the model learned from FairFace's face crops, which the crop reproduces.
crop = c1.toggle("Crop and align the face (MTCNN)", value=uploading, key=f"crop:{source}",
                 help="Cut the face out the way FairFace cut its faces, with the eyes level.")
if uploading:
    st.caption("Cropping is on for uploads because the model was trained on FairFace's face crops.")
blur = c2.toggle("Blur the background", help="Keep the face sharp and blur everything around it.")
# The result is drawn above the picker grid, though it is computed after the pick.
result = st.container()

truth = None
explanation = None
if source == "FairFace sample":
    chosen = choose_fairface()
    if chosen is not None:
        path, truth = chosen
        # The face choice belongs to one image: another image starts again at its largest face.
        face_key = f"face:{path}"
        explanation = ui.explain_file(path, crop, blur, st.session_state.get(face_key, 0))
else:
    data = choose_upload()
    if data is not None:
        face_key = f"face:{ui.image_key(data)}"
        explanation = ui.explain_upload(data, crop, blur, st.session_state.get(face_key, 0))

if explanation is not None:
    with result:
        view = explanation.view
        if view.faces_found > 1:
            c3.selectbox("Face", range(view.faces_found), key=face_key,
                         format_func=lambda i: f"face {i + 1} of {view.faces_found}" + (" (largest)" if i == 0 else ""),
                         help="The face that is cropped, kept sharp and scored. Without cropping the model "
                              "still sees the whole photo.")
        if view.message:
            st.warning(view.message)

        st.divider()
        if view.face is None:
            verdict = "### No face found: this answer is about the whole picture and means little"
        else:
            verdict = f"### The model says **{explanation.label}** ({explanation.probability:.0%} sure)"
        if truth is not None:
            correct = truth["gender"] == explanation.label
            verdict += f" — FairFace label: {truth['gender']} {'✅' if correct else '❌'}"
        st.markdown(verdict)

        tiles = st.columns(1 + len(explanation.maps))
        tiles[0].image(draw_face(view.image, explanation), caption="What the model sees (face box, landmarks)",
                       width="stretch")
        for tile, method in zip(tiles[1:], explanation.maps):
            focus = explanation.focus[method]
            tile.image(map_overlay(explanation, method), width="stretch",
                       caption=f"{method}: {focus['face']:.0%} on the face")
        if view.invalid_share > 0:
            st.caption(f"The hatched grey area ({view.invalid_share:.0%} of the view) lies beyond the photo's edge: "
                       "the model sees flat grey there, and no score counts it.")

        st.markdown("#### Where the attention falls")
        st.caption("Share of each map's total heat per region. **Chance** is what a map spread evenly over the "
                   "image would score: a face share well above chance means the model looked at the face.")
        if view.face is None:
            st.info("No face was found, so every share counts as background.")
        table = pd.DataFrame(explanation.focus).T
        chance = pd.DataFrame([explanation.chance], index=["chance (even map)"])
        st.dataframe(pd.concat([table, chance])[["face", *REGIONS]].style.format("{:.0%}"), width="stretch")
        # Drawn on click only: rendering it on every rerun would cost more than the maps themselves.
        st.download_button("⬇️ Download the figure (PNG)", lambda: png_bytes(explanation_figure(explanation)),
                           file_name="faircam-explanation.png", mime="image/png")
