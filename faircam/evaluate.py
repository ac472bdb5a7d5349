"""`faircam evaluate`: every image of a split through the model, CAMs and focus scores.

Produces one row per image (labels, prediction, each method's focus scores) and writes them
with `faircam.cache`.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from faircam import __version__
from faircam.cache import FOCUS_KEYS, SCHEMA_VERSION, EvalCache, focus_column, write_cache
from faircam.cams import CamExplainer
from faircam.config import CAM_METHODS
from faircam.data import FairFaceSplit, load_split
from faircam.errors import DataError, ImageError
from faircam.explain import explain_views
from faircam.images import read_image
from faircam.model import LoadedModel
from faircam.preprocess import FaceDetector, make_view


def _batches(split: FairFaceSplit, batch_size: int) -> Iterator[tuple[pd.DataFrame, list[np.ndarray | None]]]:
    """Rows with their decoded images, reading the next batch while the current one computes."""

    def load(file: str) -> np.ndarray | None:
        try:
            return read_image(split.path(file))
        except ImageError:
            return None

    def load_chunk(chunk: pd.DataFrame) -> list[np.ndarray | None]:
        return [load(file) for file in chunk["file"]]

    chunks = [split.rows.iloc[i : i + batch_size] for i in range(0, len(split.rows), batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Only the next batch is decoded ahead: memory stays at two batches of images.
        pending = pool.submit(load_chunk, chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            images = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(load_chunk, chunks[i + 1])
            yield chunk, images


def evaluate_split(
    split: FairFaceSplit,
    model: LoadedModel,
    detector: FaceDetector,
    explainer: CamExplainer | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> pd.DataFrame:
    """Prediction (and focus scores with an explainer) for every readable image of a split."""
    explainer = explainer or CamExplainer(model.net, model.cam_layer)
    records = []
    bar = tqdm(total=len(split.rows), desc=f"evaluate {split.split}", unit="img", disable=not progress)
    for chunk, images in _batches(split, batch_size):
        ok = [i for i, image in enumerate(images) if image is not None]
        faces = detector.detect_batch([images[i] for i in ok])
        views = [make_view(images[i], model.input_size, detector, crop=False, blur=False, faces=f,
                           alignment=model.alignment) for i, f in zip(ok, faces)]
        explanations = explain_views(views, model, explainer) if views else []
        for i, explanation in zip(ok, explanations):
            row = chunk.iloc[i]
            record = {
                "file": row["file"], "race": row["race"], "gender": row["gender"], "age": row["age"],
                "pred": explanation.label,
                "prob": explanation.probability,
                "p_male": explanation.probs["Male"],
                "correct": explanation.label == row["gender"],
                "face_found": explanation.view.face is not None,
            }
            for method, scores in explanation.focus.items():
                record.update({focus_column(method, k): scores[k] for k in FOCUS_KEYS})
            records.append(record)
        bar.update(len(chunk))
    bar.close()
    return pd.DataFrame.from_records(records)


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
) -> EvalCache:
    """Evaluate a split of a FairFace folder and write the cache (what `faircam evaluate` does)."""
    data = load_split(data_dir, split)
    if limit is not None:
        data = FairFaceSplit(data.root, data.split, data.rows.head(limit), data.dropped)
    rows = evaluate_split(data, model, detector, explainer, batch_size=batch_size, progress=progress)
    if rows.empty:
        raise DataError(f"None of the {len(data.rows)} images of {data.root} ({split}) could be read.")
    meta = {
        "faircam_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "with_cams": True,
        "methods": list(CAM_METHODS),
        "model": {"name": model.name, "arch": model.arch, "sha256": model.sha256,
                  "path": str(model.path) if model.path else None},
        "data": {"root": str(data.root.resolve()), "split": split, "limit": limit,
                 "labelled": len(data.rows), "unreadable": len(data.rows) - len(rows),
                 "dropped": data.dropped.to_dict("records")[:50], "dropped_total": len(data.dropped)},
    }
    write_cache(rows, out, meta)
    return EvalCache(rows=rows, meta={**meta, "schema_version": SCHEMA_VERSION, "rows": len(rows)})
