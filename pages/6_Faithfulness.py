"""Faithfulness: which of the four maps tracks what the model really uses, and where the maps disagree.

Every number here is about the cached maps, which explain the cache's `cam_task`; the selected task only adds its
answers to the images whose maps disagree."""

import streamlit as st

from faircam.audit import explanations as audit
from faircam.audit import groups
from faircam.charts import audit_plots as audit_charts
from faircam.charts import plots as charts
from faircam.config import MIN_GROUP_SIZE, settings
from faircam.dashboard import image_source, ui
from faircam.data.fairface import data_path
from faircam.evaluation.cache import AGREEMENT_MEAN
from faircam.tasks import DEFAULT_TASK, TASKS
from faircam.text import md

ui.page_setup("Faithfulness: which map can we trust?", "🧪")

cache = ui.evaluation_or_stop()
ui.map_kind_note(cache.methods)
if cache.answers_only:
    st.info(ui.no_maps_line(cache))
    st.stop()
rows = cache.rows
task, cam_task = ui.selected_task(), cache.cam_task
evaluate_hint = ui.evaluate_hint()

SCORES = audit.FAITHFULNESS

st.markdown(
    "A map is **faithful** when the pixels it marks are the ones the model really relies on: remove them and "
    f"the model's confidence should drop. Each score below measures that for the predicted "
    f"{TASKS[cam_task].title} class."
)
note = audit.maps_note(task, cam_task)
if note:
    st.info(note)

st.markdown("## Which map is the most faithful?")
if not audit.has_faithfulness(rows):
    st.info(f"This cache has no faithfulness data (ROAD, deletion and insertion scores). Run {evaluate_hint} "
            "with this faircam version to add it.")
else:
    described = cache.meta.get("faithfulness") or {}
    summary = audit.faithfulness_summary(rows, cache.methods, [])
    n = int(summary["n"].max())
    per_cell = f" ({md(described['per_cell'])} per race × gender cell)" if described.get("per_cell") else ""
    st.caption(f"Scored on a balanced sample of **{n:,}** of the {len(rows):,} images{per_cell}: faithfulness "
               f"needs many extra model passes per image. Dots show the mean, whiskers its {groups.INTERVALS['mean']}.")
    best = audit.most_faithful(summary)
    for _, b in best.iterrows():
        name, direction = SCORES[b["metric"]].title, SCORES[b["metric"]].reading
        if b["tied"]:
            claim = (f"**{b['best']}** and **{b['runner_up']}** tie for the most faithful by {name} ({direction}) "
                     f"at {b['best_mean']:.3f}")
        else:
            claim = (f"**{b['best']}** is the most faithful by {name} ({direction}): {b['best_mean']:.3f} "
                     f"against {b['runner_up_mean']:.3f} for the runner-up, {b['runner_up']}")
        caveat = (f"; their {groups.INTERVALS['mean']}s do not overlap." if b["separated"] else "." if b["tied"] else
                  f"; but their {groups.INTERVALS['mean']}s overlap, so on {b['n']:,} images this ranking could be "
                  "chance.")
        st.markdown(f"- {claim}{caveat}")
    if n < MIN_GROUP_SIZE:
        st.warning(f"Only {n} images were scored: too few for firm conclusions.")
    scores = list(SCORES.items())
    # Three to a row, whatever scores the cache holds.
    for start in range(0, len(scores), 3):
        for column, (metric, score) in zip(st.columns(3), scores[start:start + 3]):
            with column:
                st.markdown(f"#### {score.title}")
                st.caption(f"{score.reading.capitalize()}: {score.meaning}.")
                table = summary[summary["metric"] == metric]
                ui.chart(charts.interval_dots(table.assign(group=table["method"]), "mean", percent=False),
                         width="stretch", key=f"faith-{metric}")

    st.markdown("### Per group")
    c1, c2 = st.columns(2)
    grouping, by = ui.grouping_radio(groups.groupings(rows, cache.attributes), "faith-groups", c1)
    metric = c2.radio("Score", list(SCORES), format_func=lambda m: SCORES[m].title, horizontal=True)
    per_group = audit.faithfulness_summary(rows, cache.methods, by)
    chosen = per_group[per_group["metric"] == metric]
    st.caption(f"{SCORES[metric].title}, {SCORES[metric].reading}; n counts only the scored images of each "
               f"group, and groups under {MIN_GROUP_SIZE} are marked ⚠ small.")
    ui.chart(charts.interval_dots(chosen, "mean", color="method", percent=False), width="stretch")
    with st.expander("The numbers"):
        ui.table(audit.faithfulness_table(per_group), hide_index=True, static=True)

st.markdown("## Do the four maps agree?" if len(cache.methods) != 1 else "## Do the maps agree?")
if len(cache.methods) == 1:
    st.info(f"This evaluation has one kind of map ({md(cache.methods[0])}): there is no other map to agree with.")
elif not audit.has_agreement(rows):
    st.info(f"This cache has no method agreement data. Run {evaluate_hint} with this faircam version to add it.")
else:
    st.caption("Agreement between two maps of the same image, averaged over the images: the share of heat the two "
               "maps put in the same places (histogram intersection; 1.0 = identical maps, 0 = nothing in common). "
               "Where the methods disagree, read any single map with care.")
    left, right = st.columns([3, 2])
    with left:
        ui.chart(audit_charts.agreement_heatmap(audit.agreement_matrix(rows, cache.methods)), width="stretch")
    with right:
        _, by = ui.grouping_radio(groups.groupings(rows, cache.attributes), "agree-groups",
                                  label="Mean agreement per")
        ui.chart(charts.interval_dots(audit.agreement_by_group(rows, by), "mean", percent=False),
                 width="stretch")

    st.markdown("### Where they disagree most")
    k = st.slider("Images", 4, 24, 8, step=4)
    answers = tuple(dict.fromkeys(t for t in (cam_task, task) if t in cache.tasks))
    worst = audit.least_agreement(rows, cache.methods, k, tasks=answers)
    # The default task's answer reads "predicted Male", as a gender-only model's always has; another task's is named.
    answered = [(TASKS[t], "" if t == DEFAULT_TASK else f"{TASKS[t].title} ") for t in answers]
    # Only the data folder this server was given: the cache's own `data.root` is whatever its writer put there.
    root = settings().data_dir
    if root is None or data_path(root, worst["file"].iloc[0]) is None:
        st.caption("The images are not on this machine (set `FAIRCAM_DATA` to the FairFace folder to see them).")
    columns = st.columns(4)
    for i, image in worst.iterrows():
        with columns[i % 4]:
            thumbnail = None if root is None else ui.thumbnail(root, image["file"])
            if thumbnail is not None:
                st.image(thumbnail, width="stretch")
            said = [f"{prefix}predicted {md(groups.label(image[spec.pred]))} {'✅' if image[spec.correct] else '❌'}"
                    for spec, prefix in answered]
            st.caption(f"{md(image['file'], code=True)} · {md(groups.label(image['race']))}, "
                       f"{md(image['gender'])} · {' · '.join(said)} · agreement {image[AGREEMENT_MEAN]:.2f}")
            if thumbnail is not None:  # a file the data folder lacks gets no link (the cache names anything)
                image_source.explore_link(image["file"], label="Its four maps on Explore")
    with st.expander("Every pair, for these images"):
        # Agreement as the captions above write it.
        ui.table(worst, dict.fromkeys([c for c in worst.columns if c.startswith("agree")], "{:.2f}"), hide_index=True,
                 lead=1)
