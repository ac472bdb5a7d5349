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

A multi-class task (race, age) has no positive class, so those binary measures are gender's alone
(`BINARY_ONLY`). Its audit is each group's accuracy (and, for age, the share within one bin) and
each class's recall per group, and the gaps between groups in each (`fairness` with `task=`): the
same group table, fairlearn's `MetricFrame` for the gap values and the same bootstrap for their
intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import accuracy_score, recall_score

from faircam.audit.groups import (
    MEASURES,
    N_BOOT,
    SEED,
    TASKS,
    Measure,
    bootstrap,
    group_table,
    label,
    recall_of,
    shown,
    size_label,
)
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


# Said once where a multi-class task's fairness is shown (the Fairness page, the report).
BINARY_ONLY = ("Equalized odds, demographic parity and the true positive, false positive and selection rates need "
               "a two-class decision with a positive class: they are shown for the gender task only.")


def recall_key(cls: str) -> str:
    """The group-table column of one class's recall in a multi-class audit: "recall White"."""
    return f"recall {cls}"


def task_rates(task: str) -> dict[str, Measure]:
    """The per-group rates audited for a task: gender's `RATES`; for a multi-class task its accuracy, its share
    within one bin (ordinal tasks: age) and each class's recall, in class order."""
    spec = TASKS[task]
    if spec.positive is not None:
        return {r: MEASURES[r] for r in RATES}
    return {"accuracy": MEASURES["accuracy"], **({"within_one": MEASURES["within_one"]} if spec.ordinal else {}),
            **{recall_key(c): recall_of(c) for c in spec.classes}}


def rate_title(rate: str, task: str = "gender") -> str:
    """A rate's short name in tables and axes: "men called male (TPR)", "within one bin", "recall of White"."""
    if TASKS[task].positive is not None or rate == "accuracy":
        return RATE_TITLES[rate]
    return "within one bin" if rate == "within_one" else f"recall of {label(rate.removeprefix('recall '))}"


def rate_words(rate: str, task: str = "gender") -> str:
    """A rate in plain words, as the Fairness page and the report say it."""
    spec = TASKS[task]
    if spec.positive is not None:
        return RATE_WORDS[rate]
    if rate == "accuracy":
        return f"Accuracy: share of the group's faces whose {spec.title} the model gets right (FairFace's label)."
    if rate == "within_one":
        return "Within one bin: share of the group's faces put in the right age bin or a neighbouring one."
    cls = label(rate.removeprefix("recall "))
    return f"Recall of {cls}: share of the group's faces labelled {cls} that the model calls {cls}."


def gap_words(name: str, task: str = "gender") -> str:
    """A gap in plain words: `GAP_WORDS` for gender's; a multi-class task's accuracy, within-one and recall gaps."""
    if name in GAP_WORDS:
        return GAP_WORDS[name]
    if name == "within-one gap":
        return "Best minus worst group share within one age bin."
    cls = name.removeprefix("recall gap: ")
    return (f"Highest minus lowest recall of {cls} among the groups with at least {MIN_GROUP_SIZE} faces labelled "
            f"{cls}: 0 means the model recognises {cls} faces equally well in every group.")


@dataclass(frozen=True)
class Fairness:
    """Per-group rates (from the group table) and the gaps between groups for one grouping.

    `groups`: `group_table`'s rows for `RATES` (the grouping's columns, `group`, `n`, `small`, each
    rate with `_n`, `_low`, `_high`: Wilson intervals) plus `men` and `women`, in the order pages
    show them (`faircam.audit.groups.shown`: large groups by accuracy, then the small ones).
    `gaps`: one row per name in `GAPS`: `value`, `ci_low`, `ci_high` (bootstrap), `groups_compared`,
    `highest`, `lowest` (group labels with their n), `excluded` (groups left out as too small) and
    `note` (why a gap is not defined, when it is NaN).

    For a multi-class `task` the rates are `task_rates(task)` (accuracy, within one bin for age, each
    class's recall; no men and women columns) and the gaps the accuracy gap, the within-one gap (age)
    and a recall gap per class ("recall gap: White").
    """

    by: list[str]
    groups: pd.DataFrame
    gaps: pd.DataFrame
    min_size: int
    n_boot: int
    seed: int
    task: str = "gender"

    @property
    def rates(self) -> list[str]:
        """The rates of `groups` worth showing, in order. Split by a multi-class task's own label (race by race),
        each group's only class recall is its accuracy, so the recall columns are left out of what is shown."""
        rates = list(task_rates(self.task))
        return [r for r in rates if not (self.own_label and r.startswith("recall "))]

    @property
    def own_label(self) -> bool:
        """Whether the groups are split by the task's label alone (race groups for the race task)."""
        return self.by == [TASKS[self.task].truth]

    @property
    def recall_gaps(self) -> pd.DataFrame:
        """A multi-class audit's recall gap rows (empty for gender's)."""
        return self.gaps.loc[[g for g in self.gaps.index if g.startswith("recall gap")]]


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
    """95% percentile-bootstrap interval (low, high) of each of `GAPS`, from cell counts (`groups.bootstrap`).

    `counts` is `cell_counts(...)`; `large` marks the groups the accuracy and parity gaps compare,
    `both` those equalized odds compares.
    """
    def gaps(draws: np.ndarray) -> dict[str, np.ndarray]:
        rates = _rates(draws)
        return {
            "accuracy gap": _spread(rates["accuracy"], large),
            "equalized odds difference": np.maximum(_spread(rates["tpr"], both), _spread(rates["fpr"], both)),
            "demographic parity difference": _spread(rates["selection_rate"], large),
        }

    return bootstrap(counts, gaps, n_boot, seed)


