"""The evaluation cache: run_evaluation on real val images (three views, faithfulness, agreement,
group averages), resuming an interrupted run, and reading the cache back safely."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from faircam.cli import main
from faircam.config import FACE_REGIONS, settings
from faircam.data.fairface import balanced_sample
from faircam.data.images import read_image
from faircam.errors import CacheError
from faircam.evaluation.cache import (
    FOCUS_KEYS,
    META_KEY,
    SCHEMA_VERSION,
    agreement_column,
    focus_column,
    group_averages,
    read_cache,
    view_column,
    write_cache,
)
from faircam.evaluation.evaluate import EvalOptions, partial_path, run_evaluation
from faircam.models.checkpoint import read_metadata
from faircam.models.model import file_sha256
from faircam.vision.cams import METHODS
from faircam.vision.focus import REGIONS

LIMIT = 12
# The bundled model's other tasks (race, age), each with its prediction, probability and correctness.
TASK_COLUMNS = [f"{task}_{c}" for task in read_metadata(settings().model_path).get("tasks", ["gender"])
                if task != "gender" for c in ("pred", "prob", "correct")]
# Image quality of the largest face (issue #24): each number and its level.
QUALITY_COLUMNS = ["quality_face_px", "quality_sharpness", "quality_brightness", "quality_yaw", "quality_confidence",
                   "face size", "sharpness", "brightness", "head turn", "detector confidence"]
BASE_COLUMNS = ["file", "race", "gender", "age", "pred", "prob", "p_male", "correct", *TASK_COLUMNS, "face_found",
                "faces_found", *QUALITY_COLUMNS]
FOCUS_COLUMNS = [focus_column(m, k) for m in METHODS for k in FOCUS_KEYS]
# Written out from the contract (notes/contracts.md section 1), not from the code under test.
VIEW_COLUMNS = [f"{view}: {c}" for view in ("crop", "blur")
                for c in ["pred", "prob", "p_male", "correct", *TASK_COLUMNS, *FOCUS_COLUMNS]]
FAITH_COLUMNS = [f"{m} | {k}" for m in METHODS for k in ("road", "deletion", "insertion")]
PAIRS = [("Grad-CAM", "Grad-CAM++"), ("Grad-CAM", "XGrad-CAM"), ("Grad-CAM", "LayerCAM"),
         ("Grad-CAM++", "XGrad-CAM"), ("Grad-CAM++", "LayerCAM"), ("XGrad-CAM", "LayerCAM")]
AGREE_COLUMNS = [f"agree | {a} ~ {b}" for a, b in PAIRS] + ["agree | mean"]
CONTRACT_COLUMNS = {*BASE_COLUMNS, *FOCUS_COLUMNS, *VIEW_COLUMNS, *FAITH_COLUMNS, "faith_sampled", *AGREE_COLUMNS}
# Light faithfulness settings keep the tests quick; the measures are the same.
OPTIONS = EvalOptions(faithfulness_per_cell=1, road_percentiles=(50,), curve_steps=4)


def evaluate(fairface, pipeline, out, **kwargs):
    args = {"limit": LIMIT, "batch_size": 4, "progress": False, "options": OPTIONS, **kwargs}
    return run_evaluation(fairface, "val", out, pipeline.model, pipeline.detector, pipeline.explainer, **args)


@pytest.fixture(scope="module")
def evaluated(pipeline, fairface, tmp_path_factory):
    """The first 12 val images, in three batches of four, written to a cache file."""
    out = tmp_path_factory.mktemp("evaluate") / "cache" / "eval_val.parquet"
    return evaluate(fairface, pipeline, out), out


def rewrite_meta(source, target, **changes) -> None:
    """Copy a cache, changing keys of its faircam metadata (as another version might write it)."""
    table = pq.read_table(source)
    metadata = dict(table.schema.metadata)
    meta = json.loads(metadata[META_KEY])
    meta.update(changes)
    metadata[META_KEY] = json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(metadata), target)


# --- the rows --------------------------------------------------------------------------------


def test_rows_have_the_contract_columns(evaluated):
    rows = evaluated[0].rows
    assert set(rows.columns) == CONTRACT_COLUMNS
    assert list(rows.columns[: len(BASE_COLUMNS) + len(FOCUS_COLUMNS)]) == BASE_COLUMNS + FOCUS_COLUMNS
    assert len(rows) == LIMIT
    # Only the faithfulness of images outside the sample, and the quality numbers of images without a face, are missing.
    assert not rows.drop(columns=FAITH_COLUMNS + QUALITY_COLUMNS[:5]).isna().any().any()
    assert (rows["quality_face_px"].notna() == rows["face_found"]).all()
    assert not rows.loc[rows["faith_sampled"], FAITH_COLUMNS].isna().any().any()
    assert rows.loc[~rows["faith_sampled"], FAITH_COLUMNS].isna().all().all()
    assert rows["faces_found"].dtype.kind == "i" and ((rows["faces_found"] > 0) == rows["face_found"]).all()


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
    for method in METHODS:
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
        for method in METHODS:
            for key in FOCUS_KEYS:
                assert abs(single.focus[method][key] - row[focus_column(method, key)]) < 1e-5, (method, key)


def test_counterfactual_views(evaluated, pipeline, fairface):
    rows = evaluated[0].rows
    found = rows[rows["face_found"]]
    assert len(found) >= LIMIT - 2
    for view in ("crop", "blur"):
        assert (rows[view_column(view, "correct")] == (rows[view_column(view, "pred")] == rows["gender"])).all()
        for method in METHODS:
            regions = rows[[view_column(view, focus_column(method, r)) for r in REGIONS]]
            np.testing.assert_allclose(regions.sum(axis=1), 1.0, atol=1e-9)
    # The crop cuts faces as FairFace did, so on FairFace it keeps the face's share of the picture (the
    # old box-plus-padding crop took 37 points off it), and normalising the size makes it vary less.
    baseline = focus_column("Grad-CAM", "face_baseline")
    assert abs(found[view_column("crop", baseline)].median() - found[baseline].median()) < 0.05
    assert found[view_column("crop", baseline)].std() < found[baseline].std()
    # Each view equals the app's single-image explanation with the same toggles.
    row = found.iloc[-1]
    image = read_image(fairface / row["file"])
    for view, crop, blur in (("crop", True, False), ("blur", False, True)):
        single = pipeline.explain(image, crop=crop, blur=blur)
        assert single.label == row[view_column(view, "pred")]
        # A batch of 12 views and a batch of one round differently in the last float digits.
        assert abs(single.probability - row[view_column(view, "prob")]) < 1e-4
        for method in METHODS:
            assert abs(single.focus[method]["face"] - row[view_column(view, focus_column(method, "face"))]) < 1e-4


def test_views_without_a_face_equal_the_raw_view(pipeline, fairface, tmp_path):
    data = tmp_path / "data"
    (data / "val").mkdir(parents=True)
    shutil.copyfile(fairface / "val" / "1.jpg", data / "val" / "1.jpg")
    Image.new("RGB", (224, 224), (128, 120, 110)).save(data / "val" / "2.jpg")
    (data / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\nval/1.jpg,3-9,Male,East Asian,False\nval/2.jpg,20-29,Female,White,True\n")
    rows = evaluate(data, pipeline, tmp_path / "out.parquet", options=EvalOptions(faithfulness_per_cell=0)).rows
    assert rows["face_found"].tolist() == [True, False] and rows["faces_found"].tolist() == [1, 0]
    columns = ["pred", "prob", "p_male", "correct", *FOCUS_COLUMNS]
    blank = rows.iloc[[1]]
    for view in ("crop", "blur"):
        np.testing.assert_array_equal(blank[[view_column(view, c) for c in columns]].to_numpy(),
                                      blank[columns].to_numpy())
    assert rows.loc[0, "crop: prob"] != rows.loc[0, "prob"]


def test_faithfulness_sample_and_ranges(evaluated, val_split):
    rows = evaluated[0].rows
    expected = balanced_sample(val_split.rows.head(LIMIT), 1, seed=0)["file"]
    assert sorted(rows.loc[rows["faith_sampled"], "file"]) == sorted(expected)
    assert rows.groupby(["race", "gender"])["faith_sampled"].sum().max() == 1
    sampled = rows[rows["faith_sampled"]]
    for method in METHODS:
        assert sampled[focus_column(method, "road")].between(-0.5, 0.5).all()
        for key in ("deletion", "insertion"):
            assert sampled[focus_column(method, key)].between(0.0, 1.0).all()


def test_agreement_columns(evaluated):
    rows = evaluated[0].rows
    pairs = rows[[agreement_column(a, b) for a, b in PAIRS]]
    assert pairs.gt(0).all().all() and pairs.le(1 + 1e-9).all().all()
    np.testing.assert_allclose(rows["agree | mean"], pairs.mean(axis=1), atol=1e-12)


def test_group_averages_of_the_crop_view(evaluated):
    cache = evaluated[0]
    table = group_averages(cache)
    rows = cache.rows[cache.rows["face_found"]]
    outcome = np.where(rows["crop: correct"], "correct", "wrong")
    counts = rows.assign(outcome=outcome).groupby(["race", "gender", "outcome"]).size()
    assert dict(zip(zip(table["race"], table["gender"], table["outcome"]), table["n"])) == counts.to_dict()
    for _, group in table.iterrows():
        assert group["face"].dtype == np.uint8 and group["face"].ndim == 3 and group["face"].shape[2] == 3
        assert 20 < group["face"].mean() < 235  # a face, not an empty or white square
        for method in METHODS:
            assert group[method].shape == group["face"].shape[:2] and group[method].dtype == np.float32
            assert 0 <= group[method].min() and group[method].max() <= 1


# --- resuming ---------------------------------------------------------------------------------


def counting_passes(monkeypatch, interrupt_at: int | None = None) -> list[int]:
    """Count the batches' CAM passes; raise KeyboardInterrupt (Ctrl-C) on batch `interrupt_at`."""
    from faircam.evaluation import evaluate as module
    calls: list[int] = []
    real = module.run_pass

    def explain(views, model, explainer):
        calls.append(len(views))
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(views, model, explainer)

    monkeypatch.setattr(module, "run_pass", explain)
    return calls


