"""Where does it fail? The model's accuracy by slice of the data: each attribute's levels (the image-quality slices
first: small, blurry, dark or turned faces, faces MTCNN was unsure of; then a labelled folder's own columns),
alone and crossed with race and with gender, worst first, and whether a quality slice explains a group gap.

Each slice's accuracy comes from the one group table (`GroupFrame`, 95% Wilson interval) and is compared with the
other images' by a two-proportion z-test; the false discovery rate over every slice a reader scans is controlled
with Benjamini-Hochberg (`groups.FDR_LEVEL`), so a slice is flagged as standing apart only when it survives that.
`explained_gap` asks whether a group gap follows image quality: each group's accuracy is standardised to the
whole set's mix of a slice's levels (each level's accuracy in the group, weighted by the level's share of all
images), and the gap between the standardised accuracies, with its bootstrap interval, is set against the raw
gap. Torch-free: it reads the cache only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from faircam.audit.groups import (
    FDR_LEVEL,
    INTERVALS,
    GroupFrame,
    bootstrap,
    label,
    size_label,
    spread_of,
    with_interval,
)
from faircam.config import MIN_GROUP_SIZE
from faircam.data.labelled import Attribute
from faircam.tasks import DEFAULT_TASK, Task, as_task
from faircam.wording import percent, points, q_value

# The labels every slice is crossed with, when the cache has them.
CROSSED = ("race", "gender")
# A slice "explains" a gap when standardising to the whole set's mix of its levels removes this share of it.
EXPLAINS = 0.25


def failure_attributes(attributes: list[Attribute]) -> list[Attribute]:
    """The attributes a reader scans for failures: the image-quality slices first, then the label file's columns."""
    return sorted(attributes, key=lambda a: a.source != "quality")


