"""The evaluation cache: its schema, checksum, atomic writing, and reading with checks.

A cache is one row per image, with its provenance (model checksum, data folder, split, schema
version, options) and a checksum of its rows, averages and that provenance. It is either one
parquet file (the metadata in its schema) or a folder of parquet parts (`part-00000.parquet`, ...)
with one metadata record (`_faircam.json`: the same metadata plus each part's file, row count and
checksum) and the averages (`_averages.parquet`), read as one table through pyarrow's dataset API.
Both are written from parts one part at a time, so writing never holds every row; both are
replaced atomically and read back with checks, so pages never show numbers from a damaged or
carelessly edited cache, from another model or from another schema. The checksum is a plain
sha256, not a signature: whoever can write the cache can also recompute it. This module imports
no torch: pages that only read the cache open without loading the model.

Schema 2, one row per image:

- raw view (the whole image resized): file, race, gender, age, and for each task of the model
  (`meta["tasks"]`, read as `EvalCache.tasks`) its prediction columns (`faircam.tasks.Task.columns`:
  pred, prob, p_male, correct for gender; race_pred, race_prob, race_correct, ...), face_found, faces_found,
  the image quality of the largest face (`faircam.vision.quality`: quality_face_px, quality_sharpness,
  quality_brightness, quality_yaw, quality_confidence, and each one's level column: "face size", "sharpness",
  "brightness", "head turn", "detector confidence"), and
  `focus_column(method, key)` for every CAM method the cache records (`meta["methods"]`, read as
  `EvalCache.methods`) and `FOCUS_KEYS`;
- counterfactual views "crop" (MTCNN-aligned face) and "blur" (background blurred): the same
  prediction and focus columns named by `view_column(view, ...)`; without a face they equal raw;
- faithfulness on the raw view, for the predicted class, on a balanced sample (`faith_sampled`,
  NaN elsewhere): `focus_column(method, "road" | "deletion" | "insertion")`;
- agreement between the maps of the raw view: `agreement_column(a, b)` and `AGREEMENT_MEAN`;
- for a labelled folder (`faircam.data.labelled`), its label file's other columns after the labels (and a
  numeric column's `<name> (binned)` levels).

A model whose classes for a task are coarser than FairFace's (five races) has its own classes in `meta["tasks"]`
and the mapping of FairFace's onto them in `meta["model"]["onto"]` (`faircam.tasks.Task.coarsened`); its
`<task>_correct` is null for faces whose label has no counterpart, and `read_cache` adds `<task>_truth`, the label
in the model's classes, which `EvalCache.task` compares with.

`meta["attributes"]` lists the groupings beyond the labels (`EvalCache.attributes`: the quality slices and a label
file's columns), each with its level column and levels in order; `read_cache` makes those columns categorical.

The maps, focus, faithfulness and averages explain the decisions of one task, `meta["cam_task"]`
(`EvalCache.cam_task`; gender unless `faircam evaluate --cam-task` chose another).

Beside the rows the file holds aggregates only, never per-image pixels: the average aligned face
and average maps per race x gender x outcome, read with `group_averages`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from faircam.data.labelled import Attribute
from faircam.errors import CacheError
from faircam.files import atomic_file, atomic_folder
from faircam.tasks import DEFAULT_TASK, PLAIN_CLASS, TASKS, Task, task_spec
from faircam.vision.focus import REGIONS

SCHEMA_VERSION = 2
FOCUS_KEYS = (*REGIONS, "face", "face_baseline", "face_lift")
FAITHFULNESS_KEYS = ("road", "deletion", "insertion")
AGREEMENT_MEAN = "agree | mean"
OUTCOMES = ("correct", "wrong")
META_KEY = b"faircam"
AVERAGES_KEY = b"faircam.averages"
FOLDER_META = "_faircam.json"
FOLDER_AVERAGES = "_averages.parquet"
# Average maps are stored as 8-bit levels: 1/255 is far below what a heat map can show.
MAP_LEVELS = 255


def focus_column(method: str, key: str) -> str:
    """Column name of one method's focus score for one region (or summary or faithfulness key)."""
    return f"{method} | {key}"


