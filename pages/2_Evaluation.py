"""Evaluation: how often the model is right for the selected task, for whom it fails, from the cached evaluation."""

import pandas as pd
import streamlit as st

from faircam import wording
from faircam.audit import accuracy, groups
from faircam.charts import plots as charts
from faircam.config import MIN_GROUP_SIZE
from faircam.dashboard import ui
from faircam.data.fairface import AGES, GENDERS, RACES, filter_rows
from faircam.evaluation.cache import focus_column
from faircam.tasks import DEFAULT_TASK, TASKS
from faircam.text import md
from faircam.vision.focus import REGIONS

ui.page_setup("Evaluation", "📊")

cache = ui.evaluation_or_stop()
task = ui.task_or_stop(cache)
spec = cache.task(task)

data_meta = cache.data_meta
model = ui.checkpoint()
st.caption(
    f"Model **{md(cache.model_meta['name'])}** on {ui.evaluated_images(cache)} · computed {md(cache.created)}. "
    "Read from the cache: nothing is "
    "recomputed here."
    + (f" {md(cache.answers_note)}" if cache.answers_note else "")
    + (f" Task: **{spec.title}**." if task != DEFAULT_TASK else "")
)
if spec.caveat:
    st.caption(spec.caveat)
if cache.mapping_note(task):
    st.info(md(cache.mapping_note(task)))
if cache.model_meta["sha256"] != model["sha256"]:
    st.warning("This evaluation was computed for a different model file than the one loaded now. "
               f"Run {ui.evaluate_hint()} to refresh it.")
    ui.offer_recompute(ui.cache_path_for(ui.selected_model()), data_meta["split"])
left_out = ui.left_out_rows(cache)
if left_out:
    st.info(f"{left_out} They are not counted.")

with st.expander("Filter the images counted", expanded=False):
    c1, c2, c3 = st.columns(3)
    races = c1.multiselect("Race", RACES, placeholder="all", format_func=groups.label)
    genders = c2.multiselect("Gender", GENDERS, placeholder="all")
    ages = c3.multiselect("Age", AGES, placeholder="all")

rows = filter_rows(cache.rows, races, genders, ages)
if rows.empty:
    st.warning("No image matches these filters.")
    st.stop()

scores = accuracy.overall_scores(rows, spec)
overall = scores.loc["all"]
within = groups.group_table(rows, [], ["within_one"], task=spec).iloc[0] if spec.ordinal else None
columns = st.columns(4 if spec.ordinal else 3)
columns[0].metric("Accuracy", f"{overall['accuracy']:.1%}",
                  help=f"Share of images whose predicted {spec.title} matches the label.")
columns[1].metric("95% interval", wording.percent_range(overall["accuracy_low"], overall["accuracy_high"], digits=1),
                  help=f"{groups.INTERVALS['proportion']} of the accuracy.")
columns[2].metric("Images", f"{int(overall['n']):,}")
if within is not None:
    columns[3].metric("Within one bin", f"{within['within_one']:.1%}",
                      help="Share of images put in the right age bin or a neighbouring one, with its "
                           f"{groups.INTERVALS['proportion']}: "
                           f"{wording.percent_range(within['within_one_low'], within['within_one_high'], digits=1)}.")
if overall["n"] < MIN_GROUP_SIZE:
    st.warning(f"Only {int(overall['n'])} images: too few for firm conclusions.")


def class_cell(value: float, low: float, high: float, n: int) -> str:
    return groups.with_interval(value, low, high) if n else "– (none)"


def per_class() -> None:
    st.markdown("#### Per class")
    table = scores.drop(index="all")
    ui.table(pd.DataFrame({
        "class": [groups.label(c) for c in table.index],
        "images (n)": table["n"].to_numpy(int),
        f"precision ({groups.INTERVALS['proportion']})": [
            class_cell(*v) for v in table[["precision", "precision_low", "precision_high", "precision_n"]].to_numpy()],
        "predicted as it": table["precision_n"].to_numpy(int),
        f"recall ({groups.INTERVALS['proportion']})": [
            class_cell(*v) for v in table[["recall", "recall_low", "recall_high", "recall_n"]].to_numpy()],
        "F1 (95% bootstrap interval)": [
            class_cell(*v) for v in table[["f1", "f1_low", "f1_high", "n"]].to_numpy()],
    }), hide_index=True, static=True)  # static: its cells wrap, so recall and F1 stay in a narrow column's view
    first = groups.label(spec.classes[0])
    st.caption(f"Recall of *{first}* is the share of the images labelled {first} that the model calls {first}; "
               f"precision of *{first}* the share of its *{first}* answers that are right. Precision and recall are "
               f"proportions and carry a {groups.INTERVALS['proportion']}; F1, their harmonic mean, is not, and "
               f"carries a {groups.INTERVALS['difference']} of the images. **n** counts the images labelled as the "
               "class, *predicted as it* those the model put in it.")