def test_interrupted_run_leaves_no_cache_and_resumes(evaluated, pipeline, fairface, tmp_path, monkeypatch):
    out = tmp_path / "eval.parquet"
    # Batches of rows 0-1 and 1-3 (the first batch, three quarters of one, comes in halves: `batch_bounds`), 3-7, 7-11,
    # then 11-12 is interrupted.
    counting_passes(monkeypatch, interrupt_at=5)
    with pytest.raises(KeyboardInterrupt):
        evaluate(fairface, pipeline, out)
    assert not out.exists() and partial_path(out).is_dir()
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []

    calls = counting_passes(monkeypatch)
    progress: list[tuple[int, int]] = []
    cache = evaluate(fairface, pipeline, out, on_progress=lambda done, total: progress.append((done, total)))
    assert len(calls) == 1  # only the last batch was left
    assert progress == [(11, LIMIT), (12, LIMIT)]
    assert not partial_path(out).exists()
    full = evaluated[0]
    pd.testing.assert_frame_equal(cache.rows, full.rows)
    # The checksum covers the metadata, whose `created` differs between the runs: compare the rest.
    def provenance(meta: dict) -> dict:
        return {k: v for k, v in meta.items() if k not in ("created", "checksum")}

    assert provenance(cache.meta) == provenance(full.meta)
    pd.testing.assert_frame_equal(group_averages(cache).drop(columns=["face", *METHODS]),
                                  group_averages(full).drop(columns=["face", *METHODS]))


