"""The fairness audit of an evaluation cache: a task's per-group rates and the gaps between groups.

Rates and gaps are one `faircam.audit.groups.GroupFrame` over the task's measures (`task_measures`): each
group's rates with their 95% Wilson intervals (the same numbers as on every other page), and each gap
(`GroupFrame.gap`) with its 95% percentile bootstrap interval from the same definition. Groups smaller than
`MIN_GROUP_SIZE` are flagged and left out of gaps, because a gap between two small groups is mostly noise.

For a binary task the rates are of its positive class ("Male" for gender, fairlearn's `pos_label`): the true
positive rate is the share of men the model calls male, the false positive rate the share of women it calls
male, the selection rate the share of a group it calls male; the gaps are the accuracy gap, equalized odds
and demographic parity. A multi-class task (race, age) has no positive class: its rates are each group's
accuracy (within one class for an ordinal task) and each class's recall, its gaps the spreads of each.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from faircam.audit.groups import N_BOOT, SEED, GroupFrame, measure, task_measures
from faircam.config import MIN_GROUP_SIZE
from faircam.tasks import DEFAULT_TASK, Task, as_task


@dataclass(frozen=True)
class Fairness:
    """Per-group rates and the gaps between groups for one grouping and task.

    `groups`: the group table of the task's measures (the grouping's columns, `group`, `n`, `small`, each rate
    with `_n`, `_low`, `_high`), for a binary task with the counts of its positive and negative people (`men`,
    `women` for gender), in the order pages show them (large groups by accuracy, then the small ones; ordinal
    groupings in their order). `gaps`: `GroupFrame.gaps`, one row per gap of those measures.
    """

    by: list[str]
    groups: pd.DataFrame
    gaps: pd.DataFrame
    min_size: int
    n_boot: int
    seed: int
    task: str | Task = DEFAULT_TASK

    @property
    def rates(self) -> list[str]:
        """The rates of `groups` worth showing, in order: split by a task's own label (race by race), each group's
        only class recall is its accuracy, so the per-class measures are left out of what is shown."""
        own_label = self.by == [as_task(self.task).label_column]
        return [r for r in task_measures(self.task) if not (own_label and measure(r).per_class)]

    @property
    def headline(self) -> pd.DataFrame:
        """The gaps of the measures that are not per class (the Fairness page's metrics)."""
        return self.gaps.loc[[g for g, rate in self.gaps["rate"].items() if not measure(rate).per_class]]

    @property
    def per_class(self) -> pd.DataFrame:
        """The per-class gaps (a multi-class task's recall gaps; empty for a binary task)."""
        return self.gaps.loc[[g for g, rate in self.gaps["rate"].items() if measure(rate).per_class]]


def fairness(rows: pd.DataFrame, by: list[str], min_size: int = MIN_GROUP_SIZE, n_boot: int = N_BOOT,
             seed: int = SEED, task: str | Task = DEFAULT_TASK) -> Fairness:
    """The task's rates per group and the gaps between groups, with 95% intervals (`GroupFrame`)."""
    spec = as_task(task)
    frame = GroupFrame(rows, by, task_measures(task), task, min_size, n_boot, seed)
    table = frame.shown()
    if "tpr" in frame.measures and "fpr" in frame.measures:
        negatives, positives = spec.people
        table[positives], table[negatives] = table["tpr_n"], table["fpr_n"]
    return Fairness(by=list(by), groups=table, gaps=frame.gaps(), min_size=min_size, n_boot=n_boot, seed=seed,
                    task=task)
