"""Inside the network: what each stage of the classifier computes for one face, and its first filters."""

import numpy as np
import streamlit as st

from faircam.audit import groups
from faircam.dashboard import image_source, ui
from faircam.errors import ImageError
from faircam.tasks import DEFAULT_TASK, TASKS
from faircam.text import md
from faircam.vision.explain import Pipeline
from faircam.vision.inside import StageMaps, feature_maps, first_layer_filters, image_grid, resolution_steps

ui.page_setup("Inside the network", "🧠")
pipeline = ui.pipeline()
if pipeline.model.cam_layer is None:
    st.info(f"{md(pipeline.model.name)} runs as a black box (onnxruntime): faircam cannot see its layers, so there is "
            "nothing to show inside it. Its maps elsewhere are occlusion maps, not CAMs.")
    st.stop()
task = ui.selected_task()
TOP = 8

st.caption(
    "The classifier is a stack of stages. Each turns the picture into many **feature maps** (channels): small "
    "grids that light up where the stage finds a pattern. Early stages see edges and colours at high resolution; "
    "late stages see whole face parts on a coarse grid. The CAMs are computed from the stage named CAM layer."
)


@st.cache_data(show_spinner=False, max_entries=16)
def _inside(key: str, _choice: image_source.Choice, model_sha: str, task: str,
            _pipeline: Pipeline) -> tuple[np.ndarray, str, int, str, float, list[StageMaps]]:
    # `key` (the image, its toggles and face) and `model_sha` stand for the choice and the model, which
    # Streamlit then need not hash themselves.
    view = _pipeline.view(_choice.image(), crop=_choice.crop, blur=_choice.blur, face_index=_choice.face)
    model = _pipeline.model.for_task(task)
    probs = model.predict_proba([view.image])[0]
    best = int(probs.argmax())
    stages = feature_maps(model, view.image, top=TOP)
    return view.image, view.message, view.faces_found, model.classes[best], float(probs[best]), stages


choice, result_slot = image_source.choose(from_link=True)
result = None
if choice is not None:
    try:
        with st.spinner("Running the model stage by stage…"):
            result = _inside(f"{choice.key}|{choice.crop}|{choice.blur}|{choice.face}", choice,
                             pipeline.model.sha256, task, pipeline)
    except ImageError as exc:
        st.error(f"**This image cannot be used.** {md(exc)}")

if result is not None:
    # Drawn above the picker grid, like Explore's result.
    with result_slot:
        image, message, faces_found, label, probability, stages = result
        image_source.face_selector(choice, faces_found)
        if message:
            st.warning(message)
        left, right = st.columns([1, 4])
        left.image(image, caption=f"What the model sees ({image.shape[1]}×{image.shape[0]})", width="stretch")
        says = "The model says" if task == DEFAULT_TASK else f"{TASKS[task].title.capitalize()}: the model says"
        right.markdown(f"### {says} **{md(groups.label(label))}** ({probability:.0%} sure)")
        if TASKS[task].caveat:
            right.caption(TASKS[task].caveat)
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
