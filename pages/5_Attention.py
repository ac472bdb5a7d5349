"""Attention: where the maps fall for each group, what cropping or blurring changes, and group average maps.

The maps explain the cache's `cam_task`; correct and wrong, and the counterfactual flips, are the selected task's."""

import streamlit as st

from faircam import wording
from faircam.audit import explanations as audit
from faircam.audit import groups
from faircam.charts import audit_plots as audit_charts
from faircam.charts import plots as charts
from faircam.charts.figures import overlay
from faircam.config import MIN_GROUP_SIZE
from faircam.dashboard import image_source, ui
from faircam.evaluation.cache import group_averages, view_column
from faircam.tasks import TASKS
from faircam.text import md

ui.page_setup("Attention: does the model look at the same things for every group?", "🎯")

cache = ui.evaluation_or_stop()
ui.map_kind_note(cache.methods)
rows = cache.rows
if not cache.has_cams:
    st.info(ui.no_maps_line(cache))
    st.stop()
task = ui.task_or_stop(cache, "predictions")
title, maps_title = TASKS[task].title, TASKS[cache.cam_task].title
note = audit.maps_note(task, cache.cam_task)
if note:
    st.info(note)

WELCH = "Welch's t-test"
OUTCOME_LABELS = {"all": "all images", "correct": f"correct {title} predictions",
                  "wrong": f"wrong {title} predictions"}
st.caption(
    f"From the cached evaluation of {ui.evaluated_images(cache)}: nothing is "
    f"recomputed here. Every number carries its n and a 95% interval (a share of images: "
    f"{groups.INTERVALS['proportion']}; a mean: {groups.INTERVALS['mean']}); groups under {MIN_GROUP_SIZE} images "
    "are marked ⚠ small and never ranked."
)

c1, c2, c3 = st.columns(3)
method = c1.selectbox("CAM method", cache.methods, help="The methods can disagree; see the Faithfulness page.")
grouping, by = ui.grouping_radio(groups.groupings(rows, cache.attributes), "attention-groups", c2,
                                 default="race × gender")
outcome = c3.radio("Images", audit.OUTCOMES, format_func=OUTCOME_LABELS.get, horizontal=True)

st.markdown("## Where the maps fall, group by group")
st.caption("Mean share of each map's heat on each face region (placed from the eyes, nose and mouth the "
           f"{ui.glossary_link('MTCNN', 'face detector')} finds), and on the whole face (the "
           f"**{ui.glossary_link(wording.FOCUS_SCORE)}**), per group, with its {groups.INTERVALS['mean']} (±). "
           f"{wording.SUM_RULE} Read down a column to compare "
           "groups: red cells are above the groups' average for that region, blue cells below. ★ marks a group "
           "whose share differs from the other images' by more than chance explains "
           f"({ui.glossary_link(WELCH, 'a test of the two means')}), allowing for the comparisons "
           "made over every group, region and CAM method: with that many comparisons some differences look real "
           f"by chance alone, and this keeps them from being reported as findings ({ui.glossary_link('q value')} "
           f"under {groups.FDR_LEVEL}).")
parity = audit.region_parity(rows, cache.methods, method, by, outcome, task=task)
spread = audit.region_spread(parity, by)
if parity.empty or parity["n"].sum() == 0:
    st.warning(f"No {OUTCOME_LABELS[outcome]} in this cache.")
