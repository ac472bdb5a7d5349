"""Batch throughput of the evaluation code path (`faircam evaluate`: decode, MTCNN, views, the CAM pass,
focus scores) against the model's bare forward and backward on the same inputs at the same batch size,
with the time split.

Evaluate feeds the model three views of every image with a face (raw, crop, blur), all of a batch
in one pass, so the bare baseline runs forward and backward on exactly those views, batched the
same way: the ratio is what the rest of the pipeline (decoding, MTCNN, views, focus scores, rows)
costs on top of the model's own work. Faithfulness (ROAD, deletion/insertion) runs on a sampled
handful of images and costs seconds each: it is off here, as it is for the app's recompute button,
and `faithfulness_per_cell` in `--evaluate-kw` turns it on.

`beside_mtcnn` then runs the bare pass beside MTCNN looping on one torch thread (`detect_forever`), on a second
thread of this process and in a second process: evaluate's model pass runs slower beside its worker thread than its
cores alone explain.

The split comes from timers wrapped around the stages where they exist, so the bench keeps working
when evaluate gains options; options of `run_evaluation` and fields of `EvalOptions` can be passed
through (`--evaluate-kw`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch

from bench.common import OUT, child_env, data_dir, median, val_files
from faircam.config import PROJECT_ROOT
from faircam.data.images import read_image
from faircam.vision.cams import PASS_VIEWS, cut_graph

# (module, attribute path, stage). Decoding, MTCNN, views, maps and rows run on evaluate's worker thread, beside the
# model's pass.
STAGES = (
    ("faircam.evaluation.evaluate", "read_data_image", "decode (worker thread)"),
    ("faircam.vision.preprocess", "FaceDetector.detect_batch", "MTCNN detection (worker thread)"),
    ("faircam.evaluation.evaluate", "make_view", "views: resize, crop, blur (worker thread)"),
    ("faircam.vision.explain", "region_masks", "region masks (worker thread)"),
    ("faircam.vision.cams", "CamExplainer.__call__", "CAM pass (forward, backward)"),
    ("faircam.evaluation.evaluate", "explanations", "rows: the 4 maps, focus scores (worker thread)"),
    ("faircam.evaluation.evaluate", "agreement_columns", "rows: agreement (worker thread)"),
)
BACKGROUND = {stage for _, _, stage in STAGES if stage.endswith("(worker thread)")}
T = TypeVar("T")


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


def model_inputs(pipeline, count: int, batch_size: int) -> list[list]:
    """Per batch of evaluate's (`batch_bounds`), the views it gives the model (`batch_views`)."""
    from faircam.evaluation.evaluate import batch_bounds, batch_views

    images = [read_image(f) for f in val_files(count)]
    bounds = batch_bounds(0, count, batch_size)
    batches = []
    for start, end in zip(bounds, bounds[1:]):
        views = batch_views(images[start:end], pipeline.model, pipeline.detector)[1]
        batches.append([view.image for name in ("raw", "crop", "blur") for view in views[name]])
    return batches


def bare_forward_backward(model, batches: list[list], to_cam_layer: bool, repeats: int = 2) -> tuple[float, float]:
    """Seconds (wall, CPU) of forward + backward alone over the batches of views (median of `repeats`).

    `to_cam_layer`: the least a CAM needs, as `faircam.vision.cams` runs it (no autograd before the CAM
    layer, backward from the predicted class's logit to that layer); otherwise a full backward with
    every weight's gradient, as in training.
    """
    tensors = [model.to_tensor(views) for views in batches]

    def one_pass(batch) -> None:
        # To the CAM layer, as the CAM pass runs it: `PASS_VIEWS` views at a time.
        for part in batch.split(PASS_VIEWS) if to_cam_layer else [batch]:
            model.net.zero_grad()
            with torch.no_grad() if to_cam_layer else contextlib.nullcontext():
                logits = model.net(part)
            logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()

    def one_epoch() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in tensors:
            one_pass(batch)
        return time.perf_counter() - wall, time.process_time() - cpu

    cut = model.cam_layer.register_forward_hook(cut_graph) if to_cam_layer else None
    try:
        one_epoch()  # warm-up
        epochs = [one_epoch() for _ in range(repeats)]
    finally:
        if cut:
            cut.remove()
    return median([w for w, _ in epochs]), median([c for _, c in epochs])


