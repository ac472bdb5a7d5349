"""How often the model is right for one task: the overall accuracy, the confusion matrix, precision, recall
and F1 per class with their intervals, and precision-recall curves of gender's score per group.

Per-group numbers are `faircam.audit.groups.group_table`; the overall accuracy is its one-group case, so
it carries the same 95% Wilson interval. A class's precision and recall are proportions too (of the
images predicted as it, of the images labelled as it) and carry `groups.wilson_interval`; its F1 is
not a proportion and carries a percentile bootstrap interval (`groups.bootstrap`, the same resampling
as the gaps between groups). Only numpy and pandas: the Evaluation page is the first page most people
open (issue #4). The tests check every number here against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from faircam.audit.groups import N_BOOT, SEED, bootstrap, group_label, group_table, levels, wilson_interval
from faircam.config import MIN_GROUP_SIZE
from faircam.tasks import DEFAULT_TASK, Task, as_task


def confusion(rows: pd.DataFrame, task: str | Task = DEFAULT_TASK) -> pd.DataFrame:
    """Counts with true classes as rows and predicted classes as columns, in the task's class order
    (age bins youngest first)."""
    spec = as_task(task)
    classes = list(spec.classes)
    truth = pd.Categorical(rows[spec.truth], categories=classes)
    pred = pd.Categorical(rows[spec.pred], categories=classes)
    known = (truth.codes >= 0) & (pred.codes >= 0)
    counts = np.bincount(truth.codes[known] * len(classes) + pred.codes[known], minlength=len(classes) ** 2)
    return pd.DataFrame(counts.reshape(len(classes), len(classes)), index=pd.Index(classes, name="true"),
                        columns=pd.Index(classes, name="predicted"))


def row_shares(matrix: pd.DataFrame) -> pd.DataFrame:
    """Each true class's counts as shares of its row (its recall on the diagonal); 0 for an empty row."""
    return matrix.div(matrix.sum(axis=1).replace(0, 1), axis=0)


def _f1(counts: np.ndarray) -> np.ndarray:
    """F1 per class from confusion counts (..., K, K): 2·hits / (images labelled + images predicted as it);
    NaN where a class is neither labelled nor predicted."""
    hits = np.diagonal(counts, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * hits / (counts.sum(axis=-1) + counts.sum(axis=-2))


def overall_scores(rows: pd.DataFrame, task: str | Task = DEFAULT_TASK, n_boot: int = N_BOOT,
                   seed: int = SEED) -> pd.DataFrame:
    """Accuracy ("all", with its interval), then precision, recall and F1 per class with their intervals.

    Per class: `n` (images labelled as it, the support), `precision` with `precision_n` (images predicted
    as it) and its Wilson interval, `recall` with `recall_n` (= n) and its Wilson interval, `f1` with its
    percentile bootstrap interval (`f1_low`, `f1_high`). A value is 0 where undefined (scikit-learn's
    zero_division default), its interval NaN.
    """
    classes = list(as_task(task).classes)
    matrix = confusion(rows, task).to_numpy()
    hits, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(hits / predicted)
        recall = np.nan_to_num(hits / support)
    f1 = np.nan_to_num(_f1(matrix))
    f1_interval = bootstrap(matrix, lambda draws: dict(zip(classes, np.moveaxis(_f1(draws), -1, 0))), n_boot, seed)
    table = pd.DataFrame({
        "precision": precision, "recall": recall, "f1": f1, "n": support,
        "precision_n": predicted,
        "precision_low": [wilson_interval(h, n)[0] for h, n in zip(hits, predicted)],
        "precision_high": [wilson_interval(h, n)[1] for h, n in zip(hits, predicted)],
        "recall_n": support,
        "recall_low": [wilson_interval(h, n)[0] for h, n in zip(hits, support)],
        "recall_high": [wilson_interval(h, n)[1] for h, n in zip(hits, support)],
        "f1_low": [f1_interval[c][0] for c in classes], "f1_high": [f1_interval[c][1] for c in classes],
    }, index=pd.Index(classes, name="class"))
    everyone = group_table(rows, [], task=task).iloc[0]
    accuracy = pd.DataFrame(
        {"accuracy": [everyone["accuracy"]], "accuracy_low": [everyone["accuracy_low"]],
         "accuracy_high": [everyone["accuracy_high"]], "n": [everyone["accuracy_n"]]},
        index=pd.Index(["all"], name="class"),
    )
    return pd.concat([accuracy, table])


def precision_recall(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and the thresholds they hold at, as scikit-learn's `precision_recall_curve` gives them.

    A threshold t calls every image scoring t or more positive; one point per distinct score, from the
    highest threshold to the lowest, then (recall 0, precision 1) appended as scikit-learn does.
    """
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order].astype(float)
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last image of each distinct score
    true_pos = np.cumsum(positive)[last]
    called = last + 1.0
    precision = true_pos / called
    recall = true_pos / true_pos[-1] if true_pos[-1] else np.ones_like(true_pos)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], scores[last][::-1]


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """The area under a precision-recall curve as scikit-learn's `average_precision_score` sums it:
    precision at each threshold times the recall it adds."""
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def pr_curves(rows: pd.DataFrame, by: list[str], task: str | Task = DEFAULT_TASK,
              min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """One precision-recall curve per group of a binary task, from its score column (the positive class's
    probability, `faircam.tasks.Task.score`).

    For gender: the score is p_male, the positive class *Male*; a point is "of the faces scoring above a
    threshold (called male), the share that are men (precision), and the share of the group's men they
    hold (recall)". One row per group present with positives: the `by` columns, `group`, `n`, `small`,
    `positives`, `average_precision`, and the curve as arrays in `precision` and `recall`.
    """
    spec = as_task(task)
    if spec.score is None:
        raise ValueError(f"{spec.title} has no score of a positive class: a precision-recall curve needs one.")
    score = spec.score
    rows = rows.dropna(subset=[score])
    records = []
    keys = [pd.Series(pd.Categorical(rows[c], categories=levels(rows[c], c)), index=rows.index, name=c) for c in by]
    grouped = rows.groupby(keys, observed=True, sort=True)
    for values, group in grouped:
        values = values if isinstance(values, tuple) else (values,)
        positive = (group[spec.truth] == spec.positive).to_numpy()
        if not positive.any():
            continue
        precision, recall, _ = precision_recall(group[score].to_numpy(dtype=np.float64), positive)
        record = dict(zip(by, values))
        records.append(record | {"group": group_label(record, by), "n": len(group), "small": len(group) < min_size,
                                 "positives": int(positive.sum()),
                                 "average_precision": average_precision(precision, recall),
                                 "precision": precision, "recall": recall})
    columns = [*by, "group", "n", "small", "positives", "average_precision", "precision", "recall"]
    return pd.DataFrame.from_records(records, columns=columns)
