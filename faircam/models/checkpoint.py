"""What a checkpoint file says about itself, read without torch: its checksum, metadata and architecture names.

Pages that only show the cached evaluation name the model in the sidebar and compare the cache
with the model file; importing torch for that would cost seconds per process. A torch checkpoint
is a zip whose `data.pkl` pickles plain metadata beside tensor records, so a restricted unpickler
that turns every tensor into None reads the metadata and never touches the weights.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

from faircam.errors import ModelError

CHECKPOINT_FORMAT = "faircam-checkpoint/1"

# The architectures a checkpoint may name, with their input normalisation: EfficientNet-Lite was trained on
# TF's (x - 127) / 128 scaling, ResNets on ImageNet statistics. Here, without torch, so `faircam train` checks
# `--arch` before importing it.
LITE_NORMALISATION = {"mean": (127 / 255,) * 3, "std": (128 / 255,) * 3}
IMAGENET_NORMALISATION = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
ARCHITECTURES = {
    "efficientnet-lite0": LITE_NORMALISATION,
    "resnet18": IMAGENET_NORMALISATION,
    "resnet34": IMAGENET_NORMALISATION,
    "resnet50": IMAGENET_NORMALISATION,
}


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _no_tensor(*args: object) -> None:
    return None


class _MetadataUnpickler(pickle.Unpickler):
    """Builds plain Python values only: torch's rebuild functions and storage types become stand-ins
    that yield None, and any other global is refused (as `torch.load(weights_only=True)` would)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _no_tensor
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: object) -> None:
        return None


def read_metadata(path: Path | str) -> dict[str, Any]:
    """The checkpoint's keys except `state_dict` (format, arch, input_size, mean, std, classes, info)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist.")
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            with archive.open(name) as f:
                payload = _MetadataUnpickler(f).load()
    except (OSError, StopIteration, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable checkpoint ({type(exc).__name__}).") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a faircam checkpoint (format {CHECKPOINT_FORMAT}).")
    check_metadata(payload, path)
    return {k: v for k, v in payload.items() if k != "state_dict"}


def _texts(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def check_metadata(payload: dict[str, Any], path: Path | str) -> None:
    """`ModelError` when a field the pages, the sidebar or the model card read is not of the type faircam writes
    (arch, input_size, classes, tasks, and info's name, origin, licence, training and metrics): a checkpoint's
    metadata is whatever its maker pickled."""
    info, tasks = payload.get("info") or {}, payload.get("tasks") or {}
    checks = {
        "arch": isinstance(payload.get("arch", ""), str),
        "input_size": isinstance(payload.get("input_size", 0), int) and not isinstance(payload.get("input_size"), bool),
        "classes": _texts(payload.get("classes", [])),
        "tasks": isinstance(tasks, dict) and all(isinstance(t, str) and _texts(c) for t, c in tasks.items()),
        "info": isinstance(info, dict),
    }
    if isinstance(info, dict):
        checks |= {f"info.{k}": isinstance(info.get(k, ""), str) for k in ("name", "origin", "licence")}
        checks |= {f"info.{k}": isinstance(info.get(k) or {}, dict) for k in ("training", "metrics")}
    wrong = [name for name, ok in checks.items() if not ok]
    if wrong:
        raise ModelError(f"{path} has unreadable metadata ({', '.join(wrong)}: not of the type faircam writes).")
