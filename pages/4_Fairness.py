"""Fairness: error rates per group and the gaps between groups, with bootstrap intervals, from the cache."""

import pandas as pd
import streamlit as st

from faircam import wording
from faircam.audit import groups, metrics, report
from faircam.charts import plots as charts
from faircam.config import MIN_GROUP_SIZE
from faircam.dashboard import ui
from faircam.tasks import DEFAULT_TASK, Task
from faircam.text import md

ui.page_setup("Fairness: for whom does the model fail?", "⚖️")

cache = ui.evaluation_or_stop()
task = ui.task_or_stop(cache)
spec = cache.task(task)
measures = groups.task_measures(spec)
st.caption(
    f"Model **{md(cache.model_meta['name'])}** on {ui.evaluated_images(cache)} · computed {md(cache.created)}. "
    "Read from the cache: the model is not "
    "run here. Every number carries its **n** and a 95% interval: each group's rate a "
    f"**{groups.INTERVALS['proportion']}** (the same numbers as on the Evaluation page), each gap a "
    f"**{groups.INTERVALS['difference']}**. Groups under "
    f"{MIN_GROUP_SIZE} images are marked ⚠ small, listed last and left out of every gap."
    + (f" Task: **{spec.title}**." if task != DEFAULT_TASK else "")
)
if spec.caveat:
    st.caption(spec.caveat)
if cache.mapping_note(task):
    st.info(md(cache.mapping_note(task)))
if not spec.binary:
    st.info(groups.BINARY_ONLY)

INTERVAL_WORDS = ("An interval says how much a number could move with another sample of faces: when two groups' "
                  "intervals overlap a lot, the data do not show that one is treated worse than the other.")
with st.expander("How to read these numbers", expanded=False):
    # The per-class measures are one family: said once, for one class.
    said = [m for m in measures.values() if not m.per_class] + [m for m in measures.values() if m.per_class][-1:]
    gaps_said = {m.gap: m.gap_words_for(spec) for m in said if m.gap}
    answers = (f"*{' or '.join(map(md, spec.classes))}*. Following fairlearn's convention, **{md(spec.positive)}** "
               "is the *positive* class, so:" if spec.binary else
               f"one of {len(spec.classes)} {md(spec.title)} classes. Per group:")
    st.markdown(
        f"The model answers {answers}\n\n" + "\n".join(f"- {m.words_for(spec)}" for m in said)
        + (" (and so for every class)" if len(said) < len(measures) else "")
        + f"\n\n{len(gaps_said)} numbers sum up how unequal the groups are:\n\n"
        + "\n".join(f"- **{name}**: {words}" for name, words in gaps_said.items()) + f"\n\n{INTERVAL_WORDS}"
    )
    ui.page_link("pages/12_Glossary.py", "Every term defined once: the Glossary", "📖")


@st.cache_data(show_spinner="Counting each group and drawing the bootstrap resamples…", max_entries=16)
def audit(rows: pd.DataFrame, by: tuple[str, ...], task: Task, names: tuple[str, ...]) -> metrics.Fairness:
    # `names`, the task's measures, keys the memo: a measure added to the registry is computed, not remembered.
    return metrics.fairness(rows, list(by), task=task)


def gap_words(rate: str) -> str:
    return groups.measure(rate).gap_words_for(spec)


def gap_metrics(result: metrics.Fairness) -> None:
    """One metric per headline gap, three to a row: whatever gaps the task's measures feed."""
    headline = list(result.headline.iterrows())
    for start in range(0, len(headline), 3):
        for column, (name, gap) in zip(st.columns(3), headline[start:start + 3]):
            with column:
                if pd.isna(gap["value"]):
                    st.metric(name, "not defined", help=gap_words(gap["rate"]))
                    st.caption(md(gap["note"]))
                    continue
                st.metric(name, wording.points(gap["value"]), help=gap_words(gap["rate"]))
                st.caption(f"{groups.INTERVALS['difference']}: {gap['ci_low'] * 100:.1f} – "
                           f"{gap['ci_high'] * 100:.1f} points · {gap['groups_compared']} groups compared  \n"
                           f"highest: {md(gap['highest'])}  \nlowest: {md(gap['lowest'])}")
    excluded = sorted({gap["excluded"] for _, gap in headline if gap["excluded"]})
    for names in excluded:
        st.warning(f"Left out of the gaps as too small (under {result.min_size}): {md(names)}.")


