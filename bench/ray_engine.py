"""`faircam evaluate --engine ray` with 1 and 2 workers vs the local engine, and a cluster estimate.

Each run is `run_evaluation` on the first N val images (faithfulness off); its throughput is taken
between the first and the last finished batch (`on_progress`), so Ray's start and the actors' model
load are left out and reported apart (time to the first batch). The cluster estimate divides the
full FairFace set (97,698 images) by the rate of one one-core worker (half the two-worker rate here),
which holds while the work is independent per image and the driver (it writes parts: milliseconds a
batch) keeps up.
"""

from __future__ import annotations

import time

from bench.common import OUT, data_dir

FAIRFACE_IMAGES = 97_698


def _timed(name: str, count: int, batch_size: int, engine) -> dict:
    from faircam.config import settings
    from faircam.evaluation.evaluate import EvalOptions, run_evaluation
    from faircam.models.registry import load_model

    model = load_model(settings().model_path)
    options = EvalOptions(faithfulness_per_cell=0)
    marks: list[tuple[float, int]] = []
    out = OUT / f"bench-{name}.parquet"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    run_evaluation(data_dir(), "val", out, model, **engine(model, options), limit=count, batch_size=batch_size,
                   progress=False, options=options,
                   on_progress=lambda done, total: marks.append((time.perf_counter(), done)))
    finished = [(t, done) for t, done in marks if done > 0]
    (t0, d0), (t1, d1) = finished[0], finished[-1]
    return {"first batch after (s)": round(t0 - start, 1), "wall_s": round(time.perf_counter() - start, 1),
            "images/s after the first batch": round((d1 - d0) / (t1 - t0), 2)}


def run(count: int = 64, batch_size: int = 8) -> dict:
    from faircam.evaluation.distributed import ray_runner
    from faircam.vision.explain import Pipeline

    def local(model, options):
        pipeline = Pipeline.load(model.path)
        return {"detector": pipeline.detector, "explainer": pipeline.explainer}

    def on_ray(workers: int):
        def runner(model, options):
            return {"detector": None, "runner": ray_runner(str(model.path), model.sha256, model.tasks, options,
                                                           batch_size, workers=workers)}
        return runner

    results = {"images": count, "batch_size": batch_size,
               "local engine (this process, torch threads as set)": _timed("local", count, batch_size, local)}
    for workers in (1, 2):
        # A local Ray shares the cores out: one worker gets both (two torch threads), two get one each.
        results[f"ray, {workers} worker{'s' if workers > 1 else ''}"] = _timed(f"ray-{workers}", count, batch_size,
                                                                                on_ray(workers))
    one, two = results["ray, 1 worker"], results["ray, 2 workers"]
    rate = two["images/s after the first batch"] / 2
    results["speed-up 2 vs 1 workers"] = round(two["images/s after the first batch"]
                                               / one["images/s after the first batch"], 2)
    results["per image, one one-core worker (s)"] = round(1 / rate, 3)
    results["full FairFace (97,698 images) estimate, hours"] = {
        f"{w} one-core workers": round(FAIRFACE_IMAGES / (rate * w) / 3600, 2) for w in (1, 8, 32, 128)}
    return results
