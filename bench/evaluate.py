"""Batch throughput of the evaluation code path (`faircam evaluate`: decode, MTCNN, views, the CAM pass,
focus scores) against the model's bare forward and backward at the same batch size, with the time split.

The split comes from timers wrapped around the stages where they exist, so the bench keeps working
when evaluate gains options; options of `run_evaluation` can be passed through (`--evaluate-kw`).
"""

from __future__ import annotations

import importlib
import inspect
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bench.common import OUT, data_dir, median, val_files
from faircam.images import read_image

# (module, attribute path, stage). Decoding runs on evaluate's reader thread, beside the rest.
STAGES = (
    ("faircam.evaluate", "read_image", "decode (reader thread)"),
    ("faircam.preprocess", "FaceDetector.detect_batch", "MTCNN detection"),
    ("faircam.evaluate", "make_view", "views (resize, crop, blur)"),
    ("faircam.cams", "CamExplainer.__call__", "CAM pass (forward, backward, 4 maps)"),
    ("faircam.explain", "focus_summary", "focus scores"),
    ("faircam.explain", "region_masks", "focus scores"),
    ("faircam.explain", "area_shares", "focus scores"),
)
BACKGROUND = {"decode (reader thread)"}


@contextmanager
def stage_timers() -> Iterator[dict[str, float]]:
    """Seconds spent in each stage while the block runs (outermost calls only)."""
    spent: dict[str, float] = defaultdict(float)
    depth = threading.local()
    lock = threading.Lock()
    undo = []
    for module_name, path, stage in STAGES:
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent, None)
        if owner is None or not hasattr(owner, name):
            continue
        original = getattr(owner, name)

        def timed(*args, _original=original, _stage=stage, **kwargs):
            if getattr(depth, "n", 0):
                return _original(*args, **kwargs)
            depth.n = 1
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                depth.n = 0
                with lock:
                    spent[_stage] += time.perf_counter() - start

        setattr(owner, name, timed)
        undo.append((owner, name, original))
    try:
        yield spent
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def bare_forward_backward(pipeline, count: int, batch_size: int, repeats: int = 2) -> tuple[float, float]:
    """Images per wall second and per CPU second of forward + backward alone, on the same images at the
    same batch size."""
    model = pipeline.model
    files = val_files(count)
    views = [pipeline.view(read_image(f)).image for f in files]
    batches = [model.to_tensor(views[i : i + batch_size]) for i in range(0, count, batch_size)]

    def one_epoch() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            model.net.zero_grad()
            logits = model.net(batch)
            logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
        return time.perf_counter() - wall, time.process_time() - cpu

    one_epoch()  # warm-up
    epochs = [one_epoch() for _ in range(repeats)]
    return count / median([w for w, _ in epochs]), count / median([c for _, c in epochs])


def run(pipeline, count: int = 128, batch_size: int = 32, evaluate_kw: dict | None = None, repeats: int = 1) -> dict:
    from faircam.evaluate import run_evaluation

    evaluate_kw = dict(evaluate_kw or {})
    accepted = inspect.signature(run_evaluation).parameters
    unknown = sorted(set(evaluate_kw) - set(accepted))
    if unknown:
        raise SystemExit(f"bench: error: run_evaluation takes no {', '.join(unknown)} "
                         f"(it takes {', '.join(accepted)})")
    if "progress" in accepted:
        evaluate_kw.setdefault("progress", False)
    OUT.mkdir(parents=True, exist_ok=True)

    def evaluate(limit: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        run_evaluation(data_dir(), "val", OUT / "bench-eval.parquet", pipeline.model, pipeline.detector,
                       pipeline.explainer, limit=limit, batch_size=batch_size, **evaluate_kw)
        return time.perf_counter() - wall, time.process_time() - cpu

    evaluate(min(count, 8))  # warm-up: first-call costs of MTCNN and the CAM hooks
    walls, cpus, splits = [], [], []
    for _ in range(repeats):
        with stage_timers() as spent:
            wall, cpu = evaluate(count)
        walls.append(wall)
        cpus.append(cpu)
        splits.append(dict(spent))
    wall, cpu = median(walls), median(cpus)
    split = splits[walls.index(sorted(walls)[len(walls) // 2])]
    bare, bare_cpu = bare_forward_backward(pipeline, count, batch_size)
    foreground = sum(v for k, v in split.items() if k not in BACKGROUND)
    split_ms = {k: round(1000 * v / count, 2) for k, v in sorted(split.items(), key=lambda kv: -kv[1])}
    split_ms["other (main thread: rows, tensors, threads)"] = round(1000 * max(wall - foreground, 0.0) / count, 2)
    throughput = count / wall
    return {
        "images": count,
        "batch_size": batch_size,
        "evaluate_kw": {k: v for k, v in evaluate_kw.items() if k != "progress"},
        "torch_threads": torch.get_num_threads(),
        "evaluate images/s": round(throughput, 2),
        "bare forward+backward images/s": round(bare, 2),
        "ratio": round(throughput / bare, 3),
        "evaluate images per CPU second": round(count / cpu, 2),
        "bare forward+backward images per CPU second": round(bare_cpu, 2),
        "ratio, CPU time (what an idle core would give)": round(count / cpu / bare_cpu, 3),
        "ms per image by stage": split_ms,
        "target": "ratio >= 0.8",
        "met": throughput / bare >= 0.8,
    }
