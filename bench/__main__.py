"""`python -m bench`: every benchmark in one run, figures printed and saved to bench/out/results.json."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

PARTS = ("cams", "evaluate", "app", "memory", "ray", "pages", "room", "first", "brought")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--images", type=int, default=128, help="val images for the evaluate and memory benches")
    parser.add_argument("--memory-images", type=int, default=256,
                        help="N of the memory bench: `faircam evaluate` at N and 4N images")
    parser.add_argument("--ray-images", type=int, default=64, help="val images for the Ray bench (batches of 8)")
    parser.add_argument("--brought-images", type=int, default=48,
                        help="stratified val faces for the brought ViT-Base bench (the page's default is 700)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process (default 1)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per contender in the CAM bench")
    parser.add_argument("--evaluate-kw", default="{}",
                        help='JSON options passed to run_evaluation, e.g. \'{"faithfulness": 0}\'')
    parser.add_argument("--students", type=int, default=30, help="sessions at once in the room bench")
    parser.add_argument("--shots", type=Path, help="folder for the browser bench's screenshots")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}")

    from faircam.allocator import active, use_allocator

    use_allocator()  # as `faircam evaluate` runs: the bench measures what a user gets

    import torch

    from bench.common import OUT, load, machine, val_files
    from faircam.data.images import read_image

    torch.set_num_threads(args.threads)
    results: dict = {"machine": machine(), "torch_threads": args.threads, "allocator": active(), "load_before": load()}
    print(f"machine: {results['machine']}; torch threads {args.threads}; allocator {results['allocator']}; "
          f"load average {results['load_before']}")
    started = time.perf_counter()
    pipeline = None
    if {"cams", "evaluate"} & set(parts):
        from faircam.config import settings
        from faircam.vision.explain import Pipeline

        pipeline = Pipeline.load(settings().model_path)
    for part in parts:
        print(f"\n== {part} ==", flush=True)
        if part == "cams":
            from bench import cams

            results[part] = cams.run(pipeline, read_image(val_files(1)[0]), repeats=args.repeats)
        elif part == "evaluate":
            from bench import evaluate

            results[part] = evaluate.run(pipeline, args.images, args.batch_size, json.loads(args.evaluate_kw))
        elif part == "app":
            from bench import app

            files = val_files(4)
            if args.shots:
                args.shots.mkdir(parents=True, exist_ok=True)
            results[part] = app.run([files[0], files[1], files[2], app.large_photo(files[3])], shots=args.shots)
        elif part == "memory":
            from bench import memory

            results[part] = {**memory.evaluate_peak(args.memory_images, args.batch_size),
                             "mtcnn": memory.mtcnn_batch_peaks()}
        elif part == "ray":
            from bench import ray_engine

            results[part] = ray_engine.run(args.ray_images)
        elif part == "pages":
            from bench import pages

            results[part] = pages.run()
        elif part == "room":
            from bench import room

            results[part] = room.run(students=args.students)
        elif part == "first":
            from bench import first

            results[part] = first.run()
        elif part == "brought":
            from bench import brought

            results[part] = brought.run(args.brought_images)
        print(json.dumps(results[part], indent=2), flush=True)
    results["load_after"] = load()
    results["bench_wall_s"] = round(time.perf_counter() - started, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nload average after: {results['load_after']}; {results['bench_wall_s']} s; saved {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
