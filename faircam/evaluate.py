"""The evaluation cache: one row per image of a split, written by `faircam evaluate`.

A row holds the image's labels, the model's prediction and, when CAMs are asked for, each
method's focus scores. The parquet file carries its provenance (model checksum, data folder,
split, schema version) in its metadata, is written atomically, and is read back with checks
so that pages never show numbers from a damaged file or from another model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from faircam import __version__
from faircam.cams import CamExplainer
from faircam.config import CAM_METHODS
from faircam.data import DataError, FairFaceSplit, load_split
from faircam.explain import explain_views
from faircam.focus import REGIONS
from faircam.images import ImageError, read_image
from faircam.model import LoadedModel
from faircam.preprocess import FaceDetector, make_view

SCHEMA_VERSION = 1
FOCUS_KEYS = (*REGIONS, "face", "face_baseline", "face_lift")
META_KEY = b"faircam"


class CacheError(RuntimeError):
    """An evaluation cache that is missing, damaged or of another schema."""


def focus_column(method: str, key: str) -> str:
    """Column name of one method's focus score for one region (or summary key)."""
    return f"{method} | {key}"


@dataclass
class EvalCache:
    rows: pd.DataFrame
    meta: dict[str, Any]

    @property
    def has_cams(self) -> bool:
        return bool(self.meta.get("with_cams"))


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
    explainer = explainer or CamExplainer(model.net, model.net.cam_layer)
    records = []
    bar = tqdm(total=len(split.rows), desc=f"evaluate {split.split}", unit="img", disable=not progress)
    for chunk, images in _batches(split, batch_size):
        ok = [i for i, image in enumerate(images) if image is not None]
        faces = detector.detect_batch([images[i] for i in ok])
        views = [make_view(images[i], model.input_size, detector, crop=False, blur=False, faces=f)
                 for i, f in zip(ok, faces)]
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


def write_cache(rows: pd.DataFrame, path: Path, meta: dict[str, Any]) -> None:
    """Parquet with provenance in its metadata, replaced atomically (never a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    meta = {**meta, "schema_version": SCHEMA_VERSION, "rows": len(rows)}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_cache(path: Path | str) -> EvalCache:
    """The cache at `path`, or `CacheError` saying why it cannot be used."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CacheError(f"No evaluation cache at {path}. Create it with `faircam evaluate`.")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise CacheError(f"The evaluation cache {path} is damaged ({exc}). Recreate it with `faircam evaluate`.") \
            from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    try:
        meta = json.loads(raw) if raw else {}
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise CacheError(f"{path} has unreadable faircam metadata. Recreate it with `faircam evaluate`.")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CacheError(
            f"{path} was written by another faircam version (schema {meta.get('schema_version')}, "
            f"expected {SCHEMA_VERSION}). Recreate it with `faircam evaluate`."
        )
    rows = table.to_pandas()
    if len(rows) != meta.get("rows"):
        raise CacheError(f"{path} holds {len(rows)} rows but recorded {meta.get('rows')}; recreate it.")
    return EvalCache(rows=rows, meta=meta)


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
