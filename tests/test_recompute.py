"""Recomputing the evaluation cache from the Evaluation page when it is missing or belongs to another
model: the button runs the real evaluation on a small FairFace-layout folder and the page then shows it."""

from __future__ import annotations

import shutil

import pytest
from test_pages import run

from faircam.evaluation.cache import read_cache
from faircam.models.model import file_sha256, save_checkpoint

FILES = [f"val/{n}.jpg" for n in range(1, 7)]


@pytest.fixture
def small_data(tmp_path, fairface, val_split):
    root = tmp_path / "fairface"
    (root / "val").mkdir(parents=True)
    for file in FILES:
        shutil.copyfile(fairface / file, root / file)
    rows = val_split.rows[val_split.rows["file"].isin(FILES)]
    rows.assign(service_test="True").to_csv(root / "fairface_label_val.csv", index=False)
    return root


def recompute_button(at):
    buttons = [b for b in at.button if b.label.startswith("Recompute the evaluation now")]
    assert len(buttons) == 1, [b.label for b in at.button]
    return buttons[0]


def test_missing_cache_is_recomputed_on_request(monkeypatch, tmp_path, small_data):
    cache_path = tmp_path / "eval.parquet"
    monkeypatch.setenv("FAIRCAM_DATA", str(small_data))
    monkeypatch.setenv("FAIRCAM_CACHE", str(cache_path))
    at = run("pages/2_Evaluation.py")
    assert not at.exception
    assert any("No usable evaluation" in e.value for e in at.error)
    assert not at.metric

    recompute_button(at).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    cache = read_cache(cache_path)
    assert sorted(cache.rows["file"]) == sorted(FILES)
    assert cache.meta["data"]["root"] == str(small_data.resolve())
    shown = {m.label: m.value for m in at.metric}
    assert shown["Images"] == "6"
    assert shown["Accuracy"] == f"{cache.rows['correct'].mean():.1%}"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_cache_of_another_model_is_recomputed_for_the_loaded_one(monkeypatch, tmp_path, small_data, pipeline):
    cache_path = tmp_path / "eval.parquet"
    monkeypatch.setenv("FAIRCAM_DATA", str(small_data))
    monkeypatch.setenv("FAIRCAM_CACHE", str(cache_path))
    recompute_button(run("pages/2_Evaluation.py")).click().run()  # a cache for the bundled model
    bundled_sha = read_cache(cache_path).meta["model"]["sha256"]

    # The same weights saved again (now with their checksum) are another model file.
    other = tmp_path / "other.pt"
    model = pipeline.model
    save_checkpoint(model.net, other, model.arch, model.input_size, model.info, tasks=model.tasks)
    assert file_sha256(other) != bundled_sha
    monkeypatch.setenv("FAIRCAM_MODEL", str(other))
    at = run("pages/2_Evaluation.py")
    assert not at.exception
    assert any("different model file" in w.value for w in at.warning)

    recompute_button(at).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("different model file" in w.value for w in at.warning)
    assert read_cache(cache_path).meta["model"]["sha256"] == file_sha256(other)


def test_without_data_folder_the_page_says_how(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRCAM_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("FAIRCAM_CACHE", str(tmp_path / "eval.parquet"))
    at = run("pages/2_Evaluation.py")
    assert not at.exception
    assert not [b for b in at.button if b.label.startswith("Recompute")]
    assert any("set `FAIRCAM_DATA`" in c.value for c in at.caption)


def test_one_recomputation_at_a_time(monkeypatch, tmp_path, small_data):
    from faircam.dashboard import ui

    monkeypatch.setenv("FAIRCAM_DATA", str(small_data))
    monkeypatch.setenv("FAIRCAM_CACHE", str(tmp_path / "eval.parquet"))
    from faircam.evaluation.jobs import evaluation_lock

    # The lock the app's sessions share with the background jobs of "Audit a model", held here as by a job.
    lock = evaluation_lock()
    assert lock is ui._recompute_lock() and lock.acquire(blocking=False)
    try:
        at = recompute_button(run("pages/2_Evaluation.py")).click().run()
    finally:
        lock.release()
    assert not at.exception
    assert any("Another evaluation is running on this server" in w.value for w in at.warning)
    assert not (tmp_path / "eval.parquet").exists()