def per_class_gaps(result: metrics.Fairness) -> None:
    """The per-class gaps (a class's recall gap), each with its interval, what it compares and what it leaves out."""
    gaps = result.per_class
    if gaps["value"].isna().all() and gaps["note"].nunique() == 1:  # split by the label itself: one line says why
        st.caption(md(gaps["note"].iloc[0]))
        return
    ui.table(pd.DataFrame({
        "class": [groups.measure(r).title_for(spec).removeprefix("recall of ") for r in gaps["rate"]],
        "recall gap": [wording.points(v) if pd.notna(v) else "not defined" for v in gaps["value"]],
        "95% bootstrap interval": [f"{lo * 100:.1f} – {hi * 100:.1f} points" if pd.notna(lo) else "–"
                                   for lo, hi in gaps[["ci_low", "ci_high"]].to_numpy()],
        "groups compared": gaps["groups_compared"].to_numpy(int),
        "highest": gaps["highest"].fillna("–").to_numpy(), "lowest": gaps["lowest"].fillna("–").to_numpy(),
        f"left out (under {result.min_size} of the class) or why not": [
            groups.text_or(e, "") or groups.text_or(n) for e, n in gaps[["excluded", "note"]].to_numpy()],
    }), hide_index=True, lead=1)


def plain_words(result: metrics.Fairness, grouping: str) -> str:
    gap = result.gaps.loc["accuracy gap"]
    if pd.isna(gap["value"]):
        return md(gap["note"])
    return (f"Across {md(grouping)}, accuracy runs from **{md(gap['lowest'])}** to **{md(gap['highest'])}**: a gap "
            f"of **{wording.points(gap['value'])}**, and with another sample of faces it could plausibly be anywhere "
            f"from {wording.points(gap['ci_low'])} to {wording.points(gap['ci_high'])}.")


def title(rate: str) -> str:
    return groups.measure(rate).title_for(spec)


def rate_table(result: metrics.Fairness, grouping: str) -> pd.DataFrame:
    data = result.groups
    table = pd.DataFrame({grouping: [groups.size_label(g, n, s) for g, n, s in data[["group", "n", "small"]]
                          .to_numpy()]})
    for people in reversed(spec.people):
        if people in data:
            table[people] = data[people].to_numpy()
    for rate in result.rates:
        cells = [groups.with_interval(*v) for v in data[[rate, f"{rate}_low", f"{rate}_high"]].to_numpy()]
        if groups.measure(rate).per_class:  # a class's recall counts the group's faces of that class: its own n
            cells = [groups.class_cell(c, n, result.min_size) for c, n in zip(cells, data[f"{rate}_n"])]
        table[title(rate)] = cells
    return table


tab, grouping, by = ui.grouping_tab(groups.groupings(cache.rows, cache.attributes), key="fairness-grouping")
# Only what the audit reads: the cached function hashes its arguments.
rows = cache.rows[list(dict.fromkeys([*by, spec.truth, spec.pred]))]
with tab:
    result = audit(rows, tuple(by), spec, tuple(measures))
    gap_metrics(result)
    st.markdown(plain_words(result, grouping))
    if not result.per_class.empty:
        st.markdown(f"**Recall gaps per class** (does the model recognise each {spec.title} equally well in every "
                    f"{grouping} group?)")
        per_class_gaps(result)
    odds = spec.binary and {"tpr", "fpr"} <= set(result.rates) and spec.truth not in by
    # Equalized odds plots each group's TPR against its FPR: groups split by the label itself have one of the two.
    left, right = st.columns([3, 2]) if odds else (st.container(), None)
    with left:
        shown = [r for r in result.rates if result.groups[r].notna().any()]
        if len(shown) <= 5:
            rate = st.radio("Show", shown, format_func=title, horizontal=True, key=f"rate-{grouping}")
        else:
            rate = st.selectbox("Show", shown, format_func=title, key=f"rate-{task}-{grouping}")
        ui.chart(charts.interval_dots(result.groups, rate, title=title(rate)),
                 width="stretch", key=f"bars-{grouping}")
        st.caption(groups.measure(rate).words_for(spec))
    if right is not None:
        with right:
            st.markdown("**Equalized odds at a glance**")
            odds_gap = result.gaps.loc["equalized odds difference"]
            if pd.isna(odds_gap["value"]):  # no group to place: an empty chart would say nothing
                st.caption(f"Nothing to draw: {md(odds_gap['note'])}")
            else:
                ui.chart(charts.equalized_odds_plot(result.groups, spec), width="stretch", key=f"eo-{grouping}")
                st.caption(f"Each group's {title('fpr')} (across) and {title('tpr')} (up), with "
                           f"{groups.INTERVALS['proportion']}s. Equal odds would put every group on one point; top "
                           "left is best.")
    ui.table(rate_table(result, grouping), hide_index=True, lead=1)

st.divider()
st.markdown("### Take the audit with you")
st.caption("A single HTML file with these tables and figures, the model card, the data description and the caveats: "
           "it needs no internet to open and prints well. The CSV holds one row per image from the cache.")
c1, c2 = st.columns(2)
c1.download_button("⬇️ Audit report (HTML)", lambda: report.build_report(
    cache, *report.model_card_markdown(cache, ui.selected_model())), file_name="faircam-audit.html",
    mime="text/html", on_click="ignore")
c2.download_button("⬇️ Per-image rows (CSV)", lambda: report.rows_csv(cache), file_name="faircam-rows.csv",
                   mime="text/csv", on_click="ignore")

st.markdown("### Caveats")
st.markdown("\n".join(f"- {md(text)}" for text in report.caveats([task])))