def view_columns(tasks: Iterable[str]) -> tuple[str, ...]:
    """The prediction columns every view has for these tasks (`faircam.tasks.Task.columns`), in task order."""
    return tuple(c for t in tasks for c in TASKS[t].columns)


def view_column(view: str, name: str) -> str:
    """Column `name` of a counterfactual view: the raw view's own name, else prefixed "crop: "/"blur: "."""
    return name if view == "raw" else f"{view}: {name}"


def agreement_column(a: str, b: str) -> str:
    """Column of the agreement between two methods' maps, `a` before `b` in the cache's method order.

    Agreement is the histogram intersection of the two maps read as distributions of heat:
    sum over pixels of min(a / sum a, b / sum b). It is 1.0 for maps equal up to scale, 0.0 for
    maps with no heat in common, and 1 minus the total variation distance in between. A map
    without heat counts as uniform, as in the focus scores.
    """
    return f"agree | {a} ~ {b}"


def method_pairs(methods: tuple[str, ...]) -> list[tuple[str, str]]:
    """The pairs behind the agreement columns (six for four methods), in the order of `methods`."""
    return list(combinations(methods, 2))


@dataclass
class EvalCache:
    rows: pd.DataFrame
    meta: dict[str, Any]
    # Group averages as stored: 8-bit arrays per race x gender x outcome (see `group_averages`).
    averages: pd.DataFrame | None = None

    @property
    def has_cams(self) -> bool:
        return bool(self.meta.get("with_cams"))

    @property
    def answers_only(self) -> bool:
        """Whether the cache is a table of answers (`faircam import-predictions`): no model ran, so it has no maps."""
        return self.meta.get("model", {}).get("kind") == "predictions"

    @property
    def tasks(self) -> dict[str, tuple[str, ...]]:
        """The tasks whose predictions the rows hold (`faircam.tasks.Task.columns`), with their classes; the default
        task alone for a cache written before there were other tasks."""
        default = {DEFAULT_TASK: TASKS[DEFAULT_TASK].classes}
        return {t: tuple(c) for t, c in self.meta.get("tasks", default).items()}

    @property
    def main_task(self) -> str:
        """The task audited first (the report's summary and fairness sections): gender, or the first task of a
        model without a gender head."""
        return DEFAULT_TASK if DEFAULT_TASK in self.tasks else next(iter(self.tasks))

    @property
    def onto(self) -> dict[str, dict[str, str | None]]:
        """Per task whose classes are the model's own, coarser ones: each faircam class's counterpart, or None."""
        return self.meta.get("model", {}).get("onto", {})

    def task(self, name: str) -> Task:
        """The task `name` as this cache's model has it (`faircam.tasks.task_spec`): its classes, and the columns
        its comparisons read (a coarsened task's labels in the model's classes)."""
        return task_spec(name, self.tasks.get(name), self.onto.get(name))

    def mapping_note(self, name: str) -> str:
        """Said wherever the task's accuracy is shown: for a model with coarser classes, that it is compared in
        them, through which mapping, and how many faces were left out for lack of a counterpart ("" otherwise)."""
        if name not in self.onto:
            return ""
        spec = self.task(name)
        left = int(self.rows[spec.label_column].isin([f for f, m in spec.onto if m is None]).sum())
        return (f"The model's {spec.title} classes are coarser than FairFace's, so its answers are compared in its "
                f"own classes ({', '.join(spec.classes)}): {spec.mapping_text()}. {left:,} of {len(self.rows):,} "
                f"faces have no counterpart and are left out of its {spec.title} accuracy.")

    @property
    def attributes(self) -> list[Attribute]:
        """The groupings beyond the task labels (a labelled folder's other columns, the image-quality slices), each
        with the column of its levels (`read_cache` makes it categorical, in the levels' order)."""
        return [Attribute.from_meta(a) for a in self.meta.get("attributes", [])]

    @property
    def cam_task(self) -> str:
        """The task whose decisions the maps, focus scores, faithfulness and averages explain."""
        return self.meta.get("cam_task", DEFAULT_TASK)

    @property
    def methods(self) -> tuple[str, ...]:
        """The CAM methods whose columns the cache holds, in their order (none without CAMs)."""
        return tuple(self.meta.get("methods", [])) if self.has_cams else ()

    @property
    def model_meta(self) -> dict[str, Any]:
        """What the cache says of its model: name, arch and sha256 ("?" where it says nothing), and its
        `test_time_augmentation` ("none": each image answered in one pass)."""
        return {"name": "?", "arch": "?", "sha256": "?", "test_time_augmentation": "none"} | self.meta.get("model", {})

    @property
    def answers_note(self) -> str:
        """How the answers were computed, said wherever its accuracies are: "" for one pass per image."""
        tta = self.model_meta["test_time_augmentation"]
        return "" if tta == "none" else f"Answers with test-time augmentation: {tta}."

    @property
    def data_meta(self) -> dict[str, Any]:
        """What the cache says of its images: root and split ("?" where it says nothing), limit, and the label rows
        dropped (`dropped`, the first records; `dropped_total`) and images `unreadable`."""
        return ({"root": "?", "split": "?", "limit": None, "unreadable": 0, "dropped": [], "dropped_total": 0}
                | self.meta.get("data", {}))

    @property
    def created(self) -> str:
        return self.meta.get("created", "?")


