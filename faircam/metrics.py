"""Numbers from an evaluation cache: overall scores, confusion matrix, per-group accuracy.

Every rate comes with its sample size and a 95% Wilson interval, and groups smaller than
`MIN_GROUP_SIZE` are flagged, because a gap between two small groups is mostly noise.
Group tables use fairlearn's `MetricFrame`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from faircam.config import CLASSES, MIN_GROUP_SIZE

GROUPINGS = {"race": ["race"], "gender": ["gender"], "race x gender": ["race", "gender"], "age": ["age"]}


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN, NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def overall_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy, and precision / recall / F1 per class, each with its support."""
    precision, recall, f1, support = precision_recall_fscore_support(
        rows["gender"], rows["pred"], labels=list(CLASSES), zero_division=0
    )
    table = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "n": support}, index=pd.Index(CLASSES, name="class")
    )
    correct = int(rows["correct"].sum())
    low, high = wilson_interval(correct, len(rows))
    accuracy = pd.DataFrame(
        {"accuracy": [accuracy_score(rows["gender"], rows["pred"])], "ci_low": [low], "ci_high": [high],
         "n": [len(rows)]},
        index=pd.Index(["all"], name="class"),
    )
    return pd.concat([accuracy, table])


def confusion(rows: pd.DataFrame) -> pd.DataFrame:
    """Counts with true classes as rows and predicted classes as columns."""
    matrix = confusion_matrix(rows["gender"], rows["pred"], labels=list(CLASSES))
    return pd.DataFrame(matrix, index=pd.Index(CLASSES, name="true"), columns=pd.Index(CLASSES, name="predicted"))


def group_accuracy(rows: pd.DataFrame, by: list[str], min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Accuracy per group with n, 95% interval and a `small` flag, sorted by accuracy."""
    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "n": count},
        y_true=rows["gender"],
        y_pred=rows["pred"],
        sensitive_features=rows[by],
    )
    # fairlearn lists every combination of labels; combinations with no image have n = NaN.
    table = frame.by_group.dropna(subset=["n"]).reset_index()
    table["n"] = table["n"].astype(int)
    correct = np.rint(table["accuracy"] * table["n"]).astype(int)
    bounds = [wilson_interval(c, n) for c, n in zip(correct, table["n"])]
    table["ci_low"] = [b[0] for b in bounds]
    table["ci_high"] = [b[1] for b in bounds]
    table["small"] = table["n"] < min_size
    return table.sort_values("accuracy", ascending=False, ignore_index=True)


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


def focus_by_group(rows: pd.DataFrame, columns: list[str], by: list[str]) -> pd.DataFrame:
    """Mean of each focus column per group, with the group's n."""
    grouped = rows.groupby(by, observed=True)
    return grouped[columns].mean().join(grouped.size().rename("n")).reset_index()
