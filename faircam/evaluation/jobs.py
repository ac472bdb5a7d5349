"""Background evaluations of the models brought to the store (`faircam.models.store`), one at a time per server.

The "Audit a model" page submits a job (a model's name and how many FairFace validation faces: a sample stratified
by race x gender, `config.audit_faces()` by default, or all) and only reads its state, so a job outlives the page, its
session and a reload: the jobs run on one worker thread of the server's process, in the order they came (the
others are told their place in the queue), and their state (faces done, the time left, how it ended) is written
to `<model_store()>/jobs/<name>.json` after every batch. An evaluation holds `evaluation_lock`, the one lock the
Evaluation page's "Recompute" holds too, so the server runs one evaluation at a time.

A job is `run_evaluation` itself, writing the model's cache (`config.cache_path_for`): cancelling it stops it
after the batch it is on, as Ctrl-C stops `faircam evaluate`, with its work saved in the cache's `.partial`
folder; submitting the same model and faces again resumes there. A job the server lost (it restarted) is shown as
stopped and resumes the same way. Faithfulness (ROAD, seconds per face) is left to `faircam evaluate`, as for
Recompute.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from faircam.config import cache_path_for, model_store, settings
from faircam.errors import KNOWN_ERRORS, DataError
from faircam.files import write_atomic

# The states a job's file records; "running" and "queued" only while this process has the job.
ENDED = ("done", "cancelled", "failed", "stopped")

_LOCK = threading.Lock()


def evaluation_lock() -> threading.Lock:
    """The server's one evaluation at a time: held by a job while it runs, and by the Evaluation page's Recompute."""
    return _LOCK


class Cancelled(KeyboardInterrupt):
    """Raised from a job's progress callback when it is cancelled: `run_evaluation` stops as on Ctrl-C, its work
    saved for a resume."""


@dataclass(frozen=True)
class Job:
    """A job's state as its file and the page show it: `state` is queued, running, or one of `ENDED`; `eta_s` the
    seconds left at the rate so far; `resumed_from` the faces an earlier run had done."""

    name: str
    faces: int | None
    state: str
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    resumed_from: int = 0
    message: str = ""
    ahead: int = 0  # jobs before it in the queue, while queued


def _path(name: str) -> Path:
    return model_store() / "jobs" / f"{name}.json"


def _save(job: Job) -> Job:
    write_atomic(_path(job.name), json.dumps(asdict(job)))
    return job


def sample_files(rows: pd.DataFrame, faces: int | None, seed: int = 0) -> list[str]:
    """The files of `faces` faces stratified by race x gender (`faces` // cells from each cell, at least one), in the
    data's order; None: every face."""
    if faces is None:
        return rows["file"].tolist()
    from faircam.data.fairface import balanced_sample

    cells = max(1, rows.groupby(["race", "gender"], dropna=False).ngroups)
    chosen = set(balanced_sample(rows, max(1, faces // cells), seed)["file"])
    return rows.loc[rows["file"].isin(chosen), "file"].tolist()


class _Worker:
    """The queue and the one thread that works through it."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.queue: list[tuple[str, int | None, int]] = []
        self.running: str | None = None
        self.cancelled: set[str] = set()
        self.thread: threading.Thread | None = None

    def submit(self, name: str, faces: int | None, batch_size: int) -> Job:
        with self.guard:
            if name == self.running or any(q[0] == name for q in self.queue):
                return job(name)
            self.cancelled.discard(name)
            self.queue.append((name, faces, batch_size))
            _save(Job(name, faces, "queued"))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="faircam-jobs", daemon=True)
                self.thread.start()
        return job(name)

    def cancel(self, name: str) -> None:
        with self.guard:
            queued = next((q for q in self.queue if q[0] == name), None)
            if queued:
                self.queue.remove(queued)
                _save(Job(name, queued[1], "cancelled", message="Cancelled before it started."))
            elif name == self.running:
                self.cancelled.add(name)

    def _loop(self) -> None:
        while True:
            with self.guard:
                if not self.queue:
                    self.thread = None
                    return
                name, faces, batch_size = self.queue.pop(0)
                self.running = name
            try:
                _run(name, faces, batch_size, lambda name=name: name in self.cancelled)
            finally:
                with self.guard:
                    self.running = None
                    self.cancelled.discard(name)


_WORKER = _Worker()


def _run(name: str, faces: int | None, batch_size: int, cancelled: Callable[[], bool]) -> None:
    state = Job(name, faces, "running", message="Waiting for another evaluation on this server to end.")
    _save(state)
    with _LOCK:
        try:
            state = _evaluate(replace(state, message="Loading the model and the face detector…"), batch_size,
                              cancelled)
            _save(replace(state, state="done", eta_s=0.0, message=""))
        except Cancelled:
            _save(replace(job(name) or state, state="cancelled", eta_s=None,
                          message="Cancelled: start it again to resume where it stopped."))
        except KNOWN_ERRORS as exc:
            _save(replace(job(name) or state, state="failed", eta_s=None, message=str(exc)))
        except Exception as exc:  # a background thread has no page to show its traceback: one line, kept
            _save(replace(job(name) or state, state="failed", eta_s=None,
                          message=f"The evaluation stopped on an unexpected error ({type(exc).__name__}: {exc})."))


def _evaluate(state: Job, batch_size: int, cancelled: Callable[[], bool]) -> Job:
    _save(state)
    data_dir = settings().data_dir
    if data_dir is None:
        raise DataError("No data folder on this server: set FAIRCAM_DATA to FairFace.")
    from faircam.data.labelled import load_data
    from faircam.evaluation.evaluate import EvalOptions, run_evaluation
    from faircam.vision.explain import Pipeline

    files = sample_files(load_data(data_dir, "val").rows, state.faces)
    pipeline = Pipeline.load(state.name)
    started: list[tuple[float, int]] = []
    current = [state]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if not started:
            started.append((now, done))
        since, first = started[0]
        eta = (total - done) * (now - since) / (done - first) if done > first else None
        current[0] = _save(replace(current[0], done=done, total=total, eta_s=eta, resumed_from=first,
                                   message=""))
        if cancelled():
            raise Cancelled

    run_evaluation(data_dir, "val", cache_path_for(state.name), pipeline.model, pipeline.detector,
                   pipeline.explainer, batch_size=batch_size, progress=False,
                   options=EvalOptions(faithfulness_per_cell=0), on_progress=progress, files=files)
    return current[0]


def submit(name: str, faces: int | None, batch_size: int = 16) -> Job:
    """Queue the evaluation of the brought model `name` on `faces` stratified FairFace validation faces (None:
    all); a job already queued or running for it is returned as it is."""
    return _WORKER.submit(name, faces, batch_size)


def cancel(name: str) -> None:
    """Stop the model's job after its current batch (its work kept for a resume), or take it out of the queue."""
    _WORKER.cancel(name)


def job(name: str) -> Job | None:
    """The state of the model's last job; a job its file says is running or queued but this process does not have
    (the server restarted) is "stopped", and resumes when submitted again."""
    try:
        raw = json.loads(_path(name).read_text(encoding="utf-8"))
        state = Job(**raw)
    except (OSError, ValueError, TypeError):
        return None
    with _WORKER.guard:
        queue = [q[0] for q in _WORKER.queue]
        running = _WORKER.running
    if state.state == "queued" and name in queue:
        return replace(state, ahead=queue.index(name) + (running is not None))
    if state.state in ("queued", "running") and name != running:
        return replace(state, state="stopped", message="This server stopped it: start it again to resume.")
    return state


def forget(name: str) -> None:
    """Drop the model's job record (its model was removed)."""
    _path(name).unlink(missing_ok=True)
