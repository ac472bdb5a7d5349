"""The audit's aggregates from cache rows: explanation parity, faithfulness, counterfactuals, agreement, and
the Gallery's mistakes (which confusions a task's predictions make, and the images of each).

The maps, their focus and faithfulness explain one task's decisions (`EvalCache.cam_task`); the splits by
outcome, the counterfactual flips and the Gallery's confusions are about whichever task is asked for (`task`,
a name in `faircam.tasks.TASKS`): where does the gender map fall on faces whose race the model got wrong.

Every number is a mean or a rate over images from the one group table (`faircam.audit.groups.group_table`),
with its n and a 95% interval of its kind (`faircam.audit.groups.INTERVALS`: t for means, Wilson for
rates); groups smaller than `MIN_GROUP_SIZE` carry a `small` flag so pages can show them without
ranking them. Where groups are flagged out of many comparisons (explanation parity), the false
discovery rate is controlled with Benjamini-Hochberg. Only pandas, numpy and scipy: pages that read
these tables open without loading the model. Column names come from `faircam.evaluation.cache` (schema v2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from faircam.audit.accuracy import confusion
from faircam.audit.groups import (
    FDR_LEVEL,
    INTERVALS,
    GroupFrame,
    group_table,
    label,
    mean_of,
    share_of,
    size_label,
    with_interval,
)
from faircam.config import MIN_GROUP_SIZE
from faircam.evaluation.cache import (
    AGREEMENT_MEAN,
    FAITHFULNESS_KEYS,
    agreement_column,
    focus_column,
    method_pairs,
    view_column,
)
from faircam.evaluation.cache import (
    OUTCOMES as PREDICTION_OUTCOMES,
)
from faircam.tasks import DEFAULT_TASK, TASKS, Task, as_task
from faircam.vision.focus import REGIONS
from faircam.wording import points

OUTCOMES = ("all", *PREDICTION_OUTCOMES)
# The focus score (share of the map on the face) beside the five regions it is split into.
PARITY_KEYS = (*REGIONS, "face")
COUNTERFACTUAL_VIEWS = ("crop", "blur")


@dataclass(frozen=True)
class FaithfulnessScore:
    """One faithfulness score of the cache: its name, which direction is more faithful, and what it measures."""

    title: str
    better: str
    meaning: str

    @property
    def reading(self) -> str:
        return f"{self.better} is more faithful"


# Every faithfulness score the cache holds (`FAITHFULNESS_KEYS`), as pages and the report say it.
FAITHFULNESS = dict(zip(FAITHFULNESS_KEYS, (
    FaithfulnessScore("ROAD", "higher", "pytorch-grad-cam's ROAD score: the confidence kept when the least important "
                      "pixels are removed, minus the confidence kept when the most important are (removed pixels "
                      "are filled in from their neighbours, so the model cannot spot the holes)"),
    FaithfulnessScore("Deletion AUC", "lower", "the area under the model's confidence as the most important pixels "
                      "are greyed out step by step, most important first: a faithful map makes it fall fast"),
    FaithfulnessScore("Insertion AUC", "higher", "the area under the confidence as the most important pixels are put "
                      "back into a blurred copy of the image, most important first: a faithful map makes it rise "
                      "fast"),
)))


def _long(table: pd.DataFrame, by: list[str], keys: dict[str, str], column: str) -> pd.DataFrame:
    """`group_table`'s wide columns (one measure per key) as rows: `column` names the key, and
    `mean`, `mean_n`, `mean_low`, `mean_high` its statistic; `n` and `small` are the group's."""
    parts = []
    for key, measure in keys.items():
        part = table[[*by, "group", "n", "small"]].copy()
        part[column] = key
        part["mean"], part["mean_low"], part["mean_high"] = table[measure], table[f"{measure}_low"], \
            table[f"{measure}_high"]
        part["n"] = table[f"{measure}_n"]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)[[*by, "group", column, "mean", "mean_low", "mean_high", "n", "small"]]


