"""The allocator of faircam's heavy processes (`faircam.allocator`): `faircam evaluate` run as a program re-executes
itself on tcmalloc where it is installed (and says so in its cache), keeps glibc's when asked, refuses an unknown
setting in one line; and the first batch of an evaluation is prepared on both cores."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pandas as pd
import pytest
from test_cli import assert_one_line_error
from test_cli import run as cli

from faircam.allocator import tcmalloc_library
from faircam.config import PROJECT_ROOT
from faircam.data.fairface import load_split
from faircam.evaluation.cache import read_cache
from faircam.evaluation.evaluate import _batches

INSTALLED = "tcmalloc" if tcmalloc_library() else "glibc"


def evaluate_as_a_program(fairface, out, **env) -> subprocess.CompletedProcess:
    # Started as from a process on tcmalloc (the bench, the app): a child asked for glibc must not inherit it.
    inherited = {"LD_PRELOAD": tcmalloc_library()} if tcmalloc_library() else {}
    return subprocess.run(
        [sys.executable, "-m", "faircam.cli", "evaluate", "--data", str(fairface), "--split", "val", "--limit", "4",
         "--faithfulness-per-cell", "0", "--out", str(out)],
        cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1", **inherited,
                               **env},
        capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("setting", "expected"), [("", INSTALLED), ("glibc", "glibc")])
def test_evaluate_as_a_program_runs_on_the_allocator_asked_for(fairface, tmp_path, setting, expected):
    out = tmp_path / "eval.parquet"
    done = evaluate_as_a_program(fairface, out, FAIRCAM_ALLOCATOR=setting)
    assert done.returncode == 0, done.stderr
    cache = read_cache(out)
    assert cache.meta["allocator"] == expected
    assert len(cache.rows) == 4


def test_an_unknown_allocator_is_one_line(capsys, tmp_path, fairface, monkeypatch):
    monkeypatch.setenv("FAIRCAM_ALLOCATOR", "jemalloc")
    out = tmp_path / "eval.parquet"
    done = evaluate_as_a_program(fairface, out, FAIRCAM_ALLOCATOR="jemalloc")
    assert_one_line_error(done.returncode, done.stdout, done.stderr, "FAIRCAM_ALLOCATOR='jemalloc'")
    assert not out.exists()
    # In-process (as the tests and the pages call it) the setting is read too, before any work.
    code, stdout, stderr = cli(capsys, "evaluate", "--data", fairface, "--limit", "2", "--out", out)
    assert_one_line_error(code, stdout, stderr, "give one of tcmalloc, glibc")
    assert not out.exists()


def test_the_launcher_runs_a_command_on_the_allocator():
    # How `bash run.sh app` starts Streamlit.
    done = subprocess.run(
        [sys.executable, "-m", "faircam.allocator", sys.executable, "-c",
         "from faircam.allocator import active; print(active())"],
        cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == INSTALLED


def test_the_first_batch_is_prepared_in_halves_on_two_threads(fairface):
    split = load_split(fairface, "val")
    threads: list[tuple[int, int]] = []

    def prepare(images):
        threads.append((len(images), threading.get_ident()))
        return [], {}, pd.DataFrame(index=range(len(images))), None

    limited = replace(split, rows=split.rows.head(20))
    with ThreadPoolExecutor(max_workers=1) as worker:
        batches = list(_batches(limited, 8, prepare, worker))
        # The first batch is three quarters of one (`batch_bounds`), in halves; then whole ones, the last what is left.
        assert [(first, len(rows)) for first, rows, _ in batches] == [(0, 3), (3, 3), (6, 8), (14, 6)]
        # The halves side by side, one on this thread; every later batch on the worker thread alone.
        here = threading.get_ident()
        reader = {ident for _, ident in threads[:2]} - {here}
        assert len(reader) == 1 and here in {ident for _, ident in threads[:2]}
        assert {ident for _, ident in threads[2:]} == reader
        # A resumed run keeps the batches of the run it resumes (their rows then equal an uninterrupted run's), also
        # from the first batch's second half.
        assert [(first, len(rows)) for first, rows, _ in _batches(limited, 8, prepare, worker, start=6)] == [
            (6, 8), (14, 6)]
        assert [(first, len(rows)) for first, rows, _ in _batches(limited, 8, prepare, worker, start=3)] == [
            (3, 3), (6, 8), (14, 6)]