def _encode_averages(averages: pd.DataFrame) -> bytes:
    """Parquet bytes of the averages table; array cells become raw bytes with their shape in the metadata."""
    arrays = [c for c in averages.columns if c not in ("race", "gender", "outcome", "n")]
    shapes = {c: list(np.shape(averages[c].iloc[0])) for c in arrays} if len(averages) else {}
    table = pa.table({
        **{c: averages[c].astype(str).tolist() for c in ("race", "gender", "outcome")},
        "n": averages["n"].astype("int64").tolist(),
        **{c: [np.ascontiguousarray(v, dtype=np.uint8).tobytes() for v in averages[c]] for c in arrays},
    })
    table = table.replace_schema_metadata({b"shapes": json.dumps(shapes)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _decode_averages(blob: bytes) -> pd.DataFrame:
    table = pq.read_table(io.BytesIO(blob))
    shapes = json.loads(table.schema.metadata[b"shapes"])
    frame = table.to_pandas()
    for column, shape in shapes.items():
        frame[column] = [np.frombuffer(v, dtype=np.uint8).reshape(shape) for v in frame[column]]
    return frame


class _Checksum:
    """sha256 of the column names, every value (pandas' stable row hashes, added part after part: the
    same digest whether the rows come whole or in parts), the stored averages and the metadata other
    than the checksum itself (as JSON with sorted keys, as it reads back)."""

    def __init__(self, columns: Iterable[Any]) -> None:
        self.digest = hashlib.sha256(json.dumps([str(c) for c in columns]).encode())

    def add(self, rows: pd.DataFrame) -> None:
        self.digest.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())

    def finish(self, averages_blob: bytes | None, meta: dict[str, Any]) -> str:
        self.digest.update(averages_blob or b"")
        self.digest.update(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
        return self.digest.hexdigest()


def _checksum(rows: pd.DataFrame, averages_blob: bytes | None, meta: dict[str, Any]) -> str:
    checksum = _Checksum(rows.columns)
    checksum.add(rows)
    return checksum.finish(averages_blob, meta)


def part_name(index: int) -> str:
    """File name of a cache folder's (or an unfinished evaluation's) part `index`."""
    return f"part-{index:05d}.parquet"


def is_folder_target(path: Path) -> bool:
    """Whether a cache at `path` is written as a folder of parts: a name without the .parquet suffix."""
    return Path(path).suffix.lower() != ".parquet"


def write_cache(rows: pd.DataFrame, path: Path, meta: dict[str, Any], averages: pd.DataFrame | None = None) -> None:
    """One parquet file with provenance and checksum in its metadata, replaced atomically (never a half file).

    `averages`, when given, is `group_averages`' table as stored: faces as uint8 pixels and maps
    as uint8 levels of `MAP_LEVELS` (`faircam.evaluation.averages.GroupAverager.table` makes it).
    """
    table = pa.Table.from_pandas(rows, preserve_index=False)
    _write_file(lambda: iter([table]), Path(path), meta, averages)


def write_cache_parts(parts: list[Path], path: Path, meta: dict[str, Any],
                      averages: pd.DataFrame | None = None) -> None:
    """The cache at `path` from parquet parts of rows, in order, one part in memory at a time: one
    file (as `write_cache` writes) when `path` ends in .parquet, else a folder of the parts (linked
    into it) with its metadata record. Replaces what was at `path`."""
    path = Path(path)
    if not is_folder_target(path):
        _write_file(lambda: (pq.read_table(part) for part in parts), path, meta, averages)
        return
    blob = _encode_averages(averages) if averages is not None else None
    with atomic_folder(path) as tmp:
        columns, records = None, []
        for i, part in enumerate(parts):
            # Hashed as read back, so dtype conversions cannot break the checksum.
            rows = pq.read_table(part).to_pandas()
            columns = list(rows.columns) if columns is None else columns
            records.append({"file": part_name(i), "rows": len(rows), "checksum": _checksum(rows, None, {})})
            _link_or_copy(part, tmp / part_name(i))
        if blob is not None:
            (tmp / FOLDER_AVERAGES).write_bytes(blob)
        meta = json.loads(json.dumps({**meta, "schema_version": SCHEMA_VERSION,
                                      "rows": sum(r["rows"] for r in records), "columns": columns or [],
                                      "parts": records}))
        # The rows are in the checksum through the parts' checksums, which are in the metadata.
        meta["checksum"] = _Checksum(meta["columns"]).finish(blob, meta)
        (tmp / FOLDER_META).write_text(json.dumps(meta))


def _link_or_copy(part: Path, target: Path) -> None:
    """`part` also at `target`: linked, so a run killed while the folder is assembled still has its parts where
    they were (copied where the file system has no hard links)."""
    try:
        os.link(part, target)
    except OSError:
        shutil.copyfile(part, target)


def _write_file(tables: Callable[[], Iterator[pa.Table]], path: Path, meta: dict[str, Any],
                averages: pd.DataFrame | None) -> None:
    """One parquet file of the tables `tables()` yields (the same columns), read twice, one at a time:
    once for the checksum, which the file's schema carries, then to write."""
    blob = _encode_averages(averages) if averages is not None else None
    schema, checksum, count = pa.schema([]), None, 0
    for table in tables():
        if checksum is None:
            schema, checksum = table.schema, _Checksum(table.schema.names)
        # Hashed as the rows read back, so dtype conversions cannot break the checksum.
        checksum.add(table.to_pandas())
        count += table.num_rows
    # JSON round trip: the metadata is hashed as it reads back (tuples become lists).
    meta = json.loads(json.dumps({**meta, "schema_version": SCHEMA_VERSION, "rows": count}))
    meta["checksum"] = (checksum or _Checksum([])).finish(blob, meta)
    schema = schema.with_metadata({**(schema.metadata or {}), META_KEY: json.dumps(meta)})
    _write_tables_atomic(schema, tables() if checksum else iter([schema.empty_table()]), path,
                         {AVERAGES_KEY: blob} if blob is not None else None)


def write_table_atomic(table: pa.Table, path: Path, file_metadata: dict[bytes, bytes] | None = None) -> None:
    """`table` as parquet at `path` through a temporary file and a rename: readers see old or new, never half.

    `file_metadata` goes into the parquet footer only (`pq.read_metadata(path).metadata`), not into
    the schema metadata, which pyarrow would store a second time, base64-encoded.
    """
    _write_tables_atomic(table.schema, iter([table]), path, file_metadata)


def _write_tables_atomic(schema: pa.Schema, tables: Iterator[pa.Table], path: Path,
                         file_metadata: dict[bytes, bytes] | None) -> None:
    with atomic_file(path) as file, pq.ParquetWriter(file, schema) as writer:
        for table in tables:
            writer.write_table(table.replace_schema_metadata(schema.metadata))
        if file_metadata:
            writer.add_key_value_metadata(file_metadata)


def read_cache(path: Path | str) -> EvalCache:
    """The cache at `path` (a file or a folder of parts), or `CacheError` saying why it cannot be used."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise CacheError(f"No evaluation cache at {path}. Create it with `faircam evaluate`.")
    try:
        table = pq.read_table(path)
        blob = (pq.read_metadata(path).metadata or {}).get(AVERAGES_KEY)
    except (pa.ArrowException, OSError) as exc:
        raise CacheError(f"The evaluation cache {path} is damaged ({exc}). Recreate it with `faircam evaluate`.") \
            from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    try:
        meta = json.loads(raw) if raw else {}
    except ValueError:
        meta = None
    _check_meta(path, meta)
    rows = table.to_pandas()
    if len(rows) != meta.get("rows"):
        raise CacheError(f"{path} holds {len(rows)} rows but recorded {meta.get('rows')}; recreate it.")
    if _checksum(rows, blob, meta) != meta.get("checksum"):
        raise _changed(path)
    averages = _averages(path, blob)
    rows = _typed(path, meta, rows)
    return _checked(path, rows, meta, averages)


_METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 +\-]*")


def _check_meta(path: Path, meta: Any) -> None:
    if not isinstance(meta, dict):
        raise CacheError(f"{path} has unreadable faircam metadata. Recreate it with `faircam evaluate`.")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CacheError(
            f"{path} was written by another faircam version (schema {meta.get('schema_version')}, "
            f"expected {SCHEMA_VERSION}). Recreate it with `faircam evaluate`."
        )
    # Method names become column names, page headings and captions: only plain names, never markup.
    methods = meta.get("methods", [])
    if not isinstance(methods, list) or not all(isinstance(m, str) and _METHOD_NAME.fullmatch(m) for m in methods):
        raise CacheError(f"{path} names CAM methods that are not plain names. Recreate it with `faircam evaluate`.")
    # Task names become column prefixes and labels: faircam's tasks (`faircam.tasks.TASKS`) and their classes only.
    tasks = meta.get("tasks", {DEFAULT_TASK: list(TASKS[DEFAULT_TASK].classes)})
    model = meta.get("model", {})
    onto = model.get("onto", {}) if isinstance(model, dict) else {}
    if (not isinstance(tasks, dict) or not tasks or meta.get("cam_task", DEFAULT_TASK) not in tasks
            or not isinstance(onto, dict)
            or any(t not in TASKS or (not _coarse_ok(t, c, onto[t]) if t in onto else TASKS[t].classes != tuple(c))
                   if isinstance(c, list) else True for t, c in tasks.items())
            or any(t not in tasks for t in onto)):
        raise CacheError(f"{path} names tasks or classes faircam does not know. Recreate it with `faircam evaluate`.")
    wrong = _provenance_problems(meta)
    if wrong:
        raise CacheError(f"{path} has unreadable faircam metadata ({', '.join(wrong)}: not of the type faircam "
                         "writes). Recreate it with `faircam evaluate`.")


def _coarse_ok(task: str, classes: list, onto: Any) -> bool:
    """Whether a coarser model's classes are plain names and its mapping maps each of the task's classes onto one
    of them or none, as `faircam.models.kinds` writes it."""
    return (len(classes) >= 2 and all(isinstance(c, str) and PLAIN_CLASS.fullmatch(c) for c in classes)
            and len(set(classes)) == len(classes) and isinstance(onto, dict)
            and list(onto) == list(TASKS[task].classes) and all(v is None or v in classes for v in onto.values()))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _provenance_problems(meta: dict[str, Any]) -> list[str]:
    """The provenance fields (`EvalCache.model_meta`, `data_meta`, `created`, the faithfulness sample) that are not
    of the type faircam writes: pages, the card and the report read them, and a recomputed checksum lets any
    value through."""
    model, data, faithfulness = (meta.get(k, {}) for k in ("model", "data", "faithfulness"))
    records = {"model": model, "data": data, "faithfulness": faithfulness}
    wrong = [name for name, record in records.items() if not isinstance(record, dict)]
    if wrong:
        return wrong
    dropped, notes = data.get("dropped", []), data.get("notes", [])
    checks = {
        "created": isinstance(meta.get("created", ""), str),
        **{f"model.{k}": isinstance(model.get(k, ""), str) for k in (
            "name", "arch", "sha256", "kind", "cam_layer", "test_time_augmentation")},
        "model.label_mapping": isinstance(model.get("label_mapping", {}), dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in model.get("label_mapping", {}).items()),
        **{f"data.{k}": _count(data.get(k, 0)) for k in ("unanswered", "not_in_data")},
        **{f"data.{k}": isinstance(data.get(k, ""), str) for k in ("root", "split", "labels")},
        "data.notes": isinstance(notes, list) and all(isinstance(note, str) for note in notes),
        "data.limit": data.get("limit") is None or _count(data["limit"]),
        **{f"data.{k}": _count(data.get(k, 0)) for k in ("labelled", "unreadable", "dropped_total")},
        "data.dropped": isinstance(dropped, list) and all(
            isinstance(row, dict) and isinstance(row.get("file"), str) and isinstance(row.get("reason"), str)
            and _count(row.get("line", 0)) for row in dropped),
        "faithfulness.per_cell": _count(faithfulness.get("per_cell", 0)),
    }
    return [name for name, ok in checks.items() if not ok]


def _checked(path: Path, rows: pd.DataFrame, meta: dict[str, Any], averages: pd.DataFrame | None) -> EvalCache:
    """The cache, its labels and predictions checked (`_check_labels`), with each coarsened task's labels in the
    model's classes (`Task.truth`), which its comparisons read."""
    cache = EvalCache(rows=rows, meta=meta, averages=averages)
    _check_labels(path, cache, averages)
    for name in cache.onto:
        spec = cache.task(name)
        rows[spec.truth] = rows[name].astype(object).map(spec.truth_of)
    return cache


def _check_labels(path: Path, cache: EvalCache, averages: pd.DataFrame | None) -> None:
    """Refuse labels and predictions that are not their task's classes: they become group names, chart labels and
    captions on every page and in the report (Plotly and matplotlib read markup in labels), and `faircam evaluate`
    writes faircam's tasks' classes only (a coarser model's, which `_check_meta` checked, for its tasks)."""
    views = ("raw", "crop", "blur")
    rows = cache.rows
    allowed = [(rows, {name: task.classes for name, task in TASKS.items()}
                | {view_column(v, cache.task(name).pred): cache.task(name).classes for name in TASKS for v in views})]
    if averages is not None:
        allowed.append((averages, {"race": TASKS["race"].classes, "gender": TASKS["gender"].classes,
                                   "outcome": OUTCOMES}))
    for table, columns in allowed:
        for column, classes in columns.items():
            if column in table and not table[column].dropna().isin(classes).all():
                raise CacheError(f"{path} holds values in its {column!r} column that are not its task's "
                                 "classes. Recreate it with `faircam evaluate`.")


def _typed(path: Path, meta: dict[str, Any], rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with each attribute's level column categorical, its levels in their stored order (ordered for binned
    numbers), after checking the attributes' metadata: their names and levels become tab labels, table headers and
    filters, so only plain text of a bounded size, naming columns the rows have."""
    records = meta.get("attributes", [])
    try:
        attributes = [Attribute.from_meta(r) for r in records] if isinstance(records, list) else None
    except (KeyError, TypeError, ValueError):
        attributes = None
    if attributes is None or any(
            a.column not in rows or not (0 < len(a.name) <= 100 and a.name.isprintable())
            or len(a.levels) > 1000 or not all(level.isprintable() and len(level) <= 200 for level in a.levels)
            for a in attributes):
        raise CacheError(f"{path} has unreadable attributes in its metadata. Recreate it with `faircam evaluate`.")
    for a in attributes:
        rows[a.column] = pd.Categorical(rows[a.column], categories=list(dict.fromkeys(a.levels)), ordered=a.ordered)
    return rows


def _changed(path: Path) -> CacheError:
    return CacheError(f"{path} does not match its checksum: its rows or metadata were changed after "
                      "`faircam evaluate` wrote it (or an older faircam wrote it). Recreate it.")


def _averages(path: Path, blob: bytes | None) -> pd.DataFrame | None:
    try:
        return _decode_averages(blob) if blob is not None else None
    except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
        raise CacheError(f"{path} has unreadable group averages ({exc}); recreate it.") from None


def _read_folder(path: Path) -> EvalCache:
    """A cache folder: its metadata record, then its parts as one table (pyarrow's dataset API), each
    part held to its own checksum and the record (which lists them) to the cache's."""
    try:
        meta = json.loads((path / FOLDER_META).read_text())
    except FileNotFoundError:
        raise CacheError(f"{path} is a folder without {FOLDER_META}: not an evaluation cache. "
                         "Create it with `faircam evaluate`.") from None
    except (OSError, ValueError):
        meta = None
    _check_meta(path, meta)
    parts = meta.get("parts")
    # Only plain file names inside the folder, the record must not lead the reader elsewhere; whole row counts.
    if not isinstance(parts, list) or any(not isinstance(p, dict) or Path(str(p.get("file"))).name != p.get("file")
                                          or str(p.get("file")).startswith(".") or type(p.get("rows")) is not int
                                          or p["rows"] < 0 for p in parts):
        raise CacheError(f"{path} has unreadable faircam metadata. Recreate it with `faircam evaluate`.")
    blob_path = path / FOLDER_AVERAGES
    try:
        files = [str(path / p["file"]) for p in parts]
        table = ds.dataset(files, format="parquet").to_table() if files else pa.table({})
        blob = blob_path.read_bytes() if blob_path.is_file() else None
    except (pa.ArrowException, OSError) as exc:
        raise CacheError(f"The evaluation cache {path} is damaged ({exc}). Recreate it with `faircam evaluate`.") \
            from None
    rows = table.to_pandas()
    if len(rows) != meta.get("rows") or sum(p["rows"] for p in parts) != len(rows):
        raise CacheError(f"{path} holds {len(rows)} rows but recorded {meta.get('rows')}; recreate it.")
    start = 0
    for part in parts:
        if _checksum(rows.iloc[start:start + part["rows"]], None, {}) != part.get("checksum"):
            raise _changed(path)
        start += part["rows"]
    if list(map(str, rows.columns)) != meta.get("columns") \
            or _Checksum(meta["columns"]).finish(blob, meta) != meta.get("checksum"):
        raise _changed(path)
    averages = _averages(path, blob)
    rows = _typed(path, meta, rows)
    return _checked(path, rows, meta, averages)


def group_averages(cache: EvalCache) -> pd.DataFrame:
    """Average aligned face and average maps per race x gender x outcome (crop view, faces found).

    Columns: race, gender, outcome ("correct"/"wrong", of the crop view's prediction, which the
    maps explain), n (images averaged), face (HxWx3 uint8) and one HxW float32 map in [0, 1] per
    CAM method in the cache. Groups without images are left out; an empty table when the cache
    holds no averages.
    """
    methods = list(cache.methods)
    if cache.averages is None:
        return pd.DataFrame(columns=["race", "gender", "outcome", "n", "face", *methods])
    frame = cache.averages[["race", "gender", "outcome", "n", "face"]].copy()
    for method in methods:
        frame[method] = [np.asarray(v, dtype=np.float32) / MAP_LEVELS for v in cache.averages[method]]
    return frame.reset_index(drop=True)
