"""The one group table: groupings, group labels, the measures, their intervals, and the gaps between groups.

`GroupFrame` is shaped like fairlearn's `MetricFrame`: cache rows and a grouping in (any columns: one, or the
intersection of two), groups x measures out. `by_group` gives each group's value of each measure with its n,
its 95% interval and the group's small flag; `gap(name)` the highest minus the lowest value among the groups
large enough to compare, with a percentile-bootstrap interval computed from the same definition. Every page,
the model card and the report read group numbers from here, so the same group shows the same numbers, and
every gap its interval, everywhere.

Each measure is one entry of `MEASURES`, defined once on counts: a task measure by two masks over the task's
confusion matrix (which true x predicted cells it hits, and which it counts), so its value is hits / counted
and its bootstrap resamples the cells; a row measure by its per-row values (a share of rows or a mean). An
entry also carries its interval kind (`INTERVALS`), its words, the tasks it applies to and the gap it feeds:
measures sharing a gap name are combined as the larger of their spreads (equalized odds: TPR and FPR). A new
measure is one entry (tests/test_measures.py adds one and finds it on the Fairness page).

Only numpy and pandas at import: the Evaluation page is the first page most people open, and importing
scikit-learn, SciPy and fairlearn cost it seconds (issue #4). The tests check these numbers against
scikit-learn, SciPy and fairlearn, which stay their oracle.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from faircam.config import MIN_GROUP_SIZE
from faircam.data.fairface import AGES, GENDERS, RACES
from faircam.tasks import DEFAULT_TASK, TASKS, Task, as_task

if TYPE_CHECKING:
    from faircam.data.labelled import Attribute

# Display name -> the cache columns that define the groups.
GROUPINGS: dict[str, list[str]] = {
    "race": ["race"], "gender": ["gender"], "race × gender": ["race", "gender"], "age": ["age"],
}
# Each column's labels in their natural order (age bins youngest first).
LEVELS: dict[str, tuple[str, ...]] = {"race": RACES, "gender": GENDERS, "age": AGES}
# Groupings whose order means something: shown in that order, not ranked (so are ordered categorical columns).
ORDINAL = ("age",)


def groupings(rows: pd.DataFrame, attributes: Iterable[Attribute] = ()) -> dict[str, list[str]]:
    """Every grouping of these rows: FairFace's (`GROUPINGS`) whose labels the rows have, then one per attribute
    (`faircam.evaluation.cache.EvalCache.attributes`: a labelled folder's other columns, the image-quality
    slices), each by the column of its levels."""
    present = {c for c in rows.columns if rows[c].notna().any()}
    chosen = {name: by for name, by in GROUPINGS.items() if set(by) <= present}
    return chosen | {a.name: [a.column] for a in attributes if a.name not in chosen and a.column in present}


def intersection(first: str, second: str) -> str:
    """The name of the intersection of two groupings: "race × lighting"."""
    return f"{first} × {second}"

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


def _words(task: Task) -> dict[str, str]:
    """What a measure's words may name: the task's title, its positive and negative people and calls."""
    return {"title": task.title, "negatives": task.people[0], "positives": task.people[1],
            "neg": task.called[0], "pos": task.called[1], "min": str(MIN_GROUP_SIZE)}


Masks = Callable[[Task], np.ndarray]
RowValues = Callable[[pd.DataFrame, Task], tuple[np.ndarray, np.ndarray]]


def _everyone(task: Task) -> bool:
    return True


def _no_note(task: Task, by: list[str]) -> str:
    return ""


@dataclass(frozen=True)
class Measure:
    """A per-group statistic, defined once.

    A task measure gives `hit` and `among`, boolean masks over the task's confusion matrix (true class down,
    predicted across, in the task's class order): its value is the share of the counted cells' rows that hit.
    A row measure gives `values(rows, task)`: each row's value and whether the row counts (a proportion's values
    are 0/1). `kind` picks the interval (`INTERVALS`). `title` and `words` are format strings over the task's
    words (`{positives} called {pos} (TPR)`); `counted` says what its n counts ("men", "labelled White").
    `applies(task)` says which tasks have it; its spread between groups is the gap `gap` (None: no gap), and
    measures sharing a gap name make one gap, the larger of their spreads. `split_note(task, by)` says why the
    gap means nothing for a grouping ("" where it does).
    """

    name: str
    kind: str
    title: str
    words: str
    hit: Masks | None = None
    among: Masks | None = None
    values: RowValues | None = None
    applies: Callable[[Task], bool] = _everyone
    gap: str | None = None
    gap_words: str = ""
    counted: str = ""
    split_note: Callable[[Task, list[str]], str] = _no_note
    per_class: bool = False

    def title_for(self, task: Task) -> str:
        return self.title.format(**_words(task))

    def words_for(self, task: Task) -> str:
        return self.words.format(**_words(task))

    def gap_words_for(self, task: Task) -> str:
        return self.gap_words.format(**_words(task))


def _grid(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """Each confusion cell's true and predicted class index."""
    k = len(task.classes)
    return np.indices((k, k))


