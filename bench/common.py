"""What every benchmark shares: timing with medians, the machine's description, and the data used."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from faircam.config import PROJECT_ROOT, settings

OUT = PROJECT_ROOT / "bench" / "out"


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child process, with `extra` set and the checkout first on its path."""
    return {**os.environ, **extra,
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}


def timings(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of `repeats` calls of `fn`, after `warmup` untimed ones. This process's CPU
    time hardly moves with other work on a shared machine, where wall time does."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}"


def data_dir() -> Path:
    data = settings().data_dir
    if data is None or not (data / "fairface_label_val.csv").is_file():
        raise SystemExit("bench: error: no FairFace folder (set FAIRCAM_DATA to one with fairface_label_val.csv)")
    return data


def val_files(count: int) -> list[Path]:
    """The first `count` val images, the same ones `faircam evaluate --limit` takes."""
    from faircam.data.fairface import load_split

    split = load_split(data_dir(), "val")
    return [split.root / f for f in split.rows["file"].head(count)]


def status_kb(pid: int, key: str) -> int:
    """A field of /proc/<pid>/status in kB (VmRSS, VmHWM), 0 if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0
