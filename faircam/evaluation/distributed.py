"""`faircam evaluate --engine ray`: the same evaluation with its batches on a Ray cluster.

Ray Data reads the split's file list as one item per batch of rows (so the batches, and the
faithfulness seed drawn per batch, are the local engine's); `map_batches` runs
`faircam.evaluation.evaluate.Evaluator.batch`, the local engine's per-batch code, in an actor pool
(`ActorPoolStrategy`) whose actors load the model and MTCNN once each. CAMs need gradients, so
nothing around the call turns them off. An actor hands back, per batch, its rows as Arrow IPC
bytes and the batch's group-average sums as an npz (plain arrays, no pickle); the driver
(`faircam.evaluation.evaluate.run_evaluation`) writes the parts and adds the sums in row order, as for the
local engine, so progress, Ctrl-C and resuming work the same. `ray` is an optional extra
(`pip install -e .[ray]`) imported only here.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from faircam.allocator import preloaded_env
from faircam.config import PROJECT_ROOT
from faircam.data.fairface import FairFaceSplit
from faircam.errors import ClusterError, DataError
from faircam.evaluation.averages import GroupAverager
from faircam.evaluation.evaluate import EvalOptions, Runner, batch_bounds, labelled_tasks

# Ray's shared object store holds only the batches in flight (file names in, rows out): keep it small.
OBJECT_STORE_BYTES = 500 * 2**20


class _BatchActor:
    """One Ray actor: the model, MTCNN and CAM explainer loaded once, then one batch per call."""

    def __init__(self, model: str | None, sha256: str, root: str, split: str, options: EvalOptions,
                 sampled: set[str], tasks: dict[str, tuple[str, ...]], threads: int, device: str,
                 cam_layer: str | None) -> None:
        import torch

        from faircam.allocator import steady_allocator
        from faircam.evaluation.evaluate import Evaluator
        from faircam.vision.explain import Pipeline
        from faircam.vision.preprocess import FaceDetector

        steady_allocator()
        torch.set_num_threads(threads)
        self.pipeline = Pipeline.load(model, detector=FaceDetector(device=device), cam_layer=cam_layer)
        if self.pipeline.model.sha256 != sha256:
            raise DataError(f"A Ray worker loaded another model for {model or 'the default model'} "
                            "(checksum differs): install the same faircam and models on every node.")
        self.pipeline.model.net.to(device)
        self.split = FairFaceSplit(Path(root), split, pd.DataFrame(), pd.DataFrame())
        self.evaluator = Evaluator(self.pipeline.model, self.pipeline.explainer if options.cams else None,
                                   options, sampled, tasks)

    def __call__(self, item: pd.DataFrame) -> pd.DataFrame:
        from functools import partial

        from faircam.allocator import release_freed_memory
        from faircam.evaluation.evaluate import batch_views, prepare_batch

        first = int(item["first"].iloc[0])
        chunk = _from_ipc(item["labels"].iloc[0])
        chunk.index = pd.RangeIndex(first, first + len(chunk))
        prepare = partial(batch_views, model=self.pipeline.model, detector=self.pipeline.detector)
        averager = GroupAverager(self.evaluator.methods)
        rows = self.evaluator.batch(first, chunk, prepare_batch(self.split, chunk, prepare), averager)
        release_freed_memory()
        return pd.DataFrame({"done": [first + len(chunk)], "rows": [_to_ipc(rows)], "sums": [_to_npz(averager)]})


def _to_ipc(rows: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(rows, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pd.DataFrame:
    return pa.ipc.open_stream(data).read_all().to_pandas()


def _to_npz(averager: GroupAverager) -> bytes:
    sums = io.BytesIO()
    np.savez(sums, **averager.state())
    return sums.getvalue()


def _message(exc: BaseException) -> str:
    """The last non-empty line of a (possibly remote, multi-line) error: the worker's own message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def ray_runner(model: str | None, sha256: str, tasks: dict[str, tuple[str, ...]], options: EvalOptions,
               batch_size: int = 32, address: str | None = None, workers: int = 2,
               gpus_per_worker: float = 0.0, cam_layer: str | None = None) -> Runner:
    """Batches on a Ray cluster at `address` (None: a local Ray on this machine's cores, no dashboard),
    in `workers` actors with `gpus_per_worker` GPUs each (the model and MTCNN then run on CUDA).
    `model` is what each actor loads (a registered name or a checkpoint path every node can read);
    its weights must have `sha256`, the driver's model's, whose `tasks` they are, and its maps explain
    `cam_layer` (None: the model's own, as the driver loaded it)."""

    def run(split: FairFaceSplit, start: int, sampled: set[str], averager: GroupAverager
            ) -> Iterator[tuple[int, pd.DataFrame]]:
        import ray
        from ray.data import ActorPoolStrategy

        cores = os.cpu_count() or 1
        try:
            # Ray's own progress lines would interleave with faircam's progress bar: warnings only.
            quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
            if address:
                ray.init(address=address, **quiet)
            else:
                # Workers import this checkout's faircam, whatever is installed in the environment.
                ray.init(num_cpus=cores, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                         runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT), **preloaded_env({})}},
                         **quiet)
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"Ray could not start or reach {address or 'a local cluster'}: {_message(exc)}") \
                from None
        try:
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True
            context.enable_progress_bars = False
            bounds = batch_bounds(start, len(split.rows), batch_size)
            # The label rows as Arrow IPC: whatever columns a label file has travel as they are.
            items = [{"first": first, "labels": _to_ipc(split.rows.iloc[first:end])}
                     for first, end in zip(bounds, bounds[1:])]
            if not items:
                return
            # Locally the cores are shared out; on a cluster each actor asks for one core.
            threads = max(1, cores // workers) if not address else 1
            results = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _BatchActor, batch_size=1, batch_format="pandas", compute=ActorPoolStrategy(size=workers),
                num_cpus=threads, num_gpus=gpus_per_worker or None,
                fn_constructor_kwargs={"model": model, "sha256": sha256, "root": str(split.root),
                                       "split": split.split, "options": options, "sampled": sampled,
                                       "tasks": labelled_tasks(tasks, split.rows),
                                       "threads": threads, "device": "cuda" if gpus_per_worker else "cpu",
                                       "cam_layer": cam_layer})
            rows = iter(results.iter_rows())
            while True:
                try:
                    result = next(rows, None)
                except ray.exceptions.RayError as exc:
                    raise ClusterError(f"A Ray worker failed: {_message(exc)}") from None
                if result is None:
                    return
                with np.load(io.BytesIO(result["sums"]), allow_pickle=False) as sums:
                    averager.add_state(dict(sums))
                yield int(result["done"]), _from_ipc(result["rows"])
        finally:
            # Also on Ctrl-C: the job's actors end with the driver's connection.
            ray.shutdown()

    return run
