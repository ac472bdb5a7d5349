"""The evaluation cache file: its schema, atomic writing, and reading with checks.

A cache is one parquet file, one row per image (labels, prediction, focus scores), that
carries its provenance (model checksum, data folder, split, schema version) in its metadata.
It is replaced atomically and read back with checks, so pages never show numbers from a
damaged file or from another model. This module imports no torch: pages that only read the
cache open without loading the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from faircam.config import CAM_METHODS
from faircam.errors import CacheError
from faircam.focus import REGIONS

SCHEMA_VERSION = 1
FOCUS_KEYS = (*REGIONS, "face", "face_baseline", "face_lift")
META_KEY = b"faircam"


def focus_column(method: str, key: str) -> str:
    """Column name of one method's focus score for one region (or summary key)."""
    return f"{method} | {key}"


VIEWS = ("raw", "crop", "blur")


def view_column(view: str, name: str) -> str:
    """Column name of `name` in a view: unchanged for "raw", prefixed with the view otherwise."""
    return name if view == "raw" else f"{view}: {name}"


def agreement_column(a: str, b: str) -> str:
    """Column name of the agreement between two methods' maps (a before b in CAM_METHODS order)."""
    return f"agree | {a} ~ {b}"


@dataclass
class EvalCache:
    rows: pd.DataFrame
    meta: dict[str, Any]

    @property
    def has_cams(self) -> bool:
        return bool(self.meta.get("with_cams"))


def group_averages(cache: EvalCache) -> pd.DataFrame:
    """Average aligned face and average map per race x gender x outcome (contract §1).

    Interim reader for the audit pages: audit-cache's schema-2 reader replaces it. Schema-1
    caches store no averages, so this returns the contract's columns with no rows.
    """
    return pd.DataFrame(columns=["race", "gender", "outcome", "n", "face", *CAM_METHODS])


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
