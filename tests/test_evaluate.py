"""The evaluation cache: run_evaluation on real val images, and reading it back safely."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from faircam.cache import FOCUS_KEYS, META_KEY, SCHEMA_VERSION, focus_column, read_cache, write_cache
from faircam.config import CAM_METHODS, FACE_REGIONS, settings
from faircam.errors import CacheError
from faircam.evaluate import run_evaluation
from faircam.focus import REGIONS
from faircam.images import read_image
from faircam.model import file_sha256

LIMIT = 12
BASE_COLUMNS = ["file", "race", "gender", "age", "pred", "prob", "p_male", "correct", "face_found"]
FOCUS_COLUMNS = [focus_column(m, k) for m in CAM_METHODS for k in FOCUS_KEYS]


@pytest.fixture(scope="module")
def evaluated(pipeline, fairface, tmp_path_factory):
    """The first 12 val images, in three batches of four, written to a cache file."""
    out = tmp_path_factory.mktemp("evaluate") / "cache" / "eval_val.parquet"
    cache = run_evaluation(fairface, "val", out, pipeline.model, pipeline.detector,
                           limit=LIMIT, batch_size=4, progress=False)
    return cache, out


def rewrite_meta(source, target, **changes) -> None:
    """Copy a cache, changing keys of its faircam metadata (as another version might write it)."""
    table = pq.read_table(source)
    metadata = dict(table.schema.metadata)
    meta = json.loads(metadata[META_KEY])
    meta.update(changes)
    metadata[META_KEY] = json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(metadata), target)


# --- the rows --------------------------------------------------------------------------------


def test_rows_have_expected_columns(evaluated):
    rows = evaluated[0].rows
    assert list(rows.columns) == BASE_COLUMNS + FOCUS_COLUMNS
    assert len(rows) == LIMIT
    assert not rows.isna().any().any()


def test_labels_match_the_csv(evaluated, val_split):
    rows = evaluated[0].rows
    expected = val_split.rows.head(LIMIT)[["file", "race", "gender", "age"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[["file", "race", "gender", "age"]], expected, check_dtype=False)


def test_predictions_are_consistent(evaluated, pipeline):
    rows = evaluated[0].rows
    assert set(rows["pred"]) <= set(pipeline.model.classes)
    assert (rows["correct"] == (rows["pred"] == rows["gender"])).all()
    assert rows["correct"].dtype == bool
    # prob is the predicted class's probability; p_male is P(Male).
    np.testing.assert_allclose(rows["prob"], np.maximum(rows["p_male"], 1 - rows["p_male"]), atol=1e-6)
    assert ((rows["p_male"] >= 0.5) == (rows["pred"] == "Male")).all()
    assert rows["prob"].between(0.5, 1.0).all()


def test_focus_shares(evaluated):
    rows = evaluated[0].rows
    assert rows["face_found"].any()  # FairFace crops are faces: MTCNN finds most of them
    for method in CAM_METHODS:
        regions = rows[[focus_column(method, r) for r in REGIONS]]
        assert (regions >= 0).all().all() and (regions <= 1).all().all(), method
        np.testing.assert_allclose(regions.sum(axis=1), 1.0, atol=1e-9, err_msg=method)
        face = rows[[focus_column(method, r) for r in FACE_REGIONS]].sum(axis=1)
        np.testing.assert_allclose(rows[focus_column(method, "face")], face, atol=1e-9, err_msg=method)
        baseline = rows[focus_column(method, "face_baseline")]
        found = rows["face_found"]
        assert (baseline[found] > 0).all() and (baseline[~found] == 0).all(), method
        lift = rows[focus_column(method, "face_lift")]
        np.testing.assert_allclose(lift[found], face[found] / baseline[found], rtol=1e-9, err_msg=method)


def test_batch_equals_one_image_at_a_time(evaluated, pipeline, fairface):
    rows = evaluated[0].rows
    for i in (0, 5, 11):  # first, middle and last batch
        row = rows.iloc[i]
        single = pipeline.explain(read_image(fairface / row["file"]))
        assert single.label == row["pred"], row["file"]
        assert abs(single.probability - row["prob"]) < 1e-5, row["file"]
        assert (single.view.face is not None) == row["face_found"], row["file"]
        for method in CAM_METHODS:
            for key in FOCUS_KEYS:
                assert abs(single.focus[method][key] - row[focus_column(method, key)]) < 1e-5, (method, key)


# --- the cache file --------------------------------------------------------------------------


def test_cache_round_trip_and_provenance(evaluated, fairface):
    cache, path = evaluated
    read = read_cache(path)
    pd.testing.assert_frame_equal(read.rows, cache.rows)
    assert read.meta == json.loads(json.dumps(cache.meta))
    meta = read.meta
    assert meta["schema_version"] == SCHEMA_VERSION and meta["rows"] == LIMIT
    assert meta["model"]["sha256"] == file_sha256(settings().model_path)
    assert meta["data"]["root"] == str(fairface.resolve())
    assert meta["data"]["split"] == "val" and meta["data"]["limit"] == LIMIT
    assert meta["data"]["unreadable"] == 0 and meta["data"]["dropped_total"] == 0
    assert meta["methods"] == list(CAM_METHODS)
    assert read.has_cams


def test_atomic_write_leaves_no_temporary_files(evaluated, tmp_path):
    cache, path = evaluated
    assert [n for n in os.listdir(path.parent) if n.endswith(".tmp")] == []
    target = tmp_path / "again.parquet"
    write_cache(cache.rows, target, {"note": "first"})
    write_cache(cache.rows.head(3), target, {"note": "second"})  # replaces the first
    assert sorted(os.listdir(tmp_path)) == ["again.parquet"]
    read = read_cache(target)
    assert read.meta["note"] == "second" and len(read.rows) == 3


def test_failed_write_keeps_the_previous_cache(evaluated, tmp_path, monkeypatch):
    cache, path = evaluated
    target = tmp_path / "eval.parquet"
    shutil.copyfile(path, target)

    def broken_write(table, where, *args, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr("faircam.cache.pq.write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_cache(cache.rows.head(2), target, {})
    monkeypatch.undo()
    pd.testing.assert_frame_equal(read_cache(target).rows, cache.rows)


def test_missing_cache(tmp_path):
    with pytest.raises(CacheError, match="No evaluation cache"):
        read_cache(tmp_path / "none.parquet")


def test_damaged_cache(evaluated, tmp_path):
    data = evaluated[1].read_bytes()
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match="damaged"):
        read_cache(truncated)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all" * 10)
    with pytest.raises(CacheError, match="damaged"):
        read_cache(garbage)


def test_other_schema_version(evaluated, tmp_path):
    cache, _ = evaluated
    target = tmp_path / "old.parquet"
    write_cache(cache.rows, target, cache.meta)
    rewrite_meta(target, target, schema_version=999)
    with pytest.raises(CacheError, match="schema 999"):
        read_cache(target)


def test_parquet_without_faircam_metadata(evaluated, tmp_path):
    target = tmp_path / "plain.parquet"
    evaluated[0].rows.to_parquet(target)
    with pytest.raises(CacheError, match="schema None"):
        read_cache(target)


def test_row_count_mismatch(evaluated, tmp_path):
    target = tmp_path / "short.parquet"
    rewrite_meta(evaluated[1], target, rows=LIMIT + 1)
    with pytest.raises(CacheError, match=f"holds {LIMIT} rows but recorded {LIMIT + 1}"):
        read_cache(target)


def test_unreadable_metadata_is_a_cache_error(evaluated, tmp_path):
    table = pq.read_table(evaluated[1])
    metadata = {**table.schema.metadata, META_KEY: b"{not json"}
    target = tmp_path / "badmeta.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), target)
    with pytest.raises(CacheError):
        read_cache(target)


# --- folders with unreadable images ----------------------------------------------------------


def test_unreadable_images_are_skipped_and_counted(pipeline, fairface, tmp_path):
    data = tmp_path / "data"
    (data / "val").mkdir(parents=True)
    for n in (1, 2):
        shutil.copyfile(fairface / "val" / f"{n}.jpg", data / "val" / f"{n}.jpg")
    (data / "val" / "3.jpg").write_text("not an image")
    (data / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\n"
        "val/1.jpg,3-9,Male,East Asian,False\n"
        "val/3.jpg,30-39,Male,White,True\n"
        "val/2.jpg,50-59,Female,East Asian,True\n"
        "val/9.jpg,20-29,Male,White,True\n"
    )
    cache = run_evaluation(data, "val", tmp_path / "out.parquet", pipeline.model, pipeline.detector,
                           progress=False)
    assert cache.rows["file"].tolist() == ["val/1.jpg", "val/2.jpg"]
    assert cache.rows["gender"].tolist() == ["Male", "Female"]
    assert cache.meta["data"]["unreadable"] == 1
    assert cache.meta["data"]["dropped_total"] == 1
    assert cache.meta["data"]["dropped"][0]["file"] == "val/9.jpg"
    pd.testing.assert_frame_equal(read_cache(tmp_path / "out.parquet").rows, cache.rows)


def test_failed_write_removes_its_temporary_file(evaluated, tmp_path, monkeypatch):
    def broken_write(table, where, *args, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr("faircam.cache.pq.write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_cache(evaluated[0].rows, tmp_path / "eval.parquet", {})
    assert os.listdir(tmp_path) == []
