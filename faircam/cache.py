"""The evaluation cache file: its schema, checksum, atomic writing, and reading with checks.

A cache is one parquet file, one row per image, that carries its provenance (model checksum,
data folder, split, schema version, options) and a checksum of its rows, averages and that
provenance in its metadata. It is replaced atomically and read back with checks, so pages never
show numbers from a damaged or carelessly edited file, from another model or from another schema.
The checksum is a plain sha256, not a signature: whoever can write the file can also recompute it.
This module imports no torch: pages that only read the cache open without loading the model.

Schema 2, one row per image:

- raw view (the whole image resized): file, race, gender, age, pred, prob, p_male, correct,
  face_found, faces_found, and `focus_column(method, key)` for every CAM method the cache records
  (`meta["methods"]`, read as `EvalCache.methods`) and `FOCUS_KEYS`;
- counterfactual views "crop" (MTCNN-aligned face) and "blur" (background blurred): the same
  prediction and focus columns named by `view_column(view, ...)`; without a face they equal raw;
- faithfulness on the raw view, for the predicted class, on a balanced sample (`faith_sampled`,
  NaN elsewhere): `focus_column(method, "road" | "deletion" | "insertion")`;
- agreement between the maps of the raw view: `agreement_column(a, b)` and `AGREEMENT_MEAN`.

Beside the rows the file holds aggregates only, never per-image pixels: the average aligned face
and average maps per race x gender x outcome, read with `group_averages`.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from faircam.errors import CacheError
from faircam.focus import REGIONS

SCHEMA_VERSION = 2
FOCUS_KEYS = (*REGIONS, "face", "face_baseline", "face_lift")
VIEW_COLUMNS = ("pred", "prob", "p_male", "correct")
FAITHFULNESS_KEYS = ("road", "deletion", "insertion")
AGREEMENT_MEAN = "agree | mean"
OUTCOMES = ("correct", "wrong")
META_KEY = b"faircam"
AVERAGES_KEY = b"faircam.averages"
# Average maps are stored as 8-bit levels: 1/255 is far below what a heat map can show.
MAP_LEVELS = 255


def focus_column(method: str, key: str) -> str:
    """Column name of one method's focus score for one region (or summary or faithfulness key)."""
    return f"{method} | {key}"


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
    def methods(self) -> tuple[str, ...]:
        """The CAM methods whose columns the cache holds, in their order (none without CAMs)."""
        return tuple(self.meta.get("methods", [])) if self.has_cams else ()


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


def _checksum(rows: pd.DataFrame, averages_blob: bytes | None, meta: dict[str, Any]) -> str:
    """sha256 of the column names, every value (pandas' stable row hashes), the stored averages and
    the metadata other than the checksum itself (as JSON with sorted keys, as it reads back)."""
    digest = hashlib.sha256(json.dumps([str(c) for c in rows.columns]).encode())
    digest.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    digest.update(averages_blob or b"")
    digest.update(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
    return digest.hexdigest()


def write_cache(rows: pd.DataFrame, path: Path, meta: dict[str, Any], averages: pd.DataFrame | None = None) -> None:
    """Parquet with provenance and checksum in its metadata, replaced atomically (never a half file).

    `averages`, when given, is `group_averages`' table as stored: faces as uint8 pixels and maps
    as uint8 levels of `MAP_LEVELS` (`faircam.averages.GroupAverager.table` makes it).
    """
    table = pa.Table.from_pandas(rows, preserve_index=False)
    blob = _encode_averages(averages) if averages is not None else None
    # The checksum is taken on the rows and metadata as they read back, so dtype conversions and
    # JSON (tuples become lists) cannot break it.
    meta = json.loads(json.dumps({**meta, "schema_version": SCHEMA_VERSION, "rows": len(rows)}))
    meta["checksum"] = _checksum(table.to_pandas(), blob, meta)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta)})
    write_table_atomic(table, path, {AVERAGES_KEY: blob} if blob is not None else None)


def write_table_atomic(table: pa.Table, path: Path, file_metadata: dict[bytes, bytes] | None = None) -> None:
    """`table` as parquet at `path` through a temporary file and a rename: readers see old or new, never half.

    `file_metadata` goes into the parquet footer only (`pq.read_metadata(path).metadata`), not into
    the schema metadata, which pyarrow would store a second time, base64-encoded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if file_metadata:
            with pq.ParquetWriter(tmp, table.schema) as writer:
                writer.write_table(table)
                writer.add_key_value_metadata(file_metadata)
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of earlier writes to `path` whose process is gone (killed mid-write)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_cache(path: Path | str) -> EvalCache:
    """The cache at `path`, or `CacheError` saying why it cannot be used."""
    path = Path(path).expanduser()
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
    if _checksum(rows, blob, meta) != meta.get("checksum"):
        raise CacheError(f"{path} does not match its checksum: its rows or metadata were changed after "
                         "`faircam evaluate` wrote it (or an older faircam wrote it). Recreate it.")
    try:
        averages = _decode_averages(blob) if blob is not None else None
    except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
        raise CacheError(f"{path} has unreadable group averages ({exc}); recreate it.") from None
    return EvalCache(rows=rows, meta=meta, averages=averages)


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
