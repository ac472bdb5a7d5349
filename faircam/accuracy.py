"""Accuracy tables from an evaluation cache: overall scores, the confusion matrix and per-group accuracy.

Every rate carries its sample size and a 95% Wilson interval, and groups smaller than
`MIN_GROUP_SIZE` are flagged and left out of gaps, because a gap between two small groups is
mostly noise.

Only numpy and pandas: the Evaluation page is the first page most people open, and importing
scikit-learn, SciPy and fairlearn for these counts cost it seconds (issue #4). The tests check every
number here against scikit-learn, SciPy and fairlearn's `MetricFrame`. The fairness audit, which
needs fairlearn's definitions, is `faircam.metrics`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from faircam.config import CLASSES, MIN_GROUP_SIZE

GROUPINGS = {"race": ["race"], "gender": ["gender"], "race x gender": ["race", "gender"], "age": ["age"]}
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN, NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = successes / n, Z_95 * Z_95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clipped: at p = 0 or 1 rounding can step a bound a hair outside [0, 1].
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion(rows: pd.DataFrame) -> pd.DataFrame:
    """Counts with true classes as rows and predicted classes as columns."""
    truth = pd.Categorical(rows["gender"], categories=CLASSES)
    pred = pd.Categorical(rows["pred"], categories=CLASSES)
    known = (truth.codes >= 0) & (pred.codes >= 0)
    counts = np.bincount(truth.codes[known] * len(CLASSES) + pred.codes[known], minlength=len(CLASSES) ** 2)
    return pd.DataFrame(counts.reshape(len(CLASSES), len(CLASSES)), index=pd.Index(CLASSES, name="true"),
                        columns=pd.Index(CLASSES, name="predicted"))


def overall_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy, and precision / recall / F1 per class, each with its support (0 where undefined)."""
    matrix = confusion(rows).to_numpy()
    hits, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(hits / predicted)
        recall = np.nan_to_num(hits / support)
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    table = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "n": support},
                         index=pd.Index(CLASSES, name="class"))
    correct = int((rows["gender"] == rows["pred"]).sum())
    low, high = wilson_interval(correct, len(rows))
    accuracy = pd.DataFrame(
        {"accuracy": [correct / len(rows) if len(rows) else float("nan")], "ci_low": [low], "ci_high": [high],
         "n": [len(rows)]},
        index=pd.Index(["all"], name="class"),
    )
    return pd.concat([accuracy, table])


def group_accuracy(rows: pd.DataFrame, by: list[str], min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Accuracy per group present, with n, 95% interval and a `small` flag, sorted by accuracy."""
    right = (rows["gender"] == rows["pred"]).rename("correct")
    grouped = right.groupby([rows[c] for c in by], observed=True)
    table = pd.DataFrame({"correct": grouped.sum(), "n": grouped.size()}).reset_index()
    table["accuracy"] = table["correct"] / table["n"]
    bounds = [wilson_interval(c, n) for c, n in zip(table["correct"], table["n"])]
    table["ci_low"] = [b[0] for b in bounds]
    table["ci_high"] = [b[1] for b in bounds]
    table["small"] = table["n"] < min_size
    table = table[[*by, "accuracy", "n", "ci_low", "ci_high", "small"]]
    return table.sort_values("accuracy", ascending=False, kind="stable", ignore_index=True)


def accuracy_gap(table: pd.DataFrame) -> dict:
    """Best minus worst accuracy among groups large enough to compare (None if fewer than two)."""
    usable = table[~table["small"]]
    if len(usable) < 2:
        return {"gap": None, "best": None, "worst": None, "groups_compared": len(usable)}
    best, worst = usable.iloc[0], usable.iloc[-1]
    label_columns = [c for c in table.columns if c not in ("accuracy", "n", "ci_low", "ci_high", "small")]
    return {
        "gap": float(best["accuracy"] - worst["accuracy"]),
        "best": " / ".join(str(best[c]) for c in label_columns),
        "best_n": int(best["n"]),
        "worst": " / ".join(str(worst[c]) for c in label_columns),
        "worst_n": int(worst["n"]),
        "groups_compared": len(usable),
    }

