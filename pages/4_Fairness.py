"""Fairness: error rates per group and the gaps between groups, with bootstrap intervals, from the cache."""

from functools import partial

import pandas as pd
import streamlit as st

import ui
from faircam import wording
from faircam.audit import groups, metrics, report
from faircam.charts import plots as charts
from faircam.text import md

ui.page_setup("Fairness: for whom does the model fail?", "⚖️")

cache = ui.evaluation_or_stop()
task = ui.task_or_stop(cache)
spec = groups.TASKS[task]
binary = spec.positive is not None
st.caption(
    f"Model **{md(cache.model_meta['name'])}** on **{len(cache.rows):,}** images of the "
    f"**{md(cache.data_meta['split'])}** split · computed {md(cache.created)}. Read from the cache: the model is not "
    "run here. Every number carries its **n** and a 95% interval: each group's rate a "
    f"**{groups.INTERVALS['proportion']}** (the same numbers as on the Evaluation page), each gap a "
    f"**{groups.INTERVALS['difference']}**. Groups under "
    f"{metrics.MIN_GROUP_SIZE} images are marked ⚠ small, listed last and left out of every gap."
    + (f" Task: **{spec.title}**." if not binary else "")
)
if not binary:
    st.caption(wording.RACE_AGE_CAPTION)
    st.info(metrics.BINARY_ONLY)

INTERVAL_WORDS = ("An interval says how much a number could move with another sample of faces: when two groups' "
                  "intervals overlap a lot, the data do not show that one is treated worse than the other.")
with st.expander("How to read these numbers", expanded=False):
    if binary:
        st.markdown(
            f"The model answers *Female* or *Male*. Following fairlearn's convention, **{metrics.POSITIVE_LABEL}** is "
            "the *positive* class, so:\n\n" + "\n".join(f"- {text}" for text in metrics.RATE_WORDS.values())
            + "\n\nThree numbers sum up how unequal the groups are:\n\n"
            + "\n".join(f"- **{name}**: {text}" for name, text in metrics.GAP_WORDS.items())
            + f"\n\n{INTERVAL_WORDS}"
        )
    else:
        example = groups.label(spec.classes[1])
        rates = ["accuracy", *(["within_one"] if spec.ordinal else []), metrics.recall_key(spec.classes[1])]
        st.markdown(
            f"The model answers one of {len(spec.classes)} {spec.title} classes. Per group:\n\n"
            + "\n".join(f"- {metrics.rate_words(r, task)}" for r in rates)
            + " (and so for every class)\n\nThe gaps between groups:\n\n"
            + "\n".join(f"- **{name}**: {metrics.gap_words(name, task)}" for name in
                         ["accuracy gap", *(["within-one gap"] if spec.ordinal else []), f"recall gap: {example}"])
            + f"\n\n{INTERVAL_WORDS}"
        )


@st.cache_data(show_spinner="Counting each group and drawing the bootstrap resamples…", max_entries=16)
def audit(rows: pd.DataFrame, by: tuple[str, ...], task: str) -> metrics.Fairness:
    return metrics.fairness(rows, list(by), task=task)


def gap_metrics(result: metrics.Fairness) -> None:
    headline = result.gaps if binary else result.gaps.loc[[g for g in result.gaps.index if "recall" not in g]]
    for column, (name, gap) in zip(st.columns(3), headline.iterrows()):
        with column:
            if pd.isna(gap["value"]):
                st.metric(name, "not defined", help=metrics.gap_words(name, task))
                st.caption(md(gap["note"]))
                continue
            st.metric(name, wording.points(gap["value"]), help=metrics.gap_words(name, task))
            st.caption(f"{groups.INTERVALS['difference']}: {gap['ci_low'] * 100:.1f} – {gap['ci_high'] * 100:.1f} "
                       "points · "
                       f"{gap['groups_compared']} groups compared  \nhighest: {md(gap['highest'])}  \n"
                       f"lowest: {md(gap['lowest'])}")
    excluded = sorted({gap["excluded"] for _, gap in headline.iterrows() if gap["excluded"]})
    for names in excluded:
        st.warning(f"Left out of the gaps as too small (under {result.min_size}): {md(names)}.")