else:
    region = st.selectbox("Ask about one region", audit.PARITY_KEYS, index=audit.PARITY_KEYS.index("mouth"),
                          format_func=lambda r: "the whole face (focus score)" if r == "face" else f"the {r}")
    noun = "the face" if region == "face" else f"the {region}"
    answer = spread[spread["region"] == region]
    st.markdown(f"#### Does {method} look at {noun} more for some groups ({OUTCOME_LABELS[outcome]})?")
    if answer.empty:
        st.info(f"Fewer than two groups have {MIN_GROUP_SIZE} or more images here: no comparison is made. "
                "Coarser groups (race, or gender) or all images instead of one outcome give larger groups.")
    else:
        a = answer.iloc[0]
        q = min(a["highest_q"], a["lowest_q"])
        verdict = ("**Yes**: this group stands apart from the other images even allowing for all the comparisons "
                   f"made ({ui.glossary_link('q value')} {wording.q_value(q)}), so the "
                   "difference is larger than sampling noise."
                   if a["separated"] else
                   "**Not clearly**: neither group stands apart from the other images once all the comparisons "
                   f"made are allowed for ({ui.glossary_link('q value')} {groups.FDR_LEVEL} or more), so the "
                   "difference could be sampling noise.")
        st.markdown(
            f"{verdict} The share of heat on {noun} ranges from **{a['lowest_mean']:.1%}** for {md(a['lowest'])} "
            f"({a['lowest_ci'][0]:.1%}–{a['lowest_ci'][1]:.1%}, n={a['lowest_n']:,}) to "
            f"**{a['highest_mean']:.1%}** for {md(a['highest'])} ({a['highest_ci'][0]:.1%}–{a['highest_ci'][1]:.1%}, "
            f"n={a['highest_n']:,}): **{groups.gap_with_interval(a['spread'], a['spread_low'], a['spread_high'])}** "
            f"across {a['groups_compared']} groups ({groups.INTERVALS['difference']})."
        )
    if not spread.empty:
        top = spread.iloc[0]
        st.caption(f"The region whose share differs most across groups is **{top['region']}** "
                   f"({groups.gap_with_interval(top['spread'], top['spread_low'], top['spread_high'])}, "
                   f"{md(top['highest'])} vs {md(top['lowest'])}"
                   f"{'; larger than chance explains' if top['separated'] else '; could be chance'}).")
    ui.chart(audit_charts.parity_heatmap(parity, list(audit.PARITY_KEYS)), width="stretch")
    with st.expander("Spread per region (highest minus lowest group, groups large enough to compare)"):
        ui.table(
            spread.drop(columns=["highest_ci", "lowest_ci"]).rename(columns=audit.plain_column),
            {audit.plain_column(c): f for c, f in (("spread", "{:.1%}"), ("spread_low", "{:.1%}"),
                                                   ("spread_high", "{:.1%}"), ("highest_mean", "{:.1%}"),
                                                   ("lowest_mean", "{:.1%}"), ("highest_q", wording.q_value),
                                                   ("lowest_q", wording.q_value))},
            na_rep="–", hide_index=True, lead=1,
        )
    st.caption("Shares depend on how large each region is in the picture; the focus score's chance level "
               "(the face's share of the image) is on the Evaluation page.")

st.markdown("## Counterfactual views: does cropping or blurring change the answer?")
if not audit.has_views(rows, task):
    st.info("This cache has no counterfactual data (cropped and blurred views). Run "
            f"{ui.evaluate_hint()} with this faircam version to add it.")
