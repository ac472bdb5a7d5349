"""Compare models: the same face through several models, and their evaluations side by side."""

import pandas as pd
import streamlit as st

from faircam import wording
from faircam.audit import compare, groups
from faircam.charts.figures import draw_face, map_overlay
from faircam.config import MIN_GROUP_SIZE
from faircam.dashboard import image_source, ui
from faircam.models import registry
from faircam.tasks import TASKS
from faircam.text import md

ui.page_setup("Compare models", "🆚")
entries = registry.entries()
task = ui.selected_task()
TITLE = TASKS[task].title
st.caption("The same faces through two or more face classifiers: what each one sees, what it answers, where "
           "its maps look (four CAMs; occlusion for a black box), and how accurate it is for each group on the "
           "same validation images.")
# The first two models, and the one chosen in the sidebar (a brought model is listed after the built-in ones).
default = list(dict.fromkeys([*list(entries)[:2], ui.selected_model(), *entries]))[:3]
chosen = st.multiselect("Models to compare", list(entries), default=default,
                        format_func=lambda n: f"{n}: {entries[n].title}")
if len(chosen) < 2:
    st.info("Pick two or more models to compare.")
    st.stop()


st.markdown("## The same face through each model")
if TASKS[task].caveat:
    st.caption(f"Each model's {TITLE} answer and maps (the task chosen in the sidebar). {TASKS[task].caveat}")
choice, result = image_source.choose(
    from_link=True,
    crop_help="Cut the face out the way FairFace cut its faces. The other models always get the aligned "
              "face they were trained on.")
truth = None if choice is None else choice.truth

focus_rows = {}
if choice is not None:
    with result:
        selector_drawn = False
        for name in chosen:
            if task not in ui.model_tasks(name):
                st.markdown(f"**{md(name)}** predicts {', '.join(ui.model_tasks(name))} only: it has no {TITLE} "
                            "answer or maps.")
                continue
            if ui.answers_only(name):
                st.markdown(f"**{md(name)}** is a table of answers: it has no answer or maps for this face.")
                continue
            explanation = choice.explain(model=name, task=task)
            if explanation is None:
                break
            ui.map_kind_note(explanation.maps)
            view = explanation.view
            if not selector_drawn:
                # Every model sees the same MTCNN detections, so the first model's count serves them all.
                image_source.face_selector(choice, view.faces_found)
                selector_drawn = True
            label = md(groups.label(explanation.label))
            verdict = (f"#### {md(name)}: no face found: this answer is about the whole picture and means little"
                       if view.face is None else
                       f"#### {md(name)} says **{label}** ({explanation.probability:.0%} sure)")
            if truth is not None and truth.get(task):
                verdict += (f" — FairFace label: {md(groups.label(truth[task]))} "
                            f"{'✅' if truth[task] == explanation.label else '❌'}")
            st.markdown(verdict)
            if view.message:
                st.warning(view.message)
            tiles = st.columns(1 + len(explanation.maps))
            size = view.image.shape[0]
            tiles[0].image(draw_face(view.image, explanation), width="stretch",
                           caption=f"What {md(name)} sees ({size}×{size})")
            for tile, method in zip(tiles[1:], explanation.maps):
                tile.image(map_overlay(explanation, method), width="stretch",
                           caption=wording.share_caption(method, explanation.focus[method]["face"],
                                                         explanation.chance["face"]))
            focus_rows[name] = {**{m: focus["face"] for m, focus in explanation.focus.items()},
                                wording.CHANCE: explanation.chance["face"]}
        if focus_rows:
            st.markdown(f"#### Each map's {wording.FOCUS_SCORE}")
            st.caption(f"{wording.FOCUS_DEFINITION} The models crop differently, so compare each model's focus "
                       "scores with its own chance level.")
            ui.table(pd.DataFrame(focus_rows).T, "{:.0%}", static=True)

st.markdown("## Evaluations side by side")
caches, missing = ui.available_evaluations(chosen)
for name in missing:
    st.warning(f"**{md(name)}** has no evaluation cache yet: {ui.evaluate_hint(name)}")
lacking = [name for name, cache in caches.items() if task not in cache.tasks]
if lacking:
    st.caption(f"Left out: {md(', '.join(lacking))}, whose evaluation holds no {TITLE} predictions.")
    caches = {name: cache for name, cache in caches.items() if name not in lacking}
if len(caches) < 2:
    st.info(f"Two or more models evaluated on {TITLE} are needed for this table.")
    st.stop()

rows = compare.shared_rows(caches)
n = len(next(iter(rows.values())))
if n == 0:
    st.error("These caches share no image: evaluate the models on the same split and folder.")
    st.stop()
held = ", ".join(f"{md(name)} {len(cache.rows):,}" for name, cache in caches.items())
st.caption(f"{TITLE.capitalize()} accuracy, computed by `faircam evaluate --model NAME` and read from each "
           "model's cache. Compared on the "
           f"**{n:,}** images every cache holds ({held}). Gaps are best minus worst group among groups of at "
           f"least {MIN_GROUP_SIZE} images.")
for name, cache in caches.items():
    if cache.mapping_note(task):
        st.info(f"**{md(name)}**: {md(cache.mapping_note(task))}")
specs = {name: cache.task(task) for name, cache in caches.items()}
table = compare.summary(rows, specs)
ui.table(compare.summary_shown(table), hide_index=True, lead=1)

first = next(iter(caches.values()))
tab, name, by = ui.grouping_tab(groups.groupings(first.rows, first.attributes), key="compare-grouping")
with tab:
    side = compare.group_table(rows, by, specs)
    ui.table(pd.DataFrame({
        name: [g + groups.small_mark(small) for g, small in side[["group", "small"]].to_numpy()],
        **{model: [groups.with_interval(*v) + f", n={n:,.0f}" if pd.notna(n) else "–" for *v, n in
                   side[[f"{model} accuracy", f"{model} accuracy_low", f"{model} accuracy_high",
                         f"{model} n"]].to_numpy()] for model in caches},
    }), hide_index=True, lead=1)
    st.caption(f"Each model's {TITLE} accuracy with its {groups.INTERVALS['proportion']} and n, the number of images.")
    if side["small"].any():
        st.caption(f"⚠ small marks groups under {MIN_GROUP_SIZE} images in some model: read them as "
                   "anecdotes, not rankings.")
