"""FairFace folders: reading labels, checking them, filtering and sampling.

A FairFace folder holds `fairface_label_{train,val}.csv` (columns
`file,age,gender,race,service_test`) and the images those rows name, relative to the folder.
Problems in a folder are reported as `DataError` with a message a person can act on;
rows that name a missing image or an unknown label are dropped and listed, never fatal.
Only regular files inside the folder are read (symlinks that stay inside it too): a label file
made by someone else cannot point faircam at other files, nor learn whether they exist. Every data image
is read by `read_data_image`, which checks the file it opened, not a name checked earlier.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from faircam.config import MAX_IMAGE_SIDE
from faircam.data.images import read_open_file
from faircam.errors import DataError, ImageError

SPLITS = ("train", "val")
RACES = (
    "White",
    "Black",
    "Latino_Hispanic",
    "East Asian",
    "Southeast Asian",
    "Indian",
    "Middle Eastern",
)
GENDERS = ("Female", "Male")
AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
# In the order a cache's rows hold them.
LABEL_COLUMNS = ("file", "race", "gender", "age")


@dataclass
class FairFaceSplit:
    """The usable rows of one split, and the rows that were dropped with the reason.

    A labelled folder (`faircam.data.labelled.load_labelled`) also has its label file (`labels`), the groupings
    its other columns make (`attributes`, as the cache's metadata stores them) and lines about columns that are
    not groupings (`notes`); FairFace's layout has none."""

    root: Path
    split: str
    rows: pd.DataFrame
    dropped: pd.DataFrame = field(default_factory=pd.DataFrame)
    attributes: list[dict] = field(default_factory=list)
    labels: Path | None = None
    notes: list[str] = field(default_factory=list)


def label_file(root: Path, split: str) -> Path:
    return Path(root) / f"fairface_label_{split}.csv"


def _inside(root: Path, file: str) -> str | None:
    """The real path of `file` relative to `root` (a resolved folder), links followed; None when it leads out."""
    path = os.path.realpath(root / file)
    return os.path.relpath(path, root) if os.path.commonpath([path, root]) == str(root) else None


def file_problem(root: Path, file: str) -> str:
    """Why `file` (relative to `root`, the resolved data folder) cannot be read as a data image, or "".

    A missing and an unreadable file get the same reason, so the answer says nothing about files
    outside the reader's reach; a path leaving the folder is refused before the file is looked at.
    """
    try:
        name = _inside(root, file)
        if name is None:
            return "outside the data folder"
        regular = stat.S_ISREG(os.stat(root / name).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        regular = False
    return "" if regular and os.access(root / name, os.R_OK) else "image missing or unreadable"


def data_path(root: Path, file: str) -> Path | None:
    """The readable data image `file` under the folder `root`, or None (`file_problem` says why not).

    For file names that come from elsewhere than a checked label file (a cache's rows), so a page
    never offers a file from outside the data folder."""
    resolved = Path(os.path.realpath(root))
    return None if file_problem(resolved, file) else resolved / file


def _open_beneath(root: Path, name: str) -> int:
    """A read descriptor of `name` (relative, without links or "..") under the folder `root`: each part is opened
    under the one before without following links, so a part replaced by a link meanwhile fails to open."""
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        *parents, last = Path(name).parts
        for part in parents:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
        # Non-blocking: a FIFO put in the image's place must not keep the reader waiting.
        return os.open(last, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=folder)
    finally:
        os.close(folder)


def read_data_image(root: Path | str, file: str, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """The decoded image `file` (a label row's name) of the data folder `root`, read only from inside it.

    Links inside the folder are resolved, then the file is opened without following any link: an image
    replaced by a link to elsewhere after its label row was checked (or during this call) is refused with
    `ImageError`, and nothing outside the folder is opened.
    """
    root = Path(os.path.realpath(root))
    try:
        name = _inside(root, file)
    except ValueError:
        raise ImageError(f"Cannot read {file!r}: a file name cannot hold a NUL byte.") from None
    if name is None:
        raise ImageError(f"Cannot read {file}: it is outside the data folder {root}.")
    try:
        fd = _open_beneath(root, name)
    except OSError as exc:
        raise ImageError(f"Cannot read {root / file}: {exc.strerror or exc}.") from None
    return read_open_file(fd, str(root / file), max_side)


def available_splits(root: Path | None) -> list[str]:
    """The splits whose label file exists under `root` (none for a missing folder)."""
    if root is None or not Path(root).is_dir():
        return []
    return [s for s in SPLITS if label_file(root, s).is_file()]


def load_split(root: Path | str, split: str = "val", check_files: bool = True) -> FairFaceSplit:
    """Read one split's labels, keep the rows that can be used and report the others."""
    root = Path(root).expanduser()
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    if root.exists() and not root.is_dir():
        raise DataError(f"Data folder {root} is a file, not a folder.")
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist.")
    csv = label_file(root, split)
    if not csv.is_file():
        raise DataError(
            f"{root} is not a FairFace folder: {csv.name} is missing. "
            "Expected fairface_label_train.csv / fairface_label_val.csv beside the images."
        )
    try:
        labels = pd.read_csv(csv, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{csv} cannot be read as CSV: {exc}") from None
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise DataError(f"{csv.name} lacks the column(s) {', '.join(missing)}.")
    labels = labels[list(LABEL_COLUMNS)].fillna("")
    for column in LABEL_COLUMNS:
        labels[column] = labels[column].str.strip()

    # The first problem of each row is its reason, worded so the row can be fixed in the CSV.
    reasons = pd.Series("", index=labels.index)
    reasons[labels["file"] == ""] = "no file name"
    for column, allowed in (("race", RACES), ("gender", GENDERS), ("age", AGES)):
        bad = ~labels[column].isin(allowed) & (reasons == "")
        reasons[bad] = [f"unknown {column} {value!r}" if value else f"no {column}" for value in labels[column][bad]]
    if check_files:
        resolved = root.resolve()
        unchecked = reasons == ""
        reasons[unchecked] = [file_problem(resolved, f) for f in labels["file"][unchecked]]
    # A file listed twice would be counted twice, and its thumbnail's button would share its key with the first's.
    repeated = labels.loc[reasons == "", "file"].duplicated()
    reasons[repeated[repeated].index] = "listed again (a repeat of an earlier row)"
    # Line numbers as a spreadsheet shows them: the header is line 1.
    dropped = labels[reasons != ""].assign(reason=reasons[reasons != ""], line=labels.index[reasons != ""] + 2)
    dropped = dropped.reset_index(drop=True)
    rows = labels[reasons == ""].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{csv.name} has no usable rows: {describe_dropped(dropped)} "
                        f"Image paths are read relative to {root}.")
    return FairFaceSplit(root=root, split=split, rows=rows, dropped=dropped)


def describe_dropped(dropped: pd.DataFrame, total: int | None = None, shown: int = 5) -> str:
    """One sentence naming the first `shown` dropped rows (CSV line, file, reason) and how many there are.

    `total` is the full count when `dropped` holds only the first records (as a cache's metadata does).
    """
    total = len(dropped) if total is None else total
    if total == 0:
        return ""
    named = [
        " ".join(part for part in (f"line {int(row['line'])}" if "line" in row else "", row["file"]) if part)
        + f" ({row['reason']})"
        for _, row in dropped.head(shown).iterrows()
    ]
    rows = f"{total} label row{'s' if total != 1 else ''} dropped"
    if not named:
        return f"{rows}."
    more = f" and {total - len(named)} more" if total > len(named) else ""
    return f"{rows}: {', '.join(named)}{more}."


def filter_rows(
    rows: pd.DataFrame,
    races: list[str] | None = None,
    genders: list[str] | None = None,
    ages: list[str] | None = None,
    others: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Rows matching every given filter (`others`: any column's chosen values); an empty or None filter keeps
    everything."""
    keep = pd.Series(True, index=rows.index)
    for column, values in (("race", races), ("gender", genders), ("age", ages), *(others or {}).items()):
        if values:
            keep &= rows[column].isin(values)
    return rows[keep]


def balanced_sample(rows: pd.DataFrame, per_cell: int, seed: int = 0) -> pd.DataFrame:
    """Up to `per_cell` rows from every race x gender cell, the same rows for the same seed (rows without a race
    label, from a labelled folder without one, make one cell per gender)."""
    shuffled = rows.sample(frac=1, random_state=seed)
    return shuffled.groupby(["race", "gender"], dropna=False).head(per_cell).reset_index(drop=True)


def grid_sample(rows: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """Up to `size` rows for a picker grid: balanced across the race x gender cells present in `rows`,
    in shuffled order, the same rows for the same seed (another seed shows other faces)."""
    cells = max(1, rows.groupby(["race", "gender"], dropna=False).ngroups)
    return balanced_sample(rows, max(1, size // cells), seed=seed).sample(frac=1, random_state=seed).head(size)


def find_image(split: FairFaceSplit, file: str) -> pd.Series:
    """The labels of `file`, which must name one of the split's usable images (a link or a query string
    names images this way); `DataError` otherwise, so nothing outside the split's folder is ever read."""
    match = split.rows[split.rows["file"] == file]
    inside = (split.root / file).resolve().is_relative_to(split.root.resolve())
    if match.empty or not inside:
        raise DataError(f"{file!r} is not an image of the FairFace {split.split} split in {split.root}.")
    return match.iloc[0]
