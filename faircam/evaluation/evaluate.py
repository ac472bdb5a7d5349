"""`faircam evaluate`: every image of a split through detection, three views, CAMs and the audit.

For each image MTCNN runs once and gives three views: raw (the whole image), crop (the aligned
face) and blur (background blurred). All views of a batch share one forward and backward pass
of `CamExplainer`; from it come predictions and focus scores per view, the agreement between the
raw view's maps, the group average faces and maps of the crop view, and, for a balanced sample,
the faithfulness of the raw view's maps (`faircam.evaluation.faithfulness`). The schema is in
`faircam.evaluation.cache`.

Rows stream to disk: every `SAVE_EVERY` batches (and on Ctrl-C) the finished rows become the
next parquet part of the work folder `<out>.partial/`, and the running averages and the rows
done are saved beside them atomically, keyed on the model, data, split, limit and options. So
memory holds a few batches, never the split, and a rerun with the same arguments continues after
the last part. The cache is then written from the parts (`faircam.evaluation.cache.write_cache_parts`: one
file, or a folder of the parts) and the work folder removed. Where the batches run is a `Runner`:
`local_runner` here, on this machine, or `faircam.evaluation.distributed.ray_runner` on a Ray cluster, both
through `Evaluator.batch`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from faircam import __version__
from faircam.allocator import active as allocator_in_use
from faircam.allocator import release_freed_memory, steady_allocator
from faircam.config import FAITHFULNESS_PER_CELL
from faircam.data.fairface import FairFaceSplit, balanced_sample, read_data_image
from faircam.data.labelled import labelled_tasks, load_data
from faircam.errors import DataError, ImageError
from faircam.evaluation.agreement import agreement_columns
from faircam.evaluation.averages import AVERAGE_SIZE, GroupAverager
from faircam.evaluation.cache import (
    FAITHFULNESS_KEYS,
    FOCUS_KEYS,
    SCHEMA_VERSION,
    EvalCache,
    focus_column,
    part_name,
    read_cache,
    view_column,
    view_columns,
    write_cache_parts,
    write_table_atomic,
)
from faircam.evaluation.faithfulness import CURVE_STEPS, ROAD_PERCENTILES, faithfulness_columns
from faircam.files import atomic_file, output_lock
from faircam.models.model import LoadedModel
from faircam.tasks import DEFAULT_TASK, TASKS, Task
from faircam.vision.cams import CamBatch, CamExplainer
from faircam.vision.explain import Explanation, PreparedViews, explanations, prepare_views, run_pass
from faircam.vision.occlusion import explainer_for
from faircam.vision.preprocess import FaceDetector, View, make_view
from faircam.vision.quality import SLICES, quality_columns
from faircam.vision.quality import attributes as quality_attributes

SAVE_EVERY = 4
STATE_FILE = "state.npz"
VIEW_SETTINGS = {"raw": (False, False), "crop": (True, False), "blur": (False, True)}
VIEW_DESCRIPTIONS = {
    "raw": "the whole image fitted into the model's input, aspect ratio kept (filler beyond its edge)",
    "crop": "the largest MTCNN face, its five landmarks mapped onto FairFace's mean face (assets/face_template.json; "
            "filler beyond the photo's edge; as raw when no face is found)",
    "blur": "the whole image with the background around the largest face blurred (as raw when no face is found)",
}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvalOptions:
    """What `faircam evaluate` computes besides predictions; a rerun resumes only with the same options.

    `faithfulness_per_cell` images of every race x gender cell (drawn with `seed` by
    `data.balanced_sample`) get ROAD and deletion/insertion AUCs; 0 turns faithfulness off.
    `cams=False` gives predictions only (no maps, focus, faithfulness or agreement). Every task's
    predictions are kept; the maps explain `cam_task`'s decision. `tta` averages every answer with the
    mirror image's (flip test-time augmentation; the maps then explain the averaged answer).
    """

    cams: bool = True
    cam_task: str = DEFAULT_TASK
    tta: bool = False
    faithfulness_per_cell: int = FAITHFULNESS_PER_CELL
    seed: int = 0
    road_percentiles: tuple[int, ...] = ROAD_PERCENTILES
    curve_steps: int = CURVE_STEPS


@dataclass
class _Prepared:
    """A batch made ready on the worker thread: which rows could be read, and `batch_views` of those
    (`found` counts positions among the readable images; `quality` has a row per readable image)."""

    readable: list[int]
    found: list[int]
    views: dict[str, list[View]]
    quality: pd.DataFrame
    model_input: PreparedViews


Views = tuple[list[int], dict[str, list[View]], pd.DataFrame, PreparedViews]


@dataclass
class _Pass:
    """A batch's `Evaluator.explain`: the CAM pass (None without CAMs or views), every task's probabilities per
    view (raw, crop, blur), and the faithfulness columns of its raw views (None without CAMs)."""

    batch: CamBatch | None
    answers: dict[str, np.ndarray]
    faithfulness: pd.DataFrame | None


def batch_bounds(start: int, total: int, batch_size: int) -> list[int]:
    """Where the batches from row `start` begin, and `total` last: every engine's batches (local, Ray).

    A run's first batch is three quarters of `batch_size`, in two halves: with nothing prepared yet, the local engine
    prepares the halves side by side on both cores (`_batches`), and its worker thread then prepares the second batch,
    a whole one, while the model explains the two halves: preparing a batch takes about as long as the CAM passes
    over three quarters of one (bench/evaluate.py), so the second batch is ready about when the halves are done,
    and the first pass starts after the wait for three eighths of a batch. Every later batch is whole (the last
    takes what is left): a batch's shape is the allocator's and oneDNN's, and a shape they have seen costs nothing
    new. A resumed run keeps the batches of the run it resumes, so its rows are an uninterrupted run's: MTCNN's
    landmarks and the network's numbers move slightly with a batch's make-up.
    """
    if start >= total:
        return [total]
    first = min(max(1, 3 * batch_size // 4), total)
    bounds = [*([first // 2] if first > 1 else []), *range(first, total, batch_size), total]
    return [start, *(b for b in bounds if b > start)]


def _batches(
    split: FairFaceSplit, batch_size: int, prepare: Callable[[list[np.ndarray]], Views], worker: ThreadPoolExecutor,
    start: int = 0,
) -> Iterator[tuple[int, pd.DataFrame, _Prepared]]:
    """(first row, rows, prepared batch) per batch from row `start` (`batch_bounds`).

    The next batch is decoded, its faces detected and its views made (`prepare`) on `worker`, the second thread,
    while the caller runs the CAM pass of this one: MTCNN costs about half of the three views' forward and
    backward passes, and overlapping the two takes it off the model's thread (bench/evaluate.py). At the start there
    is no CAM pass to overlap with: the first batch's second half is prepared on this thread while the worker
    prepares the first half.
    """

    load_and_prepare = partial(prepare_batch, split, prepare=prepare)
    bounds = batch_bounds(start, len(split.rows), batch_size)
    starts = bounds[:-1]
    halved = start == 0 and len(starts) > 1 and starts[1] < batch_size  # `batch_bounds` split the first batch

    def chunk(i: int) -> pd.DataFrame:
        return split.rows.iloc[bounds[i] : bounds[i + 1]]

    # Only the next batch is prepared ahead: memory stays at two batches of images.
    reader = worker.submit(load_and_prepare, chunk(0)) if starts else None
    second = load_and_prepare(chunk(1)) if halved else None
    following = 2 if second is not None else 1
    for i in range(len(starts)):
        if i == 1 and second is not None:
            prepared = second
        else:
            prepared = reader.result()
            if following < len(starts):
                reader = worker.submit(load_and_prepare, chunk(following))
                following += 1
        yield starts[i], chunk(i), prepared


def prepare_batch(split: FairFaceSplit, chunk: pd.DataFrame, prepare: Callable[[list[np.ndarray]], Views]) -> _Prepared:
    """The images of `chunk` decoded (unreadable ones left out) and `prepare`d: a batch ready for `Evaluator.batch`."""

    def load(file: str) -> np.ndarray | None:
        try:
            return read_data_image(split.root, file)
        except ImageError:
            return None

    images = [load(file) for file in chunk["file"]]
    readable = [i for i, image in enumerate(images) if image is not None]
    return _Prepared(readable, *prepare([images[i] for i in readable]))


def batch_views(images: list[np.ndarray], model: LoadedModel, detector: FaceDetector) -> Views:
    """(positions of the images with a face, the three views, every image's quality slices, the views raw, crop,
    blur `prepare_views`d as one batch) of a batch: the model's input, and how large, sharp, bright and turned each
    face is (`faircam.vision.quality`).

    `views["raw"]` has every image; `views["crop"]` and `views["blur"]` only those with a face.
    """
    faces = detector.detect_batch(images) if images else []
    found = [j for j, f in enumerate(faces) if f]
    views = {}
    for view, (crop, blur) in VIEW_SETTINGS.items():
        chosen = range(len(images)) if view == "raw" else found
        views[view] = [make_view(images[j], model.input_size, detector, crop=crop, blur=blur, faces=faces[j],
                                 alignment=model.alignment) for j in chosen]
    return found, views, quality_columns(images, faces), prepare_views([v for name in VIEW_SETTINGS
                                                                         for v in views[name]], model)


def _task_values(answers: dict[str, np.ndarray], tasks: dict[str, Task], truths: dict[str, str]) -> dict:
    """Each task's prediction columns of one view (`faircam.tasks.Task.columns`), unprefixed; right or wrong as
    `Task.judge` says (in a coarser model's own classes)."""
    values = {}
    for task, spec in tasks.items():
        best = int(np.argmax(answers[task]))
        values.update({spec.pred: spec.classes[best], spec.prob: float(answers[task][best])})
        if spec.score:
            values[spec.score] = float(answers[task][spec.classes.index(spec.positive)])
        values[spec.correct] = spec.judge(spec.classes[best], truths[task])
    return values


def _view_values(explanation: Explanation | None, answers: dict[str, np.ndarray], tasks: dict[str, Task],
                 truths: dict[str, str]) -> dict:
    """Prediction and focus columns of one view, unprefixed."""
    values = _task_values(answers, tasks, truths)
    if explanation is not None:
        for method, scores in explanation.focus.items():
            values.update({focus_column(method, k): scores[k] for k in FOCUS_KEYS})
    return values


class Evaluator:
    """One batch at a time: the rows it adds and the group averages it feeds (the one per-batch code of
    every engine). Every task's predictions come from the pass that makes the maps of `model.task`; the rows
    hold those of `tasks` (`labelled_tasks`: the data's labels say whether they are right)."""

    def __init__(self, model: LoadedModel, explainer: CamExplainer | None, options: EvalOptions,
                 sampled: set[str], tasks: dict[str, tuple[str, ...]]) -> None:
        self.model, self.explainer = replace(model.for_task(options.cam_task), tta=options.tta), explainer
        self.options, self.sampled, self.tasks = options, sampled, tasks
        self.methods = tuple(explainer.methods) if explainer else ()

    def explain(self, first: int, chunk: pd.DataFrame, prepared: _Prepared) -> _Pass:
        """The model's work on a batch: one forward and backward pass for all three views (raw, crop, blur:
        `batch_views`), and the faithfulness measures of its sampled images."""
        views = prepared.model_input
        if not len(views):
            return _Pass(None, {}, None)
        if self.explainer is None:
            return _Pass(None, self.model.answers(views.inputs), None)
        batch, answers = run_pass(views, self.model, self.explainer)
        files = chunk.iloc[prepared.readable]["file"]
        return _Pass(batch, answers, self._faithfulness(first, files, prepared.views["raw"], batch))

    def finish(self, chunk: pd.DataFrame, prepared: _Prepared, passed: _Pass, averager: GroupAverager
               ) -> pd.DataFrame:
        """The rows of a batch from its `explain`ed pass; its crop views and maps go into `averager`. No model work:
        the local engine runs it beside the next batch's pass."""
        if not prepared.readable:
            return pd.DataFrame()
        rows = chunk.iloc[prepared.readable]
        found, views = prepared.found, prepared.views
        raw = views["raw"]
        if passed.batch is not None:
            explained = explanations(prepared.model_input, self.model, passed.batch, passed.answers)
        else:
            explained = [None] * len(prepared.model_input)
        answers = [{t: p[i] for t, p in passed.answers.items()} for i in range(len(explained))]
        n, m = len(raw), len(found)
        tasks = {t: self.model.specs[t] for t in self.tasks}
        truths = [{task: row[task] for task in tasks} for _, row in rows.iterrows()]
        values = {"raw": [_view_values(explained[j], answers[j], tasks, truths[j]) for j in range(n)]}
        for v, view in enumerate(("crop", "blur")):
            # Without a face a view is the raw image, so it takes the raw values.
            values[view] = list(values["raw"])
            for pos, j in enumerate(found):
                at = n + v * m + pos
                values[view][j] = _view_values(explained[at], answers[at], tasks, truths[j])

        predictions = view_columns(tasks)
        # The label rows' own columns first (file, labels, any other column of a label file), as they come.
        frame = pd.DataFrame.from_records([
            {**row.to_dict(), **{k: raw_values[k] for k in predictions},
             "face_found": view.face is not None, "faces_found": view.faces_found, **quality,
             **{k: v for k, v in raw_values.items() if k not in predictions}}
            for (_, row), view, raw_values, quality in zip(rows.iterrows(), raw, values["raw"],
                                                          prepared.quality.to_dict("records"))
        ])
        parts = [frame]
        for view in ("crop", "blur"):
            named = [{view_column(view, k): v for k, v in record.items()} for record in values[view]]
            parts.append(pd.DataFrame.from_records(named))
        if passed.batch is not None:
            parts += [passed.faithfulness,
                      pd.DataFrame(agreement_columns({meth: passed.batch.maps[meth][:n] for meth in self.methods}))]
        # The averages split faces by the correctness of the decision their maps explain.
        outcome = TASKS[self.model.task].correct
        for pos, j in enumerate(found):
            crop = explained[n + pos]
            averager.add(rows.iloc[j]["race"], rows.iloc[j]["gender"], values["crop"][j][outcome],
                         views["crop"][pos].image, crop.maps if crop is not None else {}, views["crop"][pos].valid)
        return pd.concat(parts, axis=1)

    def batch(self, first: int, chunk: pd.DataFrame, prepared: _Prepared, averager: GroupAverager) -> pd.DataFrame:
        """The rows of the batch starting at row `first` (`explain`, then `finish`)."""
        return self.finish(chunk, prepared, self.explain(first, chunk, prepared), averager)

    def _faithfulness(self, first: int, files: pd.Series, raw: list[View], batch: CamBatch) -> pd.DataFrame:
        """The faithfulness columns of the raw views (the batch's first `len(raw)`); only a batch with a sampled image
        reads its maps here, on the model's thread (the others' are made on the worker, in `finish`)."""
        sampled = files.isin(self.sampled).to_numpy()
        columns = {focus_column(meth, k): np.full(len(files), np.nan) for meth in self.methods
                   for k in FAITHFULNESS_KEYS}
        idx = np.flatnonzero(sampled)
        if len(idx):
            inputs = self.model.to_tensor([raw[j].image for j in idx])
            # ROAD's imputation adds noise: a seed per batch makes reruns and resumed runs repeat it.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.options.seed + first)
                values = faithfulness_columns(self.model.head, inputs, {m: batch.maps[m][idx] for m in self.methods},
                                              batch.targets[idx], self.options.road_percentiles,
                                              self.options.curve_steps, np.stack([raw[j].valid for j in idx]))
            for column, v in values.items():
                columns[column][idx] = v
        return pd.DataFrame({**columns, "faith_sampled": sampled})


def partial_path(out: Path) -> Path:
    """The work folder where an unfinished evaluation for `out` keeps its parts and state."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


class WorkFolder:
    """An unfinished evaluation on disk: its rows in parquet parts and its state (run key, rows done,
    parts, the group averages' sums), replaced atomically after each part, so the state never counts a
    part that is not there. Rows are held in memory only until the next part."""

    def __init__(self, folder: Path, key: str, averager: GroupAverager) -> None:
        self.folder, self.key, self.averager = Path(folder), key, averager
        self.parts: list[Path] = []
        self.done = 0
        self._pending: list[pd.DataFrame] = []
        self._batches = 0

    def resume(self) -> None:
        """Continue after the last part of an earlier run with the same key; anything else starts afresh."""
        try:
            with np.load(self.folder / STATE_FILE, allow_pickle=False) as saved:
                state = {name: saved[name] for name in saved.files}
            if str(state.pop("key")) != self.key:
                raise ValueError("another run")
            parts = [self.folder / part_name(i) for i in range(int(state.pop("parts")))]
            for part in parts:
                pq.read_metadata(part)
            done = int(state.pop("done"))
            self.averager.load_state(state)
        except (OSError, KeyError, ValueError, pa.ArrowException):
            # An unreadable or foreign work folder only costs the work it held.
            self.remove()
            return
        self.parts, self.done = parts, done

    def add(self, done: int, rows: pd.DataFrame) -> None:
        """A batch's rows, the batch ending at row `done`; every `SAVE_EVERY` batches they become a part."""
        if len(rows):
            self._pending.append(rows)
        self.done = done
        self._batches += 1
        if self._batches % SAVE_EVERY == 0:
            self.save()

    def save(self) -> None:
        """The rows since the last part as the next part, then the state that counts it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._pending:
            part = self.folder / part_name(len(self.parts))
            write_table_atomic(pa.Table.from_pandas(pd.concat(self._pending, ignore_index=True),
                                                    preserve_index=False), part)
            self.parts.append(part)
            self._pending = []
        with atomic_file(self.folder / STATE_FILE) as f:
            np.savez(f, key=np.array(self.key), done=np.array(self.done), parts=np.array(len(self.parts)),
                     **self.averager.state())

    def remove(self) -> None:
        if self.folder.is_dir():
            shutil.rmtree(self.folder, ignore_errors=True)
        else:  # an older faircam's single partial file
            self.folder.unlink(missing_ok=True)


Runner = Callable[[FairFaceSplit, int, set[str], GroupAverager], Iterator[tuple[int, pd.DataFrame]]]
"""Runs the batches of a split from a row on (with the faithfulness sample's files), adding their
group averages to the averager it is given, and yields (rows done, the batch's rows) in row order."""


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """This thread's torch operations on `count` threads while the block runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def local_runner(model: LoadedModel, detector: FaceDetector, explainer: CamExplainer | None, options: EvalOptions,
                 batch_size: int = 32) -> Runner:
    """The batches on this machine, the next one decoded and detected on a second thread (`_batches`).

    The worker thread runs torch on one thread and the model's thread on the rest: measured on 2 cores, the model on
    both cores beside the worker ran 15-20% slower (bench/evaluate.py runs as this does), and a new thread's operations
    would otherwise use every core (a worker's matrix products slowed the model's pass by 1.7x).
    """

    def run(split: FairFaceSplit, start: int, sampled: set[str], averager: GroupAverager
            ) -> Iterator[tuple[int, pd.DataFrame]]:
        steady_allocator()
        evaluator = Evaluator(model, explainer, options, sampled, labelled_tasks(model.tasks, split.rows))
        prepare = partial(batch_views, model=model, detector=detector)

        def finish(first: int, chunk: pd.DataFrame, prepared: _Prepared, passed: _Pass) -> tuple[int, pd.DataFrame]:
            return first + len(chunk), evaluator.finish(chunk, prepared, passed, averager)

        # A batch's rows (focus scores, agreement, averages) are made on the worker thread that prepares the batches,
        # while this one runs the next batch's pass: this thread then does little but the model's work, and two
        # threads share the two cores (a third, for the rows alone, took the model's turns on them:
        # bench/evaluate.py).
        with (_torch_threads(max(1, torch.get_num_threads() - 1)),
              ThreadPoolExecutor(max_workers=1, initializer=torch.set_num_threads, initargs=(1,)) as worker):
            pending = None
            for first, chunk, prepared in _batches(split, batch_size, prepare, worker, start=start):
                try:
                    passed = evaluator.explain(first, chunk, prepared)
                except BaseException:
                    if pending is not None:  # the batch before is kept (Ctrl-C saves it for the rerun)
                        yield pending.result()
                    raise
                if pending is not None:
                    yield pending.result()
                    release_freed_memory()
                pending = worker.submit(finish, first, chunk, prepared, passed)
            if pending is not None:
                yield pending.result()

    return run


def _run_key(model: LoadedModel, data: FairFaceSplit, limit: int | None, batch_size: int,
             options: EvalOptions) -> str:
    labels = pd.util.hash_pandas_object(data.rows, index=False).to_numpy().tobytes()
    # A brought model's maps explain a layer its user chose: work done on another layer is not resumed.
    layer = {"cam_layer": model.info["cam_layer"]} if "cam_layer" in model.info else {}
    described = json.dumps({"schema": SCHEMA_VERSION, "faircam": __version__, "model": model.sha256, **layer,
                            "root": str(data.root.resolve()), "split": data.split, "limit": limit,
                            "batch_size": batch_size, "options": asdict(options),
                            "labels": hashlib.sha256(labels).hexdigest()}, sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()


def faithfulness_meta(options: EvalOptions, sampled: int, task: str = DEFAULT_TASK) -> dict:
    """How the faithfulness sample was drawn and measured (`meta["faithfulness"]`)."""
    return {
        "per_cell": options.faithfulness_per_cell if options.cams else 0,
        "seed": options.seed,
        "n": sampled,
        "sample": f"up to {options.faithfulness_per_cell} images per race x gender cell "
                  f"(faircam.data.fairface.balanced_sample, seed {options.seed}); NaN outside it (faith_sampled)",
        "view": "raw",
        "target": f"softmax probability of the predicted class of {task} (the class the maps explain)",
        "road": {"percentiles": list(options.road_percentiles), "imputation": "noisy linear (pytorch-grad-cam)",
                 "score": "(LeRF - MoRF) / 2 averaged over the percentiles, as ROADCombined",
                 "reading": "higher is more faithful"},
        "deletion": {"steps": options.curve_steps, "baseline": "the input normalisation's mean colour",
                     "reading": "lower is more faithful"},
        "insertion": {"steps": options.curve_steps, "start": "the image Gaussian-blurred (sigma 5% of its side)",
                      "reading": "higher is more faithful"},
    }


def run_evaluation(
    data_dir: Path,
    split: str,
    out: Path,
    model: LoadedModel,
    detector: FaceDetector | None,
    explainer: CamExplainer | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    options: EvalOptions = EvalOptions(),
    on_progress: Progress | None = None,
    runner: Runner | None = None,
    labels: Path | None = None,
    files: Collection[str] | None = None,
) -> EvalCache:
    """Evaluate a split of a FairFace folder, or a labelled folder (`labels`: its CSV, `split` unused), and write
    the cache (what `faircam evaluate` does).

    `out` is one parquet file, or a folder of parts for a name without .parquet. The batches run
    through `runner` (default: `local_runner` with `detector`). Resumes from `partial_path(out)`
    when an earlier run with the same arguments was interrupted; `on_progress(done, total)` is
    called after every batch (a `KeyboardInterrupt` it raises stops the run as Ctrl-C does, its work saved for the
    rerun). `files` keeps only those of the data's images (a sample: `faircam.evaluation.jobs`), in its order.
    Another run writing `out` meanwhile is an `OutputError`, at once (`faircam.files.output_lock`).
    Returns the cache as written.
    """
    out = Path(out)
    # One run per output: a second run's parts would mix with this one's.
    with output_lock(out):
        model = model.for_task(options.cam_task)
        data = load_data(data_dir, split, labels)
        if files is not None:
            # Before the run key is taken: it hashes the rows, so a rerun resumes only on the same sample.
            data = replace(data, rows=data.rows[data.rows["file"].isin(set(files))].reset_index(drop=True))
        if limit is not None:
            data = replace(data, rows=data.rows.head(limit))
        tasks = labelled_tasks(model.tasks, data.rows)
        if model.task not in tasks:
            raise DataError(f"The maps would explain {model.task}, but {data.labels or data.root} has no {model.task} "
                            "labels: choose another --cam-task.")
        if options.cams:
            explainer = explainer or explainer_for(model.net, model.cam_layer)
        # The explainer's methods (the registry's, unless a subset was asked for), which every reader follows.
        averager = GroupAverager(tuple(explainer.methods) if options.cams else ())
        work = WorkFolder(partial_path(out), _run_key(model, data, limit, batch_size, options), averager)
        work.resume()
        sampled = set()
        if options.cams and options.faithfulness_per_cell > 0:
            sampled = set(balanced_sample(data.rows, options.faithfulness_per_cell, options.seed)["file"])
        runner = runner or local_runner(model, detector, explainer if options.cams else None, options, batch_size)
        total = len(data.rows)
        bar = tqdm(total=total, initial=work.done, desc=f"evaluate {data.split}", unit="img", disable=not progress)
        if on_progress:
            on_progress(work.done, total)
        batches = runner(data, work.done, sampled, averager)
        try:
            for done, rows in batches:
                bar.update(done - work.done)
                work.add(done, rows)
                if on_progress:
                    on_progress(done, total)
        except KeyboardInterrupt:
            work.save()
            raise
        finally:
            batches.close()  # a cluster job stops here, on Ctrl-C too
            bar.close()
        work.save()
        evaluated = sum(pq.read_metadata(part).num_rows for part in work.parts)
        if evaluated == 0:
            work.remove()
            raise DataError(f"None of the {len(data.rows)} images of {data.root} ({data.split}) could be read.")
        sampled_n = sum(int(pq.read_table(part, columns=["faith_sampled"])["faith_sampled"].to_numpy().sum())
                        for part in work.parts) if options.cams else 0
        meta = {
            "faircam_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "with_cams": options.cams,
            "methods": list(averager.methods),
            "tasks": {task: list(classes) for task, classes in tasks.items()},
            "cam_task": model.task,
            "model": {"name": model.name, "arch": model.arch, "sha256": model.sha256,
                      "path": str(model.path) if model.path else None,
                      # The kind of model (`faircam.models.kinds.KINDS`) and, for a brought one, how its class
                      # names were mapped onto faircam's and which layer the maps explain.
                      "kind": model.info.get("kind", "checkpoint"),
                      **{k: model.info[k] for k in ("label_mapping", "cam_layer", "view", "maps") if k in model.info},
                      # A coarser model's tasks: each faircam class's counterpart among its classes, or null.
                      **({"onto": {t: m for t, m in model.onto.items() if t in tasks}} if model.onto else {}),
                      "test_time_augmentation": "horizontal flip (probabilities averaged with the mirror image's)"
                      if options.tta else "none"},
            "data": {"root": str(data.root.resolve()), "split": data.split, "limit": limit,
                     **({"labels": str(data.labels.resolve()), "notes": data.notes} if data.labels else {}),
                     "labelled": len(data.rows), "unreadable": len(data.rows) - evaluated,
                     "dropped": data.dropped.to_dict("records")[:50], "dropped_total": len(data.dropped)},
            "attributes": data.attributes + quality_attributes(),
            "views": VIEW_DESCRIPTIONS,
            "faithfulness": faithfulness_meta(options, sampled_n, model.task),
            "allocator": allocator_in_use(),
            "agreement": "histogram intersection of the raw view's maps as heat distributions (1.0 = identical)",
            "averages": {"view": "crop", "size": AVERAGE_SIZE, "faces_found_only": True,
                         "outcome": "correctness of the crop view's prediction, which its maps explain"},
        }
        write_cache_parts(work.parts, out, meta, averager.table())
        work.remove()
        return read_cache(out)

def add_quality(paths: list[Path], data_dir: Path | None = None, batch_size: int = 32, progress: bool = True,
                detector: FaceDetector | None = None) -> dict:
    """Add (or recompute) the image-quality columns of existing caches from their images alone: MTCNN on each image,
    `faircam.vision.quality` on its largest face, as `faircam evaluate` does, without running the model again.

    Each cache is read with its checks, gets the quality numbers and levels after `faces_found` (where `faircam
    evaluate` puts them) and the slices among its attributes, and is written back to the same path as `faircam
    evaluate` writes (checksum, atomic replacement; a file stays a file, a folder a folder). The images are found
    under `data_dir`, or the folder the cache was evaluated on; every one must be readable. Caches of the same
    images share one pass (the bundled model's and the other models' caches). Returns what was done."""
    detector = detector or FaceDetector()
    measured: dict[tuple[str, str], dict] = {}
    done = []
    for path in map(Path, paths):
        cache = read_cache(path)
        root = Path(data_dir or cache.meta["data"]["root"]).expanduser().resolve()
        rows = cache.rows.drop(columns=[c for s in SLICES.values() for c in (s.column, s.name) if c in cache.rows])
        # The attributes' levels back as stored (plain text), the form `faircam evaluate` writes.
        for column in rows.columns[[isinstance(t, pd.CategoricalDtype) for t in rows.dtypes]]:
            rows[column] = rows[column].astype(object).where(rows[column].notna(), None)
        todo = [f for f in dict.fromkeys(rows["file"]) if (str(root), f) not in measured]
        # Closed on an error too, so the error's line does not follow the bar on the same line.
        with tqdm(total=len(todo), desc=f"quality {path.name}", unit="img", disable=not progress) as bar:
            for start in range(0, len(todo), batch_size):
                files = todo[start:start + batch_size]
                images = []
                for file in files:
                    try:
                        images.append(read_data_image(root, file))
                    except ImageError as exc:
                        raise DataError(f"{exc} Pass the folder {path} was evaluated on with --data.") from None
                measured |= {(str(root), f): q for f, q in zip(files, quality_columns(
                    images, detector.detect_batch(images)).to_dict("records"))}
                release_freed_memory()
                bar.update(len(files))
        quality = pd.DataFrame.from_records([measured[(str(root), f)] for f in rows["file"]], index=rows.index)
        at = rows.columns.get_loc("faces_found") + 1
        rows = pd.concat([rows.iloc[:, :at], quality, rows.iloc[:, at:]], axis=1)
        meta = {k: v for k, v in cache.meta.items() if k not in ("schema_version", "rows", "checksum", "columns",
                                                                 "parts")}
        meta["attributes"] = [a for a in cache.meta.get("attributes", []) if a.get("source") != "quality"] + \
            quality_attributes()
        meta["quality"] = {"added": datetime.now(UTC).isoformat(timespec="seconds"),
                           "by": f"faircam add-quality (faircam {__version__})", "root": str(root)}
        disagree = int((rows["face_found"].astype(bool) != quality[SLICES["face size"].column].notna()).sum())
        with output_lock(path):
            _rewrite(rows, path, meta, cache.averages)
        done.append({"cache": str(path), "images": len(rows), "faces": int(quality.iloc[:, 0].notna().sum()),
                     "face_found_disagrees": disagree})
    return {"caches": done}


def _rewrite(rows: pd.DataFrame, path: Path, meta: dict, averages: pd.DataFrame | None) -> None:
    """A cache's rows and metadata written back to `path` as `run_evaluation` writes a cache: from parts (a folder
    stays a folder of parts), with its checksum, replaced atomically."""
    # A fresh folder of a random name: a link planted at a name known in advance is never written through.
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".quality", dir=path.parent))
    try:
        parts = []
        for i, start in enumerate(range(0, len(rows), 20_000)):
            part = work / part_name(i)
            write_table_atomic(pa.Table.from_pandas(rows.iloc[start:start + 20_000], preserve_index=False), part)
            parts.append(part)
        write_cache_parts(parts, path, meta, averages)
    finally:
        shutil.rmtree(work, ignore_errors=True)