def _gap_row(name: str, value: float, interval: tuple[float, float], table: pd.DataFrame, eligible: np.ndarray,
             rate: str, note: str, counted: str = "") -> dict:
    """A gap's row; `counted` names the class whose images a left-out group had too few of ("Male (17 White)":
    17 White faces; the count is the rate's n), when that is not its images (a group with none of them is not
    left out: it has nothing to compare)."""
    usable = table[eligible]
    sizes = table[f"{rate}_n"] if counted else table["n"]
    excluded = [size_label(g, n, False) if not counted else f"{g} ({n:,} {counted})"
                for g, n in zip(table.loc[~eligible, "group"], sizes[~eligible]) if n or not counted]
    row = {"gap": name, "value": value, "ci_low": float(interval[0]), "ci_high": float(interval[1]),
           "groups_compared": int(eligible.sum()), "rate": rate, "highest": None, "lowest": None,
           "excluded": ", ".join(excluded), "note": note}
    if not np.isnan(value):
        hi, lo = usable.loc[usable[rate].idxmax()], usable.loc[usable[rate].idxmin()]
        row["highest"] = f"{hi['group']} ({hi[rate]:.1%}, n={hi[rate + '_n']:,})"
        row["lowest"] = f"{lo['group']} ({lo[rate]:.1%}, n={lo[rate + '_n']:,})"
    return row


def _cells(y_true: np.ndarray, y_pred: np.ndarray, groups: pd.DataFrame) -> dict:
    """fairlearn's arguments for rows given as their distinct (groups, true, predicted) cells, each weighted by
    its number of rows: the values equal the row-wise ones at a cost that does not grow with the rows
    (fairlearn stacks per-row arrays: 4.9 s for a 100,000-row cache's gaps, bench/pages.py)."""
    frame = groups.reset_index(drop=True).assign(_true=y_true, _pred=y_pred)
    cells = frame.value_counts(sort=False).reset_index()
    return {"y_true": cells["_true"].to_numpy(), "y_pred": cells["_pred"].to_numpy(),
            "sensitive_features": cells[list(groups.columns)], "sample_weight": cells["count"].to_numpy()}


def _metric_difference(metric: Callable[..., float], cells: dict) -> float:
    """`MetricFrame(...).difference()` of `metric` over weighted `_cells`."""
    weights = {"sample_weight": cells["sample_weight"]}
    return float(MetricFrame(metrics=metric, y_true=cells["y_true"], y_pred=cells["y_pred"],
                             sensitive_features=cells["sensitive_features"], sample_params=weights).difference())


def fairness(rows: pd.DataFrame, by: list[str], min_size: int = MIN_GROUP_SIZE, n_boot: int = N_BOOT,
             seed: int = SEED, task: str = "gender") -> Fairness:
    """Per-group accuracy, TPR, FPR and selection rate, and the gaps between groups, with 95% intervals.

    Rates and their Wilson intervals come from `group_table`; gap values from fairlearn over the same
    groups, their intervals from `bootstrap_intervals`. Gaps compare only groups with at least
    `min_size` images (equalized odds: at least `min_size` men and `min_size` women); the others are
    listed in `excluded`. Where the grouping includes the task's label itself, equalized odds and
    demographic parity are not defined and are NaN with a `note`. A multi-class task: `_multiclass`.
    """
    spec = TASKS[task]
    if spec.positive is None:
        return _multiclass(rows, by, min_size, n_boot, seed, task)
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
        kept = _cells(y_true[keep], y_pred[keep], features[keep])
        if name == "accuracy gap":
            value = _metric_difference(accuracy_score, kept)
        elif name == "equalized odds difference":
            value = equalized_odds_difference(**kept)
            spreads = {r: _spread(table[r].to_numpy(), eligible) for r in ("tpr", "fpr")}
            rate = max(spreads, key=spreads.get)
        else:
            value = demographic_parity_difference(**kept)
        gaps.append(_gap_row(name, float(value), intervals[name], table, eligible, rate, note))

    return Fairness(by=list(by), groups=shown(table, by), gaps=pd.DataFrame(gaps).set_index("gap"),
                    min_size=min_size, n_boot=n_boot, seed=seed, task=task)


