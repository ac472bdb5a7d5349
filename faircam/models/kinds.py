"""The kinds of model faircam audits, in one table: how each recognises its files, loads them, and names its outputs.

A `Kind` is one entry of `KINDS`: faircam's own checkpoint, dlib's and face-api.js's ports (registered by name
only), and the models a user brings: a Hugging Face image-classification folder (`huggingface`), a torchvision or
timm architecture with a state dict (`torchvision`, `timm`) and an ONNX graph (`onnx`), the last three described by
a `faircam-model.json` beside the weights (`read_spec`). `recognise` says which kind a path is; the registry's
`load_model` hands the entry to its kind's `load`, which returns a `LoadedModel` whose outputs are in faircam's task
and class order, so the pipeline, CAMs and cache columns serve every kind alike. How each brought model is fed,
adapted and given a CAM layer is `faircam.models.foreign`'s (torch); this module stays light (no torch), so the
registry and the command line can recognise a model and check its description before any work.

A model's class names are mapped onto faircam's by name, never by index, through `faircam.tasks.Task.canonical`
(the one synonym table): `map_outputs` names the task and class of every output, or says in one line which names
it cannot place. A one-class head is a sigmoid: `["male"]` means p(male). Nothing brought is unpickled: weights are
read from .safetensors, or from .pt with `weights_only=True`; no remote code runs; and the weights are refused above
`config.max_model_mb()`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faircam.config import max_model_mb
from faircam.errors import ModelError
from faircam.tasks import DEFAULT_TASK, PLAIN_CLASS, TASKS, Task, task_spec

if TYPE_CHECKING:
    from faircam.models.model import LoadedModel
    from faircam.models.registry import ModelEntry

MODEL_JSON = "faircam-model.json"
# How a brought model wants its image: "whole" as FairFace's images come, "crop" cut to FairFace's mean face always
# (the keys of `faircam.vision.preprocess.ALIGNMENTS` they stand for).
VIEWS = {"whole": "image", "crop": "face-template"}
SPEC_FORMATS = ("torchvision", "timm", "onnx")
WEIGHT_SUFFIXES = {"torchvision": (".safetensors", ".pt", ".pth"), "timm": (".safetensors", ".pt", ".pth"),
                   "onnx": (".onnx",)}


@dataclass(frozen=True)
class Head:
    """One task's outputs in a model's output vector: `names` as the model calls its classes, `classes` the
    faircam classes they map onto (same order), from output `start`; a one-class head is a sigmoid. A head whose
    classes are coarser than the task's keeps its own names as `classes`, and `onto` maps each of faircam's classes
    onto one of them or none (`faircam.tasks.Task.coarsened`)."""

    task: str
    names: tuple[str, ...]
    classes: tuple[str, ...]
    start: int
    onto: tuple[tuple[str, str | None], ...] = ()

    @property
    def sigmoid(self) -> bool:
        return len(self.names) == 1

    @property
    def width(self) -> int:
        return len(self.names)

    @property
    def spec(self) -> Task:
        """The task as this head has it (coarsened onto its classes where it maps them)."""
        return task_spec(self.task, self.classes, dict(self.onto))

    def mapping(self) -> str:
        """How its names were mapped, as the cache, the model card and the errors say it."""
        if self.onto:
            return self.spec.mapping_text()
        if self.sigmoid:
            return f"{self.names[0]} → p({self.classes[0]})"
        return ", ".join(f"{n} → {c}" for n, c in zip(self.names, self.classes))


def _coarse_onto(task: str, names: list[str], given: object, source: str,
                 where: str) -> tuple[tuple[str, str | None], ...]:
    """The mapping of `task`'s classes onto a coarser head's `names`: faircam's proposal (`Task.propose`), with the
    description's `mapping` for this task (faircam's class, in any spelling -> one of `names` or null) over it;
    `where` says where a mapping is given (in the error that asks for one)."""
    spec = TASKS[task]
    bad = [n for n in names if not PLAIN_CLASS.fullmatch(n)]
    if bad:
        raise ModelError(f"{source}: its {task} class {bad[0]!r} is not a plain name (letters, digits, spaces, "
                         "up to 40 characters).")
    onto = spec.propose(names)
    if given is not None:
        if not isinstance(given, dict):
            raise ModelError(f"{source}: mapping.{task} must map {task} classes onto the model's (e.g. "
                             f"{{\"{spec.classes[0]}\": \"{names[0]}\"}}).")
        for key, value in given.items():
            cls = spec.canonical(key)
            if cls is None:
                raise ModelError(f"{source}: mapping.{task} names {key!r}, not a {task} class faircam knows "
                                 f"({', '.join(spec.classes)}).")
            if value is not None and value not in names:
                raise ModelError(f"{source}: mapping.{task} maps {key!r} onto {value!r}, which is not one of the "
                                 f"model's classes ({', '.join(names)}).")
            onto[cls] = value
    placed = set(onto.values())
    unknown = [n for n in names if n not in placed and not spec.recognises(n)]
    if unknown:
        raise ModelError(f"{source}: {', '.join(map(repr, unknown))} is not a {task} class faircam knows "
                         f"({', '.join(spec.classes)}, or a synonym); map {task} classes onto it with "
                         f"\"mapping\": {{\"{task}\": {{...}}}} {where}.")
    if not placed - {None}:
        raise ModelError(f"{source}: none of faircam's {task} classes maps onto its classes ({', '.join(names)}).")
    return tuple((c, onto[c]) for c in spec.classes)


def _task_of(names: list[str]) -> str | None:
    """The one task all `names` belong to (`Task.recognises`), at least one of them by its own class."""
    return next((t for t, spec in TASKS.items() if all(spec.recognises(n) for n in names)
                 and any(spec.canonical(n) for n in names)), None)


def map_outputs(outputs: list[tuple[str | None, list[str]]], source: str,
                mapping: dict[str, object] | None = None, where: str = f"in its {MODEL_JSON}") -> list[Head]:
    """The heads of a model's output vector, in order, from (task or None, class names) per head: a head without a
    task is given the one task all its names belong to. A head whose names are not its task's classes one for one
    is coarser: faircam proposes a mapping of its task's classes onto its names, and `mapping` (a description's
    `{"race": {"Middle Eastern": "caucasian"}}`) overrides it. A model may predict any of faircam's tasks (an
    age-only model has no gender head: the pages name the tasks it lacks). `ModelError` in one line when a name
    maps onto no class, two names onto one, or a one-class head is not of a two-class task (`where`: where the
    user gives a mapping, said when one is missing)."""
    heads, start = [], 0
    mapping = mapping or {}
    for task, names in outputs:
        names = [str(n) for n in names]
        if task is None:
            task = _task_of(names)
            if task is None:
                raise ModelError(f"{source}: its classes ({', '.join(names)}) are not one of faircam's tasks "
                                 f"({'; '.join(f'{t}: ' + ', '.join(s.classes) for t, s in TASKS.items())}).")
        if task not in TASKS:
            raise ModelError(f"{source}: unknown task {task!r} (use {', '.join(TASKS)}).")
        spec = TASKS[task]
        classes = [spec.canonical(n) for n in names]
        if len(classes) == 1 and not spec.binary:
            raise ModelError(f"{source}: a one-class (sigmoid) head needs a two-class task; {task} has "
                             f"{len(spec.classes)} classes.")
        if len(set(names)) != len(names) or len({c for c in classes if c}) != len([c for c in classes if c]):
            raise ModelError(f"{source}: two of its {task} classes ({', '.join(names)}) map onto one of faircam's.")
        if any(h.task == task for h in heads):
            raise ModelError(f"{source}: two heads for {task}.")
        exact = None not in classes and (len(classes) == 1 or set(classes) == set(spec.classes))
        if exact and task not in mapping:
            heads.append(Head(task, tuple(names), tuple(classes), start))
        elif spec.binary:
            if exact:
                raise ModelError(f"{source}: its mapping names {task}, whose two classes need none (they are mapped "
                                 "by name).")
            unknown = [n for n, c in zip(names, classes) if c is None]
            raise ModelError(f"{source}: {', '.join(map(repr, unknown))} is not a {task} class faircam knows "
                             f"({', '.join(spec.classes)}, or a synonym).")
        else:
            onto = _coarse_onto(task, names, mapping.get(task), source, where)
            heads.append(Head(task, tuple(names), tuple(names), start, onto))
        start += len(names)
    extra = [t for t in mapping if t not in {h.task for h in heads}]
    if extra:
        raise ModelError(f"{source}: its mapping names {', '.join(map(repr, extra))}, which none of its heads "
                         "predicts.")
    return heads


@dataclass(frozen=True)
class ModelSpec:
    """A `faircam-model.json`, checked: the model's format, architecture, weights file (inside the JSON's folder),
    heads, input size, normalisation (0-1 scale), view, and the layer its maps explain (None: faircam's choice)."""

    path: Path
    format: str
    arch: str
    weights: Path
    heads: tuple[Head, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    view: str
    cam_layer: str | None = None


def _numbers(value: Any, name: str, source: str, positive: bool = False) -> tuple[float, float, float]:
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                       and (v > 0 if positive else 0 <= v <= 1) for v in value)):
        raise ModelError(f"{source}: {name} must be three numbers on the 0-1 scale"
                         f"{' above 0' if positive else ''} (e.g. [0.485, 0.456, 0.406]).")
    return tuple(float(v) for v in value)


