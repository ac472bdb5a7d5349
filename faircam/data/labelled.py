"""Any labelled face folder: a folder of images and a CSV naming them, with labels and any other attributes.

The CSV has a `file` column (each image's path relative to the folder), the labels of the tasks it has
(columns named as a task: `gender`, `race`, `age`, or any task of `faircam.tasks.TASKS`), written with
FairFace's names or the synonyms `faircam.tasks.Task.canonical` reads ("woman", "latino", "70+"), and any
other columns: skin tone, glasses, lighting, camera. The default task's labels (`gender`) are required, as
every model predicts it; a FairFace label column the CSV lacks is left empty, and its task is not audited.

Every other column becomes an attribute (`Attribute`), a grouping of the audit: a categorical column as it
is (at most `MAX_LEVELS` values; more is said in one line and the column is kept but not grouped by), a
numeric one binned into a level column ("monk (binned)": its values when there are at most `MAX_VALUES`
of them, else quartile ranges such as "3–5"). The levels and how they were made travel in the cache's
metadata (`Attribute.as_meta`), so every reader groups the same way. Rows are checked as FairFace's are
(`faircam.data.fairface`): a row with an unknown label or an unreadable image is dropped with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faircam.data.fairface import (
    LABEL_COLUMNS,
    FairFaceSplit,
    available_splits,
    describe_dropped,
    file_problem,
    load_split,
)
from faircam.errors import DataError
from faircam.tasks import DEFAULT_TASK, TASKS

# A categorical column with more values than this is not a grouping (a page of 300 groups of 3 faces says nothing).
MAX_LEVELS = 50
# A numeric column with at most this many distinct values is grouped by its values, else by quartiles.
MAX_VALUES = 10
QUANTILES = (0.25, 0.5, 0.75)
# Names an attribute column may not take: faircam's own columns and the prefixes of its column families.
RESERVED = {"file", "p_male", "face_found", "faces_found", "faith_sampled", "outcome", "n"}
RESERVED_MARKS = ("|", ":", "quality_")


@dataclass(frozen=True)
class Attribute:
    """A grouping beyond the task labels: its name, the cache column holding its levels, the levels in their
    order, whether that order means something (`ordered`: binned numbers), where it comes from (`source`:
    "labels" or "quality") and, for a binned number, the column of its values."""

    name: str
    column: str
    levels: tuple[str, ...]
    ordered: bool = False
    source: str = "labels"
    values: str | None = None

    def as_meta(self) -> dict:
        return {"name": self.name, "column": self.column, "levels": list(self.levels), "ordered": self.ordered,
                "source": self.source, "values": self.values}

    @classmethod
    def from_meta(cls, record: dict) -> Attribute:
        return cls(str(record["name"]), str(record["column"]), tuple(str(v) for v in record["levels"]),
                   bool(record.get("ordered")), str(record.get("source", "labels")),
                   None if record.get("values") is None else str(record["values"]))


def _number(value: float) -> str:
    """A level or bin edge as people write it: three significant digits, never in exponent notation
    (an ISO of 1600 is "1,600", not "1.6e+03")."""
    return f"{float(f'{value:.3g}'):,.12f}".rstrip("0").rstrip(".")


def bin_numbers(name: str, values: pd.Series) -> tuple[Attribute, pd.Series]:
    """A numeric column's attribute and its level per row: its values when there are at most `MAX_VALUES` of
    them, else quartile ranges ("3.2–5", the upper end included); a missing value has no level."""
    present = values.dropna()
    column = f"{name} (binned)"
    distinct = np.sort(present.unique())
    if len(distinct) <= MAX_VALUES:
        names = [_number(v) for v in distinct]
        levels = values.map(lambda v: None if pd.isna(v) else _number(v))
        return Attribute(name, column, tuple(names), ordered=True, values=name), levels
    edges = np.unique(np.quantile(present, (0, *QUANTILES, 1)))
    names = [f"{_number(lo)}–{_number(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]
    binned = pd.cut(values, edges, labels=names, include_lowest=True)
    return Attribute(name, column, tuple(names), ordered=True, values=name), binned.astype(object).where(
        binned.notna(), None)


def _attribute(name: str, values: pd.Series) -> tuple[Attribute | None, pd.DataFrame, str]:
    """An extra column as an attribute, the columns it adds to the rows, and a line when it is not a grouping."""
    text = values.where(values != "", None)
    numbers = pd.to_numeric(text, errors="coerce")
    if text.notna().any() and numbers[text.notna()].notna().all():
        attribute, levels = bin_numbers(name, numbers)
        return attribute, pd.DataFrame({name: numbers, attribute.column: levels}), ""
    distinct = sorted(text.dropna().unique())
    if len(distinct) > MAX_LEVELS:
        return None, pd.DataFrame({name: text}), (f"Column {name!r} has {len(distinct):,} values, more than "
                                                   f"{MAX_LEVELS}: it is kept but not used as a grouping.")
    return Attribute(name, name, tuple(distinct)), pd.DataFrame({name: text}), ""


def _check_name(csv: Path, name: str) -> None:
    from faircam.vision.quality import SLICES  # the slices' level columns: imported here, the module imports this one

    taken = {c for t in TASKS.values() for c in t.columns} | set(SLICES)
    if (not name or len(name) > 64 or not name.isprintable() or name in RESERVED or name in taken
            or any(mark in name for mark in RESERVED_MARKS) or name.endswith(" (binned)")):
        raise DataError(f"{csv.name}: the column {name!r} cannot be an attribute (empty, too long, or one of "
                        "faircam's own column names); rename it.")


def load_labelled(root: Path | str, labels: Path | str, check_files: bool = True) -> FairFaceSplit:
    """The usable rows of a labelled folder (`root`, the CSV `labels`), its dropped rows with their reasons, and
    its attributes (`FairFaceSplit.attributes`); `DataError` saying what to fix when it cannot be used."""
    root, csv = Path(root).expanduser(), Path(labels).expanduser()
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist or is not a folder.")
    if not csv.is_file():
        raise DataError(f"Label file {csv} does not exist.")
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{csv} cannot be read as CSV: {exc}") from None
    table.columns = [str(c).strip() for c in table.columns]
    if table.columns.duplicated().any():
        raise DataError(f"{csv.name} names a column twice: {', '.join(table.columns[table.columns.duplicated()])}.")
    for column in ("file", DEFAULT_TASK):
        if column not in table.columns:
            raise DataError(f"{csv.name} lacks the column {column!r}: a labelled folder's CSV needs `file` (the "
                            f"image's path relative to {root}) and `{DEFAULT_TASK}`.")
    table = table.apply(lambda column: column.str.strip())
    tasks = [t for t in TASKS if t in table.columns]
    reasons = pd.Series("", index=table.index)
    reasons[table["file"] == ""] = "no file name"
    labels_read = {}
    for task in tasks:
        canonical = table[task].map(TASKS[task].canonical)
        bad = canonical.isna() & (reasons == "")
        reasons[bad] = [f"unknown {task} {value!r}" if value else f"no {task}" for value in table[task][bad]]
        labels_read[task] = canonical
    if check_files:
        resolved = root.resolve()
        unchecked = reasons == ""
        reasons[unchecked] = [file_problem(resolved, f) for f in table["file"][unchecked]]
    keep = reasons == ""
    dropped = table.loc[~keep, ["file"]].assign(reason=reasons[~keep], line=table.index[~keep] + 2)
    if not keep.any():
        raise DataError(f"{csv.name} has no usable rows: {describe_dropped(dropped.reset_index(drop=True))} "
                        f"Image paths are read relative to {root}.")
    # FairFace's label columns always exist in the rows (empty where the CSV has none), then the other tasks' labels.
    rows = pd.DataFrame({"file": table["file"]})
    for column in [*LABEL_COLUMNS[1:], *[t for t in tasks if t not in LABEL_COLUMNS]]:
        rows[column] = labels_read[column] if column in labels_read else None
    attributes, notes = [], []
    for name in [c for c in table.columns if c not in rows.columns]:
        _check_name(csv, name)
        attribute, columns, note = _attribute(name, table.loc[keep, name])
        rows = rows.join(columns.reindex(rows.index))
        attributes += [attribute] if attribute else []
        notes += [note] if note else []
    return FairFaceSplit(root=root, split=csv.stem, rows=rows[keep].reset_index(drop=True),
                         dropped=dropped.reset_index(drop=True), attributes=[a.as_meta() for a in attributes],
                         labels=csv, notes=notes)


def labelled_tasks(tasks: dict[str, tuple[str, ...]], rows: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """A model's `tasks` whose labels the data has (a labelled folder may lack race or age): the tasks audited."""
    return {t: c for t, c in tasks.items() if t in rows and rows[t].notna().all()}


def load_data(root: Path | str, split: str, labels: Path | str | None = None) -> FairFaceSplit:
    """A labelled folder when `labels` names its CSV (`load_labelled`), else `split` of a FairFace folder."""
    return load_labelled(root, labels) if labels is not None else load_split(root, split)


def data_splits(root: Path | None, labels: Path | None = None) -> list[str]:
    """What a data folder offers: its label file's name for a labelled folder, else FairFace's splits present."""
    if labels is not None:
        return [Path(labels).stem] if root is not None and Path(root).is_dir() and Path(labels).is_file() else []
    return available_splits(root)