def select_outcome(rows: pd.DataFrame, outcome: str, task: str | Task = DEFAULT_TASK) -> pd.DataFrame:
    """All rows, or only those whose `task` prediction is right ("correct") or wrong ("wrong"); a face a coarser
    model's task leaves out (its label has no counterpart: correctness null) is neither."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    if outcome == "all":
        return rows
    return rows[rows[as_task(task).correct].eq(outcome == "correct").fillna(False).astype(bool)]


def maps_note(task: str | Task, cam_task: str) -> str | None:
    """The line a page of cached map numbers says when the selected `task` is not the one the maps explain."""
    if task == cam_task:
        return None
    return (f"The cached maps explain the model's {TASKS[cam_task].title} decisions; maps for its "
            f"{as_task(task).title} decisions are computed per face on Explore.")


def _versus_rest(rows: pd.DataFrame, by: list[str], column: str, large: pd.DataFrame) -> np.ndarray:
    """Welch's t-test p-value of each large group's mean of `column` against all other images.

    From per-group sums, so the hundreds of tests of a page take milliseconds (the tests check
    these against SciPy's `ttest_ind`). A test without spread on either side gives p = 1: no evidence.
    """
    # SciPy (0.6 s to import) only here and in `region_parity`: the Gallery reads this module without it.
    from scipy.stats import t as student_t

    values = rows[column].to_numpy(dtype=np.float64)
    codes = pd.MultiIndex.from_frame(large[by]).get_indexer(pd.MultiIndex.from_frame(rows[by]))
    known = ~np.isnan(values)
    # Centred first: sums of squares of raw shares would lose the small spreads to rounding.
    codes, values = codes[known], values[known] - values[known].mean()
    inside = codes >= 0
    size = len(large)
    n = np.bincount(codes[inside], minlength=size).astype(float)
    total = np.bincount(codes[inside], values[inside], minlength=size)
    squares = np.bincount(codes[inside], values[inside] ** 2, minlength=size)
    n_rest, total_rest, squares_rest = len(values) - n, values.sum() - total, (values ** 2).sum() - squares
    with np.errstate(invalid="ignore", divide="ignore"):
        mean, mean_rest = total / n, total_rest / n_rest
        var = np.maximum(squares - n * mean ** 2, 0) / (n - 1)
        var_rest = np.maximum(squares_rest - n_rest * mean_rest ** 2, 0) / (n_rest - 1)
        se2, se2_rest = var / n, var_rest / n_rest
        t = (mean - mean_rest) / np.sqrt(se2 + se2_rest)
        df = (se2 + se2_rest) ** 2 / (se2 ** 2 / (n - 1) + se2_rest ** 2 / (n_rest - 1))
        p = 2 * student_t.sf(np.abs(t), df)
    return np.where(np.isnan(p), 1.0, p)


def region_parity(
    rows: pd.DataFrame, methods: tuple[str, ...], method: str, by: list[str], outcome: str = "all",
    min_size: int = MIN_GROUP_SIZE, task: str | Task = DEFAULT_TASK,
) -> pd.DataFrame:
    """Mean share of `method`'s map per region (and on the whole face) per group, long format, over all
    images or those whose `task` prediction is right or wrong (`outcome`).

    Columns: the `by` columns, group, region, mean, mean_low, mean_high, n, small, q, flagged, and
    the region's spread between the groups (`GroupFrame.gap`: highest minus lowest mean among the groups
    large enough to compare) with its bootstrap interval: spread, spread_low, spread_high (NaN without two
    such groups). `q` is the Benjamini-Hochberg adjusted p-value of the group's mean against all other images
    (Welch's t-test), adjusted over the whole family a reader scans: every large group, region and
    CAM method of `methods` (the cache's); `flagged` is q < `FDR_LEVEL`. Small groups and the ungrouped
    table are not tested.
    """
    chosen = select_outcome(rows, outcome, task)
    columns = {k: focus_column(method, k) for k in PARITY_KEYS}
    frame = GroupFrame(chosen, by, {c: mean_of(c) for c in columns.values()}, min_size=min_size)
    table = frame.by_group
    parity = _long(table, by, columns, "region")
    spreads = {k: frame.gap(f"{c} spread") for k, c in columns.items()} if by else {}
    for name, attribute in (("spread", "value"), ("spread_low", "low"), ("spread_high", "high")):
        parity[name] = parity["region"].map(lambda k, a=attribute: getattr(spreads[k], a) if k in spreads
                                            else np.nan).astype(float)
    parity["q"], parity["flagged"] = np.nan, False
    large = table[~table["small"]]
    if not by or len(large) < 2:
        return parity
    from scipy.stats import false_discovery_control

    tests = {(m, k): _versus_rest(chosen, by, focus_column(m, k), large) for m in methods for k in PARITY_KEYS}
    q = false_discovery_control(np.concatenate(list(tests.values())))
    mine = np.concatenate([np.full(len(p), m == method) for (m, _), p in tests.items()])
    # Both run region by region over the large groups in the group table's order.
    parity.loc[~parity["small"], "q"] = q[mine]
    parity["flagged"] = parity["q"] < FDR_LEVEL
    return parity


def region_spread(parity: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per region, the highest and lowest group mean among groups large enough to compare.

    `spread` is highest minus lowest, with its bootstrap interval (`spread_low`, `spread_high`, from
    `region_parity`); `separated` says whether either of the two stands apart from
    the other images after Benjamini-Hochberg control of the false discovery rate (`flagged` in
    `region_parity`), so that one chance difference among many comparisons is not reported as a
    finding. Sorted by spread, largest first; regions with fewer than two comparable groups are left out.
    """
    records = []
    for region, table in parity[~parity["small"]].groupby("region", sort=False):
        if len(table) < 2:
            continue
        ordered = table.sort_values("mean", ascending=False)
        high, low = ordered.iloc[0], ordered.iloc[-1]
        records.append({
            "region": region,
            "spread": float(high["spread"]), "spread_low": float(high["spread_low"]),
            "spread_high": float(high["spread_high"]),
            "highest": high["group"], "highest_mean": float(high["mean"]), "highest_n": int(high["n"]),
            "highest_ci": (float(high["mean_low"]), float(high["mean_high"])), "highest_q": float(high["q"]),
            "lowest": low["group"], "lowest_mean": float(low["mean"]), "lowest_n": int(low["n"]),
            "lowest_ci": (float(low["mean_low"]), float(low["mean_high"])), "lowest_q": float(low["q"]),
            "separated": bool(high["flagged"] or low["flagged"]),
            "groups_compared": len(table),
        })
    columns = ["region", "spread", "spread_low", "spread_high", "highest", "highest_mean", "highest_n", "highest_ci",
               "highest_q", "lowest", "lowest_mean", "lowest_n", "lowest_ci", "lowest_q", "separated",
               "groups_compared"]
    return pd.DataFrame.from_records(records, columns=columns).sort_values(
        "spread", ascending=False, ignore_index=True)


# The column names of `counterfactual_effects` and `region_spread` in words, for the tables a page shows.
_PLAIN_COLUMNS = {
    "n": "images", "flips": "answers that flip", "flip_rate": "flip rate", "accuracy_raw": "accuracy, raw image",
    "accuracy_view": "accuracy, this view", "focus_change": "change of the focus score",
    "chance_change": "change of the chance level", "small": "⚠ small",
    "spread": "spread (highest − lowest)", "highest": "highest group", "highest_mean": "highest share",
    "highest_n": "highest group's images", "highest_q": "highest group's q value", "lowest": "lowest group",
    "lowest_mean": "lowest share", "lowest_n": "lowest group's images", "lowest_q": "lowest group's q value",
    "separated": "larger than chance", "groups_compared": "groups compared",
}


def plain_column(column: str) -> str:
    """A column of `counterfactual_effects` or `region_spread` named in words (its interval's bounds as "from" and
    "to"); any other column keeps its name."""
    for suffix, words in (("_low", "95% interval from"), ("_high", "95% interval to")):
        if column.endswith(suffix) and column.removesuffix(suffix) in _PLAIN_COLUMNS:
            return f"{_PLAIN_COLUMNS[column.removesuffix(suffix)]}, {words}"
    return _PLAIN_COLUMNS.get(column, column)


def _change(value: float, low: float, high: float) -> str:
    """"+3.1 points (+2.0 to +4.2)": a change of a share with its interval (none where the group has none)."""
    shown = points(value, signed=True)
    return shown if pd.isna(value) or pd.isna(low) else f"{shown} ({low * 100:+.1f} to {high * 100:+.1f})"


def effects_table(effects: pd.DataFrame) -> pd.DataFrame:
    """`counterfactual_effects` as people read it: the group with its n (small groups marked), the view, and each
    measure with its interval in one cell, so the table is a third as wide as the columns it comes from."""
    rate = [f"{with_interval(v, lo, hi)}: {int(f):,} of {int(n):,}" for v, lo, hi, f, n in
            effects[["flip_rate", "flip_rate_low", "flip_rate_high", "flips", "n"]].to_numpy()]
    return pd.DataFrame({
        "group": [size_label(g, int(n), bool(s)) for g, n, s in effects[["group", "n", "small"]].to_numpy()],
        "view": effects["view"].to_numpy(),
        f"{_PLAIN_COLUMNS['flip_rate']} ({INTERVALS['proportion']})": rate,
        **{f"{_PLAIN_COLUMNS[c]} ({INTERVALS['proportion']})": [with_interval(*v) for v in
                                                                effects[[c, f"{c}_low", f"{c}_high"]].to_numpy()]
           for c in ("accuracy_raw", "accuracy_view")},
        f"{_PLAIN_COLUMNS['focus_change']} ({INTERVALS['mean']})": [
            _change(*v) for v in effects[["focus_change", "focus_change_low", "focus_change_high"]].to_numpy()],
        _PLAIN_COLUMNS["chance_change"]: [points(v, signed=True) for v in effects["chance_change"]],
    })


def has_faithfulness(rows: pd.DataFrame) -> bool:
    """Whether the cache holds faithfulness scores for a sample of its images."""
    return "faith_sampled" in rows.columns and bool(rows["faith_sampled"].any())


def faithfulness_summary(rows: pd.DataFrame, methods: tuple[str, ...], by: list[str],
                         min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Mean ROAD, deletion and insertion score per method of `methods` (the cache's) and per group, over
    the sampled images.

    Columns: the `by` columns, group, method, metric, mean, mean_low, mean_high, n, small.
    """
    sampled = rows[rows["faith_sampled"].astype(bool)]
    parts = []
    for metric in FAITHFULNESS:
        table = group_table(sampled, by, {m: mean_of(focus_column(m, metric)) for m in methods},
                            min_size=min_size)
        parts.append(_long(table, by, {m: m for m in methods}, "method").assign(metric=metric))
    summary = pd.concat(parts, ignore_index=True)
    return summary[[*by, "group", "method", "metric", "mean", "mean_low", "mean_high", "n", "small"]]


def faithfulness_table(summary: pd.DataFrame) -> pd.DataFrame:
    """`faithfulness_summary` as people read it: the group with its n (small groups marked), the score's title, the
    method and the mean with its interval in one cell ("0.185 (0.106–0.264)")."""
    return pd.DataFrame({
        "group": [size_label(g, int(n), bool(s)) for g, n, s in summary[["group", "n", "small"]].to_numpy()],
        "score": [FAITHFULNESS[m].title for m in summary["metric"]],
        "method": summary["method"].to_numpy(),
        f"mean ({INTERVALS['mean']})": ["–" if pd.isna(v) else f"{v:.3f} ({lo:.3f}–{hi:.3f})"
                                        for v, lo, hi in summary[["mean", "mean_low", "mean_high"]].to_numpy()],
    })


def most_faithful(summary: pd.DataFrame) -> pd.DataFrame:
    """Per metric, the best method by its mean and the runner-up, from an ungrouped summary.

    `separated` is True when the best method's 95% interval does not overlap the runner-up's,
    the only case in which the ranking is more than the luck of the sample; `tied` when their
    means are equal (two methods can give the same maps).
    """
    records = []
    for metric, score in FAITHFULNESS.items():
        better = score.better
        table = summary[summary["metric"] == metric].dropna(subset=["mean"])
        if len(table) < 2:
            continue
        ordered = table.sort_values("mean", ascending=better == "lower")
        best, second = ordered.iloc[0], ordered.iloc[1]
        separated = (best["mean_low"] > second["mean_high"] if better == "higher"
                     else best["mean_high"] < second["mean_low"])
        records.append({
            "metric": metric, "better": better, "best": best["method"], "best_mean": float(best["mean"]),
            "runner_up": second["method"], "runner_up_mean": float(second["mean"]), "n": int(best["n"]),
            "separated": bool(separated), "tied": bool(np.isclose(best["mean"], second["mean"], rtol=1e-6, atol=0)),
        })
    return pd.DataFrame.from_records(records, columns=[
        "metric", "better", "best", "best_mean", "runner_up", "runner_up_mean", "n", "separated", "tied"])


def has_views(rows: pd.DataFrame, task: str | Task = DEFAULT_TASK) -> bool:
    """Whether the cache holds the cropped and blurred views' `task` predictions (schema v2)."""
    return all(view_column(v, as_task(task).pred) in rows.columns for v in COUNTERFACTUAL_VIEWS)


def counterfactual_effects(
    rows: pd.DataFrame, by: list[str], method: str, key: str = "face", min_size: int = MIN_GROUP_SIZE,
    task: str | Task = DEFAULT_TASK,
) -> pd.DataFrame:
    """What cropping or blurring changes, per group, over the images where a face was found.

    Without a face both views equal the raw image, so those images would only dilute the rates.
    Per group and view: n, flips (the `task` prediction differs from raw), `flip_rate` (a proportion,
    Wilson), `accuracy_raw` and `accuracy_view` (of `task`), `focus_change` (a mean, t: `method`'s `key`
    share in the view minus raw; the maps explain the cache's `cam_task`), each with `_low` and `_high`, and
    `chance_change`, the mean change of the face's share of the picture (the focus score's chance level)
    that cropping or blurring brings by itself.
    """
    spec = as_task(task)
    faces = rows[rows["face_found"].astype(bool)]
    share = focus_column(method, key)
    # The face's share of the picture, which is what an evenly spread map would score.
    chance = focus_column(method, "face_baseline")
    parts = []
    for view in COUNTERFACTUAL_VIEWS:
        changes = faces.assign(_focus=faces[view_column(view, share)] - faces[share],
                               _chance=faces[view_column(view, chance)] - faces[chance])
        table = group_table(changes, by, {
            "flip_rate": share_of("flip_rate", lambda g, v=view: g[view_column(v, spec.pred)] != g[spec.pred]),
            "accuracy_raw": share_of("accuracy_raw", lambda g: g[spec.correct].astype(bool)),
            "accuracy_view": share_of("accuracy_view", lambda g, v=view: g[view_column(v, spec.correct)].astype(bool)),
            "focus_change": mean_of("_focus"), "chance_change": mean_of("_chance"),
        }, min_size=min_size)
        table.insert(len(by) + 1, "view", view)
        table["flips"] = (table["flip_rate"] * table["n"]).round().astype(int)
        parts.append(table)
    columns = [*by, "group", "view", "n", "flips", "flip_rate", "flip_rate_low", "flip_rate_high", "accuracy_raw",
               "accuracy_raw_low", "accuracy_raw_high", "accuracy_view", "accuracy_view_low", "accuracy_view_high",
               "focus_change", "focus_change_low", "focus_change_high", "chance_change", "small"]
    return pd.concat(parts, ignore_index=True)[columns]


def flipped(rows: pd.DataFrame, view: str, k: int = 4, task: str | Task = DEFAULT_TASK) -> pd.DataFrame:
    """The `k` images with a face found whose `task` prediction changes in `view`, surest raw answer first:
    the flips most worth looking at (file, labels, raw and view predictions, raw probability)."""
    spec = as_task(task)
    prob = spec.prob
    faces = rows[rows["face_found"].astype(bool)]
    flips = faces[faces[view_column(view, spec.pred)] != faces[spec.pred]]
    columns = list(dict.fromkeys(["file", "race", "gender", spec.truth, spec.pred, view_column(view, spec.pred), prob]))
    return flips.nlargest(k, prob)[columns].reset_index(drop=True)


def has_agreement(rows: pd.DataFrame) -> bool:
    return AGREEMENT_MEAN in rows.columns


def agreement_matrix(rows: pd.DataFrame, methods: tuple[str, ...]) -> pd.DataFrame:
    """Mean agreement of every pair of the cache's `methods` over the images, symmetric, 1.0 on the diagonal."""
    matrix = pd.DataFrame(np.eye(len(methods)), index=list(methods), columns=list(methods))
    for a, b in method_pairs(methods):
        matrix.loc[a, b] = matrix.loc[b, a] = float(rows[agreement_column(a, b)].mean())
    return matrix


def agreement_by_group(rows: pd.DataFrame, by: list[str], min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Mean "agree | mean" per group with its t interval, n and small flag (columns as `faithfulness_summary`)."""
    table = group_table(rows, by, {"agreement": mean_of(AGREEMENT_MEAN)}, min_size=min_size)
    return _long(table, by, {"agreement": "agreement"}, "measure").drop(columns="measure")


def least_agreement(rows: pd.DataFrame, methods: tuple[str, ...], k: int = 12,
                    tasks: tuple[str, ...] = (DEFAULT_TASK,)) -> pd.DataFrame:
    """The `k` images whose maps (of the cache's `methods`) agree least ("agree | mean" lowest first),
    with these `tasks`' predictions and correctness, and every pair."""
    pairs = [agreement_column(a, b) for a, b in method_pairs(methods)]
    answers = [c for t in tasks for c in (TASKS[t].pred, TASKS[t].correct)]
    columns = list(dict.fromkeys(["file", "race", "gender", *answers, AGREEMENT_MEAN, *pairs]))
    return rows.nsmallest(k, AGREEMENT_MEAN)[columns].reset_index(drop=True)


# What the Gallery shows of a task's images: its mistakes, its correct answers, or one (true, predicted) pair.
FACES = ("wrong", "correct")


def confusions(rows: pd.DataFrame, task: str | Task = DEFAULT_TASK) -> pd.DataFrame:
    """The kinds of mistake `task`'s predictions make: one row per (true class, predicted class) pair that
    occurs, most frequent first (ties in the classes' order), from the one confusion matrix
    (`faircam.audit.accuracy.confusion`). Columns: truth, pred, n, name ("Indian called Middle Eastern")."""
    matrix = confusion(rows, task)
    pairs = matrix.stack().rename("n").reset_index().rename(columns={"true": "truth", "predicted": "pred"})
    pairs = pairs[(pairs["truth"] != pairs["pred"]) & (pairs["n"] > 0)]
    pairs = pairs.sort_values("n", ascending=False, kind="stable").reset_index(drop=True)
    pairs["name"] = [confusion_name(t, p) for t, p in zip(pairs["truth"], pairs["pred"])]
    return pairs[["truth", "pred", "n", "name"]]


def confusion_name(truth: str, pred: str) -> str:
    """A kind of mistake in words: "Indian called Middle Eastern", "20-29 called 30-39"."""
    return f"{label(truth)} called {label(pred)}"


def select_faces(rows: pd.DataFrame, task: str | Task, show: str | tuple[str, str]) -> pd.DataFrame:
    """The rows whose `task` prediction is "wrong" or "correct" (`FACES`), or those of one (true class,
    predicted class) pair of `confusions`."""
    if isinstance(show, str):
        if show not in FACES:
            raise ValueError(f"show must be one of {FACES} or a (true, predicted) pair, got {show!r}")
        return select_outcome(rows, show, task)
    spec = as_task(task)
    truth, pred = show
    return rows[(rows[spec.truth] == truth) & (rows[spec.pred] == pred)]