def recall_gaps(result: metrics.Fairness) -> None:
    """A multi-class audit's recall gap per class, each with its interval, what it compares and what it leaves out."""
    gaps = result.recall_gaps
    if gaps["value"].isna().all() and gaps["note"].nunique() == 1:  # split by the label itself: one line says why
        st.caption(md(gaps["note"].iloc[0]))
        return
    ui.table(pd.DataFrame({
        "class": [g.removeprefix("recall gap: ") for g in gaps.index],
        "recall gap": [wording.points(v) if pd.notna(v) else "not defined" for v in gaps["value"]],
        "95% bootstrap interval": [f"{lo * 100:.1f} – {hi * 100:.1f} points" if pd.notna(lo) else "–"
                                   for lo, hi in gaps[["ci_low", "ci_high"]].to_numpy()],
        "groups compared": gaps["groups_compared"].to_numpy(int),
        "highest": gaps["highest"].fillna("–").to_numpy(), "lowest": gaps["lowest"].fillna("–").to_numpy(),
        f"left out (under {result.min_size} of the class) or why not": [
            e or n for e, n in gaps[["excluded", "note"]].to_numpy()],
    }), width="stretch", hide_index=True)


def plain_words(result: metrics.Fairness, grouping: str) -> str:
    gap = result.gaps.loc["accuracy gap"]
    if pd.isna(gap["value"]):
        return md(gap["note"])
    return (f"Across {grouping}, accuracy runs from **{md(gap['lowest'])}** to **{md(gap['highest'])}**: a gap of "
            f"**{wording.points(gap['value'])}**, and with another sample of faces it could plausibly be anywhere "
            f"from {wording.points(gap['ci_low'])} to {wording.points(gap['ci_high'])}.")


def rate_table(result: metrics.Fairness, grouping: str) -> pd.DataFrame:
    data = result.groups
    table = pd.DataFrame({grouping: [groups.size_label(g, n, s) for g, n, s in data[["group", "n", "small"]]
                          .to_numpy()]})
    if binary:
        table["men"], table["women"] = data["men"].to_numpy(), data["women"].to_numpy()
    for rate in result.rates:
        cells = [groups.with_interval(*v) for v in data[[rate, f"{rate}_low", f"{rate}_high"]].to_numpy()]
        if rate.startswith("recall "):  # a class's recall counts the group's faces of that class: its own n
            cells = [f"{c}, n={n:,}" if n else "–" for c, n in zip(cells, data[f"{rate}_n"])]
        table[metrics.rate_title(rate, task)] = cells
    return table


rows = cache.rows[["race", "gender", "age", spec.pred]]
tab, grouping = ui.open_tab(list(groups.GROUPINGS), key="fairness-grouping")
by = groups.GROUPINGS[grouping]
with tab:
    result = audit(rows, tuple(by), task)
    gap_metrics(result)
    st.markdown(plain_words(result, grouping))
    if not binary:
        st.markdown(f"**Recall gaps per class** (does the model recognise each {spec.title} equally well in every "
                    f"{grouping} group?)")
        recall_gaps(result)
    left, right = st.columns([3, 2]) if binary and "gender" not in by else (st.container(), None)
    with left:
        shown = [r for r in result.rates if result.groups[r].notna().any()]
        title = partial(metrics.rate_title, task=task)
        if binary:
            rate = st.radio("Show", shown, format_func=title, horizontal=True, key=f"rate-{grouping}")
        else:
            rate = st.selectbox("Show", shown, format_func=title, key=f"rate-{task}-{grouping}")
        st.plotly_chart(charts.interval_dots(result.groups, rate, title=title(rate)),
                        width="stretch", key=f"bars-{grouping}")
        st.caption(metrics.rate_words(rate, task))
    if right is not None:
        with right:
            st.markdown("**Equalized odds at a glance**")
            st.plotly_chart(charts.equalized_odds_plot(result.groups), width="stretch", key=f"eo-{grouping}")
            st.caption("Each group's women called male (across) and men called male (up), with "
                       f"{groups.INTERVALS['proportion']}s. "
                       "Equal odds would put every group on one point; top left is best.")
    ui.table(rate_table(result, grouping), width="stretch", hide_index=True)

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
st.markdown("\n".join(f"- {text}" for text in report.CAVEATS))