def _is(task: Task, cls: str | None) -> int:
    return task.classes.index(cls) if cls in task.classes else -1


def _all_cells(task: Task) -> np.ndarray:
    return np.ones((len(task.classes),) * 2, bool)


def _binary(task: Task) -> bool:
    return task.binary


def _by_label(note: str) -> Callable[[Task, list[str]], str]:
    """A binary measure's gap note for groupings that split the task's own label (each group has one class)."""
    def split_note(task: Task, by: list[str]) -> str:
        return note.format(**_words(task)) if task.label_column in by else ""

    return split_note


def _hits_positive(task: Task) -> np.ndarray:
    return _grid(task)[1] == _is(task, task.positive)


def _true_positive(task: Task) -> np.ndarray:
    return _grid(task)[0] == _is(task, task.positive)


def _within_one(task: Task) -> np.ndarray:
    truth, pred = _grid(task)
    return np.abs(truth - pred) <= 1


_EQUALIZED_ODDS = ("The larger of two spreads: between the groups' TPRs (how often {positives} are recognised as "
                   "{positives}) and between their FPRs (how often {negatives} are called {positives}). 0 means the "
                   "model errs at the same rates for everyone, whatever their group.")
_EO_BY_LABEL = ("Not defined when the groups are split by {title}: TPR counts only {positives} and FPR only "
                "{negatives}, so each group has just one of the two. Equalized odds across another grouping already "
                "compares its groups within each {title}.")

# Every measure a group table can hold, in the order pages show them. Rates of the task's positive class are
# fairlearn's (pos_label): for gender, "Male".
MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("accuracy", "proportion", "accuracy",
            "Accuracy: share of the group's faces whose {title} the model gets right.",
            hit=lambda t: _grid(t)[0] == _grid(t)[1], among=_all_cells, gap="accuracy gap",
            gap_words="Best minus worst group accuracy. 0 means every group is classified equally well."),
    Measure("tpr", "proportion", "{positives} called {pos} (TPR)",
            "True positive rate (TPR): share of the group's {positives} the model calls {pos} (1 − TPR of them are "
            "called {neg}).",
            hit=lambda t: _true_positive(t) & _hits_positive(t), among=_true_positive, applies=_binary,
            gap="equalized odds difference", gap_words=_EQUALIZED_ODDS, counted="{positives}",
            split_note=_by_label(_EO_BY_LABEL)),
    Measure("fpr", "proportion", "{negatives} called {pos} (FPR)",
            "False positive rate (FPR): share of the group's {negatives} the model calls {pos} (1 − FPR of them are "
            "called {neg}, correctly).",
            hit=lambda t: ~_true_positive(t) & _hits_positive(t), among=lambda t: ~_true_positive(t),
            applies=_binary, gap="equalized odds difference", gap_words=_EQUALIZED_ODDS, counted="{negatives}",
            split_note=_by_label(_EO_BY_LABEL)),
    Measure("selection_rate", "proportion", "called {pos} (selection rate)",
            "Selection rate: share of the whole group the model calls {pos}, right or wrong.",
            hit=_hits_positive, among=_all_cells, applies=_binary, gap="demographic parity difference",
            gap_words="Highest minus lowest selection rate (share called {pos}). It ignores the truth, so groups with "
                      "more {positives} in them score higher even for a perfect model: read it beside each group's "
                      "share of {positives}.",
            split_note=_by_label("Not meaningful when the groups are split by {title}: a correct model calls "
                                 "{positives} {pos} and {negatives} {neg}, so their shares called {pos} should "
                                 "differ. Read the accuracy gap instead.")),
    # For an ordinal task (age): the share predicted in the right class or a neighbouring one.
    Measure("within_one", "proportion", "within one bin",
            "Within one bin: share of the group's faces put in the right {title} bin or a neighbouring one.",
            hit=_within_one, among=_all_cells, applies=lambda t: t.ordinal, gap="within-one gap",
            gap_words="Best minus worst group share within one {title} bin."),
)}

