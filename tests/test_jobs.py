"""Background evaluations of brought models (faircam.evaluation.jobs): a tiny model the test builds, installed in the
store as the page installs it, evaluated on real FairFace validation faces stratified by race x gender; cancelled
and resumed where it stopped; one evaluation at a time with the Evaluation page's Recompute."""

from __future__ import annotations

import time

import pytest
from test_model_kinds import _vit
from test_model_store import zipped

from faircam.config import cache_path_for, settings
from faircam.evaluation import jobs
from faircam.evaluation.cache import read_cache
from faircam.evaluation.evaluate import partial_path
from faircam.models import store


@pytest.fixture
def brought(tmp_path, fairface, monkeypatch) -> str:
    monkeypatch.setenv("FAIRCAM_DATA", str(fairface))
    store.install_archive("tiny vit", zipped(_vit(tmp_path / "vit", ["female", "male"])), "vit.zip")
    return "tiny vit"


def wait(name: str, until=lambda job: job.state in jobs.ENDED, seconds: float = 300) -> jobs.Job:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = jobs.job(name)
        if job is not None and until(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{name}: {jobs.job(name)}")


def test_a_job_evaluates_stratified_faces_in_the_background(brought, val_split):
    job = jobs.submit(brought, faces=14, batch_size=8)
    assert job.state in ("queued", "running")
    done = wait(brought)
    assert (done.state, done.done, done.total, done.eta_s) == ("done", 14, 14, 0.0), done
    cache = read_cache(cache_path_for(brought))
    # One face of each of FairFace's 7 races x 2 genders, with the maps of the brought model.
    assert len(cache.rows) == 14 and cache.rows.groupby(["race", "gender"], observed=True).size().eq(1).all()
    assert cache.has_cams and cache.meta["model"]["kind"] == "huggingface"
    assert cache.meta["data"]["root"] == str(settings().data_dir.resolve())


def test_a_cancelled_job_resumes_where_it_stopped(brought):
    jobs.submit(brought, faces=28, batch_size=2)
    wait(brought, lambda job: job.done >= 8 or job.state in jobs.ENDED)
    jobs.cancel(brought)
    stopped = wait(brought)
    assert stopped.state == "cancelled" and 8 <= stopped.done < 28, stopped
    assert "resume" in stopped.message and partial_path(cache_path_for(brought)).is_dir()
    assert not cache_path_for(brought).exists()
    # While it is stopped the model can be removed; here it is resumed instead.
    jobs.submit(brought, faces=28, batch_size=2)
    done = wait(brought)
    assert done.state == "done" and done.resumed_from == stopped.done and done.done == 28
    assert len(read_cache(cache_path_for(brought)).rows) == 28


def test_one_evaluation_at_a_time(brought, tmp_path):
    """A job waits while Recompute (or another job) holds the server's evaluation lock, and a second model queues
    behind the first."""
    lock = jobs.evaluation_lock()
    lock.acquire()
    try:
        jobs.submit(brought, faces=14, batch_size=8)
        waiting = wait(brought, lambda job: job.state == "running")
        assert "Waiting for another evaluation" in waiting.message
        time.sleep(0.5)
        assert jobs.job(brought).done == 0
        store.install_archive("second", zipped(_vit(tmp_path / "v2", ["Man", "Woman"])), "second.zip")
        queued = jobs.submit("second", faces=14, batch_size=8)
        assert queued.state == "queued" and queued.ahead == 1
        jobs.cancel("second")
        assert jobs.job("second").state == "cancelled"
    finally:
        lock.release()
    assert wait(brought).state == "done"


def test_a_job_the_server_lost_is_stopped_and_a_broken_model_fails_in_one_line(brought):
    jobs._save(jobs.Job(brought, 14, "running", done=4, total=14))  # as a server that was killed left it
    assert jobs.job(brought).state == "stopped"
    (store.get(brought).model / "config.json").write_text("{}")  # its files damaged after install
    jobs.submit(brought, faces=14)
    failed = wait(brought)
    assert failed.state == "failed" and "does not load as a Hugging Face image classifier" in failed.message
    assert "\n" not in failed.message
