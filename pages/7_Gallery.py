"""Gallery: the faces the model got wrong (or right) for the selected task, from the cached evaluation, filtered by
group and by kind of mistake, sorted by confidence."""

import math

import pandas as pd
import streamlit as st

from faircam.audit import explanations as audit
from faircam.audit import groups
from faircam.config import settings
from faircam.dashboard import image_source, ui
from faircam.data.fairface import AGES, GENDERS, RACES, filter_rows
from faircam.tasks import DEFAULT_TASK
from faircam.text import md

ui.page_setup("Gallery of mistakes", "🖼️")
PER_PAGE = 24
FILTER = "filter"
COLUMNS = 6
# The selector lists this many kinds of mistake, the most frequent (race has 42 possible kinds, age 72).
CONFUSIONS = 12
# What a tile's caption says besides the task's own label: the other two FairFace labels.
DESCRIBE = {"race": groups.label, "gender": str, "age": lambda age: f"age {age}"}

cache = ui.evaluation_or_stop()
ui.map_kind_note(cache.methods)
task = ui.task_or_stop(cache, "predictions")
spec = cache.task(task)
prob = spec.prob
if cache.mapping_note(task):
    st.info(md(cache.mapping_note(task)))
st.caption(
    f"The faces whose {spec.title} the model got wrong in the cached evaluation, with FairFace's label, the "
    "model's answer and how sure it was. Read from the cache: the model is not run here. Looking at mistakes shows "
    "*what kind* of faces go wrong (children, profiles, hats, dim light…); the Fairness page says *how often*, "
    "per group."
)
if spec.caveat:
    st.caption(f"The model's {spec.title} guesses are shown only as a subject of the audit (how often, and for whom, "
               "such a guess goes wrong), not as something a face can tell.")

# A link `?filter=face size=small face&filter=race=Black` (the "Where does it fail?" page's) opens with those filters.
options = {"race": RACES, "gender": GENDERS, "age": AGES, **{a.column: a.levels for a in cache.attributes}}
for item in st.query_params.get_all(FILTER):
    column, _, value = item.partition("=")
    if value not in options.get(column, ()):
        st.warning(f"This link filters by {md(item, code=True)}, which this evaluation does not have.")
        continue
    st.session_state[f"gallery-{column}"] = [*st.session_state.get(f"gallery-{column}", []), value]
if FILTER in st.query_params:
    del st.query_params[FILTER]

c1, c2, c3, c4 = st.columns([2, 1, 2, 2])
label_names = {"race": "Race", "gender": "Gender", "age": "Age"}
label_names[task] = "FairFace label" if task == DEFAULT_TASK else f"{label_names[task]} (FairFace label)"
races = c1.multiselect(label_names["race"], RACES, placeholder="all", format_func=groups.label, key="gallery-race")
genders = c2.multiselect(label_names["gender"], GENDERS, placeholder="all", key="gallery-gender")
ages = c3.multiselect(label_names["age"], AGES, placeholder="all", key="gallery-age")
order = c4.radio("Sort by the model's confidence", ["most confident first", "least confident first"],
                 help="Confidence is the probability the model gave its answer. A confident mistake is "
                      "more worrying than a hesitant one.")
others = {}
if cache.attributes:
    chosen_before = any(st.session_state.get(f"gallery-{a.column}") for a in cache.attributes)
    with st.expander("More filters: " + md(", ".join(a.name for a in cache.attributes)), expanded=chosen_before):
        columns = st.columns(3)
        for i, attribute in enumerate(cache.attributes):
            others[attribute.column] = columns[i % 3].multiselect(
                md(attribute.name), list(attribute.levels), placeholder="all", key=f"gallery-{attribute.column}")

chosen = filter_rows(cache.rows, races, genders, ages, others)
if chosen.empty:
    st.warning("No image matches these filters.")
    st.stop()
kinds = audit.confusions(chosen, spec).head(CONFUSIONS)
wrong = audit.select_faces(chosen, spec, "wrong")
counts = {"wrong": len(wrong), "correct": len(chosen) - len(wrong)} | {
    (k.truth, k.pred): k.n for k in kinds.itertuples()}
names = {"wrong": "every mistake", "correct": "every correct answer"} | {
    (k.truth, k.pred): k.name for k in kinds.itertuples()}
show = st.selectbox(
    "Show", ["wrong", *[(k.truth, k.pred) for k in kinds.itertuples()], "correct"],
    format_func=lambda s: f"{names[s]} ({counts[s]:,})",
    help=f"Every {spec.title} mistake, one kind of mistake (the {CONFUSIONS} most frequent among the images "
         "matching the filters, with their counts), or the faces the model got right.")

faces = audit.select_faces(chosen, spec, show).sort_values(prob, ascending=order == "least confident first",
                                                           kind="stable")
share = f"{len(faces) / len(chosen):.1%}"
if show == "wrong":
    st.markdown(f"**{len(faces):,} mistakes** among **{len(chosen):,}** images matching the filters ({share} wrong).")
elif show == "correct":
    st.markdown(f"**{len(faces):,} correct answers** among **{len(chosen):,}** images matching the filters "
                f"({share} right).")
else:
    st.markdown(f"**{md(names[show])}: {len(faces):,} images** among **{len(chosen):,}** matching the filters "
                f"({share}; {len(wrong):,} mistakes in all).")
if faces.empty:
    if show == "correct":
        st.info("The model got none of these images right.")
    else:
        st.success("The model got every one of these images right.")
    st.stop()

pages = math.ceil(len(faces) / PER_PAGE)
page = st.columns([1, 4])[0].number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1,
                                          step=1) if pages > 1 else 1
shown = faces.iloc[(page - 1) * PER_PAGE: page * PER_PAGE]
others = [c for c in DESCRIBE if c != spec.truth]

data = settings().data_dir
if data is None or not data.is_dir():
    st.warning(
        "**The FairFace images are not here**, so the faces cannot be shown: set `FAIRCAM_DATA` to the FairFace "
        f"folder the evaluation used ({md(cache.data_meta['root'], code=True)}), or run `faircam fetch-fairface`. "
        "The images are listed below instead."
    )
    listed = shown[["file", *others, spec.truth, spec.pred, prob]].copy()
    for column in ("race", spec.truth, spec.pred):
        listed[column] = listed[column].map(groups.label)
    listed.columns = ["file", *others, "label", "model says", "confidence"]
    ui.table(listed, {"confidence": "{:.0%}"}, na_rep="–", hide_index=True, width="stretch")
    st.stop()

missing = 0
columns = st.columns(COLUMNS)
for i, (_, row) in enumerate(shown.iterrows()):
    with columns[i % COLUMNS]:
        image = ui.thumbnail(data, row["file"])
        if image is None:
            missing += 1
            st.info(f"{md(row['file'], code=True)} is missing")
        else:
            st.image(image, width="stretch")
        # A table of answers may give no probabilities.
        sure = f" ({row[prob]:.0%} sure)" if pd.notna(row[prob]) else ""
        st.markdown(f"Label **{md(groups.label(row[spec.truth]))}** · model **{md(groups.label(row[spec.pred]))}**"
                    + sure)
        st.caption(f"{', '.join(md(DESCRIBE[c](row[c])) for c in others)} · {md(row['file'], code=True)}")
        if image is not None:  # a file the data folder lacks gets no link (the cache names anything)
            image_source.explore_link(row["file"], label="Its maps on Explore")
if missing:
    st.warning(f"{missing} of these images are not in {md(data, code=True)}: is it the folder the evaluation used "
               f"({md(cache.data_meta['root'], code=True)})?")
