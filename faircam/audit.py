"""The audit's aggregates from cache rows: explanation parity, faithfulness, counterfactuals, agreement.

Every number is a mean or a rate over images, with its n and a 95% interval (Student's t for
means, Wilson for rates), and groups smaller than `MIN_GROUP_SIZE` carry a `small` flag so
pages can show them without ranking them. Only pandas, numpy and scipy: pages that read these
tables open without loading the model. Column names come from `faircam.cache` (schema v2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from faircam.accuracy import wilson_interval
from faircam.cache import (
    AGREEMENT_MEAN,
    FAITHFULNESS_KEYS,
    agreement_column,
    focus_column,
    method_pairs,
    view_column,
)
from faircam.cache import (
    OUTCOMES as PREDICTION_OUTCOMES,
)
from faircam.config import CAM_METHODS, MIN_GROUP_SIZE
from faircam.focus import REGIONS

OUTCOMES = ("all", *PREDICTION_OUTCOMES)
# The focus score (share of the map on the face) beside the five regions it is split into.
PARITY_KEYS = (*REGIONS, "face")
COUNTERFACTUAL_VIEWS = ("crop", "blur")
# Which direction is more faithful for each faithfulness score in the cache.
FAITHFULNESS = dict(zip(FAITHFULNESS_KEYS, ("higher", "lower", "higher")))


def mean_interval(values: pd.Series | np.ndarray) -> tuple[float, float, float, int]:
    """Mean, 95% t-interval (low, high) and n of the non-missing values; NaN bounds below n = 2."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), n
    half = float(student_t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half, n


def select_outcome(rows: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """All rows, or only the correctly ("correct") or wrongly ("wrong") predicted ones."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    if outcome == "all":
        return rows
    return rows[rows["correct"].astype(bool) == (outcome == "correct")]


def _grouped(rows: pd.DataFrame, by: list[str]):
    """(labels dict, group rows) per group; one group labelled "all" when `by` is empty."""
    if not by:
        yield {}, rows
        return
    for labels, group in rows.groupby(by, observed=True, sort=True):
        labels = labels if isinstance(labels, tuple) else (labels,)
        yield dict(zip(by, labels)), group


def group_label(row: pd.Series | dict, by: list[str]) -> str:
    """"Black / Female" for by = [race, gender]; "all" without grouping."""
    return " / ".join(str(row[c]).replace("_", " ") for c in by) if by else "all"


def _interval_row(labels: dict, values: pd.Series, min_size: int, **extra) -> dict:
    mean, low, high, n = mean_interval(values)
    return {**labels, **extra, "mean": mean, "ci_low": low, "ci_high": high, "n": n, "small": n < min_size}


def region_parity(
    rows: pd.DataFrame, method: str, by: list[str], outcome: str = "all", min_size: int = MIN_GROUP_SIZE
) -> pd.DataFrame:
    """Mean share of `method`'s map per region (and on the whole face) per group, long format.

    Columns: the `by` columns, region, mean, ci_low, ci_high, n, small.
    """
    chosen = select_outcome(rows, outcome)
    records = [
        _interval_row(labels, group[focus_column(method, key)], min_size, region=key)
        for labels, group in _grouped(chosen, by)
        for key in PARITY_KEYS
    ]
    return pd.DataFrame.from_records(records, columns=[*by, "region", "mean", "ci_low", "ci_high", "n", "small"])


def region_spread(parity: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per region, the highest and lowest group mean among groups large enough to compare.

    `spread` is highest minus lowest; `separated` says whether their 95% intervals do not
    overlap. Sorted by spread, largest first; regions with fewer than two comparable groups
    are left out.
    """
    records = []
    for region, table in parity[~parity["small"]].groupby("region", sort=False):
        if len(table) < 2:
            continue
        ordered = table.sort_values("mean", ascending=False)
        high, low = ordered.iloc[0], ordered.iloc[-1]
        records.append({
            "region": region,
            "spread": float(high["mean"] - low["mean"]),
            "highest": group_label(high, by), "highest_mean": float(high["mean"]), "highest_n": int(high["n"]),
            "highest_ci": (float(high["ci_low"]), float(high["ci_high"])),
            "lowest": group_label(low, by), "lowest_mean": float(low["mean"]), "lowest_n": int(low["n"]),
            "lowest_ci": (float(low["ci_low"]), float(low["ci_high"])),
            "separated": bool(high["ci_low"] > low["ci_high"]),
            "groups_compared": len(table),
        })
    columns = ["region", "spread", "highest", "highest_mean", "highest_n", "highest_ci", "lowest", "lowest_mean",
               "lowest_n", "lowest_ci", "separated", "groups_compared"]
    return pd.DataFrame.from_records(records, columns=columns).sort_values(
        "spread", ascending=False, ignore_index=True)


def has_faithfulness(rows: pd.DataFrame) -> bool:
    """Whether the cache holds faithfulness scores for a sample of its images."""
    return "faith_sampled" in rows.columns and bool(rows["faith_sampled"].any())


def faithfulness_summary(rows: pd.DataFrame, by: list[str], min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Mean ROAD, deletion and insertion score per method (and group) over the sampled images.

    Columns: the `by` columns, method, metric, mean, ci_low, ci_high, n, small.
    """
    sampled = rows[rows["faith_sampled"].astype(bool)]
    records = [
        _interval_row(labels, group[focus_column(method, metric)], min_size, method=method, metric=metric)
        for labels, group in _grouped(sampled, by)
        for metric in FAITHFULNESS
        for method in CAM_METHODS
    ]
    return pd.DataFrame.from_records(
        records, columns=[*by, "method", "metric", "mean", "ci_low", "ci_high", "n", "small"])


def most_faithful(summary: pd.DataFrame) -> pd.DataFrame:
    """Per metric, the best method by its mean and the runner-up, from an ungrouped summary.

    `separated` is True when the best method's 95% interval does not overlap the runner-up's,
    the only case in which the ranking is more than the luck of the sample; `tied` when their
    means are equal (two methods can give the same maps).
    """
    records = []
    for metric, better in FAITHFULNESS.items():
        table = summary[summary["metric"] == metric].dropna(subset=["mean"])
        if len(table) < 2:
            continue
        ordered = table.sort_values("mean", ascending=better == "lower")
        best, second = ordered.iloc[0], ordered.iloc[1]
        separated = best["ci_low"] > second["ci_high"] if better == "higher" else best["ci_high"] < second["ci_low"]
        records.append({
            "metric": metric, "better": better, "best": best["method"], "best_mean": float(best["mean"]),
            "runner_up": second["method"], "runner_up_mean": float(second["mean"]), "n": int(best["n"]),
            "separated": bool(separated), "tied": bool(np.isclose(best["mean"], second["mean"], rtol=1e-6, atol=0)),
        })
    return pd.DataFrame.from_records(records, columns=[
        "metric", "better", "best", "best_mean", "runner_up", "runner_up_mean", "n", "separated", "tied"])


def has_views(rows: pd.DataFrame) -> bool:
    """Whether the cache holds the cropped and blurred views (schema v2)."""
    return all(view_column(v, "pred") in rows.columns for v in COUNTERFACTUAL_VIEWS)


def counterfactual_effects(
    rows: pd.DataFrame, by: list[str], method: str, key: str = "face", min_size: int = MIN_GROUP_SIZE
) -> pd.DataFrame:
    """What cropping or blurring changes, per group, over the images where a face was found.

    Without a face both views equal the raw image, so those images would only dilute the rates.
    Per group and view: n, flips (prediction differs from raw), flip_rate with its Wilson
    interval, accuracy raw and in the view, the mean change of `method`'s `key` share (view minus
    raw) with its t-interval, and `chance_change`, the mean change of the face's share of the
    picture (the focus score's chance level) that cropping or blurring brings by itself.
    """
    faces = rows[rows["face_found"].astype(bool)]
    raw_share = faces[focus_column(method, key)]
    # The face's share of the picture, which is what an evenly spread map would score.
    chance_column = focus_column(method, "face_baseline")
    records = []
    for labels, group in _grouped(faces, by):
        for view in COUNTERFACTUAL_VIEWS:
            n = len(group)
            flips = int((group[view_column(view, "pred")] != group["pred"]).sum())
            low, high = wilson_interval(flips, n)
            change = group[view_column(view, focus_column(method, key))] - raw_share.loc[group.index]
            mean, c_low, c_high, _ = mean_interval(change)
            chance = group[view_column(view, chance_column)] - group[chance_column]
            records.append({
                **labels, "view": view, "n": n, "flips": flips, "flip_rate": flips / n if n else float("nan"),
                "flip_ci_low": low, "flip_ci_high": high,
                "accuracy_raw": float(group["correct"].mean()),
                "accuracy_view": float(group[view_column(view, "correct")].astype(bool).mean()),
                "focus_change": mean, "focus_ci_low": c_low, "focus_ci_high": c_high,
                "chance_change": float(chance.mean()) if n else float("nan"), "small": n < min_size,
            })
    columns = [*by, "view", "n", "flips", "flip_rate", "flip_ci_low", "flip_ci_high", "accuracy_raw",
               "accuracy_view", "focus_change", "focus_ci_low", "focus_ci_high", "chance_change", "small"]
    return pd.DataFrame.from_records(records, columns=columns)


def flipped(rows: pd.DataFrame, view: str, k: int = 4) -> pd.DataFrame:
    """The `k` images with a face found whose prediction changes in `view`, surest raw answer first:
    the flips most worth looking at (file, labels, raw and view predictions, raw probability)."""
    faces = rows[rows["face_found"].astype(bool)]
    flips = faces[faces[view_column(view, "pred")] != faces["pred"]]
    columns = ["file", "race", "gender", "pred", view_column(view, "pred"), "prob"]
    return flips.nlargest(k, "prob")[columns].reset_index(drop=True)


def has_agreement(rows: pd.DataFrame) -> bool:
    return AGREEMENT_MEAN in rows.columns


def agreement_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean agreement of every pair of methods over the images, symmetric, 1.0 on the diagonal."""
    matrix = pd.DataFrame(np.eye(len(CAM_METHODS)), index=list(CAM_METHODS), columns=list(CAM_METHODS))
    for a, b in method_pairs():
        matrix.loc[a, b] = matrix.loc[b, a] = float(rows[agreement_column(a, b)].mean())
    return matrix


def agreement_by_group(rows: pd.DataFrame, by: list[str], min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Mean "agree | mean" per group with its t-interval, n and small flag."""
    records = [_interval_row(labels, group[AGREEMENT_MEAN], min_size) for labels, group in _grouped(rows, by)]
    return pd.DataFrame.from_records(records, columns=[*by, "mean", "ci_low", "ci_high", "n", "small"])


def least_agreement(rows: pd.DataFrame, k: int = 12) -> pd.DataFrame:
    """The `k` images whose four maps agree least ("agree | mean" lowest first), with every pair."""
    pairs = [agreement_column(a, b) for a, b in method_pairs()]
    columns = ["file", "race", "gender", "pred", "correct", AGREEMENT_MEAN, *pairs]
    return rows.nsmallest(k, AGREEMENT_MEAN)[columns].reset_index(drop=True)
