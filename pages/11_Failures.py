"""Where does it fail? Accuracy by image-quality slice (and by any other attribute of the data), alone and with race
and gender, worst first, each slice a link to its faces in the Gallery; and whether image quality explains a gap."""

import shlex

import pandas as pd
import streamlit as st

from faircam import wording
from faircam.audit import failures, groups
from faircam.charts import plots as charts
from faircam.config import MIN_GROUP_SIZE
from faircam.dashboard import ui
from faircam.tasks import Task
from faircam.text import md

ui.page_setup("Where does it fail?", "🔦")
GALLERY = "pages/7_Gallery.py"
WORST = 10

cache = ui.evaluation_or_stop()
task = ui.task_or_stop(cache)
spec = cache.task(task)
if cache.mapping_note(task):
    st.info(md(cache.mapping_note(task)))
attributes = failures.failure_attributes(cache.attributes)
if not any(a.source == "quality" for a in attributes):
    st.info("This evaluation has no image-quality columns (face size, sharpness, brightness, head turn, detector "
            f"confidence). Add them from the images alone, without running the model again: "
            f"{md(f'faircam add-quality {shlex.quote(str(ui.cache_path_for(ui.selected_model())))}', code=True)}.")
    if not attributes:
        st.stop()
st.caption(
    f"Often a model fails not for a group of people but for a kind of picture: small, blurry, dark or turned faces, "
    f"or faces the detector was unsure of. Each slice's {spec.title} accuracy carries its n and its "
    f"{groups.INTERVALS['proportion']}; ★ marks a slice whose accuracy stands apart from the other images' "
    f"(two-proportion z-test) after {groups.MULTIPLE_COMPARISONS} over every slice on this page. Slices under "
    f"{MIN_GROUP_SIZE} images are marked ⚠ small, listed last and not tested."
    + (f" {spec.caveat}" if spec.caveat else "")
)


@st.cache_data(show_spinner="Counting every slice…", max_entries=8)
def all_slices(rows: pd.DataFrame, task: Task) -> pd.DataFrame:
    return failures.slices(rows, attributes, task)


def gallery_link(row: pd.Series, label: str) -> None:
    """A link to the Gallery showing this slice's faces (its mistakes first)."""
    ui.page_link(GALLERY, label, "🖼️", filter=[f"{column}={value}" for column, value in row["filters"].items()])


def slice_line(row: pd.Series) -> str:
    interval = groups.with_interval(row["accuracy"], row["accuracy_low"], row["accuracy_high"])
    mark = " ★" if row["flagged"] else ""
    return (f"**{md(failures.slice_name(row['grouping'], row['group']))}**{mark}: {interval}, n={row['n']:,} "
            f"(the other images: {wording.percent(row['rest'])})")


columns = list(dict.fromkeys([a.column for a in attributes] + [c for c in failures.CROSSED if c in cache.rows]
                             + [spec.truth, spec.pred, spec.correct]))
found = all_slices(cache.rows[columns], spec)

st.markdown(f"## The worst slices (up to {WORST})")
worst = found[~found["small"]].head(WORST)
if worst.empty:
    st.info(f"No slice has {MIN_GROUP_SIZE} or more images.")
for _, row in worst.iterrows():
    text, link = st.columns([5, 1])
    text.markdown(slice_line(row))
    with link:
        gallery_link(row, "its faces")
with st.expander("Every slice"):
    ui.table(failures.slices_table(found), hide_index=True, static=True)

st.markdown("## Does image quality explain a group gap?")
explained = failures.quality_explanations(cache.rows, attributes, groups.groupings(cache.rows, cache.attributes),
                                          task)
if not explained:
    st.info("No group gap to explain here: fewer than two groups are large enough, or the cache has no "
            "image-quality columns.")
for sentence in failures.explanation_words(explained):
    st.markdown(f"- {md(sentence)}")
st.caption(f"Standardised gap: each group's accuracy is recomputed as if its photos had the whole set's mix of the "
           f"slice's levels (each level's accuracy within the group, weighted by the level's share of all images), "
           f"and the gap between those accuracies gets its {groups.INTERVALS['difference']}. A slice that explains "
           "a gap is a finding about the photos as much as about the model: the same people photographed better "
           "might be classified as well as anyone.")

st.markdown("## Slice by slice")
tab, name = ui.open_tab([a.name for a in attributes], key="failure-slice")
attribute = next(a for a in attributes if a.name == name)
with tab:
    source = "image quality, measured on each face" if attribute.source == "quality" else "a column of the label file"
    st.caption(md(f"{attribute.name}: {source}."))
    frame = groups.GroupFrame(cache.rows, [attribute.column], task=spec)
    table = frame.shown()
    ui.chart(charts.interval_dots(table, "accuracy", title="accuracy"), width="stretch",
             key=f"slice-{attribute.name}")
    gap = frame.gap("accuracy gap")
    if gap.defined:
        st.markdown(f"Gap between the best and worst {md(attribute.name)}: "
                    f"**{groups.gap_with_interval(gap.value, gap.low, gap.high)}** (best {md(gap.side('highest'))}; "
                    f"worst {md(gap.side('lowest'))}).")
    for _, row in found[found["grouping"] == attribute.name].iterrows():
        text, link = st.columns([5, 1])
        text.markdown(slice_line(row))
        with link:
            gallery_link(row, "its faces")
