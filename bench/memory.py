"""Peak memory (RSS) of `faircam evaluate --limit N`, the real command in its own process.

The peak is the kernel's own count for the finished process (`ru_maxrss` from wait4), not a sample.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.common import OUT, data_dir
from faircam.config import PROJECT_ROOT


def evaluate_peak(count: int, batch_size: int = 32) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", "import sys; from faircam.cli import main; sys.exit(main())", "evaluate",
               "--data", str(data_dir()), "--split", "val", "--limit", str(count), "--batch-size", str(batch_size),
               "--out", str(OUT / "bench-memory.parquet")]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"bench: error: faircam evaluate failed: {errors.strip().splitlines()[-1:]}")
    return {
        "command": f"faircam evaluate --split val --limit {count} --batch-size {batch_size}",
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_s (includes model load, default torch threads)": round(time.perf_counter() - start, 1),
    }
