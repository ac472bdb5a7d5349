"""`faircam evaluate`: every image of a split through detection, three views, CAMs and the audit.

For each image MTCNN runs once and gives three views: raw (the whole image), crop (the aligned
face) and blur (background blurred). All views of a batch share one forward and backward pass
of `CamExplainer`; from it come predictions and focus scores per view, the agreement between the
raw view's maps, the group average faces and maps of the crop view, and, for a balanced sample,
the faithfulness of the raw view's maps (`faircam.faithfulness`). The schema is in
`faircam.cache`.

The run is resumable: every `SAVE_EVERY` batches (and on Ctrl-C) the finished rows and the
running averages are saved atomically to `<out>.partial`, keyed on the model, data, split,
limit and options; a rerun with the same arguments continues from there, and the partial file
is removed once the cache itself has been written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
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
from faircam.agreement import agreement_columns
from faircam.averages import AVERAGE_SIZE, GroupAverager
from faircam.cache import (
    FAITHFULNESS_KEYS,
    FOCUS_KEYS,
    SCHEMA_VERSION,
    VIEW_COLUMNS,
    EvalCache,
    focus_column,
    read_cache,
    view_column,
    write_cache,
    write_table_atomic,
)
from faircam.cams import CamExplainer
from faircam.config import FAITHFULNESS_PER_CELL
from faircam.data import FairFaceSplit, balanced_sample, load_split
from faircam.errors import DataError, ImageError
from faircam.explain import Explanation, explain_views
from faircam.faithfulness import CURVE_STEPS, ROAD_PERCENTILES, faithfulness_columns
from faircam.images import read_image
from faircam.model import LoadedModel
from faircam.preprocess import FaceDetector, View, make_view

SAVE_EVERY = 4
PARTIAL_KEY = b"faircam.partial"
PARTIAL_SUMS_KEY = b"faircam.partial.sums"
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
    `cams=False` gives predictions only (no maps, focus, faithfulness or agreement).
    """

    cams: bool = True
    faithfulness_per_cell: int = FAITHFULNESS_PER_CELL
    seed: int = 0
    road_percentiles: tuple[int, ...] = ROAD_PERCENTILES
    curve_steps: int = CURVE_STEPS


@dataclass
class _Prepared:
    """A batch made ready on the reader thread: which rows could be read, and `batch_views` of those
    (`found` counts positions among the readable images)."""

    readable: list[int]
    found: list[int]
    views: dict[str, list[View]]


Views = tuple[list[int], dict[str, list[View]]]


