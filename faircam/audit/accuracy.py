"""The overall accuracy and the confusion matrix of an evaluation cache, with precision, recall and F1 per class.

Per-group numbers are `faircam.audit.groups.group_table`; the overall accuracy is its one-group case, so
it carries the same 95% Wilson interval. Only numpy and pandas: the Evaluation page is the first
page most people open (issue #4). The tests check every number here against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from faircam.audit.groups import TASKS, group_table


def confusion(rows: pd.DataFrame, task: str = "gender") -> pd.DataFrame:
    """Counts with true classes as rows and predicted classes as columns."""
    spec = TASKS[task]
    classes = list(spec.classes)
    truth = pd.Categorical(rows[spec.truth], categories=classes)
    pred = pd.Categorical(rows[spec.pred], categories=classes)
    known = (truth.codes >= 0) & (pred.codes >= 0)
    counts = np.bincount(truth.codes[known] * len(classes) + pred.codes[known], minlength=len(classes) ** 2)
    return pd.DataFrame(counts.reshape(len(classes), len(classes)), index=pd.Index(classes, name="true"),
                        columns=pd.Index(classes, name="predicted"))


def overall_scores(rows: pd.DataFrame, task: str = "gender") -> pd.DataFrame:
    """Accuracy ("all", with its interval), and precision / recall / F1 per class, each with its support
    (0 where undefined)."""
    classes = list(TASKS[task].classes)
    matrix = confusion(rows, task).to_numpy()
    hits, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(hits / predicted)
        recall = np.nan_to_num(hits / support)
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    table = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "n": support},
                         index=pd.Index(classes, name="class"))
    everyone = group_table(rows, [], task=task).iloc[0]
    accuracy = pd.DataFrame(
        {"accuracy": [everyone["accuracy"]], "accuracy_low": [everyone["accuracy_low"]],
         "accuracy_high": [everyone["accuracy_high"]], "n": [everyone["n"]]},
        index=pd.Index(["all"], name="class"),
    )
    return pd.concat([accuracy, table])
