"""Every setting faircam reads, in one place, with its environment override.

`FAIRCAM_DATA` points at a FairFace-layout folder (or, with `FAIRCAM_LABELS` naming its label CSV, at any
labelled face folder: `faircam.data.labelled`), `FAIRCAM_MODEL` at a checkpoint and
`FAIRCAM_CACHE` at an evaluation cache (both for the default model, "faircam"),
`FAIRCAM_CACHE_DIR` at the folder of the other registered models' caches;
`FAIRCAM_REGISTRY` at the file where `faircam train` registers its checkpoints; `FAIRCAM_PRELOAD=0`
keeps the dashboard from loading the model in the background; `FAIRCAM_MMAP_MB` sets how `faircam
evaluate` trades speed for a bounded peak of memory under glibc (`evaluate_mmap_mb`), `FAIRCAM_ALLOCATOR` which
allocator the heavy processes run on (`allocator_setting`); `FAIRCAM_MAX_MODEL_MB` caps the weights
of a model brought by its user (`max_model_mb`); `FAIRCAM_STORE` at the server folder where models uploaded on the
"Audit a model" page, their caches and their evaluation jobs live (`model_store`), `FAIRCAM_AUDIT_FACES` at how
many faces that page evaluates them on (`audit_faces`). Without them
faircam uses what ships in `assets/` and the FairFace sample beside the checkout
(`../shared/fairface`) when it is there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from faircam.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS = PROJECT_ROOT / "assets"

DEFAULT_MODEL = ASSETS / "model.pt"
DEFAULT_CACHE = ASSETS / "eval_val.parquet"
# The registry name of the bundled model, which FAIRCAM_MODEL and FAIRCAM_CACHE override.
DEFAULT_MODEL_NAME = "faircam"
THIRDPARTY = ASSETS / "thirdparty"
SHARED_FAIRFACE = PROJECT_ROOT.parent / "shared" / "fairface"
# The mean five-landmark positions of FairFace's training faces (`faircam template` writes it), in a
# square frame of TEMPLATE_FRAME pixels, FairFace's own image size.
FACE_TEMPLATE_PATH = ASSETS / "face_template.json"
TEMPLATE_FRAME = 224

FACE_REGIONS = ("eyes", "nose", "mouth", "rest of face")
# Groups smaller than this get a warning next to their numbers instead of a ranking.
MIN_GROUP_SIZE = 30
# Images per race x gender cell that `faircam evaluate` gives the slow faithfulness measures.
FAITHFULNESS_PER_CELL = 5
# Longest side an uploaded photo is reduced to before anything else touches it.
MAX_IMAGE_SIDE = 2048
# More pixels than this is refused before decoding (decompression bombs, 12000x12000 scans): Pillow
# already holds a decoded 100-megapixel RGB image in 400 MB (4 bytes a pixel), per session, on a shared
# classroom server; decoding adds at most about 70 MB to that (README, "Handled inputs").
MAX_IMAGE_PIXELS = 100_000_000
# A face (or, with none found, a photo) under this many pixels a side: the model sees it enlarged to its input size,
# so its answer rests on little detail, and the pages say so.
LOW_DETAIL_SIDE = 64
# The largest photo an uploader takes (its `max_upload_size`), checked again in code.
MAX_UPLOAD_MB = 20
# Same value as `server.maxUploadSize` in .streamlit/config.toml (a test keeps them equal): the largest upload the
# server takes at all, a model brought on "Audit a model" (`max_model_mb`'s default); every photo uploader asks for
# MAX_UPLOAD_MB instead.
SERVER_UPLOAD_MB = 500


def _path_from_env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class Settings:
    data_dir: Path | None
    model_path: Path
    cache_path: Path
    labels_path: Path | None = None


def preload_model() -> bool:
    """Whether the dashboard loads the default model in the background after its first page
    (`FAIRCAM_PRELOAD=0` turns it off: a server that only shows cached audits never needs torch)."""
    return os.environ.get("FAIRCAM_PRELOAD", "1").strip() != "0"


def evaluate_mmap_mb() -> int:
    """From what size, in MB, `faircam evaluate` gives a buffer its own mapping, handed back to the system when
    freed, under glibc (`FAIRCAM_MMAP_MB`, default 4; `faircam.allocator.steady_allocator`): its peak memory then
    stays at one batch's, whatever the number of images. 0 leaves glibc's own adaptive threshold: faster, with a
    higher peak that creeps up over a long run (README, "Memory")."""
    value = os.environ.get("FAIRCAM_MMAP_MB", "").strip() or "4"
    if not value.isdigit() or int(value) > 32:
        raise DataError(f"FAIRCAM_MMAP_MB={value!r}: give a whole number of megabytes from 0 (glibc's own) to 32.")
    return int(value)


ALLOCATORS = ("tcmalloc", "glibc")


def allocator_setting(env: Mapping[str, str] | None = None) -> str:
    """The memory allocator faircam's heavy processes ask for (`FAIRCAM_ALLOCATOR` of `env`, default this process's
    environment; "tcmalloc" by default, used where installed; "glibc" keeps the C library's own with
    `FAIRCAM_MMAP_MB`): `faircam.allocator`."""
    value = (os.environ if env is None else env).get("FAIRCAM_ALLOCATOR", "").strip().lower() or ALLOCATORS[0]
    if value not in ALLOCATORS:
        raise DataError(f"FAIRCAM_ALLOCATOR={value!r}: give one of {', '.join(ALLOCATORS)}.")
    return value


def max_model_mb() -> int:
    """The most megabytes of weights faircam loads for a model brought by its user (a Hugging Face folder, a
    faircam-model.json's weights, an ONNX file): `FAIRCAM_MAX_MODEL_MB`, default 500, so one upload cannot fill a
    shared server's memory."""
    value = os.environ.get("FAIRCAM_MAX_MODEL_MB", "").strip() or "500"
    if not value.isdigit() or int(value) < 1:
        raise DataError(f"FAIRCAM_MAX_MODEL_MB={value!r}: give a whole number of megabytes, 1 or more.")
    return int(value)


# An uploaded archive (a zipped Hugging Face folder) may hold at most this many files; its unpacked bytes are bounded
# by `max_model_mb()` like the weights' (`faircam.models.store`).
MAX_ARCHIVE_FILES = 64


# A brought model's evaluation cache, in its folder.
BROUGHT_CACHE = "eval_val.parquet"


def model_store() -> Path:
    """The server folder of the models brought from the "Audit a model" page (`faircam.models.store`): each in its
    own folder under `brought/`, with its evaluation cache, and the evaluation jobs' state under `jobs/`
    (`FAIRCAM_STORE`, default the git-ignored runs/)."""
    return _path_from_env("FAIRCAM_STORE") or PROJECT_ROOT / "runs"


def brought_folder(name: str) -> Path:
    """Where the store keeps the model `name` brought from the page (a plain name: `faircam.models.store`)."""
    return model_store() / "brought" / name


def audit_faces() -> int:
    """How many FairFace validation faces, stratified by race x gender, "Audit a model" evaluates a brought model on
    unless all are asked for (`FAIRCAM_AUDIT_FACES`, default 700: 50 per race x gender group)."""
    value = os.environ.get("FAIRCAM_AUDIT_FACES", "").strip() or "700"
    if not value.isdigit() or int(value) < 1:
        raise DataError(f"FAIRCAM_AUDIT_FACES={value!r}: give a whole number of faces, 1 or more.")
    return int(value)


def registry_path() -> Path:
    """The file listing checkpoints registered by `faircam train` (git-ignored runs/ by default)."""
    return _path_from_env("FAIRCAM_REGISTRY") or PROJECT_ROOT / "runs" / "models.json"


def cache_path_for(name: str) -> Path:
    """The evaluation cache of a registered model: FAIRCAM_CACHE or the bundled cache for the
    default model, `eval_val.parquet` in the folder of a model brought from the page (`brought_folder`),
    `eval_val-<name>.parquet` in FAIRCAM_CACHE_DIR (default `assets/`) for the others."""
    if name == DEFAULT_MODEL_NAME:
        return settings().cache_path
    if name and "/" not in name and not name.startswith(".") and brought_folder(name).is_dir():
        return brought_folder(name) / BROUGHT_CACHE
    return (_path_from_env("FAIRCAM_CACHE_DIR") or ASSETS) / f"eval_val-{name}.parquet"


def settings() -> Settings:
    """The settings in force now: environment first, then the bundled defaults."""
    data = _path_from_env("FAIRCAM_DATA")
    if data is None and SHARED_FAIRFACE.is_dir():
        data = SHARED_FAIRFACE
    return Settings(
        data_dir=data,
        model_path=_path_from_env("FAIRCAM_MODEL") or DEFAULT_MODEL,
        cache_path=_path_from_env("FAIRCAM_CACHE") or DEFAULT_CACHE,
        labels_path=_path_from_env("FAIRCAM_LABELS"),
    )