def test_rerun_with_other_arguments_starts_over(pipeline, fairface, tmp_path, monkeypatch):
    out = tmp_path / "eval.parquet"
    quick = EvalOptions(faithfulness_per_cell=0)
    counting_passes(monkeypatch, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate(fairface, pipeline, out, limit=8, options=quick)
    assert partial_path(out).is_dir()
    calls = counting_passes(monkeypatch)
    cache = evaluate(fairface, pipeline, out, limit=8, options=EvalOptions(faithfulness_per_cell=0, seed=1))
    assert len(calls) == 4 and len(cache.rows) == 8  # from the start: rows 0-1, 1-3 (`batch_bounds`), 3-7, 7-8
    assert not cache.rows["faith_sampled"].any() and cache.meta["faithfulness"]["n"] == 0
    assert not partial_path(out).exists()


def test_cli_writes_a_v2_cache_with_every_contract_column(tmp_path, capsys):
    # Faithfulness off keeps this quick (its values are checked above); its columns are still there.
    out = tmp_path / "cli.parquet"
    assert main(["evaluate", "--limit", "8", "--out", str(out), "--faithfulness-per-cell", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 8
    cache = read_cache(out)
    assert cache.meta["schema_version"] == 2 and set(cache.rows.columns) == CONTRACT_COLUMNS
    assert not cache.rows["faith_sampled"].any() and cache.rows[FAITH_COLUMNS].isna().all().all()
    assert cache.meta["faithfulness"]["per_cell"] == 0 and len(group_averages(cache)) > 0


def test_cli_without_cams(tmp_path, capsys):
    out = tmp_path / "plain.parquet"
    assert main(["evaluate", "--limit", "4", "--out", str(out), "--no-cams"]) == 0
    cache = read_cache(out)
    assert not cache.has_cams
    assert set(cache.rows.columns) == {*BASE_COLUMNS, *[f"{v}: {c}" for v in ("crop", "blur")
                                                        for c in ("pred", "prob", "p_male", "correct", *TASK_COLUMNS)]}
    assert list(group_averages(cache).columns) == ["race", "gender", "outcome", "n", "face"]


def test_cli_refuses_a_negative_sample(tmp_path, capsys):
    assert main(["evaluate", "--limit", "4", "--out", str(tmp_path / "x.parquet"),
                 "--faithfulness-per-cell", "-1"]) == 2
    assert "faircam: error: --faithfulness-per-cell" in capsys.readouterr().err


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
    assert meta["methods"] == list(METHODS)
    assert read.has_cams
    assert list(meta["views"]) == ["raw", "crop", "blur"]
    assert meta["faithfulness"]["per_cell"] == 1 and meta["faithfulness"]["n"] == int(read.rows["faith_sampled"].sum())
    assert meta["faithfulness"]["road"]["percentiles"] == [50] and meta["faithfulness"]["deletion"]["steps"] == 4
    assert len(meta["checksum"]) == 64


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

    def broken_writer(where, *args, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr("faircam.evaluation.cache.pq.ParquetWriter", broken_writer)
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
                           progress=False, options=OPTIONS)
    assert cache.rows["file"].tolist() == ["val/1.jpg", "val/2.jpg"]
    assert cache.rows["gender"].tolist() == ["Male", "Female"]
    assert cache.meta["data"]["unreadable"] == 1
    assert cache.meta["data"]["dropped_total"] == 1
    assert cache.meta["data"]["dropped"][0]["file"] == "val/9.jpg"
    pd.testing.assert_frame_equal(read_cache(tmp_path / "out.parquet").rows, cache.rows)


def test_failed_write_removes_its_temporary_file(evaluated, tmp_path, monkeypatch):
    def broken_writer(where, *args, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr("faircam.evaluation.cache.pq.ParquetWriter", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        write_cache(evaluated[0].rows, tmp_path / "eval.parquet", {})
    assert os.listdir(tmp_path) == []


# Each setting in a process of its own: glibc's threshold, once fixed, stays fixed for the process.
HELD_AFTER_FREE = """
import numpy as np
from faircam.allocator import steady_allocator

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) // 1024

steady_allocator()
before = rss_mb()
for _ in range(3):
    buffer = np.ones(8 << 20, dtype=np.uint8)
    del buffer
print(rss_mb() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status") or not hasattr(os, "confstr")
                    or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""), reason="glibc on Linux")
@pytest.mark.parametrize(("setting", "held"), [("", range(0, 2)), ("0", range(7, 10))])
def test_steady_allocator_hands_freed_buffers_back(setting, held):
    # By default an 8 MB buffer, once freed, is no longer resident; with glibc's own threshold (0) the
    # second one comes from the heap, which keeps it after it is freed.
    import subprocess
    import sys

    from faircam.config import PROJECT_ROOT

    env = {**os.environ, "FAIRCAM_MMAP_MB": setting, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", HELD_AFTER_FREE], env=env, capture_output=True, text=True,
                          check=True)
    assert int(done.stdout.strip()) in held


def test_a_bad_mmap_setting_stops_evaluate_before_any_work(capsys, tmp_path, fairface, monkeypatch):
    monkeypatch.setenv("FAIRCAM_MMAP_MB", "lots")
    assert main(["evaluate", "--data", str(fairface), "--out", str(tmp_path / "c.parquet")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == ("faircam: error: FAIRCAM_MMAP_MB='lots': give a whole number of megabytes "
                                    "from 0 (glibc's own) to 32.")
    assert not any(tmp_path.iterdir())


def test_flip_test_time_augmentation_averages_each_answer_with_its_mirror(tmp_path, pipeline, fairface):
    """`faircam evaluate --tta`: every task's answer is the mean of the image's and its mirror image's
    probabilities, computed here directly from the network; the cache says so, and the maps explain it."""
    import torch

    from faircam.audit.modelcard import model_card
    from faircam.data.images import resize_square
    from faircam.tasks import TASKS

    out = tmp_path / "tta.parquet"
    assert main(["evaluate", "--data", str(fairface), "--out", str(out), "--limit", "6",
                 "--faithfulness-per-cell", "0", "--tta"]) == 0
    cache = read_cache(out)
    assert cache.meta["model"]["test_time_augmentation"].startswith("horizontal flip")
    # Said wherever its accuracies are: the model card (and, from the same note, the report and Evaluation).
    assert cache.answers_note.startswith("Answers with test-time augmentation: horizontal flip")
    assert "test\\-time augmentation" in model_card(pipeline.model, cache)
    model = pipeline.model
    images = [resize_square(read_image(fairface / f), model.input_size) for f in cache.rows["file"]]
    batch = model.to_tensor(images)
    with torch.no_grad():
        plain = model.task_probs(model.net(batch).float())
        mirrored = model.task_probs(model.net(batch.flip(3)).float())
    for task, classes in model.tasks.items():
        averaged = (plain[task] + mirrored[task]) / 2
        expected = [classes[i] for i in averaged.argmax(1)]
        assert list(cache.rows[TASKS[task].pred]) == expected, task
        np.testing.assert_allclose(cache.rows[TASKS[task].prob], averaged.max(1), atol=1e-4)
        # A plain run gives the single pass's probabilities, which differ from the averaged ones.
        assert not np.allclose(averaged.max(1), plain[task].max(1), atol=1e-3), task
