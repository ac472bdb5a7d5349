"""Gallery: the faces the model got wrong, from the cached evaluation, filtered by group and sorted by confidence."""

import math

import streamlit as st

import image_source
import ui
from faircam.audit import groups
from faircam.config import settings
from faircam.data.fairface import AGES, GENDERS, RACES, filter_rows
from faircam.text import md

ui.page_setup("Gallery of mistakes", "🖼️")
PER_PAGE = 24
COLUMNS = 6

cache = ui.evaluation_or_stop()
st.caption(
    "Every face the model classified wrongly in the cached evaluation, with FairFace's label, the model's answer "
    "and how sure it was. Read from the cache: the model is not run here. Looking at mistakes shows *what kind* of "
    "faces go wrong (children, profiles, hats, dim light…); the Fairness page says *how often*, per group."
)

c1, c2, c3, c4 = st.columns([2, 1, 2, 2])
races = c1.multiselect("Race", RACES, placeholder="all", format_func=groups.label)
genders = c2.multiselect("FairFace label", GENDERS, placeholder="all")
ages = c3.multiselect("Age", AGES, placeholder="all")
order = c4.radio("Sort by the model's confidence", ["most confident first", "least confident first"],
                 help="Confidence is the probability the model gave its (wrong) answer. A confident mistake is "
                      "more worrying than a hesitant one.")

chosen = filter_rows(cache.rows, races, genders, ages)
wrong = chosen[~chosen["correct"]].sort_values("prob", ascending=order == "least confident first", kind="stable")
if chosen.empty:
    st.warning("No image matches these filters.")
    st.stop()
st.markdown(f"**{len(wrong):,} mistakes** among **{len(chosen):,}** images matching the filters "
            f"({len(wrong) / len(chosen):.1%} wrong).")
if wrong.empty:
    st.success("The model got every one of these images right.")
    st.stop()

pages = math.ceil(len(wrong) / PER_PAGE)
page = st.columns([1, 4])[0].number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1,
                                          step=1) if pages > 1 else 1
shown = wrong.iloc[(page - 1) * PER_PAGE: page * PER_PAGE]

data = settings().data_dir
if data is None or not data.is_dir():
    st.warning(
        "**The FairFace images are not here**, so the faces cannot be shown: set `FAIRCAM_DATA` to the FairFace "
        f"folder the evaluation used ({md(cache.meta['data']['root'], code=True)}), or run `faircam fetch-fairface`. "
        "The mistakes are listed below instead."
    )
    listed = shown[["file", "race", "age", "gender", "pred", "prob"]].assign(race=shown["race"].map(groups.label))
    listed = listed.rename(columns={"gender": "label", "pred": "model says", "prob": "confidence"})
    ui.table(listed.style.format({"confidence": "{:.0%}"}), hide_index=True, width="stretch")
    st.stop()

missing = 0
columns = st.columns(COLUMNS)
for i, (_, row) in enumerate(shown.iterrows()):
    with columns[i % COLUMNS]:
        image = ui.thumbnail(data, row["file"])
        if image is not None:
            st.image(image, width="stretch")
        else:
            missing += 1
            st.info(f"{md(row['file'], code=True)} is missing")
        st.markdown(f"Label **{md(row['gender'])}** · model **{md(row['pred'])}** ({row['prob']:.0%} sure)")
        st.caption(f"{md(groups.label(row['race']))}, age {md(row['age'])} · {md(row['file'], code=True)}")
        image_source.explore_link(row["file"], label="Its maps on Explore")
if missing:
    st.warning(f"{missing} of these images are not in {md(data, code=True)}: is it the folder the evaluation used "
               f"({md(cache.meta['data']['root'], code=True)})?")
