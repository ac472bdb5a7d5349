"""Evaluation: how often the model is right, for whom it fails, from the cached evaluation."""

import pandas as pd
import streamlit as st

import ui
from faircam import wording
from faircam.audit import accuracy, groups
from faircam.charts import plots as charts
from faircam.config import MIN_GROUP_SIZE
from faircam.data.fairface import AGES, GENDERS, RACES, filter_rows
from faircam.evaluation.cache import focus_column
from faircam.text import md
from faircam.vision.focus import REGIONS

ui.page_setup("Evaluation", "📊")

cache = ui.evaluation_or_stop()

meta = cache.meta
model = ui.checkpoint()
st.caption(
    f"Model **{md(meta['model']['name'])}** on **{meta['rows']:,}** images of the **{md(meta['data']['split'])}** "
    f"split of {md(meta['data']['root'], code=True)} · computed {md(meta['created'])}. Read from the cache: nothing is "
    "recomputed here."
)
if meta["model"]["sha256"] != model["sha256"]:
    st.warning("This evaluation was computed for a different model file than the one loaded now. "
               f"Run `{ui.evaluate_command()}` to refresh it.")
    ui.offer_recompute(ui.cache_path_for(ui.selected_model()), meta["data"]["split"])
left_out = ui.left_out_rows(meta["data"])
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

scores = accuracy.overall_scores(rows)
overall = scores.loc["all"]
c1, c2, c3 = st.columns(3)
c1.metric("Accuracy", f"{overall['accuracy']:.1%}", help="Share of images whose predicted gender matches the label.")
c2.metric("95% interval", wording.percent_range(overall["accuracy_low"], overall["accuracy_high"], digits=1),
          help=f"{groups.INTERVALS['proportion']} of the accuracy.")
c3.metric("Images", f"{int(overall['n']):,}")
if overall["n"] < MIN_GROUP_SIZE:
    st.warning(f"Only {int(overall['n'])} images: too few for firm conclusions.")

left, right = st.columns([1, 1])
with left:
    st.markdown("#### Confusion matrix")
    st.plotly_chart(charts.confusion_heatmap(accuracy.confusion(rows)), width="stretch")
with right:
    st.markdown("#### Per class")
    ui.table(
        scores.drop(index="all")[["precision", "recall", "f1", "n"]].style.format(
            {"precision": "{:.1%}", "recall": "{:.1%}", "f1": "{:.1%}", "n": "{:,}"}
        ),
        width="stretch",
    )
    st.caption("Recall of *Female* is the share of women classified as women; precision of *Female* the share "
               "of *Female* predictions that are right.")

st.markdown("### Accuracy by group")
st.caption(f"Dots show accuracy with its {groups.INTERVALS['proportion']}; **n** is the number of images. Groups "
           f"under {MIN_GROUP_SIZE} images are marked ⚠ small and left out of the gap.")
tab, name = ui.open_tab(list(groups.GROUPINGS), key="eval-grouping")
by = groups.GROUPINGS[name]
with tab:
    table = groups.shown(groups.group_table(rows, by), by)
    gap = groups.spread(table)
    if gap["gap"] is not None:
        st.markdown(
            f"Gap between best and worst {name}: **{wording.points(gap['gap'])}** "
            f"(best {md(gap['best'])}, n={gap['best_n']:,}; worst {md(gap['worst'])}, n={gap['worst_n']:,})."
        )
    else:
        st.info("Fewer than two groups are large enough to compare.")
    st.plotly_chart(charts.interval_dots(table, "accuracy", reference=overall["accuracy"], title="accuracy"),
                    width="stretch", key=f"bars-{name}")
    ui.table(
        pd.DataFrame({name: [groups.size_label(g, n, s) for g, n, s in table[["group", "n", "small"]].to_numpy()],
                      f"accuracy ({groups.INTERVALS['proportion']})": [
                          groups.with_interval(*v) for v in table[["accuracy", "accuracy_low", "accuracy_high"]]
                          .to_numpy()]}),
        width="stretch", hide_index=True,
    )

if cache.has_cams:
    st.markdown("### Where the maps fall, on average")
    st.caption("Mean share of each CAM's heat per face region over the images counted (from landmarks found "
               f"by MTCNN). {wording.FOCUS_DEFINITION} {wording.SUM_RULE}")
    focus = pd.DataFrame(
        [{"method": m, **{r: rows[focus_column(m, r)].mean() for r in (*REGIONS, "face", "face_baseline")}}
         for m in cache.methods]
    )
    st.plotly_chart(charts.focus_bars(focus, list(REGIONS)), width="stretch")
    ui.table(focus.set_index("method").rename(columns={"face": wording.FACE_COLUMN, "face_baseline": wording.CHANCE})
             .style.format("{:.1%}"), width="stretch")
    st.caption(f"A face was found in {rows['face_found'].mean():.0%} of these images; where none was found the "
               "whole map counts as background.")