# A multi-class task has no positive class: the binary measures are said once to be another task's.
BINARY_ONLY = ("Equalized odds, demographic parity and the true positive, false positive and selection rates need "
               "a two-class decision with a positive class: they are shown for "
               f"{' and '.join(t.title for t in TASKS.values() if t.binary)} only.")

RECALL = "recall "


def label(value: object) -> str:
    """A group value as people read it: "Latino_Hispanic" -> "Latino Hispanic"."""
    return str(value).replace("_", " ")


def recall_of(cls: str) -> Measure:
    """The share of the group's images of class `cls` the model puts in it (its recall, per group): one per class
    of a multi-class task, a measure of its own (`measure("recall White")`)."""
    name = label(cls).replace("{", "{{").replace("}", "}}")
    split = ("Not defined when the groups are split by {title}, the label itself: each group holds faces of one "
             "class only. The accuracy gap compares the classes' recalls.")
    return Measure(
        f"{RECALL}{cls}", "proportion", f"recall of {name}",
        f"Recall of {name}: share of the group's faces labelled {name} that the model calls {name}.",
        hit=lambda t: (_grid(t)[0] == _is(t, cls)) & (_grid(t)[1] == _is(t, cls)),
        among=lambda t: _grid(t)[0] == _is(t, cls), applies=lambda t: not t.binary and cls in t.classes,
        gap=f"recall gap: {label(cls)}", counted=f"labelled {name}", per_class=True,
        gap_words=f"Highest minus lowest recall of {name} among the groups with at least {{min}} faces labelled "
                  f"{name}: 0 means the model recognises {name} faces equally well in every group.",
        split_note=lambda t, by: split.format(**_words(t)) if list(by) == [t.label_column] else "")


def measure(name: str) -> Measure:
    """The measure called `name`: an entry of `MEASURES`, or a class's recall ("recall White")."""
    return recall_of(name.removeprefix(RECALL)) if name.startswith(RECALL) else MEASURES[name]


def task_measures(task: str | Task) -> dict[str, Measure]:
    """Every measure of `MEASURES` that applies to `task`, then, for a multi-class task, each class's recall."""
    spec = as_task(task)
    chosen = {n: m for n, m in MEASURES.items() if m.applies(spec)}
    return chosen | ({} if spec.binary else {m.name: m for m in map(recall_of, spec.classes)})


def mean_of(column: str) -> Measure:
    """The mean of a cache column over the rows where it is not missing (a row measure, t interval)."""
    def values(rows: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray]:
        data = rows[column].to_numpy(dtype=np.float64)
        return data, ~np.isnan(data)

    return Measure(column, "mean", column, f"Mean of {column}.", values=values, gap=f"{column} spread")