else:
    effects = audit.counterfactual_effects(rows, by, method, task=task)
    overall = audit.counterfactual_effects(rows, [], method, task=task).set_index("view")
    n_faces = int(overall.loc["crop", "n"])
    st.caption(
        f"Each image was also classified **cropped** (the face cut out the way FairFace cut its faces: its five "
        f"landmarks mapped onto FairFace's mean face, eyes level, flat grey beyond the photo's edge) and with its "
        f"**background blurred**. A flip is a {title} prediction that changes from the raw image's; the accuracies "
        f"are the {title} predictions'. Only the {n_faces:,} "
        "images with a face found count: without a face both views equal the raw image."
    )
    cols = st.columns(4)
    for col, view in zip(cols[:2], audit.COUNTERFACTUAL_VIEWS):
        e = overall.loc[view]
        col.metric(f"Flip rate, raw → {view}", f"{e['flip_rate']:.1%}",
                   help=f"{int(e['flips'])} of {int(e['n'])} images; {groups.INTERVALS['proportion']} "
                        f"{e['flip_rate_low']:.1%}–{e['flip_rate_high']:.1%}")
    for col, view in zip(cols[2:], audit.COUNTERFACTUAL_VIEWS):
        e = overall.loc[view]
        col.metric(f"Accuracy, {view}", f"{e['accuracy_view']:.1%}",
                   delta=f"{(e['accuracy_view'] - e['accuracy_raw']) * 100:+.1f} points vs raw")
    left, right = st.columns(2)
    with left:
        st.markdown("#### Flip rate per group")
        ui.chart(charts.interval_dots(effects, "flip_rate", color="view", title="flip rate"), width="stretch")
    with right:
        st.markdown(f"#### Change of {method}'s focus score")
        ui.chart(charts.interval_dots(effects, "focus_change", color="view", reference=0.0,
                                      title=f"change of the {wording.FOCUS_SCORE}", reference_label="no change"),
                 width="stretch")
    chance = overall["chance_change"]
    st.caption(f"Change of the {wording.FOCUS_SCORE}: the share of {method}'s heat on the face in the view minus "
               "on the raw image, averaged over the group. The face's own share of the picture (the "
               f"{ui.glossary_link(wording.CHANCE)}) changes by "
               f"{chance['crop'] * 100:+.1f} points when cropped and {chance['blur'] * 100:+.1f} when blurred, "
               "so compare the groups with each other rather than with zero.")
    with st.expander("The numbers"):
        ui.table(audit.effects_table(effects), hide_index=True, lead=2)
    st.markdown("#### Faces whose answer flips")
    st.caption(f"The surest {title} answers that cropping or blurring changes: open one on Explore and switch the same "
               "toggle to see the maps before and after.")
    pred = TASKS[task].pred
    for column, view in zip(st.columns(len(audit.COUNTERFACTUAL_VIEWS)), audit.COUNTERFACTUAL_VIEWS):
        with column:
            st.markdown(f"**{view}**")
            for _, image in audit.flipped(rows, view, task=task).iterrows():
                group = groups.group_label(image, ["race", "gender"])
                image_source.explore_link(image["file"], label=md(
                    f"{image['file']}: {groups.label(image[pred])} → {groups.label(image[view_column(view, pred)])} "
                    f"({group})"))

st.markdown("## Group average maps")
averages = group_averages(cache)
if averages.empty:
    st.info("This cache has no group average maps. Run "
            f"{ui.evaluate_hint()} with this faircam version to add them.")
else:
    st.caption(f"Faces cropped and aligned by the {ui.glossary_link('MTCNN', 'face detector')}, averaged per "
               f"race × gender, with the average {method} map on top. Eyes sit at the same place in every aligned "
               f"face, so the maps can be averaged pixel by pixel. Correct and wrong refer to the {maps_title} "
               "prediction on the cropped face, which these maps explain. "
               "Only averages are stored, never a single person's face.")
    for tab, shown in zip(st.tabs(["Correct predictions", "Wrong predictions"]), ("correct", "wrong")):
        with tab:
            table = averages[averages["outcome"] == shown].set_index(["race", "gender"])
            if table.empty:  # a small or strong evaluation can have no wrong answers at all
                st.caption(f"No {shown} predictions in this cache.")
                continue
            races = groups.levels(table.index.get_level_values("race"), "race")
            columns = st.columns(len(races))
            for column, race in zip(columns, races):
                column.markdown(f"**{groups.label(race)}**")
            for gender in groups.levels(table.index.get_level_values("gender"), "gender"):
                for column, race in zip(columns, races):
                    if (race, gender) not in table.index:
                        column.caption(f"{gender}: no images")
                        continue
                    cell = table.loc[(race, gender)]
                    column.image(cell["face"], caption=groups.size_label(gender, cell["n"], cell["n"] < MIN_GROUP_SIZE),
                                 width="stretch")
                    column.image(overlay(cell["face"], cell[method]), caption=f"{gender}: {method}", width="stretch")
