"""The memory allocator of faircam's heavy processes: `faircam evaluate`, `train`, `add-quality`, `explain`, their Ray
workers and the dashboard's server (`bash run.sh app`).

torch allocates and frees activation buffers of tens of megabytes on every batch. glibc's malloc gives buffers of
32 MB and more (and, with `steady_allocator`, of 4 MB and more) their own mapping, handed back to the kernel when
freed, so the next batch faults in and zeroes fresh pages: measured on `faircam evaluate`, the process spent more
system time than user time (bench/evaluate.py). Keeping them in glibc's heap instead fragments it, and the peak
climbs with the length of the run. tcmalloc (gperftools' `libtcmalloc_minimal.so.4`, Debian's
`libtcmalloc-minimal4`, which `run.sh` installs) keeps freed spans for reuse and returns them gradually: system time
falls to a few percent of user time and the peak stays flat (README, "Performance"). It must be loaded before
anything allocates, so a process that wants it is executed again, once, with it in `LD_PRELOAD` (`use_allocator`),
and children are started with it (`preloaded_env`). Where it is not installed, or with `FAIRCAM_ALLOCATOR=glibc`,
glibc runs with a fixed mmap threshold (`steady_allocator`) and hands freed memory back after every batch
(`release_freed_memory`), which keeps the peak flat at the cost of the kernel's work.

`python -m faircam.allocator COMMAND...` runs a command with the allocator in force (how `run.sh app` starts
Streamlit).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from faircam.config import allocator_setting, evaluate_mmap_mb

TCMALLOC = "tcmalloc_minimal"
# Set in the environment of the process `use_allocator` starts: a library that failed to preload is not retried.
_TRIED = "FAIRCAM_ALLOCATOR_TRIED"


@cache
def tcmalloc_library() -> str | None:
    """tcmalloc's shared library as the dynamic loader finds it (None when not installed)."""
    return ctypes.util.find_library(TCMALLOC)


@cache
def active() -> str:
    """The allocator this process runs on: "tcmalloc" when it is mapped into the process, else "glibc"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "glibc"
    return "tcmalloc" if f"lib{TCMALLOC}" in maps else "glibc"


def wanted(env: Mapping[str, str] | None = None) -> str:
    """The allocator `env` (default: this process's environment) asks for and this machine has: "tcmalloc" where
    `FAIRCAM_ALLOCATOR` asks for it and it is installed, else "glibc"."""
    return "tcmalloc" if allocator_setting(env) == "tcmalloc" and tcmalloc_library() is not None else "glibc"


def preloaded_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with tcmalloc first in `LD_PRELOAD` when its `FAIRCAM_ALLOCATOR` asks for it
    and it is installed, and without it otherwise (a child asked to run on glibc does not inherit it)."""
    env = dict(os.environ if env is None else env)
    preload = [p for p in env.get("LD_PRELOAD", "").split() if p and TCMALLOC not in p]
    if wanted(env) == "tcmalloc":
        preload.insert(0, tcmalloc_library())
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def use_allocator() -> None:
    """Execute this process again on the allocator `FAIRCAM_ALLOCATOR` asks for (tcmalloc where installed), when it
    runs on another; return where nothing is to be done (the re-executed process returns here too)."""
    # Taken out of the environment at once, so the processes this one starts decide for themselves.
    if os.environ.pop(_TRIED, None):
        return
    if active() == wanted():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**preloaded_env(), _TRIED: "1"})


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


# glibc's `M_MMAP_THRESHOLD` (malloc.h).
_M_MMAP_THRESHOLD = -3


@cache
def steady_allocator() -> None:
    """Under glibc, give every buffer of `evaluate_mmap_mb()` MB or more (default 4) its own mapping, returned to the
    system when freed (once per process; a no-op under tcmalloc, without glibc or with 0).

    glibc starts mapping buffers from 128 KB but raises that threshold to the size of each mapped
    buffer freed, up to 32 MB, so the image and activation buffers of MTCNN and the CAM pass soon
    come from its heap, which they fragment: measured on 8 batches of 32 val images, MTCNN's peak above
    the memory in use was 265-365 MB and climbed when the same batches ran again (346-393 MB); with the
    threshold fixed at 4 MB, 175-215 MB both times (`bench/memory.py`, `mtcnn_batch_peaks`). The price is
    the kernel's work of mapping and zeroing those buffers afresh (README, "Performance").
    """
    libc = _libc()
    megabytes = evaluate_mmap_mb()
    if libc is not None and megabytes and active() == "glibc":
        libc.mallopt(_M_MMAP_THRESHOLD, megabytes << 20)


def release_freed_memory() -> None:
    """Under glibc, hand the memory freed by a batch back to the system (`malloc_trim`); a no-op otherwise.

    glibc keeps freed memory in its arenas for reuse. With the reader thread and torch's threads freeing
    image-sized buffers, what it keeps fragments, and the peak climbed batch after batch: measured over
    384 images, 2.09 -> 2.54 GB without trimming, 2.14 -> 2.20 GB (flat from the second batch) with it,
    and 0.5 GB less held between batches (bench/memory.py).
    """
    libc = _libc()
    if libc is not None and active() == "glibc":
        libc.malloc_trim(0)


def main() -> None:
    """`python -m faircam.allocator COMMAND...`: COMMAND with the allocator in force."""
    if len(sys.argv) < 2:
        sys.exit("usage: python -m faircam.allocator COMMAND [ARGS...]")
    os.execvpe(sys.argv[1], sys.argv[1:], preloaded_env())


if __name__ == "__main__":
    main()
