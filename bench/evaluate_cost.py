"""Per-image cost of each part of `faircam evaluate`, to choose its defaults.

    PYTHONPATH=. python bench/evaluate_cost.py --images 64 --threads 1

Prints CPU and wall milliseconds per image for detection, the three views, the shared CAM pass
(all views), focus scores, agreement, and the faithfulness measures (per sampled image), and the
estimate for the 2,500 validation images with the default faithfulness sample. CPU time is the
better guide on a busy machine: wall time there includes waiting for the other processes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from faircam.config import FAITHFULNESS_PER_CELL, settings
from faircam.data.fairface import balanced_sample, load_split, read_data_image
from faircam.evaluation.agreement import agreement_columns
from faircam.evaluation.faithfulness import CURVE_STEPS, ROAD_PERCENTILES, deletion_insertion, road_scores
from faircam.vision.explain import Pipeline, explain_views
from faircam.vision.preprocess import make_view


def timed(costs: dict, name: str, count: int, work):
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    costs[name] = ((time.process_time() - cpu) / count * 1000, (time.perf_counter() - wall) / count * 1000)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--faithfulness-images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipeline = Pipeline.load(settings().model_path)
    split = load_split(settings().data_dir, "val")
    images = [read_data_image(split.root, f) for f in split.rows["file"].head(args.images)]
    pipeline.explain(images[0])  # warm-up

    costs: dict[str, tuple[float, float]] = {}
    n = len(images)
    faces = timed(costs, "detect (MTCNN)", n, lambda: pipeline.detector.detect_batch(images))
    size = pipeline.model.input_size
    views = timed(costs, "make 3 views", n, lambda: [
        make_view(im, size, pipeline.detector, crop=c, blur=b, faces=f)
        for c, b in ((False, False), (True, False), (False, True)) for im, f in zip(images, faces)])
    batches = [views[i : i + 32] for i in range(0, len(views), 32)]
    explained = timed(costs, "CAM pass + focus, 3 views", n, lambda: [
        e for batch in batches for e in explain_views(batch, pipeline.model, pipeline.explainer)])
    raw_maps = {m: np.stack([e.maps[m] for e in explained[:n]]) for m in pipeline.explainer.methods}
    timed(costs, "agreement", n, lambda: agreement_columns(raw_maps))

    k = min(args.faithfulness_images, n)
    inputs = pipeline.model.to_tensor([v.image for v in views[:k]])
    maps = {m: v[:k] for m, v in raw_maps.items()}
    targets = np.array([pipeline.model.classes.index(e.label) for e in explained[:k]])
    faith: dict[str, tuple[float, float]] = {}
    timed(faith, f"ROAD {len(ROAD_PERCENTILES)} percentiles x 4 methods", k,
          lambda: road_scores(pipeline.model.net, inputs, maps, targets))
    timed(faith, f"deletion + insertion {CURVE_STEPS} steps x 4 methods", k,
          lambda: deletion_insertion(pipeline.model.net, inputs, maps, targets))

    print(f"threads {args.threads}, {n} images ({k} for faithfulness): ms per image, CPU / wall")
    for name, (cpu, wall) in {**costs, **faith}.items():
        print(f"  {name:45s} {cpu:8.0f} / {wall:8.0f}")
    sampled = len(balanced_sample(split.rows, FAITHFULNESS_PER_CELL))
    per_image = sum(c for c, _ in costs.values())
    per_sampled = sum(c for c, _ in faith.values())
    total = (len(split.rows) * per_image + sampled * per_sampled) / 1000 / 60
    print(f"estimate for {len(split.rows)} images, {sampled} in the faithfulness sample: {total:.1f} CPU minutes")


if __name__ == "__main__":
    main()
