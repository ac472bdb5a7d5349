"""Cache schema v2 on synthetic frames: column names, checksum, old schemas, group averages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faircam.data.images import FILL
from faircam.errors import CacheError
from faircam.evaluation.averages import GroupAverager
from faircam.evaluation.cache import (
    AVERAGES_KEY,
    FOLDER_AVERAGES,
    FOLDER_META,
    MAP_LEVELS,
    META_KEY,
    EvalCache,
    agreement_column,
    focus_column,
    group_averages,
    method_pairs,
    read_cache,
    view_column,
    write_cache,
    write_cache_parts,
    write_table_atomic,
)
from faircam.vision.cams import METHODS


def small_rows() -> pd.DataFrame:
    return pd.DataFrame({"file": ["val/1.jpg", "val/2.jpg"], "race": ["White", "Black"],
                         "gender": ["Male", "Female"], "prob": [0.9, 0.6], "correct": [True, False],
                         focus_column("Grad-CAM", "road"): [0.1, np.nan]})


def test_column_names():
    assert view_column("raw", "pred") == "pred"
    assert view_column("crop", focus_column("LayerCAM", "eyes")) == "crop: LayerCAM | eyes"
    assert agreement_column("Grad-CAM", "LayerCAM") == "agree | Grad-CAM ~ LayerCAM"
    pairs = method_pairs(tuple(METHODS))
    assert len(pairs) == 6 and pairs[0] == ("Grad-CAM", "Grad-CAM++") and pairs[-1] == ("XGrad-CAM", "LayerCAM")
    assert all(list(METHODS).index(a) < list(METHODS).index(b) for a, b in pairs)


def test_round_trip_with_checksum(tmp_path):
    path = tmp_path / "c.parquet"
    write_cache(small_rows(), path, {"with_cams": True})
    cache = read_cache(path)
    pd.testing.assert_frame_equal(cache.rows, small_rows(), check_dtype=False)
    assert len(cache.meta["checksum"]) == 64 and cache.averages is None


def rewrite_rows(path, change) -> None:
    """The same file with its rows changed and its metadata (and checksum) kept, as an editor would."""
    table = pq.read_table(path)
    rows = change(table.to_pandas())
    changed = pa.Table.from_pandas(rows, preserve_index=False).replace_schema_metadata(table.schema.metadata)
    pq.write_table(changed, path)


@pytest.mark.parametrize("change", [
    lambda rows: rows.assign(prob=[0.9, 0.61]),
    lambda rows: rows.assign(correct=[True, True]),
    lambda rows: rows.assign(**{focus_column("Grad-CAM", "road"): [0.1, 0.0]}),
    lambda rows: rows.rename(columns={"prob": "probability"}),
    lambda rows: rows.iloc[::-1],
])
def test_checksum_detects_a_changed_value(tmp_path, change):
    path = tmp_path / "c.parquet"
    write_cache(small_rows(), path, {})
    rewrite_rows(path, change)
    with pytest.raises(CacheError, match="does not match its checksum"):
        read_cache(path)


def test_checksum_covers_the_averages(tmp_path):
    averager = GroupAverager(("Grad-CAM",), size=4)
    averager.add("White", "Male", True, np.full((8, 8, 3), 100, np.uint8), {"Grad-CAM": np.full((8, 8), 0.5)})
    path = tmp_path / "c.parquet"
    write_cache(small_rows(), path, {"with_cams": True, "methods": ["Grad-CAM"]}, averager.table())
    table = pq.read_table(path)
    assert AVERAGES_KEY in pq.read_metadata(path).metadata and AVERAGES_KEY not in table.schema.metadata
    averager.add("White", "Male", True, np.zeros((8, 8, 3), np.uint8), {"Grad-CAM": np.zeros((8, 8))})
    other = read_cache(path)
    write_cache(other.rows, tmp_path / "d.parquet", other.meta, averager.table())
    # The first file's rows and metadata with the second file's averages.
    write_table_atomic(table, path, {AVERAGES_KEY: pq.read_metadata(tmp_path / "d.parquet").metadata[AVERAGES_KEY]})
    with pytest.raises(CacheError, match="checksum"):
        read_cache(path)


def test_schema_1_cache_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "v1.parquet"
    table = pa.Table.from_pandas(small_rows(), preserve_index=False)
    meta = {"schema_version": 1, "rows": 2, "with_cams": True}  # what faircam 0.1's schema 1 wrote
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta)}), path)
    with pytest.raises(CacheError, match=r"schema 1, expected 2\). Recreate it with `faircam evaluate`"):
        read_cache(path)


def test_group_averages_on_known_inputs(tmp_path):
    methods = ("Grad-CAM", "LayerCAM")
    averager = GroupAverager(methods, size=4)
    # Two correct White men: faces 10 and 21 (mean 15.5 rounds to 16), maps 0.2 and 0.6 (mean 0.4).
    averager.add("White", "Male", True, np.full((8, 8, 3), 10, np.uint8),
                 {"Grad-CAM": np.full((8, 8), 0.2), "LayerCAM": np.zeros((8, 8))})
    averager.add("White", "Male", True, np.full((4, 4, 3), 21, np.uint8),
                 {"Grad-CAM": np.full((4, 4), 0.6), "LayerCAM": np.ones((4, 4))})
    # One wrong Black woman, a face with a left and a right half.
    face = np.zeros((8, 8, 3), np.uint8)
    face[:, 4:] = 200
    averager.add("Black", "Female", False, face, {"Grad-CAM": np.ones((8, 8)), "LayerCAM": np.ones((8, 8))})

    path = tmp_path / "c.parquet"
    write_cache(small_rows(), path, {"with_cams": True, "methods": list(methods)}, averager.table())
    table = group_averages(read_cache(path))
    assert list(table.columns) == ["race", "gender", "outcome", "n", "face", *methods]
    assert table[["race", "gender", "outcome", "n"]].values.tolist() == [
        ["White", "Male", "correct", 2], ["Black", "Female", "wrong", 1]]
    white, black = table.iloc[0], table.iloc[1]
    assert white["face"].dtype == np.uint8 and white["face"].shape == (4, 4, 3)
    assert (white["face"] == 16).all()
    assert white["Grad-CAM"].dtype == np.float32 and white["Grad-CAM"].shape == (4, 4)
    np.testing.assert_allclose(white["Grad-CAM"], round(0.4 * MAP_LEVELS) / MAP_LEVELS)
    np.testing.assert_allclose(white["LayerCAM"], round(0.5 * MAP_LEVELS) / MAP_LEVELS)
    assert (black["face"][:, :2] == 0).all() and (black["face"][:, 2:] == 200).all()
    np.testing.assert_allclose(black["LayerCAM"], 1.0)


def test_group_averages_leave_out_what_lies_beyond_the_photo():
    # Two faces: one whose left half lies beyond its photo (the crop's FILL there), one fully valid,
    # and a third group whose only face has its whole top half invalid.
    averager = GroupAverager(("Grad-CAM",), size=4)
    half = np.ones((8, 8), bool)
    half[:, :4] = False
    beyond = np.full((8, 8, 3), 40, np.uint8)
    beyond[~half] = FILL
    averager.add("White", "Male", True, beyond, {"Grad-CAM": np.zeros((8, 8))}, half)
    averager.add("White", "Male", True, np.full((8, 8, 3), 80, np.uint8), {"Grad-CAM": np.zeros((8, 8))})
    top = np.ones((8, 8), bool)
    top[:4] = False
    upper = np.full((8, 8, 3), 200, np.uint8)
    upper[~top] = FILL
    averager.add("Indian", "Female", True, upper, {"Grad-CAM": np.zeros((8, 8))}, top)
    white, indian = averager.table()["face"]
    # Left: only the valid face (80), not a blend with the filler; right: both faces (60).
    assert (white[:, :2] == 80).all() and (white[:, 2:] == 60).all()
    # Reached by no photo: the filler grey, not an average that includes it.
    assert (indian[:2] == FILL).all() and (indian[2:] == 200).all()
    again = GroupAverager(("Grad-CAM",), size=4)
    again.load_state({k: np.array(v) for k, v in averager.state().items()})
    assert all((a == b).all() for a, b in zip(again.table()["face"], averager.table()["face"]))


def test_group_averages_state_round_trip():
    averager = GroupAverager(("Grad-CAM",), size=4)
    averager.add("Indian", "Male", False, np.full((4, 4, 3), 7, np.uint8), {"Grad-CAM": np.full((4, 4), 0.7)})
    again = GroupAverager(("Grad-CAM",), size=4)
    again.load_state({k: np.array(v) for k, v in averager.state().items()})
    pd.testing.assert_frame_equal(
        again.table().drop(columns=["face", "Grad-CAM"]), averager.table().drop(columns=["face", "Grad-CAM"]))
    assert (again.table()["face"][0] == 7).all()


def test_no_averages_gives_an_empty_table():
    table = group_averages(EvalCache(rows=small_rows(), meta={"with_cams": True, "methods": ["Grad-CAM"]}))
    assert table.empty and list(table.columns) == ["race", "gender", "outcome", "n", "face", "Grad-CAM"]


# --- a cache folder: parquet parts and one metadata record -------------------------------------


def folder_cache(tmp_path, averages: pd.DataFrame | None = None):
    """Three parts of small rows (six rows) written as a folder; returns the folder."""
    parts = []
    for i in range(3):
        part = tmp_path / f"work-{i}.parquet"
        pq.write_table(pa.Table.from_pandas(small_rows(), preserve_index=False), part)
        parts.append(part)
    write_cache_parts(parts, tmp_path / "cache", {"with_cams": True, "methods": ["Grad-CAM"]}, averages)
    return tmp_path / "cache"


def test_folder_round_trip_reads_the_parts_as_one_table(tmp_path):
    averager = GroupAverager(("Grad-CAM",))
    averager.add("White", "Male", True, np.full((64, 64, 3), 9, np.uint8), {"Grad-CAM": np.ones((64, 64))})
    folder = folder_cache(tmp_path, averager.table())
    assert sorted(p.name for p in folder.iterdir()) == [FOLDER_AVERAGES, FOLDER_META, "part-00000.parquet",
                                                          "part-00001.parquet", "part-00002.parquet"]
    cache = read_cache(folder)
    expected = pd.concat([small_rows()] * 3, ignore_index=True)
    pd.testing.assert_frame_equal(cache.rows, expected, check_dtype=False)
    assert [p["rows"] for p in cache.meta["parts"]] == [2, 2, 2] and cache.meta["rows"] == 6
    assert group_averages(cache)["n"].tolist() == [1]
    # The same parts written as one file give the same rows and the same checksum over them.
    write_cache_parts([folder / "part-00000.parquet"], tmp_path / "one.parquet", {"with_cams": True})
    pd.testing.assert_frame_equal(read_cache(tmp_path / "one.parquet").rows, small_rows(), check_dtype=False)


def test_folder_with_a_changed_part_or_record_is_refused(tmp_path):
    folder = folder_cache(tmp_path)
    rewrite_rows(folder / "part-00001.parquet", lambda rows: rows.assign(prob=[0.5, 0.6]))
    with pytest.raises(CacheError, match="checksum"):
        read_cache(folder)

    (tmp_path / "b").mkdir()
    folder = folder_cache(tmp_path / "b")
    meta = json.loads((folder / FOLDER_META).read_text())
    meta["model"] = {"name": "another"}
    (folder / FOLDER_META).write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="checksum"):
        read_cache(folder)


def test_folder_record_cannot_point_outside_the_folder(tmp_path):
    folder = folder_cache(tmp_path)
    meta = json.loads((folder / FOLDER_META).read_text())
    meta["parts"][0]["file"] = "../work-0.parquet"
    (folder / FOLDER_META).write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="unreadable faircam metadata"):
        read_cache(folder)


def test_a_folder_without_a_record_is_not_a_cache(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(CacheError, match="not an evaluation cache"):
        read_cache(tmp_path / "x")