def detect_forever(ready: Callable[[], None], stop: Callable[[], bool] = lambda: False) -> None:
    """MTCNN on the first 32 val images, over and over on one torch thread, until `stop()`; `ready()` once loaded."""
    from faircam.vision.preprocess import FaceDetector

    torch.set_num_threads(1)
    detector, images = FaceDetector(), [read_image(f) for f in val_files(32)]
    ready()
    while not stop():
        detector.detect_batch(images)


def beside_mtcnn(model, batches: list[list]) -> dict[str, float]:
    """The bare pass's slow-down beside `detect_forever`: on a second thread of this process (as evaluate's worker)
    and in a second process. Where the two differ, sharing the process costs the model's thread, not sharing the
    cores."""
    alone = bare_forward_backward(model, batches, to_cam_layer=True, repeats=1)[0]
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=detect_forever, args=(ready.set, stop.is_set), daemon=True)
    thread.start()
    ready.wait()
    try:
        on_thread = bare_forward_backward(model, batches, to_cam_layer=True, repeats=1)[0]
    finally:
        stop.set()
        thread.join()
    loop = "from bench.evaluate import detect_forever; detect_forever(lambda: print('ready', flush=True))"
    process = subprocess.Popen([sys.executable, "-c", loop], cwd=PROJECT_ROOT, env=child_env(), text=True,
                               stdout=subprocess.PIPE)
    try:
        process.stdout.readline()
        in_process = bare_forward_backward(model, batches, to_cam_layer=True, repeats=1)[0]
    finally:
        process.kill()
        process.wait()
    return {"beside MTCNN on a thread of this process": round(on_thread / alone, 3),
            "beside MTCNN in a second process": round(in_process / alone, 3)}


