"""Explore: one face, every answer of the model, and where each CAM method says it looked, for any class."""

import pandas as pd
import streamlit as st

from faircam import wording
from faircam.audit import groups
from faircam.charts.figures import colour_bar, draw_face, explanation_figure, map_overlay, png_bytes, raw_map
from faircam.config import LOW_DETAIL_SIDE
from faircam.dashboard import image_source, ui
from faircam.evaluation import agreement
from faircam.tasks import DEFAULT_TASK, TASKS
from faircam.text import md
from faircam.vision.focus import REGIONS

ui.page_setup("Explore a face")
# Loaded on opening (the sidebar no longer does it): a broken model is reported at once, and picks are quick.
pipeline = ui.pipeline()
task = ui.selected_task()
TITLE = TASKS[task].title
# Race and age answers: the three likeliest classes (gender has two: its answer says both).
TOP = 3
# Per image and task, the class the person chose to explain; absent, the maps explain the model's answer
# (and follow it when a toggle changes the answer).
TARGETS = "explore_targets"
# Whether the raw maps are shown: a plain key (a widget's key is dropped on other pages), as the image's toggles.
RAW = "explore_raw"

# A black box has no layer to explain: its maps are occlusion maps (`faircam.vision.occlusion`), named as such.
maps = "four class activation maps (CAMs)" if pipeline.model.cam_layer is not None else "its occlusion maps"
st.caption(
    f"Pick a FairFace face or upload a photo. faircam shows the model's answers and {maps}: red marks the image "
    "areas that pushed the model towards the class the maps explain, its own answer unless you pick another."
)


def named(cls: str) -> str:
    """A class as people read it ("Latino Hispanic"), escaped for Markdown."""
    return md(groups.label(cls))


def answer(name: str, probs: dict[str, float], truth: dict[str, str] | None) -> str:
    """One task's answer in Markdown: its likeliest classes with their probabilities, and FairFace's label."""
    # A binary answer's runner-up is one minus it: only the answer is worth a line.
    ranked = sorted(probs.items(), key=lambda item: -item[1])[:1 if TASKS[name].binary else TOP]
    lines = [f"**{named(cls)}** {p:.0%}" if i == 0 else f"{named(cls)} {p:.0%}" for i, (cls, p) in enumerate(ranked)]
    if truth is not None and truth.get(name):
        lines.append(f"*FairFace label: {named(truth[name])}*")
    return f"**{TASKS[name].title.capitalize()}**  \n" + "  \n".join(lines)


def _keep_target(slot: str) -> None:
    st.session_state.setdefault(TARGETS, {})[slot] = st.session_state["_explore_target"]


def _keep_raw() -> None:
    st.session_state[RAW] = st.session_state["_explore_raw"]


choice, result = image_source.choose(from_link=True)
truth = None if choice is None else choice.truth
predicted = None if choice is None else choice.explain(task=task)
if predicted is None:
    ui.link("target", None)

