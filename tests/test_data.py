"""FairFace folders: the shared sample, filtering, sampling, and broken folders."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from faircam.data.fairface import (
    AGES,
    GENDERS,
    LABEL_COLUMNS,
    RACES,
    available_splits,
    balanced_sample,
    filter_rows,
    load_split,
)
from faircam.errors import DataError

HEADER = "file,age,gender,race,service_test\n"


# --- the shared sample -----------------------------------------------------------------------


def test_shared_val_split_is_complete(val_split, fairface):
    rows = val_split.rows
    raw = pd.read_csv(fairface / "fairface_label_val.csv", dtype=str)
    assert len(rows) == len(raw) == 2500
    assert val_split.dropped.empty
    assert list(rows.columns) == list(LABEL_COLUMNS)
    assert set(rows["race"]) == set(RACES)
    assert set(rows["gender"]) == set(GENDERS)
    assert set(rows["age"]) <= set(AGES)
    # Rows are the CSV's rows, in the CSV's order.
    pd.testing.assert_frame_equal(rows, raw[list(LABEL_COLUMNS)].reset_index(drop=True))
    assert val_split.root / rows["file"].iloc[0] == fairface / "val" / "1.jpg"
    assert available_splits(fairface) == ["train", "val"]


def test_unknown_split_is_refused(fairface):
    with pytest.raises(DataError, match="Unknown split 'test'"):
        load_split(fairface, "test")


# --- filtering and sampling ------------------------------------------------------------------


def test_filter_rows_matches_every_filter(val_split):
    rows = val_split.rows
    pd.testing.assert_frame_equal(filter_rows(rows), rows)
    pd.testing.assert_frame_equal(filter_rows(rows, races=[], genders=None, ages=[]), rows)

    only = filter_rows(rows, races=["Indian", "White"], genders=["Female"], ages=["20-29", "30-39"])
    expected = rows[
        rows["race"].isin(["Indian", "White"])
        & (rows["gender"] == "Female")
        & rows["age"].isin(["20-29", "30-39"])
    ]
    assert len(only) > 0
    pd.testing.assert_frame_equal(only, expected)
    assert set(only["race"]) == {"Indian", "White"}
    assert set(only["gender"]) == {"Female"}

    assert filter_rows(rows, races=["no such race"]).empty


def _cell_counts(sample: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    # Joined back on `file`, so the counts do not depend on the sample keeping its label columns.
    labelled = rows.set_index("file").loc[sample["file"]]
    return labelled.groupby(["race", "gender"]).size()


def test_balanced_sample_per_cell_counts(val_split):
    rows = val_split.rows.head(300)  # small cells too, so "up to per_cell" is exercised
    per_cell = 12
    sample = balanced_sample(rows, per_cell, seed=3)
    available = rows.groupby(["race", "gender"]).size()
    expected = available.clip(upper=per_cell)
    assert (available < per_cell).any() and (available > per_cell).any()
    pd.testing.assert_series_equal(_cell_counts(sample, rows), expected, check_names=False)
    assert sample["file"].is_unique
    assert set(sample["file"]) <= set(rows["file"])


def test_balanced_sample_same_seed_same_rows(val_split):
    rows = val_split.rows
    first = balanced_sample(rows, 5, seed=7)
    again = balanced_sample(rows, 5, seed=7)
    other = balanced_sample(rows, 5, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == 5 * len(RACES) * len(GENDERS)
    assert set(first["file"]) != set(other["file"])


def test_balanced_sample_keeps_label_columns(val_split):
    rows = val_split.rows
    sample = balanced_sample(rows, 4, seed=0)
    assert list(sample.columns) == list(rows.columns)
    assert (sample.groupby(["race", "gender"]).size() == 4).all()
    # Every sampled row is an unchanged row of the input.
    merged = sample.merge(rows, on=list(rows.columns), how="left", indicator=True)
    assert (merged["_merge"] == "both").all()


# --- a small FairFace-layout folder ----------------------------------------------------------


@pytest.fixture
def small_folder(tmp_path, fairface):
    """Three real images, plus a row whose image is missing and one with an unknown race."""
    (tmp_path / "val").mkdir()
    for n in (1, 2, 3):
        shutil.copyfile(fairface / "val" / f"{n}.jpg", tmp_path / "val" / f"{n}.jpg")
    csv = (
        HEADER
        + "val/1.jpg,3-9,Male,East Asian,False\n"
        + "val/2.jpg,50-59,Female,East Asian,True\n"
        + "val/404.jpg,20-29,Female,White,True\n"
        + "val/3.jpg,30-39,Male,Martian,True\n"
    )
    (tmp_path / "fairface_label_val.csv").write_text(csv)
    return tmp_path


def test_bad_rows_are_dropped_with_reasons(small_folder):
    split = load_split(small_folder, "val")
    assert split.rows["file"].tolist() == ["val/1.jpg", "val/2.jpg"]
    assert split.rows["gender"].tolist() == ["Male", "Female"]
    reasons = dict(zip(split.dropped["file"], split.dropped["reason"]))
    assert reasons == {"val/404.jpg": "image missing or unreadable", "val/3.jpg": "unknown race 'Martian'"}
    assert all((split.root / f).is_file() for f in split.rows["file"])
    assert available_splits(small_folder) == ["val"]


def test_check_files_false_keeps_rows_with_missing_images(small_folder):
    split = load_split(small_folder, "val", check_files=False)
    assert "val/404.jpg" in split.rows["file"].tolist()
    assert split.dropped["file"].tolist() == ["val/3.jpg"]


def test_missing_folder_raises(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as info:
        load_split(missing, "val")
    assert str(missing) in str(info.value)
    assert available_splits(missing) == []


def test_missing_csv_raises(tmp_path):
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="fairface_label_val.csv is missing"):
        load_split(tmp_path, "val")


def test_missing_columns_raise(tmp_path):
    (tmp_path / "fairface_label_val.csv").write_text("file,age\nval/1.jpg,20-29\n")
    with pytest.raises(DataError, match=r"lacks the column\(s\) race, gender"):
        load_split(tmp_path, "val")


def test_empty_csv_raises(tmp_path):
    (tmp_path / "fairface_label_val.csv").write_bytes(b"")
    with pytest.raises(DataError, match="cannot be read as CSV"):
        load_split(tmp_path, "val")


def test_csv_whose_rows_are_all_bad_raises(tmp_path):
    (tmp_path / "fairface_label_val.csv").write_text(HEADER + "val/1.jpg,20-29,Male,White,False\n")
    with pytest.raises(DataError, match=r"no usable rows: 1 label row dropped: "
                                        r"line 2 val/1.jpg \(image missing or unreadable\)\. "
                                        "Image paths are read relative to"):
        load_split(tmp_path, "val")


def test_header_only_csv_raises_data_error(tmp_path):
    (tmp_path / "fairface_label_val.csv").write_text(HEADER)
    with pytest.raises(DataError, match="no usable rows"):
        load_split(tmp_path, "val")