def run(pipeline, count: int = 128, batch_size: int = 32, evaluate_kw: dict | None = None, repeats: int = 1) -> dict:
    from faircam.evaluation.evaluate import EvalOptions, batch_bounds, run_evaluation

    evaluate_kw = dict(evaluate_kw or {})
    fields = {f.name for f in dataclasses.fields(EvalOptions)}
    options = {"faithfulness_per_cell": 0, **{k: evaluate_kw.pop(k) for k in fields & set(evaluate_kw)}}
    accepted = inspect.signature(run_evaluation).parameters
    unknown = sorted(set(evaluate_kw) - set(accepted))
    if unknown:
        raise SystemExit(f"bench: error: run_evaluation takes no {', '.join(unknown)} "
                         f"(it takes {', '.join(accepted)}; EvalOptions: {', '.join(sorted(fields))})")
    evaluate_kw["options"] = EvalOptions(**options)
    if "progress" in accepted:
        evaluate_kw.setdefault("progress", False)
    OUT.mkdir(parents=True, exist_ok=True)

    def evaluate(limit: int) -> tuple[float, float, list[tuple[float, int]]]:
        """Wall and CPU seconds, and (seconds, images) at the end of every CAM pass (`Evaluator.explain`).

        The pass ends, not the progress calls: a batch's rows are made while the next batch's pass runs, so the
        progress calls lag one batch behind the model's work, and a rate between them counts a batch that was
        explained before the first of them."""
        from faircam.evaluation import evaluate as module

        ends: list[tuple[float, int]] = []
        explain = module.Evaluator.explain

        def timed(self, first, chunk, prepared):
            passed = explain(self, first, chunk, prepared)
            ends.append((time.perf_counter() - wall, len(chunk)))
            return passed

        module.Evaluator.explain = timed
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            run_evaluation(data_dir(), "val", OUT / "bench-eval.parquet", pipeline.model, pipeline.detector,
                           pipeline.explainer, limit=limit, batch_size=batch_size, **evaluate_kw)
        finally:
            module.Evaluator.explain = explain
        return time.perf_counter() - wall, time.process_time() - cpu, ends

    def user_system(block: Callable[[], T]) -> tuple[T, float, float]:
        """What `block` returns, and the process's user and system CPU seconds (every thread) while it ran."""
        before = os.times()
        result = block()
        after = os.times()
        return result, after.user - before.user, after.system - before.system

    evaluate(min(count, 8))  # warm-up: first-call costs of MTCNN and the CAM hooks
    # The bare pass is timed after one untimed pass over the same batches, so evaluate is too: its first run at this
    # batch size also pays oneDNN's kernels for these batch shapes, once per process (a long run pays it once).
    # That run is reported apart, beside the like-for-like figures.
    first_wall, _, _ = evaluate(count)
    walls, cpus, splits, steadies, tails, times = [], [], [], [], [], []
    for _ in range(repeats):
        with stage_timers() as spent:
            (wall, cpu, batches), user, system = user_system(lambda: evaluate(count))
            times.append((user, system))
        walls.append(wall)
        cpus.append(cpu)
        splits.append(dict(spent))
        # After the first pass the pipeline is full: each batch is prepared while the one before is explained.
        explained = sum(n for _, n in batches[1:])
        steadies.append(explained / (batches[-1][0] - batches[0][0]) if explained else float("nan"))
        tails.append(wall - batches[-1][0])
    wall, cpu = median(walls), median(cpus)
    steady, first_pass, tail = median(steadies), batches[0][0], median(tails)
    split = splits[walls.index(sorted(walls)[len(walls) // 2])]
    batches = model_inputs(pipeline, count, batch_size)
    (bare_wall, bare_cpu), bare_user, bare_system = user_system(
        lambda: bare_forward_backward(pipeline.model, batches, to_cam_layer=True))
    user, system = times[walls.index(sorted(walls)[len(walls) // 2])]
    bare, bare_per_cpu = count / bare_wall, count / bare_cpu
    full_wall, _ = bare_forward_backward(pipeline.model, batches, to_cam_layer=False)
    contention = beside_mtcnn(pipeline.model, batches)
    foreground = sum(v for k, v in split.items() if k not in BACKGROUND)
    split_ms = {k: round(1000 * v / count, 2) for k, v in sorted(split.items(), key=lambda kv: -kv[1])}
    split_ms["other (main thread: waits, threads)"] = round(1000 * max(wall - foreground, 0.0) / count, 2)
    throughput = count / wall
    return {
        "images": count,
        "batch_size": batch_size,
        "evaluate_kw": {k: (dataclasses.asdict(v) if k == "options" else v)
                        for k, v in evaluate_kw.items() if k != "progress"},
        "torch_threads": torch.get_num_threads(),
        "model inputs (views) per image": round(sum(map(len, batches)) / count, 2),
        "evaluate images/s, whole run": round(throughput, 2),
        "batches": batch_bounds(0, count, batch_size),
        "first CAM pass done after (s; the first batches' MTCNN has nothing to overlap with)": round(first_pass, 2),
        "evaluate images/s, after the first CAM pass": round(steady, 2),
        "after the last CAM pass (s: its rows, the cache written)": round(tail, 2),
        "bare forward + backward to the CAM layer, images/s (same views, same batches)": round(bare, 2),
        "ratio, whole run": round(throughput / bare, 3),
        "ratio, whole run, the process's first run at this batch size": round(count / first_wall / bare, 3),
        "ratio": round(steady / bare, 3),
        "bare forward + full backward (every weight's gradient), images/s": round(count / full_wall, 2),
        "ratio to the full backward": round(throughput * full_wall / count, 3),
        "evaluate images per CPU second": round(count / cpu, 2),
        "bare forward + backward to the CAM layer, images per CPU second": round(bare_per_cpu, 2),
        "ratio, CPU time (the overlap on a second core does not count)": round(count / cpu / bare_per_cpu, 3),
        "ms per image by stage": split_ms,
        "bare pass slowed (x) beside MTCNN on one torch thread": contention,
        "evaluate user / system CPU s (every thread)": [round(user, 1), round(system, 1)],
        "evaluate system time / user time": round(system / user, 3),
        "bare pass user / system CPU s (warm-up and 2 repeats)": [round(bare_user, 1), round(bare_system, 1)],
        "target": "ratio >= 0.9 after the first batch, >= 0.8 over the whole run; system time under a quarter of user",
        "met": steady / bare >= 0.9 and throughput / bare >= 0.8 and system < user / 4,
    }
