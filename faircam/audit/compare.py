"""Several models' evaluation caches side by side: accuracy, per-group accuracy and gaps.

Models are compared on the images every cache holds (their `file` column), so a difference
between two models is never a difference between two image sets; each number keeps its n.
Torch-free: it reads caches only.
"""

from __future__ import annotations

import pandas as pd

from faircam.audit import groups
from faircam.evaluation.cache import EvalCache
from faircam.tasks import DEFAULT_TASK, Task


def shared_rows(caches: dict[str, EvalCache]) -> dict[str, pd.DataFrame]:
    """Each model's rows restricted to the images that every cache holds, in the same order."""
    files = None
    for cache in caches.values():
        present = set(cache.rows["file"])
        files = present if files is None else files & present
    return {
        name: cache.rows[cache.rows["file"].isin(files)].sort_values("file", ignore_index=True)
        for name, cache in caches.items()
    }


# A task for every model, or per model (`EvalCache.task`: a coarser model's compares in its own classes).
ModelTasks = str | Task | dict[str, Task]


def _task_of(task: ModelTasks, model: str) -> str | Task:
    return task[model] if isinstance(task, dict) else task


def summary(rows_by_model: dict[str, pd.DataFrame], task: ModelTasks = DEFAULT_TASK) -> pd.DataFrame:
    """One row per model: its `task` accuracy with its interval and n, and the best-minus-worst gap of each
    grouping with its bootstrap interval (`<grouping> gap`, `_low`, `_high`; groups under MIN_GROUP_SIZE left
    out; NaN and "–" when fewer than two are large enough), with the worst group and its n."""
    records = []
    for name, rows in rows_by_model.items():
        overall = groups.group_table(rows, [], task=_task_of(task, name)).iloc[0]
        record = {"model": name, "accuracy": overall["accuracy"], "accuracy_low": overall["accuracy_low"],
                  "accuracy_high": overall["accuracy_high"], "n": int(overall["n"])}
        for grouping, by in groups.GROUPINGS.items():
            gap = groups.GroupFrame(rows, by, task=_task_of(task, name)).gap("accuracy gap")
            # Fewer than two groups large enough: no gap, shown as a dash rather than ranked.
            record |= {f"{grouping} gap": gap.value, f"{grouping} gap_low": gap.low, f"{grouping} gap_high": gap.high}
            record[f"{grouping} worst"] = ("–" if not gap.defined
                                           else groups.size_label(gap.lowest["group"], gap.lowest["n"], small=False))
        records.append(record)
    return pd.DataFrame.from_records(records).set_index("model")


def summary_shown(table: pd.DataFrame) -> pd.DataFrame:
    """`summary` as the pages show it: accuracy with its interval, n with separators, gaps in points."""
    return pd.DataFrame({
        "model": table.index,
        f"accuracy ({groups.INTERVALS['proportion']})": [
            groups.with_interval(*v) for v in table[["accuracy", "accuracy_low", "accuracy_high"]].to_numpy()],
        "images": [f"{n:,}" for n in table["n"]],
        **{f"{grouping} gap": [groups.gap_with_interval(*v) for v in table[
            [f"{grouping} gap", f"{grouping} gap_low", f"{grouping} gap_high"]].to_numpy()]
           for grouping in groups.GROUPINGS},
        **{f"{grouping}: worst group": table[f"{grouping} worst"].tolist() for grouping in groups.GROUPINGS},
    })


def group_table(rows_by_model: dict[str, pd.DataFrame], by: list[str], task: ModelTasks = DEFAULT_TASK
                ) -> pd.DataFrame:
    """`task` accuracy, its interval and n per group (rows, in the grouping's order) for each model (columns
    `<model> accuracy`, `<model> accuracy_low`, `<model> accuracy_high`, `<model> n`), plus a `small`
    flag for groups under MIN_GROUP_SIZE in any model."""
    merged = None
    for name, rows in rows_by_model.items():
        table = groups.group_table(rows, by, task=_task_of(task, name))
        table = table[["group", "accuracy", "accuracy_low", "accuracy_high", "n", "small"]]
        table = table.rename(columns={c: f"{name} {c}" for c in table.columns if c != "group"})
        merged = table if merged is None else merged.merge(table, on="group", how="outer", sort=False)
    small_columns = [c for c in merged.columns if c.endswith(" small")]
    merged["small"] = merged[small_columns].fillna(True).astype(bool).any(axis=1)
    return merged.drop(columns=small_columns)