def _batches(
    split: FairFaceSplit, batch_size: int, prepare: Callable[[list[np.ndarray]], Views], start: int = 0
) -> Iterator[tuple[int, pd.DataFrame, _Prepared]]:
    """(first row, rows, prepared batch) per batch from row `start`.

    The next batch is decoded, its faces detected and its views made (`prepare`) on a second
    thread while the caller runs the CAM pass of this one: MTCNN costs about half as much as the
    three views' forward and backward passes, and overlapping the two takes it off the critical path
    (bench/evaluate.py).
    """

    def load(file: str) -> np.ndarray | None:
        try:
            return read_image(split.path(file))
        except ImageError:
            return None

    def load_and_prepare(chunk: pd.DataFrame) -> _Prepared:
        images = [load(file) for file in chunk["file"]]
        readable = [i for i, image in enumerate(images) if image is not None]
        return _Prepared(readable, *prepare([images[i] for i in readable]))

    starts = list(range(start, len(split.rows), batch_size))
    chunks = [split.rows.iloc[i : i + batch_size] for i in starts]
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Only the next batch is prepared ahead: memory stays at two batches of images.
        pending = pool.submit(load_and_prepare, chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            prepared = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(load_and_prepare, chunks[i + 1])
            yield starts[i], chunk, prepared


def batch_views(images: list[np.ndarray], model: LoadedModel, detector: FaceDetector) -> Views:
    """(positions of the images with a face, the three views) of a batch: the model's inputs.

    `views["raw"]` has every image; `views["crop"]` and `views["blur"]` only those with a face.
    """
    faces = detector.detect_batch(images) if images else []
    found = [j for j, f in enumerate(faces) if f]
    views = {}
    for view, (crop, blur) in VIEW_SETTINGS.items():
        chosen = range(len(images)) if view == "raw" else found
        views[view] = [make_view(images[j], model.input_size, detector, crop=crop, blur=blur, faces=faces[j],
                                 alignment=model.alignment) for j in chosen]
    return found, views


def _prediction(probs: np.ndarray, classes: tuple[str, ...], truth: str) -> dict:
    target = int(np.argmax(probs))
    return {"pred": classes[target], "prob": float(probs[target]), "p_male": float(probs[classes.index("Male")]),
            "correct": classes[target] == truth}


def _view_values(explanation: Explanation | None, probs: np.ndarray, classes: tuple[str, ...], truth: str) -> dict:
    """Prediction and focus columns of one view, unprefixed."""
    if explanation is None:
        return _prediction(probs, classes, truth)
    values = _prediction(np.array([explanation.probs[c] for c in classes]), classes, truth)
    for method, scores in explanation.focus.items():
        values.update({focus_column(method, k): scores[k] for k in FOCUS_KEYS})
    return values


class _Evaluator:
    """One batch at a time: the rows it adds and the group averages it feeds."""

    def __init__(self, model: LoadedModel, explainer: CamExplainer | None, options: EvalOptions,
                 sampled: set[str]) -> None:
        self.model, self.explainer = model, explainer
        self.options, self.sampled = options, sampled
        self.methods = tuple(explainer.methods) if explainer else ()
        self.averager = GroupAverager(self.methods)

    def _explain(self, views: list[View]) -> tuple[list[Explanation | None], np.ndarray]:
        if not views:
            return [], np.zeros((0, len(self.model.classes)))
        if self.explainer is None:
            return [None] * len(views), self.model.predict_proba([v.image for v in views])
        explanations = explain_views(views, self.model, self.explainer)
        return explanations, np.array([[e.probs[c] for c in self.model.classes] for e in explanations])

    def batch(self, first: int, chunk: pd.DataFrame, prepared: _Prepared) -> pd.DataFrame:
        if not prepared.readable:
            return pd.DataFrame()
        rows = chunk.iloc[prepared.readable]
        found, views = prepared.found, prepared.views
        raw = views["raw"]
        # One forward and backward pass for all three views of the batch.
        explained, probs = self._explain(raw + views["crop"] + views["blur"])
        n, m = len(raw), len(found)
        classes, truths = self.model.classes, rows["gender"].tolist()
        values = {"raw": [_view_values(explained[j], probs[j], classes, truths[j]) for j in range(n)]}
        for v, view in enumerate(("crop", "blur")):
            # Without a face a view is the raw image, so it takes the raw values.
            values[view] = list(values["raw"])
            for pos, j in enumerate(found):
                at = n + v * m + pos
                values[view][j] = _view_values(explained[at], probs[at], classes, truths[j])

        frame = pd.DataFrame.from_records([
            {"file": row["file"], "race": row["race"], "gender": row["gender"], "age": row["age"],
             **{k: raw_values[k] for k in VIEW_COLUMNS},
             "face_found": view.face is not None, "faces_found": view.faces_found,
             **{k: v for k, v in raw_values.items() if k not in VIEW_COLUMNS}}
            for (_, row), view, raw_values in zip(rows.iterrows(), raw, values["raw"])
        ])
        parts = [frame]
        for view in ("crop", "blur"):
            named = [{view_column(view, k): v for k, v in record.items()} for record in values[view]]
            parts.append(pd.DataFrame.from_records(named))
        if self.explainer is not None:
            raw_maps = {meth: np.stack([e.maps[meth] for e in explained[:n]]) for meth in self.methods}
            parts += [self._faithfulness(first, frame, raw, raw_maps, probs[:n]),
                      pd.DataFrame(agreement_columns(raw_maps))]
        for pos, j in enumerate(found):
            crop = explained[n + pos]
            self.averager.add(rows.iloc[j]["race"], truths[j], values["crop"][j]["correct"],
                              views["crop"][pos].image, crop.maps if crop is not None else {})
        return pd.concat(parts, axis=1)

    def _faithfulness(self, first: int, frame: pd.DataFrame, raw: list[View], maps: dict[str, np.ndarray],
                      probs: np.ndarray) -> pd.DataFrame:
        sampled = frame["file"].isin(self.sampled).to_numpy()
        columns = {focus_column(meth, k): np.full(len(frame), np.nan) for meth in self.methods
                   for k in FAITHFULNESS_KEYS}
        idx = np.flatnonzero(sampled)
        if len(idx):
            inputs = self.model.to_tensor([raw[j].image for j in idx])
            # ROAD's imputation adds noise: a seed per batch makes reruns and resumed runs repeat it.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.options.seed + first)
                values = faithfulness_columns(self.model.net, inputs, {k: v[idx] for k, v in maps.items()},
                                              probs[idx].argmax(axis=1), self.options.road_percentiles,
                                              self.options.curve_steps, np.stack([raw[j].valid for j in idx]))
            for column, v in values.items():
                columns[column][idx] = v
        return pd.DataFrame({**columns, "faith_sampled": sampled})


def partial_path(out: Path) -> Path:
    """Where an unfinished evaluation for `out` keeps its progress."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _save_partial(path: Path, key: str, done: int, frames: list[pd.DataFrame], averager: GroupAverager) -> None:
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    sums = io.BytesIO()
    np.savez(sums, **averager.state())
    table = pa.Table.from_pandas(rows, preserve_index=False)
    table = table.replace_schema_metadata({PARTIAL_KEY: json.dumps({"key": key, "done": done})})
    write_table_atomic(table, path, {PARTIAL_SUMS_KEY: sums.getvalue()})


def _load_partial(path: Path, key: str, averager: GroupAverager) -> tuple[int, list[pd.DataFrame]]:
    """(rows done, their frames) from a partial file of the same run; (0, []) for none or another run."""
    if not path.is_file():
        return 0, []
    try:
        table = pq.read_table(path)
        info = json.loads(table.schema.metadata[PARTIAL_KEY])
        if info.get("key") != key:
            return 0, []
        with np.load(io.BytesIO(pq.read_metadata(path).metadata[PARTIAL_SUMS_KEY]), allow_pickle=False) as sums:
            averager.load_state(dict(sums))
    except (pa.ArrowException, OSError, KeyError, ValueError):
        # An unreadable partial file only costs the work it held.
        return 0, []
    rows = table.to_pandas()
    return int(info["done"]), [rows] if len(rows) else []


def _run_key(model: LoadedModel, data: FairFaceSplit, limit: int | None, batch_size: int,
             options: EvalOptions) -> str:
    labels = pd.util.hash_pandas_object(data.rows, index=False).to_numpy().tobytes()
    described = json.dumps({"schema": SCHEMA_VERSION, "faircam": __version__, "model": model.sha256,
                            "root": str(data.root.resolve()), "split": data.split, "limit": limit,
                            "batch_size": batch_size, "options": asdict(options),
                            "labels": hashlib.sha256(labels).hexdigest()}, sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()


def faithfulness_meta(options: EvalOptions, sampled: int) -> dict:
    """How the faithfulness sample was drawn and measured (`meta["faithfulness"]`)."""
    return {
        "per_cell": options.faithfulness_per_cell if options.cams else 0,
        "seed": options.seed,
        "n": sampled,
        "sample": f"up to {options.faithfulness_per_cell} images per race x gender cell "
                  f"(faircam.data.balanced_sample, seed {options.seed}); NaN outside it (faith_sampled)",
        "view": "raw",
        "target": "softmax probability of the predicted class",
        "road": {"percentiles": list(options.road_percentiles), "imputation": "noisy linear (pytorch-grad-cam)",
                 "score": "(LeRF - MoRF) / 2 averaged over the percentiles, as ROADCombined",
                 "reading": "higher is more faithful"},
        "deletion": {"steps": options.curve_steps, "baseline": "the input normalisation's mean colour",
                     "reading": "lower is more faithful"},
        "insertion": {"steps": options.curve_steps, "start": "the image Gaussian-blurred (sigma 5% of its side)",
                      "reading": "higher is more faithful"},
    }


def evaluate_split(
    split: FairFaceSplit,
    model: LoadedModel,
    detector: FaceDetector,
    explainer: CamExplainer | None = None,
    options: EvalOptions = EvalOptions(),
    batch_size: int = 32,
    progress: bool = True,
    on_progress: Progress | None = None,
    resume: tuple[Path, str] | None = None,
) -> tuple[pd.DataFrame, GroupAverager]:
    """Rows (one per readable image) and group averages for a split; `resume` = (partial file, run key)."""
    if options.cams:
        explainer = explainer or CamExplainer(model.net, model.cam_layer)
    sampled = set()
    if options.cams and options.faithfulness_per_cell > 0:
        sampled = set(balanced_sample(split.rows, options.faithfulness_per_cell, options.seed)["file"])
    evaluator = _Evaluator(model, explainer if options.cams else None, options, sampled)
    done, frames = _load_partial(*resume, evaluator.averager) if resume else (0, [])
    total = len(split.rows)
    bar = tqdm(total=total, initial=done, desc=f"evaluate {split.split}", unit="img", disable=not progress)
    if on_progress:
        on_progress(done, total)
    batches = 0
    try:
        prepare = partial(batch_views, model=model, detector=detector)
        for first, chunk, prepared in _batches(split, batch_size, prepare, start=done):
            frames.append(evaluator.batch(first, chunk, prepared))
            done = first + len(chunk)
            batches += 1
            bar.update(len(chunk))
            if on_progress:
                on_progress(done, total)
            if resume and batches % SAVE_EVERY == 0 and done < total:
                _save_partial(*resume, done, frames, evaluator.averager)
    except KeyboardInterrupt:
        if resume and batches:
            _save_partial(*resume, done, frames, evaluator.averager)
        raise
    finally:
        bar.close()
    frames = [f for f in frames if len(f)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return rows, evaluator.averager


def run_evaluation(
    data_dir: Path,
    split: str,
    out: Path,
    model: LoadedModel,
    detector: FaceDetector,
    explainer: CamExplainer | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    options: EvalOptions = EvalOptions(),
    on_progress: Progress | None = None,
) -> EvalCache:
    """Evaluate a split of a FairFace folder and write the cache (what `faircam evaluate` does).

    Resumes from `<out>.partial` when an earlier run with the same arguments was interrupted;
    `on_progress(done, total)` is called after every batch. Returns the cache as written.
    """
    out = Path(out)
    data = load_split(data_dir, split)
    if limit is not None:
        data = FairFaceSplit(data.root, data.split, data.rows.head(limit), data.dropped)
    partial = partial_path(out)
    key = _run_key(model, data, limit, batch_size, options)
    rows, averager = evaluate_split(data, model, detector, explainer, options, batch_size, progress,
                                    on_progress, resume=(partial, key))
    if rows.empty:
        partial.unlink(missing_ok=True)
        raise DataError(f"None of the {len(data.rows)} images of {data.root} ({split}) could be read.")
    sampled = int(rows["faith_sampled"].sum()) if "faith_sampled" in rows else 0
    meta = {
        "faircam_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "with_cams": options.cams,
        # The explainer's methods (the registry's, unless a subset was asked for), which every reader follows.
        "methods": list(averager.methods),
        "model": {"name": model.name, "arch": model.arch, "sha256": model.sha256,
                  "path": str(model.path) if model.path else None},
        "data": {"root": str(data.root.resolve()), "split": split, "limit": limit,
                 "labelled": len(data.rows), "unreadable": len(data.rows) - len(rows),
                 "dropped": data.dropped.to_dict("records")[:50], "dropped_total": len(data.dropped)},
        "views": VIEW_DESCRIPTIONS,
        "faithfulness": faithfulness_meta(options, sampled),
        "agreement": "histogram intersection of the raw view's maps as heat distributions (1.0 = identical)",
        "averages": {"view": "crop", "size": AVERAGE_SIZE, "faces_found_only": True,
                     "outcome": "correctness of the crop view's prediction, which its maps explain"},
    }
    write_cache(rows, out, meta, averager.table())
    partial.unlink(missing_ok=True)
    return read_cache(out)