def share_of(name: str, hit: Callable[[pd.DataFrame], np.ndarray]) -> Measure:
    """The share of a group's rows for which `hit(rows)` is true (a row measure, Wilson interval)."""
    def values(rows: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(hit(rows), dtype=np.float64), np.ones(len(rows), bool)

    return Measure(name, "proportion", name, f"Share of {name}.", values=values, gap=f"{name} gap")


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN, NaN for n = 0)."""
    low, high = _wilson(np.array([successes]), np.array([n]))
    return float(low[0]), float(high[0])


def _wilson(hits: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`wilson_interval` of each (hits, n) pair at once."""
    hits, n = np.asarray(hits, np.float64), np.asarray(n, np.float64)
    z2 = Z_95 * Z_95
    with np.errstate(invalid="ignore", divide="ignore"):
        p = hits / n
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = Z_95 / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clipped: at p = 0 or 1 rounding can step a bound a hair past p, or outside [0, 1].
    low = np.clip(centre - half, 0.0, np.where(np.isnan(p), 1.0, p))
    high = np.clip(centre + half, np.where(np.isnan(p), 0.0, p), 1.0)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def mean_interval(values: pd.Series | np.ndarray) -> tuple[float, float, float, int]:
    """Mean, 95% t interval (low, high) and n of the non-missing values; NaN bounds below n = 2."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean, low, high = _t_intervals(np.array([values.sum()]), np.array([len(values)]), values - values.mean(),
                                   np.zeros(len(values), np.int64))
    return float(mean[0]), float(low[0]), float(high[0]), len(values)


def _t_intervals(sums: np.ndarray, n: np.ndarray, centred: np.ndarray,
                 codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's mean and 95% t interval from its values' sums and n; the spread from the values `centred` on
    any one number (with their groups' `codes`), so small spreads of large values are not lost to rounding. NaN
    bounds below n = 2."""
    # SciPy only here: the first page's accuracy tables never ask for a mean's interval.
    from scipy.stats import t as student_t

    size = len(n)
    local = np.bincount(codes, centred, minlength=size)
    local_sq = np.bincount(codes, centred ** 2, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / n
        var = np.maximum(local_sq - local ** 2 / n, 0) / (n - 1)
        half = np.where(n >= 2, student_t.ppf(0.975, np.maximum(n - 1, 1)) * np.sqrt(var / n), np.nan)
    return mean, mean - half, mean + half


def bootstrap(counts: np.ndarray, statistic: Callable[[np.ndarray], dict[str, np.ndarray]], n_boot: int = N_BOOT,
              seed: int = SEED) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap interval (low, high) of each statistic of cell counts (`INTERVALS["difference"]`).

    `counts` holds how many rows fall in each cell (groups x true class x predicted class, or any shape);
    `statistic` maps resampled counts of shape (n_boot, *counts.shape) to named arrays of n_boot values
    (NaN where a resample leaves a statistic undefined). Resampling the rows with replacement (fairlearn's
    bootstrap) is the same as drawing the cell counts from a multinomial with the observed shares, which
    is what is done here: 2,000 resamples take milliseconds. Seeded: the same counts give the same intervals.
    """
    flat = counts.ravel()
    if flat.sum() == 0:
        return {name: (float("nan"), float("nan")) for name in statistic(counts[None])}
    draws = np.random.default_rng(seed).multinomial(flat.sum(), flat / flat.sum(), size=n_boot)
    return _percentiles(statistic(draws.reshape(n_boot, *counts.shape)))


def _percentiles(samples: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a statistic no resample defines stays NaN
        return {name: tuple(float(q) for q in np.nanquantile(values, [0.025, 0.975]))
                for name, values in samples.items()}


def spread_of(values: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Highest minus lowest value among the eligible groups (last axis); NaN if none is eligible."""
    chosen = values[..., eligible]
    if chosen.shape[-1] == 0:
        return np.full(chosen.shape[:-1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty resampled group is NaN, skipped
        return np.nanmax(chosen, axis=-1) - np.nanmin(chosen, axis=-1)


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
    """The distinct values of a grouping column in their natural order: a categorical column's own order, FairFace's
    order for its labels, then unknown values sorted."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(pd.unique(values.dropna()))
        return [v for v in values.dtype.categories if v in present]
    known = LEVELS.get(column, ())
    present = set(pd.unique(values.dropna()))
    return [v for v in known if v in present] + sorted((v for v in present if v not in known), key=str)


def is_ordinal(rows: pd.DataFrame, by: list[str]) -> bool:
    """Whether a grouping's order means something (age bins, binned measurements): shown in order, not ranked."""
    return len(by) == 1 and (by[0] in ORDINAL or (isinstance(rows[by[0]].dtype, pd.CategoricalDtype)
                                                   and rows[by[0]].dtype.ordered))


@dataclass
class Gap:
    """Highest minus lowest value of a gap's measures among the groups large enough to compare, with its interval.

    `measure` is the measure whose spread it is (for equalized odds the larger of TPR's and FPR's); `highest` and
    `lowest` the groups' rows of the group table; `excluded` the groups left out as too small, as labels;
    `note` why it is not defined, when `value` is NaN.
    """

    name: str
    value: float
    low: float
    high: float
    measure: str
    groups_compared: int
    highest: pd.Series | None = None
    lowest: pd.Series | None = None
    excluded: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)

    def side(self, which: str) -> str:
        """"White (92.1%, n=384)": the highest or lowest group with its value and the n the measure counts."""
        row = self.highest if which == "highest" else self.lowest
        if row is None:
            return ""
        return f"{row['group']} ({row[self.measure]:.1%}, n={int(row[self.measure + '_n']):,})"

    def record(self) -> dict:
        """The gap as a row of `GroupFrame.gaps`."""
        return {"gap": self.name, "value": self.value, "ci_low": self.low, "ci_high": self.high,
                "groups_compared": self.groups_compared, "rate": self.measure,
                "highest": self.side("highest") or None, "lowest": self.side("lowest") or None,
                "excluded": ", ".join(self.excluded), "note": self.note}


def gap_with_interval(value: float, low: float, high: float) -> str:
    """"8.3 points (95% interval 4.1–12.0)": a gap as every page, the card and the report write it."""
    if value is None or pd.isna(value):
        return "–"
    return f"{value * 100:.1f} points (95% interval {low * 100:.1f}–{high * 100:.1f})"


class GroupFrame:
    """Groups x measures for one grouping (`by`: one column, the intersection of two, or none for everyone).

    `measures` are names (`measure`) or `Measure`s by name; `task` says which columns a task measure reads.
    Groups are the values present, in the grouping's natural order (`levels`); rows missing a value of `by`
    belong to none. Groups under `min_size` rows are `small`. Gaps compare the groups in which every measure of
    the gap counts at least `min_size` rows, and their intervals are seeded percentile bootstraps (`n_boot`).
    """

    def __init__(self, rows: pd.DataFrame, by: Iterable[str], measures: Iterable[str] | dict[str, Measure] =
                 ("accuracy",), task: str | Task = DEFAULT_TASK, min_size: int = MIN_GROUP_SIZE, n_boot: int = N_BOOT,
                 seed: int = SEED) -> None:
        self.by, self.task, self.min_size, self.n_boot, self.seed = list(by), as_task(task), min_size, n_boot, seed
        self.measures = dict(measures) if isinstance(measures, dict) else {m: measure(m) for m in measures}
        self.rows = rows
        self.groups, self.codes = self._groups(rows)

    def _groups(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """One row per group present (its `by` values, label, n, small flag) and each row's group (-1: none)."""
        if not self.by:
            table = pd.DataFrame({"group": ["all"], "n": [len(rows)]})
            return table.assign(small=table["n"] < self.min_size), np.zeros(len(rows), np.int64)
        code = np.zeros(len(rows), np.int64)
        known = np.ones(len(rows), bool)
        names = []
        for column in self.by:
            present = levels(rows[column], column)
            # As plain values: recoding a categorical column onto the levels present warns of its unused ones.
            codes = pd.Categorical(rows[column].to_numpy(dtype=object), categories=present).codes.astype(np.int64)
            known &= codes >= 0
            code = code * max(len(present), 1) + codes
            names.append(present)
        ids, codes = np.unique(np.where(known, code, -1), return_inverse=True)
        inside = ids >= 0
        offset = int((~inside).sum())  # the "no group" id sorts first
        codes = codes.astype(np.int64) - offset
        ids = ids[inside]
        values = {}
        for column, present in zip(reversed(self.by), reversed(names)):
            values[column] = [present[i] for i in ids % max(len(present), 1)]
            ids = ids // max(len(present), 1)
        table = pd.DataFrame({c: values[c] for c in self.by})
        table["group"] = [group_label(r, self.by) for r in table.to_dict("records")]
        table["n"] = np.bincount(codes[codes >= 0], minlength=len(table)) if len(table) else []
        table["small"] = table["n"] < self.min_size
        return table, codes

    # --- counts -----------------------------------------------------------------------------------------

    @cached_property
    def confusion(self) -> np.ndarray:
        """Rows per (group, true class, predicted class), shape (groups, K, K); rows with a class the task does not
        know (or no group) are not counted."""
        task, k, size = self.task, len(self.task.classes), len(self.groups)
        truth = pd.Categorical(self.rows[task.truth], categories=list(task.classes)).codes.astype(np.int64)
        pred = pd.Categorical(self.rows[task.pred], categories=list(task.classes)).codes.astype(np.int64)
        known = (truth >= 0) & (pred >= 0) & (self.codes >= 0)
        cells = ((self.codes * k + truth) * k + pred)[known]
        return np.bincount(cells, minlength=size * k * k).reshape(size, k, k)

    def _task_values(self, m: Measure, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A task measure's hits and counted rows per group from confusion counts (..., groups, K, K)."""
        hit, among = m.hit(self.task), m.among(self.task)
        return (counts * (hit & among)).sum(axis=(-1, -2)), (counts * among).sum(axis=(-1, -2))

    @cached_property
    def _row_values(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each row measure's values and counted flags, for the rows that belong to a group."""
        inside = self.codes >= 0
        return {name: tuple(a[inside] for a in m.values(self.rows, self.task))
                for name, m in self.measures.items() if m.values is not None}

    # --- the table --------------------------------------------------------------------------------------

    @cached_property
    def by_group(self) -> pd.DataFrame:
        """Groups x measures: the `by` columns, `group` (its display label), `n` (rows in the group), `small`
        (n < min_size), and per measure `<m>`, `<m>_n` (the rows it counts: men for a TPR), `<m>_low`, `<m>_high`
        (its interval by kind, `INTERVALS`). A measure with no row to count in a group is NaN there."""
        table = self.groups.copy()
        size = len(table)
        codes = self.codes[self.codes >= 0]
        for name, m in self.measures.items():
            if m.values is None:
                hits, n = self._task_values(m, self.confusion)
                with np.errstate(invalid="ignore", divide="ignore"):
                    value = hits / n
                low, high = _wilson(hits, n)
            else:
                data, counted = self._row_values[name]
                where, values = codes[counted], data[counted]
                n = np.bincount(where, minlength=size)
                sums = np.bincount(where, values, minlength=size)
                if m.kind == "proportion":
                    with np.errstate(invalid="ignore", divide="ignore"):
                        value = sums / n
                    low, high = _wilson(np.rint(sums), n)
                else:
                    centred = values - (values.mean() if len(values) else 0.0)
                    value, low, high = _t_intervals(sums, n, centred, where)
            table[name], table[f"{name}_n"] = np.asarray(value, float), np.asarray(n, np.int64)
            table[f"{name}_low"], table[f"{name}_high"] = low, high
        columns = [*self.by, "group", "n", "small",
                   *[f"{m}{suffix}" for m in self.measures for suffix in ("", "_n", "_low", "_high")]]
        return table[columns]

    def shown(self, measure: str = "accuracy") -> pd.DataFrame:
        """`by_group` in the order a page lists groups (`shown`)."""
        return shown(self.by_group, self.by, measure, ordinal=is_ordinal(self.rows, self.by))

    # --- gaps -------------------------------------------------------------------------------------------

    def gap_names(self) -> list[str]:
        """The gaps the frame's measures feed, in the measures' order."""
        return list(dict.fromkeys(m.gap for m in self.measures.values() if m.gap))

    def gap(self, name: str) -> Gap:
        """`name`'s value among the groups large enough to compare, and its 95% percentile-bootstrap interval."""
        members = [n for n, m in self.measures.items() if m.gap == name]
        if not members:
            raise KeyError(f"No measure of this frame feeds the gap {name!r}.")
        table = self.by_group
        eligible = np.logical_and.reduce([(table[f"{m}_n"] >= self.min_size).to_numpy() for m in members])
        counted = self._counted(members)
        excluded = [f"{g} ({n:,} {counted})" if counted else size_label(g, n, False)
                    for g, n in zip(table.loc[~eligible, "group"],
                                    table.loc[~eligible, f"{members[0]}_n" if counted else "n"])
                    if n or not counted]
        note = next((self.measures[m].split_note(self.task, self.by) for m in members
                     if self.measures[m].split_note(self.task, self.by)), "")
        if note:  # undefined for every group, not left out for size
            return Gap(name, math.nan, math.nan, math.nan, members[0], 0, note=note)
        if eligible.sum() < 2:
            each = f" of each {self.task.title}" if len(members) > 1 else f" {counted}" if counted else ""
            return Gap(name, math.nan, math.nan, math.nan, members[0], int(eligible.sum()), excluded=excluded,
                       note=f"Fewer than two groups have {self.min_size} or more images{each}.")
        spreads = {m: float(spread_of(table[m].to_numpy(float), eligible)) for m in members}
        chosen = max(spreads, key=spreads.get)
        usable = table[eligible]
        low, high = self._intervals(members, eligible)
        return Gap(name, spreads[chosen], low, high, chosen, int(eligible.sum()),
                   highest=usable.loc[usable[chosen].idxmax()], lowest=usable.loc[usable[chosen].idxmin()],
                   excluded=excluded)

    def _counted(self, members: list[str]) -> str:
        """What a one-measure gap's n counts, when not every image ("labelled White")."""
        counted = self.measures[members[0]].counted
        return counted.format(**_words(self.task)) if len(members) == 1 and counted else ""

    def _intervals(self, members: list[str], eligible: np.ndarray) -> tuple[float, float]:
        """The gap's percentile-bootstrap interval: its members' spreads recomputed on resampled rows."""
        ms = [self.measures[m] for m in members]
        if all(m.values is None for m in ms):  # task measures: the confusion cells, resampled together
            def statistic(draws: np.ndarray) -> dict[str, np.ndarray]:
                spreads = []
                for m in ms:
                    hits, n = self._task_values(m, draws)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        spreads.append(spread_of(hits / n, eligible))
                return {"gap": np.fmax.reduce(spreads)}

            return bootstrap(self.confusion, statistic, self.n_boot, self.seed)["gap"]
        samples = [self._resampled(m) for m in members]
        return _percentiles({"gap": np.fmax.reduce([spread_of(s, eligible) for s in samples])})["gap"]

    def _resampled(self, name: str) -> np.ndarray:
        """A row measure's group values over `n_boot` resamples of the rows, shape (n_boot, groups).

        A proportion: its (hit, miss, not counted) cells per group drawn from a multinomial, as `bootstrap` does.
        A mean: each group's values resampled with replacement (its n kept), a chunk of resamples at a time."""
        m, size = self.measures[name], len(self.groups)
        data, counted = self._row_values[name]
        codes = self.codes[self.codes >= 0]
        rng = np.random.default_rng(self.seed)
        if m.kind == "proportion":
            cells = np.stack([np.bincount(codes, counted & (data > 0.5), minlength=size),
                              np.bincount(codes, counted & (data <= 0.5), minlength=size),
                              np.bincount(codes, ~counted, minlength=size)], axis=-1).astype(np.int64)
            flat = cells.ravel()
            draws = rng.multinomial(flat.sum(), flat / flat.sum(), size=self.n_boot).reshape(self.n_boot, size, 3)
            with np.errstate(invalid="ignore", divide="ignore"):
                return draws[..., 0] / draws[..., :2].sum(axis=-1)
        out = np.full((self.n_boot, size), np.nan)
        for g in range(size):
            values = data[(codes == g) & counted]
            if len(values) == 0:
                continue
            for start in range(0, self.n_boot, 100):  # bounded memory: 100 resamples of the group at a time
                stop = min(start + 100, self.n_boot)
                out[start:stop, g] = values[rng.integers(0, len(values), (stop - start, len(values)))].mean(axis=1)
        return out

    def gaps(self, names: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per gap (default: every gap of the frame's measures), indexed by name: `value`, `ci_low`,
        `ci_high`, `groups_compared`, `rate` (the measure whose spread it is), `highest`, `lowest` (group labels
        with their value and n), `excluded` (groups left out as too small) and `note` (why it is not defined)."""
        records = [self.gap(n).record() for n in (self.gap_names() if names is None else names)]
        columns = ["gap", "value", "ci_low", "ci_high", "groups_compared", "rate", "highest", "lowest", "excluded",
                   "note"]
        return pd.DataFrame.from_records(records, columns=columns).set_index("gap")


def group_table(rows: pd.DataFrame, by: list[str], measures: dict[str, Measure] | Iterable[str] = ("accuracy",),
                task: str | Task = DEFAULT_TASK, min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """`GroupFrame(...).by_group`: groups x measures, one row per group present, in the grouping's natural order."""
    return GroupFrame(rows, by, measures, task, min_size).by_group


def ranked(table: pd.DataFrame, measure: str = "accuracy") -> pd.DataFrame:
    """Groups large enough to compare by `measure`, highest first, then the small ones unranked."""
    large = table[~table["small"]].sort_values(measure, ascending=False, kind="stable")
    return pd.concat([large, table[table["small"]]], ignore_index=True)


def shown(table: pd.DataFrame, by: list[str], measure: str = "accuracy", ordinal: bool | None = None) -> pd.DataFrame:
    """The order a page lists groups in: ordinal groupings (age, binned measurements) in their order, others
    `ranked`."""
    ordinal = list(by) in ([c] for c in ORDINAL) if ordinal is None else ordinal
    return table.reset_index(drop=True) if ordinal else ranked(table, measure)


def class_cell(cell: str, n: int, min_size: int) -> str:
    """A per-class rate's cell with the n it counts (the group's faces of that class), marked small under
    `min_size`: "50.0% (9.5–90.5%), n=2 ⚠ small"; "–" without any such face."""
    return f"{cell}, n={n:,}{small_mark(n < min_size)}" if n else "–"


def text_or(value: object, default: str = "–") -> str:
    """A text cell of a gap table (a group's label, a note), `default` where it is missing (None, NaN or "")."""
    return default if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" else str(value)


def with_interval(value: float, low: float, high: float) -> str:
    """"77.8% (71.3–83.1%)": a proportion as every page, the card and the report write it."""
    return "–" if pd.isna(value) else f"{value:.1%} ({low:.1%}–{high:.1%})"