def confusion_matrix() -> None:
    st.markdown("#### Confusion matrix")
    ui.chart(charts.confusion_heatmap(accuracy.confusion(rows, spec)), width="stretch")
    st.caption("Each cell: how many images of the true class (row) got the predicted class (column), and their share "
               "of the row; the diagonal holds each class's recall." + (" Age bins in order, youngest first: "
                                                                        "neighbouring cells are near misses."
                                                                        if spec.ordinal else ""))


if len(spec.classes) <= 2:
    left, right = st.columns([1, 1])
    with left:
        confusion_matrix()
    with right:
        per_class()
else:
    confusion_matrix()
    per_class()

st.markdown("### Accuracy by group" + (f" ({spec.title})" if task != DEFAULT_TASK else ""))
st.caption(f"Dots show accuracy with its {groups.INTERVALS['proportion']}; **n** is the number of images. Groups "
           f"under {MIN_GROUP_SIZE} images are marked ⚠ small and left out of the gap.")
tab, name, by = ui.grouping_tab(groups.groupings(cache.rows, cache.attributes), key="eval-grouping")
with tab:
    measures = ["accuracy", "within_one"] if spec.ordinal else ["accuracy"]
    frame = groups.GroupFrame(rows, by, measures, task=spec)
    table = frame.shown()
    gap = frame.gap("accuracy gap")
    if gap.defined:
        st.markdown(
            f"Gap between best and worst {md(name)}: **{groups.gap_with_interval(gap.value, gap.low, gap.high)}** "
            f"(best {md(gap.side('highest'))}; worst {md(gap.side('lowest'))}), {groups.INTERVALS['difference']}."
        )
    else:
        st.info("Fewer than two groups are large enough to compare.")
    ui.chart(charts.interval_dots(table, "accuracy", reference=overall["accuracy"], title="accuracy"),
             width="stretch", key=f"bars-{name}")
    shown = pd.DataFrame({name: [groups.size_label(g, n, s) for g, n, s in table[["group", "n", "small"]].to_numpy()],
                          f"accuracy ({groups.INTERVALS['proportion']})": [
                              groups.with_interval(*v) for v in table[["accuracy", "accuracy_low", "accuracy_high"]]
                              .to_numpy()]})
    if spec.ordinal:
        shown[f"within one bin ({groups.INTERVALS['proportion']})"] = [
            groups.with_interval(*v) for v in table[["within_one", "within_one_low", "within_one_high"]].to_numpy()]
    ui.table(shown, width="stretch", hide_index=True)

st.markdown("### Precision and recall at every threshold, per race group")
if spec.score:
    positive = spec.positive
    curves = accuracy.pr_curves(rows, groups.GROUPINGS["race"], spec)
    ui.chart(charts.pr_curves(curves, positive), width="stretch")
    st.caption(f"The model calls a face *{positive}* when its score {spec.score} passes a threshold (0.5 for the "
               "answers above). Each curve moves that threshold over every score in one race group: how many of the "
               f"group's {positive} faces are found (recall) against how many of the {positive} calls are right "
               "(precision). "
               "A curve lower than the others means that, at any threshold, the group's faces are harder to sort. "
               "**AP** (average precision) is the area under the curve; **n** counts the group's images. Curves are "
               "drawn without intervals: read the small groups (⚠) with care.")
else:
    binary = [t.title for t in TASKS.values() if t.score]
    st.caption(f"Drawn for {' and '.join(binary)} only: the cache holds a score for every image there (the positive "
               f"class's probability), while for {spec.title} it holds only the probability of the predicted class.")

if cache.has_cams:
    st.markdown("### Where the maps fall, on average")
    explained = TASKS[cache.cam_task].title
    st.caption(f"The maps in this evaluation explain the model's **{explained}** decision (its predicted class)"
               + (f", not the {spec.title} decision counted above" if cache.cam_task != task else "")
               + ". Mean share of each CAM's heat per face region over the images counted (placed from the eyes, "
               f"nose and mouth the {ui.glossary_link('MTCNN', 'face detector')} finds). {wording.FOCUS_DEFINITION} "
               f"{wording.SUM_RULE}")
    focus = pd.DataFrame(
        [{"method": m, **{r: rows[focus_column(m, r)].mean() for r in (*REGIONS, "face", "face_baseline")}}
         for m in cache.methods]
    )
    ui.chart(charts.focus_bars(focus, list(REGIONS)), width="stretch")
    # The focus score beside its chance level, in the first of the tables this one is split into.
    shares = focus[["method", "face", "face_baseline", *REGIONS]].rename(
        columns={"face": wording.FACE_COLUMN, "face_baseline": wording.CHANCE})
    ui.table(shares, dict.fromkeys(shares.columns[1:], "{:.1%}"), hide_index=True, lead=1)
    st.caption(f"A face was found in {rows['face_found'].mean():.0%} of these images; where none was found the "
               "whole map counts as background.")