def _recall_score(cls: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """scikit-learn's recall of one class, as a named function for fairlearn's `MetricFrame`."""
    def recall(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        return float(recall_score(y_true, y_pred, labels=[cls], average="macro", zero_division=np.nan,
                                  sample_weight=sample_weight))

    return recall


def _recall_gap(cls: str) -> str:
    return f"recall gap: {label(cls)}"


def _multiclass_gaps(draws: np.ndarray, eligible: dict[str, np.ndarray], classes: list[str],
                     ordinal: bool) -> dict[str, np.ndarray]:
    """Each gap of a multi-class audit from confusion counts per group, shape (..., groups, K, K), in `classes`
    order; `eligible` marks the groups each gap compares."""
    n = draws.sum(axis=(-1, -2))
    k = draws.shape[-1]
    steps = np.abs(np.subtract.outer(np.arange(k), np.arange(k)))
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = {"accuracy gap": np.trace(draws, axis1=-2, axis2=-1) / n,
                 "within-one gap": (draws * (steps <= 1)).sum(axis=(-1, -2)) / n}
        recalls = np.diagonal(draws, axis1=-2, axis2=-1) / draws.sum(axis=-1)  # (..., groups, K)
    if not ordinal:
        del rates["within-one gap"]
    rates |= {_recall_gap(c): recalls[..., i] for i, c in enumerate(classes)}
    return {name: _spread(values, eligible[name]) for name, values in rates.items()}


def _multiclass(rows: pd.DataFrame, by: list[str], min_size: int, n_boot: int, seed: int, task: str) -> Fairness:
    """`fairness` of a multi-class task: per group its accuracy (within one bin for age) and each class's recall,
    and the gaps in each between the groups large enough to compare.

    The accuracy and within-one gaps compare groups with at least `min_size` images; a class's recall gap those
    with at least `min_size` images labelled as that class. Split by the task's own label (race by race), each
    group holds one class, so the recall gaps are not defined; the accuracy gap then compares the classes'
    recalls. Gap values from fairlearn's `MetricFrame` over the eligible rows, intervals from `groups.bootstrap`.
    """
    spec = TASKS[task]
    rates = task_rates(task)
    table = group_table(rows, by, rates, task=task, min_size=min_size)
    classes = list(spec.classes)
    codes = pd.MultiIndex.from_frame(table[by]).get_indexer(pd.MultiIndex.from_frame(rows[by].reset_index(drop=True)))
    truth = pd.Categorical(rows[spec.truth], categories=classes).codes.astype(np.int64)
    pred = pd.Categorical(rows[spec.pred], categories=classes).codes.astype(np.int64)
    known = (truth >= 0) & (pred >= 0) & (codes >= 0)
    k, n_groups = len(classes), len(table)
    cells = ((codes * k + truth) * k + pred)[known]
    counts = np.bincount(cells, minlength=n_groups * k * k).reshape(n_groups, k, k)

    large = ~table["small"].to_numpy()
    eligible = {"accuracy gap": large, **({"within-one gap": large} if spec.ordinal else {}),
                **{_recall_gap(c): (table[f"{recall_key(c)}_n"] >= min_size).to_numpy() for c in classes}}
    intervals = bootstrap(counts, lambda draws: _multiclass_gaps(draws, eligible, classes, spec.ordinal), n_boot, seed)

    y_true, y_pred = rows[spec.truth].to_numpy(), rows[spec.pred].to_numpy()

    def within_one(t: np.ndarray, p: np.ndarray, sample_weight: np.ndarray) -> float:  # `MEASURES["within_one"]`
        values = MEASURES["within_one"].values(pd.DataFrame({spec.truth: t, spec.pred: p}), spec)[0]
        return float(np.average(values, weights=sample_weight))

    scores = {"accuracy gap": ("accuracy", accuracy_score, ""), "within-one gap": ("within_one", within_one, ""),
              **{_recall_gap(c): (recall_key(c), _recall_score(c), label(c)) for c in classes}}
    own_label = list(by) == [spec.truth]
    gaps = []
    for name, chosen in eligible.items():
        rate, score, counted = scores[name]
        note = ""
        if own_label and rate.startswith("recall "):
            note = (f"Not defined when the groups are split by {spec.title}, the label itself: each group holds faces "
                    "of one class only. The accuracy gap compares the classes' recalls.")
        elif chosen.sum() < 2:
            note = (f"Fewer than two groups have {min_size} or more images"
                    f"{f' labelled {counted}' if counted else ''}.")
        if note:
            row = _gap_row(name, np.nan, (np.nan, np.nan), table, chosen, rate, note, counted)
            if own_label and rate.startswith("recall "):
                row.update(groups_compared=0, excluded="")
            gaps.append(row)
            continue
        keep = np.isin(codes, np.flatnonzero(chosen))
        value = _metric_difference(score, _cells(y_true[keep], y_pred[keep], pd.DataFrame({"group": codes[keep]})))
        gaps.append(_gap_row(name, float(value), intervals[name], table, chosen, rate, "", counted))
    return Fairness(by=list(by), groups=shown(table, by), gaps=pd.DataFrame(gaps).set_index("gap"),
                    min_size=min_size, n_boot=n_boot, seed=seed, task=task)
