"""The one group table: groupings, group labels, interval methods and per-group statistics.

Every page, the model card and the report read group numbers from `group_table`, in the spirit of
fairlearn's `MetricFrame`: cache rows in, one row per group out, and for each measure its value,
its n, its 95% interval and the group's small flag. The groupings (`GROUPINGS`), the way a group
is named (`group_label`, `size_label`) and the interval method of each kind of measure
(`INTERVALS`) are defined here and nowhere else, so the same group shows the same numbers
everywhere.

Only numpy and pandas at import: the Evaluation page is the first page most people open, and
importing scikit-learn, SciPy and fairlearn cost it seconds (issue #4). The tests check these
numbers against scikit-learn, SciPy and fairlearn.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from faircam.config import CLASSES, MIN_GROUP_SIZE
from faircam.data.fairface import AGES, GENDERS, RACES, TASK_CLASSES
from faircam.evaluation.cache import task_column

# Display name -> the cache columns that define the groups.
GROUPINGS: dict[str, list[str]] = {
    "race": ["race"], "gender": ["gender"], "race × gender": ["race", "gender"], "age": ["age"],
}
# Each column's labels in their natural order (age bins youngest first).
LEVELS: dict[str, tuple[str, ...]] = {"race": RACES, "gender": GENDERS, "age": AGES}
# Groupings whose order means something: shown in that order, not ranked.
ORDINAL = ("age",)

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
N_BOOT = 2000  # bootstrap resamples of a difference between groups
SEED = 0  # seeded: the same cache gives the same intervals
# One interval method per kind of measure; pages and the report say these words.
INTERVALS = {
    "proportion": "95% Wilson interval",
    "mean": "95% t interval",
    "difference": f"95% percentile bootstrap interval ({N_BOOT:,} resamples, seed {SEED})",
}
# Where a page flags groups out of many comparisons, it controls the false discovery rate at this level.
FDR_LEVEL = 0.05
MULTIPLE_COMPARISONS = f"Benjamini-Hochberg false discovery rate control at {FDR_LEVEL:.0%}"


@dataclass(frozen=True)
class Task:
    """What one classifier head predicts: its truth, prediction and correctness columns and its classes.

    `positive` is the class binary measures count (fairlearn's pos_label); a multi-class task has none,
    and the binary-only measures (TPR, FPR, selection rate, equalized odds, demographic parity) are
    gender's alone. `ordinal` tasks (age bins) also count a prediction within one class of the truth.
    """

    name: str
    truth: str
    pred: str
    correct: str
    classes: tuple[str, ...]
    positive: str | None
    ordinal: bool = False

    @property
    def title(self) -> str:
        return {"age": "age group"}.get(self.name, self.name)


# Every task a faircam model can have; every function takes the task by name, and a cache says which it holds.
TASKS = {
    name: Task(name, truth=name, pred=task_column(name, "pred"), correct=task_column(name, "correct"),
               classes=classes, positive=CLASSES[1] if name == "gender" else None, ordinal=name == "age")
    for name, classes in TASK_CLASSES.items()
}


@dataclass(frozen=True)
class Measure:
    """A per-group statistic. `values(rows, task)` gives each row's value and whether the row counts.

    A proportion's values are 0/1 (a hit), a mean's any number; the measure is their mean over the
    rows that count, and `kind` picks its interval from `INTERVALS`.
    """

    kind: str
    values: Callable[[pd.DataFrame, Task], tuple[np.ndarray, np.ndarray]]


def _proportion(hit: Callable, among: Callable) -> Measure:
    def values(rows: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray]:
        truth, pred = rows[task.truth].to_numpy(), rows[task.pred].to_numpy()
        return hit(truth, pred, task).astype(float), among(truth, pred, task)

    return Measure("proportion", values)


def mean_of(column: str) -> Measure:
    """The mean of a cache column over the rows where it is not missing."""
    def values(rows: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray]:
        data = rows[column].to_numpy(dtype=np.float64)
        return data, ~np.isnan(data)

    return Measure("mean", values)


def _everyone(truth: np.ndarray, pred: np.ndarray, task: Task) -> np.ndarray:
    return np.ones(len(truth), bool)


def _within_one(truth: np.ndarray, pred: np.ndarray, task: Task) -> np.ndarray:
    """Predicted class at most one step from the true one (an ordinal task's classes are in order)."""
    position = {c: i for i, c in enumerate(task.classes)}
    return np.abs(np.array([position.get(t, -9) for t in truth]) - np.array([position.get(p, 9) for p in pred])) <= 1


def recall_of(cls: str) -> Measure:
    """The share of the images of class `cls` that the model puts in it (its recall, per group)."""
    return _proportion(lambda t, p, task: p == cls, lambda t, p, task: t == cls)


# Rates of the task's positive class (fairlearn's pos_label): for gender, "Male".
MEASURES: dict[str, Measure] = {
    "accuracy": _proportion(lambda t, p, task: t == p, _everyone),
    "tpr": _proportion(lambda t, p, task: p == task.positive, lambda t, p, task: t == task.positive),
    "fpr": _proportion(lambda t, p, task: p == task.positive, lambda t, p, task: t != task.positive),
    "selection_rate": _proportion(lambda t, p, task: p == task.positive, _everyone),
    # For an ordinal task (age): the share predicted in the right bin or a neighbouring one.
    "within_one": _proportion(_within_one, _everyone),
}


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN, NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = successes / n, Z_95 * Z_95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clipped: at p = 0 or 1 rounding can step a bound a hair outside [0, 1].
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: pd.Series | np.ndarray) -> tuple[float, float, float, int]:
    """Mean, 95% t interval (low, high) and n of the non-missing values; NaN bounds below n = 2."""
    # SciPy only here: the first page's accuracy tables never ask for a mean's interval.
    from scipy.stats import t as student_t

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


def bootstrap(counts: np.ndarray, statistic: Callable[[np.ndarray], dict[str, np.ndarray]], n_boot: int = N_BOOT,
              seed: int = SEED) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap interval (low, high) of each statistic of cell counts (`INTERVALS["difference"]`).

    `counts` holds how many rows fall in each cell (groups x true class x predicted class, or any shape);
    `statistic` maps resampled counts of shape (n_boot, *counts.shape) to named arrays of n_boot values
    (NaN where a resample leaves a statistic undefined). Resampling the rows with replacement (fairlearn's
    bootstrap) is the same as drawing the cell counts from a multinomial with the observed shares, which
    is what is done here: 2,000 resamples take milliseconds. Seeded: the same counts give the same intervals.
    Every bootstrap interval faircam shows (gaps between groups, a class's F1) comes from here.
    """
    flat = counts.ravel()
    if flat.sum() == 0:
        return {name: (float("nan"), float("nan")) for name in statistic(counts[None])}
    draws = np.random.default_rng(seed).multinomial(flat.sum(), flat / flat.sum(), size=n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a statistic no resample defines stays NaN
        samples = statistic(draws.reshape(n_boot, *counts.shape))
        return {name: tuple(float(q) for q in np.nanquantile(values, [0.025, 0.975]))
                for name, values in samples.items()}


def label(value: object) -> str:
    """A group value as people read it: "Latino_Hispanic" -> "Latino Hispanic"."""
    return str(value).replace("_", " ")


def group_label(row: pd.Series | dict, by: list[str]) -> str:
    """"Black / Female" for by = [race, gender]; "all" without grouping."""
    return " / ".join(label(row[c]) for c in by) if by else "all"


def small_mark(small: bool) -> str:
    """" ⚠ small" after a group too small to rank, "" otherwise."""
    return " ⚠ small" if small else ""


def size_label(name: str, n: int, small: bool) -> str:
    """A group's name with its n, marked when it is too small to rank: "Black (n=388)", "… ⚠ small"."""
    return f"{name} (n={n:,}){small_mark(small)}"


def levels(values: pd.Series | pd.Index, column: str) -> list:
    """The distinct values of a grouping column in their natural order (unknown values last, sorted)."""
    known = LEVELS.get(column, ())
    present = set(values.unique())
    return [v for v in known if v in present] + sorted(v for v in present if v not in known)


def group_table(rows: pd.DataFrame, by: list[str], measures: dict[str, Measure] | list[str] = ("accuracy",),
                task: str = "gender", min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Groups x measures: one row per group present, in the grouping's natural order.

    Columns: the `by` columns, `group` (its display label), `n` (images in the group), `small`
    (n < min_size), and per measure `<m>`, `<m>_n` (the rows it counts: men for a TPR),
    `<m>_low`, `<m>_high` (its interval by kind, `INTERVALS`). A measure with no row to count
    in a group is NaN there. `measures` are names in `MEASURES` or a dict of `Measure`s; with
    `by` empty the table has one row, "all".
    """
    chosen = {m: MEASURES[m] for m in measures} if not isinstance(measures, dict) else measures
    spec = TASKS[task]
    if by:
        keys = [pd.Series(pd.Categorical(rows[c], categories=levels(rows[c], c)), index=rows.index, name=c) for c in by]
        grouped = list(rows.groupby(keys, observed=True, sort=True))
    else:
        grouped = [((), rows)]
    records = []
    for values, group in grouped:
        values = values if isinstance(values, tuple) else (values,)
        record = dict(zip(by, values))
        record["group"] = group_label(record, by)
        record["n"] = len(group)
        record["small"] = len(group) < min_size
        for name, measure in chosen.items():
            data, counts = measure.values(group, spec)
            data = data[counts]
            n = len(data)
            if measure.kind == "proportion":
                hits = int(data.sum())
                value = hits / n if n else float("nan")
                low, high = wilson_interval(hits, n)
            else:
                value, low, high, n = mean_interval(data)
            record |= {name: value, f"{name}_n": n, f"{name}_low": low, f"{name}_high": high}
        records.append(record)
    columns = [*by, "group", "n", "small",
               *[f"{m}{suffix}" for m in chosen for suffix in ("", "_n", "_low", "_high")]]
    return pd.DataFrame.from_records(records, columns=columns)


def ranked(table: pd.DataFrame, measure: str = "accuracy") -> pd.DataFrame:
    """Groups large enough to compare by `measure`, highest first, then the small ones unranked."""
    large = table[~table["small"]].sort_values(measure, ascending=False, kind="stable")
    return pd.concat([large, table[table["small"]]], ignore_index=True)


def shown(table: pd.DataFrame, by: list[str], measure: str = "accuracy") -> pd.DataFrame:
    """The order a page lists groups in: ordinal groupings (age) in their order, others `ranked`."""
    return table.reset_index(drop=True) if list(by) in ([c] for c in ORDINAL) else ranked(table, measure)


def spread(table: pd.DataFrame, measure: str = "accuracy") -> dict:
    """Highest minus lowest `measure` among the groups large enough to compare (None if fewer than two)."""
    usable = ranked(table, measure)
    usable = usable[~usable["small"]].dropna(subset=[measure])
    if len(usable) < 2:
        return {"gap": None, "best": None, "worst": None, "groups_compared": len(usable)}
    best, worst = usable.iloc[0], usable.iloc[-1]
    return {"gap": float(best[measure] - worst[measure]), "best": best["group"], "best_n": int(best["n"]),
            "worst": worst["group"], "worst_n": int(worst["n"]), "groups_compared": len(usable)}


def with_interval(value: float, low: float, high: float) -> str:
    """"77.8% (71.3–83.1%)": a proportion as every page, the card and the report write it."""
    return "–" if pd.isna(value) else f"{value:.1%} ({low:.1%}–{high:.1%})"
