"""Peak memory (RSS) of `faircam evaluate --limit N` and `--limit 4N`, the real command in its own process.

The peak is the kernel's high-water mark of the process's resident memory (VmHWM), read until it exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.common import OUT, data_dir, status_kb
from faircam.config import PROJECT_ROOT


def _peak(count: int, batch_size: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    arguments = ["evaluate", "--data", str(data_dir()), "--split", "val", "--limit", str(count), "--batch-size",
                 str(batch_size), "--faithfulness-per-cell", "0", "--out", str(OUT / "bench-memory.parquet")]
    command = [sys.executable, "-c", "import sys; from faircam.cli import main; sys.exit(main())", *arguments]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    # The kernel's high-water mark of the process's own memory, read until it exits. Not `ru_maxrss`:
    # a forked child's counts the bench process's RSS at the fork, gigabytes after the evaluate bench.
    peak_kb = 0
    while process.poll() is None:
        try:
            peak_kb = max(peak_kb, status_kb(process.pid, "VmHWM"))
        except OSError:
            break
        time.sleep(0.2)
    errors = process.communicate()[1]
    if process.returncode != 0:
        raise SystemExit(f"bench: error: faircam evaluate failed: {errors.strip().splitlines()[-1:]}")
    return {
        "command": f"faircam {' '.join(arguments[:-2])}",
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "wall_s (includes model load, default torch threads)": round(time.perf_counter() - start, 1),
    }


def evaluate_peak(count: int, batch_size: int = 32) -> dict:
    """Peaks for `count` and four times as many images: the peak should be a batch's, not grow with the
    split. Faithfulness is off: its sample (all images of a run this short) costs seconds per image."""
    OUT.mkdir(parents=True, exist_ok=True)
    runs = [_peak(n, batch_size) for n in (count, 4 * count)]
    return {"runs": runs, "growth_mb": round(runs[1]["peak_rss_mb"] - runs[0]["peak_rss_mb"], 1)}
