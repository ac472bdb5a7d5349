"""Inside the network: what each stage of the classifier computes for one face, and its first filters."""

import numpy as np
import pandas as pd
import streamlit as st

import ui
from faircam.config import settings
from faircam.data import GENDERS, RACES, available_splits, load_split
from faircam.errors import DataError, ImageError
from faircam.explain import Pipeline
from faircam.images import decode_image, read_image
from faircam.inside import StageMaps, feature_maps, first_layer_filters, image_grid, resolution_steps
from faircam.text import md

ui.page_setup("Inside the network", "🧠")
ui.sidebar_model()
pipeline = ui.pipeline()
TOP = 8

st.caption(
    "The classifier is a stack of stages. Each turns the picture into many **feature maps** (channels): small "
    "grids that light up where the stage finds a pattern. Early stages see edges and colours at high resolution; "
    "late stages see whole face parts on a coarse grid. The last stage is the one the CAMs are computed from."
)


@st.cache_data(show_spinner=False)
def _val_rows(root: str) -> pd.DataFrame:
    return load_split(root, "val").rows


@st.cache_data(show_spinner=False, max_entries=16)
def _inside(key: str, _data: bytes | None, path: str | None, crop: bool, blur: bool, model_sha: str,
            _pipeline: Pipeline) -> tuple[np.ndarray, str, str, float, list[StageMaps]]:
    # `key` (path or the bytes' hash) and `model_sha` stand for the image and the model, which
    # Streamlit then need not hash themselves.
    image = decode_image(_data) if _data is not None else read_image(path)
    view = _pipeline.view(image, crop=crop, blur=blur)
    probs = _pipeline.model.predict_proba([view.image])[0]
    best = int(probs.argmax())
    stages = feature_maps(_pipeline.model, view.image, top=TOP)
    return view.image, view.message, _pipeline.model.classes[best], float(probs[best]), stages


def choose_fairface() -> str | None:
    data = settings().data_dir
    if "val" not in available_splits(data):
        st.info("No FairFace folder found. Set `FAIRCAM_DATA` to a folder in FairFace's layout, or upload a photo.")
        return None
    try:
        rows = _val_rows(str(data))
    except DataError as exc:
        st.error(f"**The data folder cannot be used.** {md(exc)}")
        return None
    c1, c2, c3 = st.columns([2, 1, 2])
    race = c1.selectbox("Race", RACES, format_func=lambda r: r.replace("_", " "))
    gender = c2.selectbox("Gender", GENDERS)
    cell = rows[(rows["race"] == race) & (rows["gender"] == gender)].head(50)
    if cell.empty:
        st.warning("No validation image in this group.")
        return None
    ages = dict(zip(cell["file"], cell["age"]))
    file = c3.selectbox("Image", list(ages), format_func=lambda f: f"{f} (age {ages[f]})")
    return str(data / file)


source = st.radio("Image source", ["FairFace sample", "Upload a photo"], horizontal=True)
c1, c2 = st.columns(2)
crop = c1.toggle("Crop and align the face (MTCNN)", value=True)
blur = c2.toggle("Blur the background")
result = None
try:
    if source == "FairFace sample":
        path = choose_fairface()
        if path is not None:
            with st.spinner("Running the model stage by stage…"):
                result = _inside(path, None, path, crop, blur, pipeline.model.sha256, pipeline)
    else:
        upload = st.file_uploader("A photo with a face", type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"])
        if upload is not None:
            data = upload.getvalue()
            with st.spinner("Running the model stage by stage…"):
                result = _inside(ui.image_key(data), data, None, crop, blur, pipeline.model.sha256, pipeline)
except ImageError as exc:
    st.error(f"**This image cannot be used.** {md(exc)}")

if result is not None:
    image, message, label, probability, stages = result
    if message:
        st.warning(message)
    left, right = st.columns([1, 4])
    left.image(image, caption=f"What the model sees ({image.shape[1]}×{image.shape[0]})", width="stretch")
    right.markdown(f"### The model says **{label}** ({probability:.0%} sure)")
    right.markdown(
        f"{len(stages)} stages. For each, the **{TOP} channels with the highest mean activation** for this image "
        "are shown, each on its own scale (yellow = strongest, dark blue = weakest). The grids get coarser as "
        "the network goes deeper: each cell of the last stage summarises a large patch of the face."
    )
    names = [s.name for s in stages]
    shown = st.multiselect("Stages", names, default=[names[i] for i in resolution_steps(stages)],
                           help="By default: the stem and the last stage at each resolution.")
    for stage in stages:
        if stage.name not in shown:
            continue
        channels, height, width = stage.shape
        st.markdown(f"**{stage.name}** · {channels} channels of {height}×{width}")
        st.image(image_grid(stage.maps, columns=TOP, tile_px=96), width="content",
                 caption="channels " + ", ".join(f"{c} (mean {m:.2f})"
                                                 for c, m in zip(stage.channels, stage.mean_activation)))

st.markdown("## The first layer's filters")
filters = first_layer_filters(pipeline.model)
st.caption(f"The {len(filters)} filters of the first convolution, each {filters.shape[1]}×{filters.shape[2]} "
           "pixels over red, green and blue, enlarged. Grey is a zero weight; colour shows which channel and "
           "direction a filter responds to (many early filters detect edges or colour contrasts).")
st.image(image_grid(filters, columns=16, tile_px=56), width="content")