def read_json(path: Path, missing: str) -> object:
    """A model's JSON file (its spec, a Hugging Face config): `ModelError` saying `missing` when there is no such
    file, and that it is not readable JSON when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(missing) from None
    except (OSError, ValueError):
        raise ModelError(f"{path} is not readable JSON.") from None


def read_spec(path: Path) -> ModelSpec:
    """The `faircam-model.json` at `path` (or in the folder `path`), checked; `ModelError` names what is wrong."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / MODEL_JSON
    source = str(path)
    raw = read_json(path, f"{source} does not exist.")
    if not isinstance(raw, dict):
        raise ModelError(f"{source} is not a JSON object (see README, \"Bring your own model\").")
    fmt = raw.get("format")
    if fmt not in SPEC_FORMATS:
        raise ModelError(f"{source}: format must be one of {', '.join(SPEC_FORMATS)} (got {fmt!r}).")
    arch = raw.get("arch", "")
    if fmt != "onnx" and (not isinstance(arch, str) or not arch):
        raise ModelError(f"{source}: arch must name the {fmt} architecture (e.g. \"resnet50\").")
    weights = raw.get("weights")
    if not isinstance(weights, str) or not weights or Path(weights).name != weights or weights.startswith("."):
        raise ModelError(f"{source}: weights must be a file name beside the JSON (e.g. \"model.safetensors\").")
    if not weights.lower().endswith(WEIGHT_SUFFIXES[fmt]):
        raise ModelError(f"{source}: {fmt} weights must be a {' or '.join(WEIGHT_SUFFIXES[fmt])} file.")
    outputs = raw.get("outputs")
    if (not isinstance(outputs, list) or not outputs
            or not all(isinstance(o, dict) and isinstance(o.get("task"), str) and isinstance(o.get("classes"), list)
                       and o["classes"] and all(isinstance(c, str) for c in o["classes"]) for o in outputs)):
        raise ModelError(f"{source}: outputs must list the heads, e.g. "
                         "[{\"task\": \"gender\", \"classes\": [\"female\", \"male\"]}].")
    size = raw.get("input_size", 224)
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 1024:
        raise ModelError(f"{source}: input_size must be a whole number of pixels from 16 to 1024.")
    view = raw.get("view", "whole")
    if view not in VIEWS:
        raise ModelError(f"{source}: view must be \"whole\" or \"crop\" (got {view!r}).")
    mapping = raw.get("mapping", {})
    if not isinstance(mapping, dict):
        raise ModelError(f"{source}: mapping must map a task onto its classes' mapping, e.g. "
                         "{\"race\": {\"Middle Eastern\": \"caucasian\"}}.")
    cam_layer = raw.get("cam_layer")
    if cam_layer is not None and (not isinstance(cam_layer, str) or not cam_layer.strip()):
        raise ModelError(f"{source}: cam_layer must name one of the network's layers (e.g. \"layer3\").")
    heads = map_outputs([(o["task"], o["classes"]) for o in outputs], source, mapping)
    return ModelSpec(path=path, format=fmt, arch=arch if isinstance(arch, str) else "", weights=path.parent / weights,
                     heads=tuple(heads), input_size=size,
                     mean=_numbers(raw.get("mean", [0.485, 0.456, 0.406]), "mean", source),
                     std=_numbers(raw.get("std", [0.229, 0.224, 0.225]), "std", source, positive=True), view=view,
                     cam_layer=cam_layer.strip() if cam_layer else None)


