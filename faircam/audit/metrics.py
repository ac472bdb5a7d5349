"""The fairness audit of an evaluation cache: per-group rates and the gaps between groups.

Per-group rates come from the one group table (`faircam.audit.groups.group_table`), so a group's accuracy
and its 95% Wilson interval are the same numbers here as on every other page. What this module adds
is the gaps between groups: their values by fairlearn's definitions (`MetricFrame`,
`equalized_odds_difference`, `demographic_parity_difference`) over the same groups, and their 95%
percentile bootstrap intervals (`faircam.audit.groups.INTERVALS["difference"]`). Groups smaller than
`MIN_GROUP_SIZE` are flagged and left out of gaps, because a gap between two small groups is mostly
noise.

Positive class: the task's positive label ("Male" for gender, class 1 of faircam's checkpoints), as
fairlearn's `pos_label`. So the true positive rate is the share of men the model calls male, the
false positive rate the share of women it calls male, and the selection rate the share of a group
it calls male. The other direction follows: 1 - TPR is the share of men called female.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import accuracy_score

from faircam.audit.groups import N_BOOT, SEED, TASKS, group_table, shown, size_label
from faircam.config import MIN_GROUP_SIZE

POSITIVE_LABEL = TASKS["gender"].positive
RATES = ("accuracy", "tpr", "fpr", "selection_rate")
GAPS = ("accuracy gap", "equalized odds difference", "demographic parity difference")

RATE_TITLES = {"accuracy": "accuracy", "tpr": "men called male (TPR)", "fpr": "women called male (FPR)",
               "selection_rate": "called male (selection rate)"}
# Plain words for each number, shared by the Fairness page and the HTML report.
RATE_WORDS = {
    "accuracy": "Accuracy: share of the group's faces whose gender the model gets right.",
    "tpr": "True positive rate (TPR): share of the group's men the model calls male "
           "(1 − TPR of them are called female).",
    "fpr": "False positive rate (FPR): share of the group's women the model calls male "
           "(1 − FPR of them are called female, correctly).",
    "selection_rate": "Selection rate: share of the whole group the model calls male, right or wrong.",
}
GAP_WORDS = {
    "accuracy gap": "Best minus worst group accuracy. 0 means every group is classified equally well.",
    "equalized odds difference": "The larger of two spreads: between the groups' TPRs (how often men are "
                                 "recognised as men) and between their FPRs (how often women are called men). "
                                 "0 means the model errs at the same rates for everyone, whatever their group.",
    "demographic parity difference": "Highest minus lowest selection rate (share called male). It ignores the "
                                     "truth, so groups with more men in them score higher even for a perfect "
                                     "model: read it beside each group's share of men.",
}

# Equalized odds and demographic parity between groups that are split by gender, the label itself.
UNDEFINED_BY_GENDER = {
    "accuracy gap": "",
    "equalized odds difference": "Not defined when the groups are split by gender: TPR counts only men and FPR "
                                 "only women, so each group has just one of the two. Equalized odds across race "
                                 "already compares the race groups within each gender.",
    "demographic parity difference": "Not meaningful when the groups are split by gender: a correct model calls "
                                     "men male and women female, so their shares called male should differ. "
                                     "Read the accuracy gap instead.",
}


@dataclass(frozen=True)
class Fairness:
    """Per-group rates (from the group table) and the gaps between groups for one grouping.

    `groups`: `group_table`'s rows for `RATES` (the grouping's columns, `group`, `n`, `small`, each
    rate with `_n`, `_low`, `_high`: Wilson intervals) plus `men` and `women`, in the order pages
    show them (`faircam.audit.groups.shown`: large groups by accuracy, then the small ones).
    `gaps`: one row per name in `GAPS`: `value`, `ci_low`, `ci_high` (bootstrap), `groups_compared`,
    `highest`, `lowest` (group labels with their n), `excluded` (groups left out as too small) and
    `note` (why a gap is not defined, when it is NaN).
    """

    by: list[str]
    groups: pd.DataFrame
    gaps: pd.DataFrame
    min_size: int
    n_boot: int
    seed: int


def cell_counts(codes: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, n_groups: int) -> np.ndarray:
    """Counts per (group code, true class, predicted class), shape (n_groups, 2, 2); class 1 = positive."""
    return np.bincount(codes * 4 + y_true * 2 + y_pred, minlength=n_groups * 4).reshape(n_groups, 2, 2)


def _rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Each of `RATES` per group from counts of shape (..., groups, 2, 2); NaN where undefined."""
    n = counts.sum(axis=(-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": (counts[..., 0, 0] + counts[..., 1, 1]) / n,
            "tpr": counts[..., 1, 1] / counts[..., 1, :].sum(axis=-1),
            "fpr": counts[..., 0, 1] / counts[..., 0, :].sum(axis=-1),
            "selection_rate": counts[..., :, 1].sum(axis=-1) / n,
        }


def _spread(values: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Highest minus lowest value among the eligible groups (last axis); NaN if none is eligible."""
    chosen = values[..., eligible]
    if chosen.shape[-1] == 0:
        return np.full(chosen.shape[:-1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty resampled group is NaN, skipped
        return np.nanmax(chosen, axis=-1) - np.nanmin(chosen, axis=-1)


def bootstrap_intervals(counts: np.ndarray, large: np.ndarray, both: np.ndarray, n_boot: int = N_BOOT,
                        seed: int = SEED) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap interval (low, high) of each of `GAPS`, from cell counts.

    `counts` is `cell_counts(...)`; `large` marks the groups the accuracy and parity gaps compare,
    `both` those equalized odds compares. Resampling the rows with replacement (fairlearn's
    bootstrap) is the same as drawing the cell counts from a multinomial with the observed shares,
    which is what is done here: 2,000 resamples take milliseconds. Seeded: same input, same intervals.
    """
    flat = counts.ravel()
    draws = np.random.default_rng(seed).multinomial(flat.sum(), flat / flat.sum(), size=n_boot)
    rates = _rates(draws.reshape(n_boot, *counts.shape))
    gaps = {
        "accuracy gap": _spread(rates["accuracy"], large),
        "equalized odds difference": np.maximum(_spread(rates["tpr"], both), _spread(rates["fpr"], both)),
        "demographic parity difference": _spread(rates["selection_rate"], large),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a gap no resample defines stays NaN
        return {name: tuple(float(q) for q in np.nanquantile(samples, [0.025, 0.975]))
                for name, samples in gaps.items()}


def _gap_row(name: str, value: float, interval: tuple[float, float], table: pd.DataFrame, eligible: np.ndarray,
             rate: str, note: str) -> dict:
    usable = table[eligible]
    excluded = [size_label(g, n, False) for g, n in zip(table.loc[~eligible, "group"], table.loc[~eligible, "n"])]
    row = {"gap": name, "value": value, "ci_low": float(interval[0]), "ci_high": float(interval[1]),
           "groups_compared": int(eligible.sum()), "rate": rate, "highest": None, "lowest": None,
           "excluded": ", ".join(excluded), "note": note}
    if not np.isnan(value):
        hi, lo = usable.loc[usable[rate].idxmax()], usable.loc[usable[rate].idxmin()]
        row["highest"] = f"{hi['group']} ({hi[rate]:.1%}, n={hi[rate + '_n']:,})"
        row["lowest"] = f"{lo['group']} ({lo[rate]:.1%}, n={lo[rate + '_n']:,})"
    return row


def fairness(rows: pd.DataFrame, by: list[str], min_size: int = MIN_GROUP_SIZE, n_boot: int = N_BOOT,
             seed: int = SEED, task: str = "gender") -> Fairness:
    """Per-group accuracy, TPR, FPR and selection rate, and the gaps between groups, with 95% intervals.

    Rates and their Wilson intervals come from `group_table`; gap values from fairlearn over the same
    groups, their intervals from `bootstrap_intervals`. Gaps compare only groups with at least
    `min_size` images (equalized odds: at least `min_size` men and `min_size` women); the others are
    listed in `excluded`. Where the grouping includes the task's label itself, equalized odds and
    demographic parity are not defined and are NaN with a `note`.
    """
    spec = TASKS[task]
    table = group_table(rows, by, list(RATES), task=task, min_size=min_size)
    table["men"], table["women"] = table["tpr_n"], table["fpr_n"]
    y_true = (rows[spec.truth] == spec.positive).to_numpy(int)
    y_pred = (rows[spec.pred] == spec.positive).to_numpy(int)
    features = rows[by].reset_index(drop=True)
    codes = pd.MultiIndex.from_frame(table[by]).get_indexer(pd.MultiIndex.from_frame(features))
    counts = cell_counts(codes, y_true, y_pred, len(table))

    large = ~table["small"].to_numpy()
    both = (table["men"] >= min_size).to_numpy() & (table["women"] >= min_size).to_numpy()
    intervals = bootstrap_intervals(counts, large, both, n_boot, seed)

    gaps = []
    for name, eligible, rate in (("accuracy gap", large, "accuracy"),
                                 ("equalized odds difference", both, "tpr"),
                                 ("demographic parity difference", large, "selection_rate")):
        note = UNDEFINED_BY_GENDER[name] if spec.truth in by else ""
        if not note and eligible.sum() < 2:
            note = f"Fewer than two groups have {min_size} or more images{' of each gender' * (rate == 'tpr')}."
        if note:
            row = _gap_row(name, np.nan, (np.nan, np.nan), table, eligible, rate, note)
            if spec.truth in by:  # undefined for every group, not left out for size
                row.update(groups_compared=0, excluded="")
            gaps.append(row)
            continue
        keep = np.isin(codes, np.flatnonzero(eligible))
        kept = {"y_true": y_true[keep], "y_pred": y_pred[keep], "sensitive_features": features[keep]}
        if name == "accuracy gap":
            value = MetricFrame(metrics=accuracy_score, **kept).difference()
        elif name == "equalized odds difference":
            value = equalized_odds_difference(**kept)
            spreads = {r: _spread(table[r].to_numpy(), eligible) for r in ("tpr", "fpr")}
            rate = max(spreads, key=spreads.get)
        else:
            value = demographic_parity_difference(**kept)
        gaps.append(_gap_row(name, float(value), intervals[name], table, eligible, rate, note))

    return Fairness(by=list(by), groups=shown(table, by), gaps=pd.DataFrame(gaps).set_index("gap"),
                    min_size=min_size, n_boot=n_boot, seed=seed)
