"""FairFace folders: reading labels, checking them, filtering and sampling.

A FairFace folder holds `fairface_label_{train,val}.csv` (columns
`file,age,gender,race,service_test`) and the images those rows name, relative to the folder.
Problems in a folder are reported as `DataError` with a message a person can act on;
rows that name a missing image or an unknown label are dropped and listed, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from faircam.errors import DataError

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
LABEL_COLUMNS = ("file", "age", "gender", "race")



@dataclass
class FairFaceSplit:
    """The usable rows of one split, and the rows that were dropped with the reason."""

    root: Path
    split: str
    rows: pd.DataFrame
    dropped: pd.DataFrame = field(default_factory=pd.DataFrame)

    def path(self, file: str) -> Path:
        return self.root / file


def label_file(root: Path, split: str) -> Path:
    return Path(root) / f"fairface_label_{split}.csv"


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
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv} cannot be read as CSV: {exc}") from None
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise DataError(f"{csv.name} lacks the column(s) {', '.join(missing)}.")
    labels = labels[list(LABEL_COLUMNS)].copy()
    labels["file"] = labels["file"].astype(str).str.strip()

    reasons = pd.Series("", index=labels.index)
    reasons[~labels["race"].isin(RACES)] = "unknown race"
    reasons[~labels["gender"].isin(GENDERS)] = "unknown gender"
    reasons[~labels["age"].isin(AGES)] = "unknown age"
    if check_files:
        exists = pd.Series([(root / f).is_file() for f in labels["file"]], index=labels.index, dtype=bool)
        reasons[~exists & (reasons == "")] = "image missing"
    dropped = labels[reasons != ""].assign(reason=reasons[reasons != ""])
    rows = labels[reasons == ""].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{csv.name} has no usable rows ({len(dropped)} dropped).")
    return FairFaceSplit(root=root, split=split, rows=rows, dropped=dropped.reset_index(drop=True))


def filter_rows(
    rows: pd.DataFrame,
    races: list[str] | None = None,
    genders: list[str] | None = None,
    ages: list[str] | None = None,
) -> pd.DataFrame:
    """Rows matching every given filter; an empty or None filter keeps everything."""
    keep = pd.Series(True, index=rows.index)
    for column, values in (("race", races), ("gender", genders), ("age", ages)):
        if values:
            keep &= rows[column].isin(values)
    return rows[keep]


def balanced_sample(rows: pd.DataFrame, per_cell: int, seed: int = 0) -> pd.DataFrame:
    """Up to `per_cell` rows from every race x gender cell, the same rows for the same seed."""
    shuffled = rows.sample(frac=1, random_state=seed)
    return shuffled.groupby(["race", "gender"]).head(per_cell).reset_index(drop=True)