def layer_label(layer: dict[str, Any]) -> str:
    """A CAM layer as `LoadedModel.info["cam_layers"]` lists it (`name`, `grid`, `default`), named as the page, the
    facts and the errors name it: `layer3 (14×14)`."""
    return f"{layer['name']} ({layer['grid'][0]}×{layer['grid'][1]})"


def layer_choices(layers: list[dict[str, Any]], shown: int = 5) -> str:
    """A few of a model's CAM layers, as an error names them: faircam's choice and the outermost others (`layer3`
    before `layer3.1.conv2`), the latest first, and how many there are."""
    order = {layer["name"]: i for i, layer in enumerate(layers)}
    few = sorted(layers, key=lambda la: (not la["default"], la["name"].count("."), -order[la["name"]]))[:shown]
    named = [layer_label(la) + (" (faircam's choice)" if la["default"] else "")
             for la in sorted(few, key=lambda la: -order[la["name"]])]
    return ", ".join(named) + (f" … ({len(layers)} in all)" if len(layers) > shown else "")


def check_size(paths: list[Path], source: str) -> None:
    """`ModelError` when the weights are missing, not plain files, or above `config.max_model_mb()` together."""
    for path in paths:
        if path.is_symlink() or not path.is_file():
            raise ModelError(f"{source}: its weights {path.name} are missing or not a plain file.")
    total = sum(p.stat().st_size for p in paths)
    if total > max_model_mb() << 20:
        raise ModelError(f"{source}: its weights are {total / 2**20:.0f} MB, above the limit of {max_model_mb()} MB "
                         "(FAIRCAM_MAX_MODEL_MB).")


