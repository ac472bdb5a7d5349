"""Peak memory (RSS) and CPU time of `faircam evaluate --limit N` and `--limit 4N`, the real command in its own
process, on each allocator (`faircam.allocator`: tcmalloc where installed, glibc with its fixed mmap threshold), and
MTCNN's peak per batch with glibc's mmap threshold left dynamic and fixed (`steady_allocator`).

The peak is the kernel's high-water mark of the process's resident memory (VmHWM), read until it exits; user and
system time are the child's own (`os.wait4`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.common import OUT, child_env, data_dir, status_kb
from faircam.allocator import preloaded_env, wanted
from faircam.config import ALLOCATORS, PROJECT_ROOT


def _peak(count: int, batch_size: int, allocator: str) -> dict:
    env = preloaded_env(child_env(FAIRCAM_ALLOCATOR=allocator))
    arguments = ["evaluate", "--data", str(data_dir()), "--split", "val", "--limit", str(count), "--batch-size",
                 str(batch_size), "--faithfulness-per-cell", "0", "--out", str(OUT / "bench-memory.parquet")]
    command = [sys.executable, "-c", "import sys; from faircam.cli import main; sys.exit(main())", *arguments]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    # The kernel's high-water mark of the process's own memory, read until it exits. Not `ru_maxrss`:
    # a forked child's counts the bench process's RSS at the fork, gigabytes after the evaluate bench.
    peak_kb = 0
    while True:
        # Read while it runs, then reap it here: `wait4` gives the child's own CPU time.
        try:
            peak_kb = max(peak_kb, status_kb(process.pid, "VmHWM"))
        except OSError:
            pass
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read()
    if process.returncode != 0:
        raise SystemExit(f"bench: error: faircam evaluate failed: {errors.strip().splitlines()[-1:]}")
    return {
        "command": f"FAIRCAM_ALLOCATOR={allocator} faircam {' '.join(arguments[:-2])}",
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "wall_s (includes model load, default torch threads)": round(time.perf_counter() - start, 1),
        "user_s, system_s": [round(usage.ru_utime, 1), round(usage.ru_stime, 1)],
    }


def evaluate_peak(count: int, batch_size: int = 32) -> dict:
    """Per allocator that can run here, peaks for `count` and four times as many images: the peak should be a
    batch's, not grow with the split. Faithfulness is off: its sample (all images of a run this short) costs
    seconds per image."""
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for allocator in ALLOCATORS:
        if wanted({"FAIRCAM_ALLOCATOR": allocator}) != allocator:
            results[allocator] = "not installed (apt-get install libtcmalloc-minimal4)"
            continue
        runs = [_peak(n, batch_size, allocator) for n in (count, 4 * count)]
        results[allocator] = {"runs": runs, "growth_mb": round(runs[1]["peak_rss_mb"] - runs[0]["peak_rss_mb"], 1),
                              "system / user time": [round(r["user_s, system_s"][1] / r["user_s, system_s"][0], 3)
                                                     for r in runs]}
    return results


# Run in a fresh process per setting: once glibc's threshold is set it stays fixed for the process.
_BATCH_PEAKS = """
import json, os, sys
from bench.common import status_kb
from faircam.data.fairface import load_split, read_data_image
from faircam.allocator import release_freed_memory, steady_allocator
from faircam.vision.preprocess import FaceDetector

steady_allocator()  # with FAIRCAM_MMAP_MB=0, glibc's own threshold
split, detector = load_split(sys.argv[1], "val"), FaceDetector()
files = list(split.rows["file"][: int(sys.argv[2])])
batches = [[read_data_image(split.root, f) for f in files[i : i + 32]] for i in range(0, len(files), 32)]
rounds = []
for _ in range(2):
    peaks = []
    for batch in batches:
        release_freed_memory()
        base = status_kb(os.getpid(), "VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
        detector.detect_batch(batch)
        peaks.append(round((status_kb(os.getpid(), "VmHWM") - base) / 1024))
    rounds.append(peaks)
print(json.dumps(rounds))
"""


def mtcnn_batch_peaks(count: int = 256) -> dict:
    """MTCNN's peak above the memory in use, per batch of 32 of the first `count` val images, twice over the
    same batches, with glibc's mmap threshold left dynamic and fixed at 4 MB: (first round, second round) MB."""
    # glibc's thresholds, so glibc's malloc: not the bench's own tcmalloc.
    env = preloaded_env(child_env(FAIRCAM_ALLOCATOR="glibc", OMP_NUM_THREADS="1"))
    results = {}
    for setting, megabytes in (("dynamic", "0"), ("fixed", "4")):
        done = subprocess.run([sys.executable, "-c", _BATCH_PEAKS, str(data_dir()), str(count)],
                              env={**env, "FAIRCAM_MMAP_MB": megabytes}, cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"bench: error: MTCNN batch peaks failed: {done.stderr.strip().splitlines()[-1:]}")
        first, second = json.loads(done.stdout.strip().splitlines()[-1])
        results[f"threshold {setting}: MB per batch (first round, same batches again)"] = [first, second]
    return results
