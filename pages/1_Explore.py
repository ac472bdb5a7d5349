"""Explore: one face, its prediction, and where each CAM method says the model looked."""

import pandas as pd
import streamlit as st

import image_source
import ui
from faircam import wording
from faircam.charts.figures import draw_face, explanation_figure, map_overlay, png_bytes
from faircam.vision.focus import REGIONS

ui.page_setup("Explore a face")
# Loaded on opening (the sidebar no longer does it): a broken model is reported at once, and picks are quick.
ui.pipeline()

st.caption(
    "Pick a FairFace face or upload a photo. faircam shows the model's prediction and four class activation "
    "maps (CAMs): red marks the image areas that pushed the model towards its answer."
)

choice, result = image_source.choose(from_link=True)
truth = None if choice is None else choice.truth
explanation = None if choice is None else choice.explain()

if explanation is not None:
    with result:
        view = explanation.view
        image_source.face_selector(choice, view.faces_found)
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
            tile.image(map_overlay(explanation, method), width="stretch",
                       caption=wording.share_caption(method, explanation.focus[method]["face"],
                                                     explanation.chance["face"]))
        if view.invalid_share > 0:
            st.caption(f"The hatched grey area ({view.invalid_share:.0%} of the view) lies beyond the photo's edge: "
                       "the model sees flat grey there, and no score counts it.")

        st.markdown("#### Where the attention falls")
        st.caption(f"Share of each map's total heat per region. {wording.FOCUS_DEFINITION} {wording.SUM_RULE}")
        if view.face is None:
            st.info("No face was found, so every share counts as background.")
        table = pd.DataFrame(explanation.focus).T
        chance = pd.DataFrame([explanation.chance], index=[wording.CHANCE])
        shares = pd.concat([table, chance])[["face", *REGIONS]].rename(columns={"face": wording.FACE_COLUMN})
        ui.table(shares.style.format("{:.0%}"), width="stretch")
        # Drawn on click only: rendering it on every rerun would cost more than the maps themselves.
        st.download_button("⬇️ Download the figure (PNG)", lambda: png_bytes(explanation_figure(explanation)),
                           file_name="faircam-explanation.png", mime="image/png")