def files_sha256(paths: list[Path]) -> str:
    """One checksum of several files (a folder's model): sha256 over each file's name and bytes, in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def recognise(path: Path) -> str:
    """The kind of the model at `path`: a folder or file with a faircam-model.json says its format; a folder with
    config.json is a Hugging Face folder; any other file is a faircam checkpoint (whose loader says what is wrong)."""
    path = Path(path).expanduser()
    if (path / MODEL_JSON).is_file() or path.name == MODEL_JSON or (path.suffix.lower() == ".json" and path.is_file()):
        return read_spec(path).format
    if path.is_dir():
        if (path / "config.json").is_file():
            return "huggingface"
        raise ModelError(f"{path} is a folder with neither {MODEL_JSON} nor a Hugging Face config.json.")
    return "checkpoint"


# --- loaders -------------------------------------------------------------------------------------------------


def _load_checkpoint(entry: ModelEntry) -> LoadedModel:
    from faircam.models.model import load_checkpoint

    return load_checkpoint(entry.weights)


# dlib and face-api.js subtract these channel means (dlib's `input_rgb_image` values).
_DLIB_MEANS = (122.782, 117.001, 104.298)


def _load_port(entry: ModelEntry) -> LoadedModel:
    """dlib's or face-api.js's port, from the weights shipped in assets/thirdparty."""
    if not entry.weights.is_file():
        raise ModelError(f"The weights of {entry.name!r} are missing ({entry.weights}): restore them from the "
                         "repository.")
    from faircam.models import thirdparty
    from faircam.models.checkpoint import file_sha256
    from faircam.models.model import LoadedModel
    from faircam.tasks import task_classes

    if entry.kind == "dlib":
        net, arch, std, alignment = thirdparty.load_dlib(entry.weights), "dlib CNN", 256 / 255, "dlib-chip"
    else:
        manifest = entry.weights.with_name("age_gender_model-weights_manifest.json")
        net, arch, std, alignment = thirdparty.load_faceapi(manifest, entry.weights), "TinyXception", 1.0, "face-box"
    return LoadedModel(net=net, arch=arch, input_size=entry.input_size, mean=tuple(m / 255 for m in _DLIB_MEANS),
                       std=(std,) * 3, tasks=task_classes([DEFAULT_TASK]), path=entry.weights,
                       sha256=file_sha256(entry.weights), info={"name": entry.name, "kind": entry.kind,
                                                                **entry.describe()},
                       alignment=alignment)


def _no_model(entry: ModelEntry) -> LoadedModel:
    raise ModelError(f"{entry.name!r} is a table of answers: no model ran, so there is nothing to explain or to run "
                     "on other images.")


def _load_foreign(entry: ModelEntry) -> LoadedModel:
    from faircam.models import foreign

    return foreign.load(entry)


@dataclass(frozen=True)
class Kind:
    """One kind of model: what it is (`title`, `supports` for the README's table), how it loads, and whether its
    user may choose the layer its maps explain (`ModelEntry.cam_layer`)."""

    name: str
    title: str
    supports: str
    load: Callable[[ModelEntry], LoadedModel]
    chooses_layer: bool = False


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("checkpoint", "a faircam checkpoint (`faircam train`)", "every task it was trained for; the four CAMs",
         _load_checkpoint),
    Kind("dlib", "dlib's gender classifier (bundled port)", "gender; the four CAMs", _load_port),
    Kind("face-api", "face-api.js's age/gender net (bundled port)", "gender; the four CAMs", _load_port),
    Kind("huggingface", "a Hugging Face image-classification folder",
         "the task its id2label names; the four CAMs (ViT-style token models: on the last block's input)",
         _load_foreign, chooses_layer=True),
    Kind("torchvision", "a torchvision architecture and its state dict (faircam-model.json)",
         "the heads its JSON lists; the four CAMs", _load_foreign, chooses_layer=True),
    Kind("timm", "a timm architecture and its state dict (faircam-model.json)",
         "the heads its JSON lists; the four CAMs", _load_foreign, chooses_layer=True),
    Kind("onnx", "an ONNX graph (faircam-model.json), converted to torch with onnx2torch",
         "the heads its JSON lists; the four CAMs on the converted graph, whose answers are checked against "
         "onnxruntime's; a graph onnx2torch cannot convert runs in onnxruntime as a black box, with occlusion maps",
         _load_foreign, chooses_layer=True),
    Kind("predictions", "a table of answers (`faircam import-predictions`, or uploaded on \"Audit a model\")",
         "the tasks it answers; no maps", _no_model),
)}
