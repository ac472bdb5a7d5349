"""The server's store of models brought from the "Audit a model" page (or `faircam install-model`): install, list,
remove.

Each model lives in its own folder, `config.brought_folder(name)` under `config.model_store()`: the model's files in
`model/` (a Hugging Face folder, or a `faircam-model.json` beside its weights), or the table of answers, its
evaluation cache `eval_val.parquet` (`config.cache_path_for`) and `installed.json`, written last, which says what
was recognised (kind, tasks, the mapping of its classes onto faircam's, input size, view, the CAM layers it has and
the one its maps explain, which its user may change: `choose_cam_layer`). The registry lists the folders that have
one (`faircam.models.registry.entries`), so every page's model selector and Compare offer them.

An upload is installed safely on a shared server: it is unpacked into a hidden folder beside the store's models,
checked and loaded as every page will load it (`faircam.models.kinds.KINDS`: no unpickling, no remote code), then
moved into place and listed; anything wrong is a `ModelError` in one line and the folder is removed, so a model is
installed whole or not at all. An archive may not hold paths outside itself, links, more than
`config.MAX_ARCHIVE_FILES` files or more than `config.max_model_mb()` unpacked; an upload above that size is
refused before it is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from faircam.config import BROUGHT_CACHE as CACHE
from faircam.config import MAX_ARCHIVE_FILES, brought_folder, max_model_mb, model_store, settings
from faircam.errors import DataError, ModelError, OutputError
from faircam.evaluation.imported import KIND as ANSWERS
from faircam.files import output_lock, write_atomic
from faircam.models.kinds import MODEL_JSON, SPEC_FORMATS, VIEWS, WEIGHT_SUFFIXES, layer_choices, read_spec, recognise

if TYPE_CHECKING:
    import pandas as pd

    from faircam.vision.explain import Pipeline

MANIFEST = "installed.json"
MODEL_DIR = "model"
# A model's name becomes its folder's and is shown on every page: letters, digits, spaces and a few marks.
_NAME = re.compile(r"\w(?:[\w .()+-]{0,62}[\w)])?")
# The upload kinds the page and `faircam install-model` take, as they name them.
UPLOADS = ("zip", "weights", "predictions")


@dataclass(frozen=True)
class Installed:
    """A model in the store: its `kind` (a key of `KINDS`), `model` (what its kind loads: a Hugging Face folder, a
    faircam-model.json, or the table of answers) and what was recognised when it was installed (`facts`: arch,
    tasks, label_mapping, input_size, view, cam_layer, cam_layers, sha256)."""

    name: str
    kind: str
    folder: Path
    model: Path
    source: str
    installed: str
    facts: dict[str, Any]


def check_name(name: str) -> str:
    """`name` stripped, if it can name a model in the store and is not taken; `ModelError` otherwise."""
    from faircam.models.registry import entries

    name = str(name).strip()
    if not _NAME.fullmatch(name):
        raise ModelError(f"{name!r} cannot name a model: use up to 64 letters, digits, spaces, dots, dashes, "
                         "underscores, + or brackets, starting with a letter or digit.")
    if name in entries() or brought_folder(name).exists():
        raise ModelError(f"A model named {name!r} exists already: choose another name, or remove it first.")
    return name


def _read_manifest(folder: Path) -> Installed | None:
    try:
        raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        model = folder / raw["model"]
        if Path(raw["model"]).is_absolute() or ".." in Path(raw["model"]).parts or not isinstance(raw["facts"], dict):
            return None
        return Installed(name=folder.name, kind=str(raw["kind"]), folder=folder, model=model,
                         source=str(raw.get("source", "")), installed=str(raw.get("installed", "")),
                         facts=raw["facts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being installed, half removed, or not the store's: not listed


def installed() -> list[Installed]:
    """The models in the store, by name (hidden folders, those being installed or removed, are not listed)."""
    root = model_store() / "brought"
    if not root.is_dir():
        return []
    found = (_read_manifest(f) for f in sorted(root.iterdir())
             if f.is_dir() and not f.is_symlink() and _NAME.fullmatch(f.name))
    return [m for m in found if m is not None]


def get(name: str) -> Installed | None:
    return next((m for m in installed() if m.name == name), None)


def remove(name: str) -> None:
    """Remove a model brought to the store, with its cache, unfinished evaluation and job record; `ModelError` if
    there is no such model. The folder is first renamed to a hidden name, so it leaves the registry at once and
    whole."""
    model = get(name)
    if model is None:
        names = ", ".join(m.name for m in installed()) or "none"
        raise ModelError(f"No model named {name!r} was brought to this server (brought: {names}).")
    from faircam.evaluation import jobs

    # An evaluation running on it holds its cache (`output_lock`): refused with the lock's own line.
    with output_lock(model.folder / CACHE):
        gone = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".removed", dir=model.folder.parent))
        os.replace(model.folder, gone / name)
    shutil.rmtree(gone, ignore_errors=True)
    jobs.forget(name)


# --- the layer its maps explain -------------------------------------------------------------------------------


def cam_layers(model: Installed) -> list[dict[str, Any]]:
    """The layers an installed model's maps can explain, in the order they run, as its install listed them
    (`LoadedModel.info["cam_layers"]`: name, grid, default); a model installed before faircam listed them is loaded
    once to list them, into its manifest. Empty for a table of answers or a black box, which have no layer."""
    if "cam_layers" in model.facts or not model.facts.get("cam_layer"):
        return model.facts.get("cam_layers") or []
    from faircam.models.registry import load_model

    layers = load_model(model.name).info["cam_layers"]
    try:
        with output_lock(model.folder / CACHE):  # not over a layer chosen meanwhile (`choose_cam_layer`)
            now = get(model.name)
            if now is not None and now.installed == model.installed and "cam_layers" not in now.facts:
                _write_manifest(replace(now, facts={**now.facts, "cam_layers": layers}))
    except OutputError:
        pass  # being evaluated: listed again next time
    return layers


def evaluated(model: Installed) -> bool:
    """Whether the model has an evaluation, finished or under way (its cache, or an unfinished run's work)."""
    from faircam.evaluation.evaluate import partial_path

    cache = model.folder / CACHE
    return cache.exists() or partial_path(cache).exists()


def choose_cam_layer(name: str, layer: str) -> Installed:
    """The installed model `name` with its maps on `layer`, one of its `cam_layers`: its manifest says so, so every
    page, its background evaluation and `faircam evaluate --model` use it; its evaluation (cache, unfinished work,
    job record), whose maps explain another layer, is removed, so no page shows maps of one layer beside numbers of
    another; the layer it has already changes nothing. `ModelError` for a layer it does not have, a model without
    layers, or one being evaluated."""
    from faircam.evaluation import jobs
    from faircam.evaluation.evaluate import partial_path

    model = get(name)
    if model is None:
        raise ModelError(f"No model named {name!r} was brought to this server.")
    layers = cam_layers(model)
    if not layers:
        why = "a table of answers: no model ran" if model.kind == ANSWERS else "a black box, with occlusion maps"
        raise ModelError(f"{name!r} has no layer to choose: it is {why}.")
    if layer not in [known["name"] for known in layers]:
        raise ModelError(f"{name!r} has no CAM layer {layer!r} (its CAM layers: {layer_choices(layers)}).")
    if layer == model.facts["cam_layer"]:
        return model
    state = jobs.job(name)
    if state is not None and state.state in ("queued", "running"):
        raise ModelError(f"{name!r} is being evaluated: cancel its evaluation before choosing another layer.")
    cache = model.folder / CACHE
    # An evaluation starting meanwhile holds the cache's lock: refused with the lock's own line.
    with output_lock(cache):
        shutil.rmtree(partial_path(cache), ignore_errors=True)
        cache.unlink(missing_ok=True)
        jobs.forget(name)
        return _write_manifest(replace(model, facts={**model.facts, "cam_layers": layers, "cam_layer": layer}))


# --- uploads --------------------------------------------------------------------------------------------------


def _size_ok(data: bytes | Path, source: str) -> None:
    size = len(data) if isinstance(data, bytes) else Path(data).stat().st_size
    if size > max_model_mb() << 20:
        raise ModelError(f"{source} is {size / 2**20:.0f} MB, above the limit of {max_model_mb()} MB per model "
                         "(FAIRCAM_MAX_MODEL_MB).")


def _put(data: bytes | Path, target: Path, source: str) -> None:
    _size_ok(data, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        target.write_bytes(data)
    else:
        shutil.copyfile(data, target)


def _unpack(archive: Path, into: Path, source: str) -> None:
    """The zip at `archive` unpacked into `into`, refused (`ModelError`) when it holds a path outside itself, a
    link, more than `MAX_ARCHIVE_FILES` files, or more than `max_model_mb()` unpacked (counted as written, not as
    its entries claim)."""
    limit = max_model_mb() << 20
    try:
        with zipfile.ZipFile(archive) as zipped:
            # macOS's zip adds its own metadata folder; it is no part of the model.
            members = [m for m in zipped.infolist() if not m.filename.startswith("__MACOSX/")]
            files = [m for m in members if not m.is_dir()]
            if len(files) > MAX_ARCHIVE_FILES:
                raise ModelError(f"{source} holds {len(files)} files, more than the {MAX_ARCHIVE_FILES} a model "
                                 "may have.")
            for member in members:
                path = PurePosixPath(member.filename.replace("\\", "/"))
                if path.is_absolute() or ".." in path.parts or ":" in member.filename or not path.parts:
                    raise ModelError(f"{source} names a path outside itself ({member.filename!r}); refused.")
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise ModelError(f"{source} holds a link ({member.filename!r}); a model's files must be plain "
                                     "files.")
            if sum(m.file_size for m in files) > limit:
                raise ModelError(f"{source} unpacks to more than the limit of {max_model_mb()} MB per model "
                                 "(FAIRCAM_MAX_MODEL_MB).")
            written = 0
            for member in files:
                target = into.joinpath(*PurePosixPath(member.filename.replace("\\", "/")).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as src, open(target, "xb") as dst:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limit:
                            raise ModelError(f"{source} unpacks to more than the limit of {max_model_mb()} MB per "
                                             "model (FAIRCAM_MAX_MODEL_MB).")
                        dst.write(chunk)
    except ModelError:
        raise
    except zipfile.BadZipFile:
        raise ModelError(f"{source} is not a readable zip archive.") from None
    except FileExistsError:
        raise ModelError(f"{source} names a file twice.") from None
    except (RuntimeError, NotImplementedError, zlib.error, EOFError, OSError) as exc:
        # Encrypted entries, unknown compression, damaged data, a file where a folder is named
        raise ModelError(f"{source} cannot be unpacked ({type(exc).__name__}).") from None


def _model_root(folder: Path) -> Path:
    """The folder of the model's files: `folder`, or the one folder it holds (a zipped folder keeps its name)."""
    while True:
        inside = list(folder.iterdir())
        if len(inside) == 1 and inside[0].is_dir():
            folder = inside[0]
        else:
            return folder


def weights_spec(fmt: str, arch: str, classes: list[str], task: str | None = None,
                 input_size: int = 224, mean: list[float] | None = None, std: list[float] | None = None,
                 view: str = "whole") -> dict[str, Any]:
    """The `faircam-model.json` the page writes for a state dict and an architecture picked from a list, or an ONNX
    file: one head whose task is `task` (None: the task all its classes belong to); `install_weights` names the
    weights."""
    from faircam.models.kinds import map_outputs

    if fmt not in SPEC_FORMATS:
        raise ModelError(f"format must be one of {', '.join(SPEC_FORMATS)} (got {fmt!r}).")
    classes = [c.strip() for c in classes if c.strip()]
    if not classes:
        raise ModelError("Name the model's classes in the order of its outputs (e.g. female, male).")
    head = map_outputs([(task, classes)], "The model")[0]
    if view not in VIEWS:
        raise ModelError(f"view must be \"whole\" or \"crop\" (got {view!r}).")
    return {"format": fmt, "arch": arch, "outputs": [{"task": head.task, "classes": classes}],
            "input_size": input_size, "mean": mean or [0.485, 0.456, 0.406], "std": std or [0.229, 0.224, 0.225],
            "view": view}


def read_description(data: bytes, source: str) -> dict[str, Any]:
    """An uploaded faircam-model.json as a dict (checked in full when the model is installed)."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelError(f"{source} is not readable JSON.") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{source} is not a JSON object (see README, \"Bring your own model\").")
    return raw


class _Staging:
    """A new model's folder, filled under a hidden name beside the store's models and moved into place by
    `commit`; removed on any error."""

    def __init__(self, name: str) -> None:
        self.name = check_name(name)
        self.final = brought_folder(self.name)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.name}.", suffix=".tmp", dir=self.final.parent))

    def commit(self) -> Path:
        """The folder moved into place (once): still unlisted until `_finish` writes its manifest."""
        if self.folder != self.final:
            try:
                os.rename(self.folder, self.final)  # fails when another upload took the name meanwhile
            except OSError:
                raise ModelError(f"A model named {self.name!r} exists already: choose another name.") from None
            self.folder = self.final
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @contextmanager
    def undone_on_error(self, source: str, plain: tuple[type[Exception], ...] = (ModelError,)) -> Iterator[None]:
        """The block's work, the folder removed when it fails; an error of a `plain` kind names the upload, not the
        server's folder (`_plain`)."""
        try:
            yield
        except plain as exc:
            self.discard()
            raise type(exc)(_plain(str(exc), self.folder, source)) from None
        except BaseException:
            self.discard()
            raise


def _plain(message: str, folder: Path, source: str) -> str:
    """An error about a file of the staged model, naming the upload instead of the server's folder."""
    return message.replace(str(folder / MODEL_DIR) + "/", f"{source}: ").replace(str(folder / MODEL_DIR), source) \
        .replace(str(folder) + "/", "").replace(str(folder), source)


def _write_manifest(model: Installed) -> Installed:
    write_atomic(model.folder / MANIFEST, json.dumps({"kind": model.kind, "model": str(model.model.relative_to(
        model.folder)), "source": model.source, "installed": model.installed, "facts": model.facts}, indent=2))
    return model


def _finish(staging: _Staging, kind: str, relative: Path, source: str, facts: dict[str, Any]) -> Installed:
    """The staged model moved into place and listed: its manifest, written last."""
    folder = staging.commit()
    installed_at = datetime.now(UTC).isoformat(timespec="seconds")
    return _write_manifest(Installed(name=staging.name, kind=kind, folder=folder, model=folder / relative,
                                     source=source, installed=installed_at, facts=facts))


def _check_model(staging: _Staging, root: Path, source: str, cam_layer: str | None) -> Installed:
    """The staged model's files at `root` recognised, loaded as the pages will load them (its maps on `cam_layer`,
    None: its description's or faircam's choice), and moved into place."""
    from faircam.models.kinds import KINDS
    from faircam.models.registry import ModelEntry

    with staging.undone_on_error(source):
        kind = recognise(root)  # a folder: a Hugging Face one or a faircam-model.json's, else a ModelError
        target = root if kind == "huggingface" else root / MODEL_JSON
        loaded = KINDS[kind].load(ModelEntry(name=staging.name, title=staging.name, origin="", licence="", input="",
                                             classes="", weights=target, kind=kind, cam_layer=cam_layer))
    facts = {"arch": loaded.arch, "tasks": {t: list(c) for t, c in loaded.tasks.items()},
             "label_mapping": loaded.info.get("label_mapping", {}), "input_size": loaded.input_size,
             "mean": list(loaded.mean), "std": list(loaded.std), "view": loaded.info.get("view", "whole"),
             "cam_layer": loaded.info.get("cam_layer", ""), "cam_layers": loaded.info.get("cam_layers", []),
             "sha256": loaded.sha256}
    with staging.undone_on_error(source, plain=()):
        return _finish(staging, kind, target.relative_to(staging.folder), source, facts)


def install_archive(name: str, data: bytes | Path, source: str, cam_layer: str | None = None) -> Installed:
    """A zip of a Hugging Face folder, or of a faircam-model.json with its weights, installed as `name`, its maps on
    `cam_layer` (None: its description's, else faircam's choice)."""
    staging = _Staging(name)
    with staging.undone_on_error(source, plain=()):
        archive = staging.folder / "upload.zip"
        _put(data, archive, source)
        _unpack(archive, staging.folder / MODEL_DIR, source)
        archive.unlink()
        unpacked = staging.folder / MODEL_DIR
        if not unpacked.is_dir() or not any(unpacked.iterdir()):
            raise ModelError(f"{source} is empty.")
        root = _model_root(staging.folder / MODEL_DIR)
    return _check_model(staging, root, source, cam_layer)


def install_weights(name: str, data: bytes | Path, source: str, spec: dict[str, Any],
                    cam_layer: str | None = None) -> Installed:
    """A state dict (.safetensors, .pt read without unpickling) or an ONNX file, described by `spec` (a
    faircam-model.json's fields: `weights_spec`, or the user's own JSON), installed as `name`, its maps on
    `cam_layer` (None: the description's, else faircam's choice)."""
    staging = _Staging(name)
    with staging.undone_on_error(source):
        fmt = spec.get("format")
        suffix = Path(source).suffix.lower()
        allowed = WEIGHT_SUFFIXES.get(fmt) if isinstance(fmt, str) else None
        if allowed and suffix not in allowed:
            raise ModelError(f"{source}: {fmt} weights must be a {' or '.join(allowed)} file.")
        weights = f"model{suffix}"
        _put(data, staging.folder / MODEL_DIR / weights, source)
        write_atomic(staging.folder / MODEL_DIR / MODEL_JSON, json.dumps({**spec, "weights": weights}, indent=2))
        read_spec(staging.folder / MODEL_DIR)  # the description's own errors, before any loading
    return _check_model(staging, staging.folder / MODEL_DIR, source, cam_layer)


def install_answers(name: str, data: bytes | Path, source: str, data_dir: Path | None = None, split: str = "val",
                    labels: Path | None = None, mapping: dict[str, object] | None = None) -> tuple[Installed, dict]:
    """A table of answers (CSV or parquet: `faircam import-predictions`' format) installed as `name`, its cache
    imported on the data folder (default: the server's), coarser answers mapped with `mapping` over faircam's
    proposal; returns the model and the import's counts."""
    from faircam.evaluation.imported import import_predictions

    data_dir = data_dir or settings().data_dir
    if data_dir is None:
        raise DataError("No data folder to check the answers against: set FAIRCAM_DATA.")
    suffix = Path(source).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataError(f"{source}: a table of answers is a .csv or .parquet file.")
    staging = _Staging(name)
    with staging.undone_on_error(source, plain=(DataError, ModelError)):
        table = staging.folder / f"{staging.name}{suffix}"
        _put(data, table, source)
        folder = staging.commit()
        cache, counts = import_predictions(folder / table.name, data_dir, split, labels, folder / CACHE, mapping)
        facts = {"arch": "a table of answers", "tasks": {t: list(c) for t, c in cache.tasks.items()},
                 "label_mapping": cache.model_meta.get("label_mapping", {}), "input_size": None, "view": None,
                 "cam_layer": "",
                 "sha256": cache.model_meta["sha256"], "counts": counts}
        return _finish(staging, ANSWERS, Path(table.name), source, facts), counts


def preview(pipeline: Pipeline, data_dir: Path, per_cell: int = 1, seed: int = 0) -> pd.DataFrame:
    """A few FairFace validation faces of each race x gender group (`per_cell` each) with a loaded model's gender
    answers, before any run, so a swapped mapping shows at once: per face its `file`, `race`, `gender`, the
    answer in faircam's class (`answer`) and in the model's own name for it (`said`), its probability, and
    whether it is right."""
    import pandas as pd

    from faircam.data.fairface import balanced_sample, read_data_image
    from faircam.data.labelled import load_data
    from faircam.tasks import DEFAULT_TASK

    rows = balanced_sample(load_data(data_dir, "val").rows, per_cell, seed).sort_values(["gender", "race"])
    model = pipeline.model.for_task(DEFAULT_TASK)
    views = [pipeline.view(read_data_image(data_dir, f)).image for f in rows["file"]]
    probs = model.predict_proba(views)
    answers = [model.classes[i] for i in probs.argmax(axis=1)]
    # The model's own names, from the head its answers were mapped from (`faircam.models.foreign.Adapted`).
    head = next((h for h in getattr(model.net, "heads", []) if h.task == DEFAULT_TASK), None)

    def said(answer: str) -> str:
        if head is None:
            return answer
        if head.sigmoid:
            return head.names[0] if answer == head.classes[0] else f"not {head.names[0]}"
        return head.names[head.classes.index(answer)]

    return pd.DataFrame({"file": rows["file"].to_numpy(), "race": rows["race"].to_numpy(),
                         "gender": rows["gender"].to_numpy(), "answer": answers,
                         "said": [said(a) for a in answers], "probability": probs.max(axis=1),
                         "right": [a == g for a, g in zip(answers, rows["gender"])]})


def architectures(fmt: str) -> list[str]:
    """The classification architectures a state dict can be installed for, as its library lists them (nothing is
    downloaded: the weights come from the upload)."""
    if fmt == "timm":
        import timm

        return timm.list_models()
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)