def slices(rows: pd.DataFrame, attributes: list[Attribute], task: str | Task = DEFAULT_TASK,
           min_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Every slice's accuracy: each attribute's levels, and each level crossed with race and with gender.

    One row per slice present: `attribute`, `grouping` (its name, "face size × race"), `group` (its label),
    `filters` (column -> value, what the Gallery filters by), `n`, `accuracy` with `accuracy_low` and
    `accuracy_high` (Wilson), `rest` (the other images' accuracy), `p` (two-proportion z-test against them), `q`
    (Benjamini-Hochberg over every large slice), `flagged` (q < `FDR_LEVEL`: it stands apart) and `small`. Large
    slices first, worst accuracy first; the small ones last, untested.
    """
    spec = as_task(task)
    known = rows[spec.correct].notna()
    total_hits, total = float(rows.loc[known, spec.correct].astype(bool).sum()), int(known.sum())
    parts = []
    for attribute in failure_attributes(attributes):
        for by in ([attribute.column], *[[attribute.column, c] for c in CROSSED if rows[c].notna().any()]):
            table = GroupFrame(rows, by, task=task, min_size=min_size).by_group
            names = [attribute.name, *by[1:]]
            table = table.assign(attribute=attribute.name, grouping=" × ".join(names) if len(names) > 1 else names[0],
                                 filters=[dict(zip(by, map(str, values))) for values in table[by].to_numpy()])
            parts.append(table[["attribute", "grouping", "group", "filters", "n", "small", "accuracy", "accuracy_n",
                                "accuracy_low", "accuracy_high"]])
    columns = ["attribute", "grouping", "group", "filters", "n", "accuracy", "accuracy_low", "accuracy_high", "rest",
               "p", "q", "flagged", "small"]
    if not parts:
        return pd.DataFrame(columns=columns)
    found = pd.concat(parts, ignore_index=True)
    hits = found["accuracy"] * found["accuracy_n"]
    rest_n = total - found["accuracy_n"]
    found["rest"] = (total_hits - hits) / rest_n.where(rest_n > 0)
    found["p"] = [_two_proportions(h, n, total_hits - h, total - n) for h, n in zip(hits, found["accuracy_n"])]
    found["q"], found["flagged"] = np.nan, False
    large = ~found["small"] & found["p"].notna()
    if large.any():
        from scipy.stats import false_discovery_control  # SciPy only when the page asks

        found.loc[large, "q"] = false_discovery_control(found.loc[large, "p"].to_numpy())
        found["flagged"] = found["q"] < FDR_LEVEL
    found = pd.concat([found[~found["small"]].sort_values("accuracy", kind="stable"), found[found["small"]]])
    return found[columns].reset_index(drop=True)


def _two_proportions(hits: float, n: float, other_hits: float, other_n: float) -> float:
    """Two-sided p-value of a two-proportion z-test (pooled); NaN when either side is empty or nothing varies."""
    if n == 0 or other_n == 0:
        return math.nan
    pooled = (hits + other_hits) / (n + other_n)
    if pooled in (0, 1):
        return 1.0
    z = (hits / n - other_hits / other_n) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / other_n))
    return math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True)
class Explained:
    """A group gap set against the same gap with every group given the whole set's mix of an attribute's levels.

    `raw` is the accuracy gap, `standardised` (with `low`, `high`, its bootstrap interval) the gap between the
    groups' standardised accuracies; `worst` the group with the lowest raw accuracy, `level` the level most
    over-represented in it among those classified worse than the whole set, with its share in the group and in
    all images, and its accuracy against the whole set's."""

    grouping: str
    attribute: str
    raw: float
    raw_low: float
    raw_high: float
    standardised: float
    low: float
    high: float
    worst: str
    level: str | None
    share_in_worst: float
    share_overall: float
    level_accuracy: float
    overall_accuracy: float

    @property
    def share(self) -> float:
        """The share of the raw gap that the attribute's mix accounts for (0 when it accounts for none)."""
        return max(0.0, 1 - self.standardised / self.raw) if self.raw > 0 else 0.0

    @property
    def explains(self) -> bool:
        """Whether the attribute accounts for at least `EXPLAINS` of the gap, through a level worse than the set's."""
        return self.share >= EXPLAINS and self.level is not None

    def words(self) -> str:
        """The finding in a sentence or two: whether the slice explains the gap, and how."""
        raw = points(self.raw)
        standard = f"{points(self.standardised)} (95% interval {self.low * 100:.1f}–{self.high * 100:.1f})"
        if self.explains:
            return (f"Part of the {self.grouping} gap follows {self.attribute}: {self.worst}'s photos are more often "
                    f"{self.level} ({self.share_in_worst:.0%}, against {self.share_overall:.0%} of all photos), and "
                    f"{self.level} photos are classified right {self.level_accuracy:.0%} of the time, against "
                    f"{self.overall_accuracy:.0%} overall. Were every {self.grouping} group's photos mixed by "
                    f"{self.attribute} as the whole set is, the accuracy gap would be {standard} instead of {raw}: "
                    f"{self.attribute} accounts for about {self.share:.0%} of it.")
        return (f"{self.attribute.capitalize()} does not explain the {self.grouping} gap: with every group's photos "
                f"mixed by {self.attribute} as the whole set is, it would be {standard}, against {raw}.")


def explained_gap(rows: pd.DataFrame, attribute: Attribute, grouping: str, by: list[str],
                  task: str | Task = DEFAULT_TASK, min_size: int = MIN_GROUP_SIZE, n_boot: int = 2000,
                  seed: int = 0) -> Explained | None:
    """Whether `attribute`'s mix of levels explains the accuracy gap between the groups of `by` (None when the gap
    is not defined: fewer than two groups large enough)."""
    spec = as_task(task)
    frame = GroupFrame(rows, by, task=task, min_size=min_size, n_boot=n_boot, seed=seed)
    raw = frame.gap("accuracy gap")
    if not raw.defined:
        return None
    table = frame.by_group
    eligible = (table["accuracy_n"] >= min_size).to_numpy()
    levels = pd.Categorical(rows[attribute.column].to_numpy(dtype=object),
                            categories=list(attribute.levels)).codes.astype(np.int64)
    right = rows[spec.correct].astype(bool).to_numpy(np.int64)
    inside = (frame.codes >= 0) & (levels >= 0) & rows[spec.correct].notna().to_numpy()
    g, k = len(table), len(attribute.levels)
    counts = np.bincount(((frame.codes * k + levels) * 2 + right)[inside], minlength=g * k * 2).reshape(g, k, 2)

    def standardised(draws: np.ndarray) -> dict[str, np.ndarray]:
        n = draws.sum(axis=-1)  # (..., groups, levels)
        with np.errstate(invalid="ignore", divide="ignore"):
            overall = draws[..., 1].sum(axis=-1) / n.sum(axis=-1)  # each group's own accuracy
            accuracy = np.where(n > 0, draws[..., 1] / n, overall[..., None])
            weights = n.sum(axis=-2) / n.sum(axis=(-1, -2))[..., None]  # the whole set's mix of levels
            adjusted = (accuracy * weights[..., None, :]).sum(axis=-1)
        return {"gap": spread_of(adjusted, eligible)}

    value = float(standardised(counts[None])["gap"][0])
    low, high = bootstrap(counts, standardised, n_boot, seed)["gap"]
    n = counts.sum(axis=-1)
    shares_all = n.sum(axis=0) / n.sum()
    accuracy_all = counts[..., 1].sum() / n.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        level_accuracy = counts[..., 1].sum(axis=0) / n.sum(axis=0)
    worst = int(raw.lowest.name)
    shares_worst = n[worst] / max(n[worst].sum(), 1)
    excess = np.where(level_accuracy < accuracy_all, shares_worst - shares_all, -np.inf)
    level = int(np.argmax(excess)) if np.isfinite(excess).any() and excess.max() > 0 else None
    return Explained(grouping=grouping, attribute=attribute.name, raw=raw.value, raw_low=raw.low, raw_high=raw.high,
                     standardised=value, low=low, high=high, worst=raw.lowest["group"],
                     level=None if level is None else label(attribute.levels[level]),
                     share_in_worst=float(shares_worst[level]) if level is not None else math.nan,
                     share_overall=float(shares_all[level]) if level is not None else math.nan,
                     level_accuracy=float(level_accuracy[level]) if level is not None else math.nan,
                     overall_accuracy=float(accuracy_all))


def quality_explanations(rows: pd.DataFrame, attributes: list[Attribute], groupings: dict[str, list[str]],
                         task: str | Task = DEFAULT_TASK) -> list[Explained]:
    """`explained_gap` of every image-quality slice for each of FairFace's groupings present among `groupings`
    (race, gender), the largest share explained first."""
    found = [explained_gap(rows, a, name, groupings[name], task) for a in attributes if a.source == "quality"
             for name in CROSSED if name in groupings]
    return sorted((e for e in found if e is not None), key=lambda e: -e.share)


def explanation_words(found: list[Explained]) -> list[str]:
    """What `quality_explanations` found, in sentences: each slice that explains a gap in full, then one sentence per
    grouping for the slices that do not, with the range their standardised gaps stay in."""
    said = [e.words() for e in found if e.explains]
    for grouping in dict.fromkeys(e.grouping for e in found):
        others = [e for e in found if e.grouping == grouping and not e.explains]
        if others:
            low, high = min(e.standardised for e in others), max(e.standardised for e in others)
            said.append(f"The {grouping} gap ({points(others[0].raw)}) does not follow "
                        f"{', '.join(e.attribute for e in others)}: with every group's photos mixed by each of these "
                        f"as the whole set is, it would be {points(low)} to {points(high)}.")
    return said


def slice_name(attribute: str, group: str) -> str:
    """"face size: small (under 64 px) / Black": a slice as the page names it."""
    return f"{attribute}: {group}"


def slices_table(found: pd.DataFrame) -> pd.DataFrame:
    """`slices` as people read it, four columns narrow enough for a projector: the slice with its n (small ones
    marked), its accuracy with its interval, the other images' accuracy, and the q value with a star where the
    slice stands apart."""
    return pd.DataFrame({
        "slice": [size_label(slice_name(g, v), int(n), bool(s))
                  for g, v, n, s in found[["grouping", "group", "n", "small"]].to_numpy()],
        f"accuracy ({INTERVALS['proportion']})": [
            with_interval(*v) for v in found[["accuracy", "accuracy_low", "accuracy_high"]].to_numpy()],
        "the other images": [percent(v) for v in found["rest"]],
        "q (Benjamini-Hochberg); ★ stands apart": [
            q_value(q) + (" ★" if f else "") for q, f in found[["q", "flagged"]].to_numpy()],
    })