if predicted is not None:
    ui.map_kind_note(predicted.maps)
    with result:
        view = predicted.view
        image_source.face_selector(choice, view.faces_found)
        if view.message:
            st.warning(view.message)
        if view.detail < LOW_DETAIL_SIDE:
            st.warning(f"Low resolution: the {'face' if view.face is not None else 'photo'} is only about "
                       f"{view.detail:.0f} pixels across, enlarged to the model's input, so the answer below rests "
                       "on little detail.")

        st.divider()
        said = named(predicted.label)
        if view.face is None:
            verdict = "### No face found: this answer is about the whole picture and means little"
        else:
            says = "The model says" if task == DEFAULT_TASK else f"{TITLE.capitalize()}: the model says"
            verdict = f"### {says} **{said}** ({predicted.probability:.0%} sure)"
        if truth is not None and truth.get(task):
            correct = truth[task] == predicted.label
            verdict += f" — FairFace label: {named(truth[task])} {'✅' if correct else '❌'}"
        st.markdown(verdict)

        if len(predicted.answers) > 1:
            st.markdown("#### All of the model's answers")
            for column, (name, probs) in zip(st.columns(len(predicted.answers)), predicted.answers.items()):
                column.markdown(answer(name, probs, truth))
            st.caption("Race and age answers are shown as subjects of the audit, to see how the model behaves, not "
                       "as facts about a person: a photo does not tell anyone's race or age, and FairFace's labels "
                       "are what annotators guessed from the same photo.")

        classes = list(predicted.probs)
        slot = f"{choice.key}|{task}"
        if ui.arrived("target") in classes:
            st.session_state.setdefault(TARGETS, {})[slot] = ui.arrived("target")
        st.session_state["_explore_target"] = st.session_state.get(TARGETS, {}).get(slot, predicted.label)
        pick, raw_toggle = st.columns([2, 1], vertical_alignment="bottom")
        target = pick.selectbox(
            f"The {TITLE} class the maps explain", classes, key="_explore_target", on_change=_keep_target, args=(slot,),
            format_func=lambda c: groups.label(c) + (" (the model's answer)" if c == predicted.label else ""),
            help="The maps show which image areas pushed the model towards this class: its own answer, or "
                 "another, to ask why it did not say that.")
        st.session_state["_explore_raw"] = st.session_state.get(RAW, False)
        raw = raw_toggle.toggle("Show the raw maps", key="_explore_raw", on_change=_keep_raw,
                                help="Each map alone, in its colours, below its overlay on the picture.")
        ui.link("target", None if target == predicted.label else target)
        explanation = predicted if target == predicted.label else choice.explain(task=task, target=target)
        if explanation is None:
            st.stop()
        if explanation.target == predicted.label:
            st.markdown(f"The maps explain **{named(explanation.target)}** (the model's answer).")
        else:
            st.markdown(f"The maps explain **{named(explanation.target)}** (not the model's answer: it says "
                        f"{said}, and gives {named(explanation.target)} "
                        f"{predicted.probs[explanation.target]:.0%}).")

        tiles = st.columns(1 + len(explanation.maps))
        tiles[0].image(draw_face(view.image, explanation), caption="What the model sees (face box, landmarks)",
                       width="stretch")
        checks = agreement.map_checks(explanation, predicted)
        for tile, method in zip(tiles[1:], explanation.maps):
            # Without a face there is no focus score: "0% (chance level 0%)" under every map would say nothing.
            tile.image(map_overlay(explanation, method), width="stretch",
                       caption=method if view.face is None else wording.share_caption(
                           method, explanation.focus[method]["face"], explanation.chance["face"]))
            if checks[method].words():
                tile.warning(f"Read with care: {checks[method].words()}.", icon="⚠️")
            if raw:
                tile.image(raw_map(explanation, method), width="stretch", caption=f"{method}: the map alone")
        if len(explanation.maps) > 1:  # a black box has one map (occlusion): nothing to agree with
            agree = agreement.image_agreement(explanation.maps)
            st.markdown(f"**The {len(explanation.maps)} maps agree at {agree:.0%}**: "
                        f"{agreement.agreement_words(agree)}.")
        bar, ranges = st.columns([1, 2], vertical_alignment="center")
        # At its own size, so its numbers stay legible however narrow the columns above are.
        bar.image(colour_bar(), width="content")
        ranges.caption("Raw values before stretching to 0–1: " + ", ".join(
            f"{method} {low:.3g}–{high:.3g}" for method, (low, high) in explanation.raw_ranges.items()))
        st.caption(f"**Blue**: little or no weight toward {named(explanation.target)}; **red**: the strongest. "
                   "Each map is stretched to 0–1 on its own image, so its colours compare areas of one map, not "
                   "one map with another: the raw values say how much there was to stretch."
                   + (" Agreement is the share of heat two maps put in the same places (their histogram "
                      "intersection), averaged over every pair." if len(explanation.maps) > 1 else ""))
        if view.invalid_share > 0:
            st.caption(f"The hatched grey area ({wording.small_share(view.invalid_share)} of the view) lies beyond "
                       "the photo's edge: the model sees flat grey there, and no score counts it.")

        st.markdown("#### Where the attention falls")
        st.caption(f"Share of each map's total heat per region. {wording.FOCUS_DEFINITION} {wording.SUM_RULE}")
        if view.face is None:
            st.info("No face was found, so every share counts as background.")
        table = pd.DataFrame(explanation.focus).T
        chance = pd.DataFrame([explanation.chance], index=[wording.CHANCE])
        shares = pd.concat([table, chance])[["face", *REGIONS]].rename(columns={"face": wording.FACE_COLUMN})
        ui.table(shares, "{:.0%}", static=True)
        # Drawn on click only: rendering it on every rerun would cost more than the maps themselves.
        st.download_button("⬇️ Download the figure (PNG)", lambda: png_bytes(explanation_figure(explanation)),
                           file_name="faircam-explanation.png", mime="image/png")
