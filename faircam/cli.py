"""The `faircam` command: train, evaluate, import a table of answers, explain one image, write the audit report, list
models, bring one to the server's store and remove it, fetch FairFace.

Every known failure (bad data folder, unreadable image, damaged checkpoint or cache, an output
path that cannot be written, no internet) ends with one line on stderr and exit status 2, never a
traceback. Arguments and output paths are checked before torch is imported or any work starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from faircam.config import FAITHFULNESS_PER_CELL, allocator_setting, cache_path_for, evaluate_mmap_mb, settings
from faircam.errors import KNOWN_ERRORS, ClusterError, DataError, OutputError
from faircam.files import atomic_file, output_lock, write_atomic
from faircam.models import registry
from faircam.models.checkpoint import ARCHITECTURES
from faircam.tasks import DEFAULT_TASK, TASKS

if TYPE_CHECKING:
    import pandas as pd

    from faircam.evaluation.evaluate import EvalOptions
    from faircam.models.model import LoadedModel

MODEL_HELP = ("a registered model (see `faircam models`; default: faircam), a checkpoint, a Hugging Face folder, or "
              "a faircam-model.json (or a folder holding one)")
CAM_LAYER_HELP = ("the layer of a brought model the maps explain, by its module name (e.g. layer3; default: its "
                  "description's cam_layer, else faircam's choice; install-model lists them in cam_layers)")


MAPPING_HELP = ("where answers are coarser than FairFace's classes (five races): FairFace's classes mapped onto them, "
                "over faircam's proposal, as JSON or a .json file, e.g. "
                "'{\"race\": {\"Middle Eastern\": \"caucasian\"}}'")


def _data_dir(value: str | None) -> Path:
    data = Path(value) if value else settings().data_dir
    if data is None:
        raise DataError("No data folder: pass --data DIR or set FAIRCAM_DATA.")
    return data


def _output(option: str, value: str, suffixes: tuple[str, ...]) -> Path:
    """`value` as a file faircam may write, checked before any work and without side effects: the
    right kind of file, not a folder, and under a folder that accepts a new file."""
    path = Path(value).expanduser()
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{option} {value}: name a {' or '.join(suffixes)} file.")
    if path.is_dir():
        raise OutputError(f"{option} {value} is a folder: name a {' or '.join(suffixes)} file in it.")
    # The folders to be made are made by the writer; the nearest existing one must accept a new file.
    existing = next(folder for folder in path.absolute().parents if folder.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a folder")
        # A real file created and removed: permission bits alone say nothing for root or read-only mounts.
        with tempfile.NamedTemporaryFile(dir=existing, prefix=f".{path.name}.", suffix=".probe"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise OutputError(f"{option} {value}: cannot write there ({exc.strerror or exc}).") from None
    return path


def _cache_output(value: str) -> Path:
    """`--out` of `faircam evaluate`: a .parquet file (`_output`'s checks), or a name without a suffix for a
    folder of parts, which may exist only as an empty folder or an earlier cache folder."""
    from faircam.evaluation.cache import FOLDER_META

    path = Path(value).expanduser()
    if path.suffix:
        return _output("--out", value, (".parquet",))
    if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / FOLDER_META).is_file())):
        raise OutputError(f"--out {value} exists and is not a faircam cache folder: name a .parquet file or a new "
                          "folder.")
    probe = path.with_name(path.name + ".parquet")
    if not probe.exists():
        _output("--out", str(probe), (".parquet",))  # the same place checks, for a file beside the folder's name
    return path


def _sizes(value: str) -> tuple[int, ...]:
    """--sizes as pixel sizes, checked before any work."""
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() and 32 <= int(p) <= 1024 for p in parts):
        raise DataError(f"--sizes {value}: give sizes in pixels from 32 to 1024, separated by commas (e.g. 128,160).")
    return tuple(int(p) for p in parts)


def cmd_train(args: argparse.Namespace) -> None:
    for option, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--views", args.views),
                          ("--limit", args.limit)):
        if value is not None and value < 1:
            raise DataError(f"{option} must be at least 1.")
    if args.arch not in ARCHITECTURES:
        raise DataError(f"--arch {args.arch}: use one of {', '.join(ARCHITECTURES)}.")
    # 32 px leaves one map cell after the trunks' 32x reduction; FairFace's own images are 448 px at most.
    if not 32 <= args.input_size <= 1024:
        raise DataError("--input-size must be between 32 and 1024 pixels.")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise DataError("--lr must be a positive number.")
    if args.frozen_stages < 0:
        raise DataError("--frozen-stages must be 0 or more.")
    if not 0 <= args.seed < 2**32:
        raise DataError("--seed must be between 0 and 4294967295.")  # numpy's range
    _output("--out", args.out, (".pt",))
    data = _data_dir(args.data)
    if args.init and not Path(args.init).expanduser().is_file():
        raise DataError(f"--init {args.init}: no such checkpoint file.")
    if not 0 <= args.align_jitter <= 1:
        raise DataError("--align-jitter must be between 0 and 1.")
    sizes = _sizes(args.sizes) if args.sizes else ()
    if sizes and args.frozen_stages:
        raise DataError("--sizes needs a full fine-tune (--frozen-stages 0): frozen features are computed once, "
                        "at one size.")
    if not 0 <= args.ema < 1:
        raise DataError("--ema must be at least 0 (off) and below 1 (e.g. 0.998).")
    if not (math.isfinite(args.group_dro) and 0 <= args.group_dro <= 1):
        raise DataError("--group-dro must be between 0 (off) and 1 (e.g. 0.01).")
    from faircam.models.model import parse_tasks
    from faircam.models.train import TrainConfig, train

    parse_tasks(args.tasks)  # unknown task names stop here, before any work

    config = TrainConfig(
        data=str(data), out=args.out, arch=args.arch, input_size=sizes[-1] if sizes else args.input_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, frozen_stages=args.frozen_stages,
        views=args.views, limit=args.limit, seed=args.seed, device=args.device, pretrained=not args.scratch,
        tasks=args.tasks, init=args.init, align_jitter=args.align_jitter, sizes=sizes, ema=args.ema,
        group_dro=args.group_dro,
    )
    # One run per checkpoint: two would share its work folder.
    with output_lock(Path(args.out).expanduser()):
        result = train(config)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise DataError("--limit must be at least 1.")
    if args.faithfulness_per_cell < 0:
        raise DataError("--faithfulness-per-cell must be 0 (off) or more.")
    if args.batch_size < 1:
        raise DataError("--batch-size must be at least 1.")
    if args.workers < 1 or args.gpus_per_worker < 0:
        raise DataError("--workers must be at least 1 and --gpus-per-worker 0 or more.")
    if args.engine == "local" and (args.address or args.gpus_per_worker):
        raise DataError("--address and --gpus-per-worker need --engine ray.")
    if args.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise ClusterError("--engine ray needs Ray: pip install -e '.[ray]'.")
    evaluate_mmap_mb()  # a bad FAIRCAM_MMAP_MB stops here, before any work
    out = _cache_output(args.out)
    data_dir = _data_dir(args.data)
    labels = Path(args.labels).expanduser() if args.labels else settings().labels_path
    from faircam.data.labelled import load_data

    data = load_data(data_dir, args.split, labels)
    for note in data.notes:
        print(f"faircam: warning: {note}", file=sys.stderr)
    labelled = data.rows.head(args.limit)
    # Held before torch is imported, so a second run on this output is refused before any work.
    with output_lock(out):
        _evaluate(args, out, data_dir, labels, labelled)


def _evaluate(args: argparse.Namespace, out: Path, data_dir: Path, labels: Path | None,
              labelled: pd.DataFrame) -> None:
    from faircam.evaluation.evaluate import EvalOptions, run_evaluation

    def options_for(model: LoadedModel) -> EvalOptions:
        # The maps explain gender unless asked otherwise, or the first task of a model without a gender head.
        return EvalOptions(cams=not args.no_cams, faithfulness_per_cell=args.faithfulness_per_cell, seed=args.seed,
                           cam_task=args.cam_task or model.default_task, tta=args.tta)

    if args.engine == "ray":
        from faircam.evaluation.distributed import ray_runner

        model = registry.load_model(args.model, args.cam_layer)
        options = options_for(model)
        # Each actor loads the model itself: a checkpoint by its absolute path.
        spec = str(Path(args.model).resolve()) if args.model and Path(args.model).is_file() else args.model
        runner = ray_runner(spec, model.sha256, model.tasks, options, args.batch_size, args.address, args.workers,
                            args.gpus_per_worker, args.cam_layer)
        cache = run_evaluation(data_dir, args.split, out, model, None, limit=args.limit,
                               batch_size=args.batch_size, options=options, runner=runner, labels=labels)
    else:
        from faircam.vision.explain import Pipeline

        pipeline = Pipeline.load(args.model, cam_layer=args.cam_layer)
        cache = run_evaluation(data_dir, args.split, out, pipeline.model, pipeline.detector,
                               pipeline.explainer, limit=args.limit, batch_size=args.batch_size,
                               options=options_for(pipeline.model),
                               labels=labels)
    rows = cache.rows
    _warn_left_out(cache.meta["data"], labelled, rows)
    # Named as the correctness columns are: "accuracy" for the default task, "race_accuracy" for race.
    accuracies = {TASKS[task].column("accuracy"): round(float(rows[TASKS[task].correct].mean()), 4)
                  for task in cache.tasks}
    print(json.dumps({"out": args.out, "images": len(rows), **accuracies,
                      "unreadable": cache.meta["data"]["unreadable"],
                      "dropped_rows": cache.meta["data"]["dropped_total"]}))


def cmd_import_predictions(args: argparse.Namespace) -> None:
    out = _output("--out", args.out, (".parquet",))
    data_dir = _data_dir(args.data)
    labels = Path(args.labels).expanduser() if args.labels else settings().labels_path
    mapping = _mapping(args.mapping)
    from faircam.evaluation.imported import import_predictions

    cache, counts = import_predictions(Path(args.file), data_dir, args.split, labels, out, mapping)
    if counts["not_in_data"]:
        n = counts["not_in_data"]
        print(f"faircam: warning: {n} file{'s' if n != 1 else ''} of {args.file} {'are' if n != 1 else 'is'} not "
              f"among the data's labelled images and {'are' if n != 1 else 'is'} not counted (listed in the cache): "
              f"{', '.join(counts['not_in_data_files'])}{' ...' if n > 5 else ''}", file=sys.stderr)
    accuracies = {TASKS[task].column("accuracy"): round(float(cache.rows[TASKS[task].correct].mean()), 4)
                  for task in cache.tasks}
    print(json.dumps({"out": args.out, "images": len(cache.rows), **accuracies,
                      "unanswered": counts["unanswered"], "not_in_data": counts["not_in_data"]}))


def _mapping(value: str | None) -> dict[str, object] | None:
    """--mapping: JSON text, or a .json file holding it (`faircam.evaluation.imported.parse_mapping`)."""
    if value is None:
        return None
    from faircam.evaluation.imported import parse_mapping

    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8") if path.suffix.lower() == ".json" else value
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"--mapping {value}: cannot be read ({getattr(exc, 'strerror', None) or exc}).") from None
    return parse_mapping(text, f"--mapping {value}")


def _warn_left_out(meta: dict, labelled: pd.DataFrame, evaluated: pd.DataFrame) -> None:
    """One stderr line each for label rows dropped and images that could not be read, naming the first few."""
    import pandas as pd

    from faircam.data.fairface import describe_dropped

    if meta["dropped_total"]:
        print(f"faircam: warning: {describe_dropped(pd.DataFrame(meta['dropped']), meta['dropped_total'])}",
              file=sys.stderr)
    unreadable = labelled.loc[~labelled["file"].isin(evaluated["file"]), "file"].tolist()
    if unreadable:
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        print(f"faircam: warning: {len(unreadable)} image{'s' if len(unreadable) != 1 else ''} could not be read "
              f"and {'are' if len(unreadable) != 1 else 'is'} not counted: {', '.join(unreadable[:5])}{more}.",
              file=sys.stderr)


def cmd_add_quality(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise DataError("--batch-size must be at least 1.")
    from faircam.evaluation.cache import read_cache

    caches = [Path(c).expanduser() for c in args.cache]
    for cache in caches:
        read_cache(cache)  # a missing or damaged cache stops here, before MTCNN loads
        if cache.is_file():
            _output("cache", str(cache), (".parquet",))
    data = Path(args.data).expanduser() if args.data else None
    if data is not None and not data.is_dir():
        raise DataError(f"--data {args.data}: no such folder.")
    from faircam.allocator import steady_allocator
    from faircam.evaluation.evaluate import add_quality

    steady_allocator()
    print(json.dumps(add_quality(caches, data, batch_size=args.batch_size)))


def cmd_explain(args: argparse.Namespace) -> None:
    out = _output("--out", args.out, (".png", ".jpg", ".jpeg", ".webp")) if args.out else None
    from faircam.data.images import read_image

    image = read_image(args.image)
    from faircam.charts.figures import explanation_figure
    from faircam.vision.explain import Pipeline

    pipeline = Pipeline.load(args.model)
    task = pipeline.model.for_task(args.task or pipeline.model.default_task)
    if args.target and args.target not in task.classes:
        raise DataError(f"--target {args.target}: not a class of {task.task} ({', '.join(task.classes)}).")
    explanation = pipeline.explain(image, crop=args.crop, blur=args.blur, face_index=args.face, task=task.task,
                                   target=args.target)
    if out:
        from PIL import Image

        with atomic_file(out) as file:
            explanation_figure(explanation).save(file, format=Image.registered_extensions()[out.suffix.lower()])
    print(json.dumps({"model": pipeline.model.name, **explanation.as_dict()}, indent=2))


def cmd_template(args: argparse.Namespace) -> None:
    if args.limit < 1:
        raise DataError("--limit must be at least 1.")
    out = _output("--out", args.out, (".json",))
    data_dir = _data_dir(args.data)
    from faircam.config import TEMPLATE_FRAME
    from faircam.data.fairface import load_split, read_data_image
    from faircam.vision.preprocess import FaceDetector, measure_template

    split = load_split(data_dir, "train")
    files = split.rows["file"].sample(min(args.limit, len(split.rows)), random_state=args.seed).tolist()
    landmarks, found = measure_template([read_data_image(split.root, f) for f in files], FaceDetector())
    stored = {"frame": TEMPLATE_FRAME, "landmarks": [[round(v, 3) for v in point] for point in landmarks.tolist()],
              "order": ["left eye", "right eye", "nose", "mouth left", "mouth right"],
              "images": len(files), "faces_found": found, "seed": args.seed,
              "source": f"MTCNN's landmarks of the largest face, mean over {found} images of FairFace's train split "
                        f"(faircam template --limit {args.limit} --seed {args.seed})"}
    write_atomic(out, json.dumps(stored, indent=2) + "\n")
    print(json.dumps({"out": args.out, "images": len(files), "faces_found": found}))


def cmd_fetch(args: argparse.Namespace) -> None:
    from faircam.data.fetch import fetch_fairface

    counts = fetch_fairface(Path(args.out), limit=args.limit)
    print(json.dumps({"out": args.out, **counts}))


def _cache_of(model: str | None) -> Path:
    """The evaluation cache of a registered model; a checkpoint path outside the registry gets FAIRCAM_CACHE's."""
    entry = registry.resolve(model)
    return cache_path_for(entry.name) if entry.name in registry.names() else settings().cache_path


def cmd_model_card(args: argparse.Namespace) -> None:
    out = _output("--out", args.out, (".md",))
    from faircam.audit.modelcard import model_card
    from faircam.audit.report import recorded_model
    from faircam.evaluation.cache import read_cache

    cache = read_cache(args.cache or _cache_of(args.model))
    # Without --model, the model the cache was computed with (never the bundled one in its place).
    text = model_card(registry.load_model(args.model) if args.model else recorded_model(cache), cache)
    write_atomic(out, text)
    print(json.dumps({"out": args.out}))


def cmd_report(args: argparse.Namespace) -> None:
    out = _output("--out", args.out, (".html", ".htm"))
    csv = _output("--csv", args.csv, (".csv",)) if args.csv else None
    from faircam.audit.report import write_report
    from faircam.evaluation.cache import read_cache

    cache = read_cache(args.cache or _cache_of(args.model))
    # Without --model, the card is of the model the cache was computed with (never the bundled one in its place).
    print(json.dumps(write_report(cache, out, csv, model_path=args.model)))

def _numbers(option: str, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise DataError(f"{option} {value}: give three numbers separated by commas (e.g. 0.5,0.5,0.5).") from None


def cmd_install_model(args: argparse.Namespace) -> None:
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise DataError(f"{args.file}: no such file.")
    from faircam.models import store

    suffix = path.suffix.lower()
    if args.mapping and suffix not in (".csv", ".parquet"):
        raise DataError("--mapping is for a table of answers: a model's mapping is the \"mapping\" key of its "
                        "faircam-model.json.")
    if suffix == ".zip":
        model = store.install_archive(args.name, path, path.name, args.cam_layer)
    elif suffix in (".csv", ".parquet"):
        if args.cam_layer:
            raise DataError(f"--cam-layer: {path.name} is a table of answers; no model ran, so it has no layer.")
        model, _ = store.install_answers(args.name, path, path.name, _data_dir(args.data), args.split,
                                         Path(args.labels).expanduser() if args.labels else settings().labels_path,
                                         _mapping(args.mapping))
    else:
        if args.json:
            described = Path(args.json).expanduser()
            if not described.is_file():
                raise DataError(f"--json {args.json}: no such file.")
            spec = store.read_description(described.read_bytes(), described.name)
        elif suffix == ".onnx" or args.arch:
            spec = store.weights_spec("onnx" if suffix == ".onnx" else args.format, args.arch or "",
                                      (args.classes or "").split(","), args.task, args.input_size,
                                      _numbers("--mean", args.mean), _numbers("--std", args.std), args.view)
        else:
            raise DataError(f"{path.name}: a state dict needs --arch (and --classes), or --json naming its "
                            "faircam-model.json.")
        model = store.install_weights(args.name, path, path.name, spec, args.cam_layer)
    print(json.dumps({"name": model.name, "kind": model.kind, "folder": str(model.folder), **model.facts},
                     ensure_ascii=False))


def cmd_models(args: argparse.Namespace) -> None:
    if args.remove:
        from faircam.models import store

        store.remove(args.remove)
        print(json.dumps({"removed": args.remove}, ensure_ascii=False))
        return
    rows = [entry.describe() | {"kind": entry.kind, "cache": str(cache_path_for(entry.name))}
            for entry in registry.entries().values()]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        print(f"{row['name']}: {row['title']}\n  origin:  {row['origin']}\n  licence: {row['licence']}\n"
              f"  input:   {row['input']}\n  classes: {row['classes']}\n  cache:   {row['cache']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faircam", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a classifier (gender, or gender, race and age) on FairFace")
    train.add_argument("--data", help="FairFace folder (default: FAIRCAM_DATA or ../shared/fairface)")
    train.add_argument("--out", required=True, help="checkpoint to write")
    train.add_argument("--arch", default="efficientnet-lite0",
                       help="efficientnet-lite0 (ImageNet weights offline), resnet18, resnet34 or resnet50")
    train.add_argument("--input-size", type=int, default=160)
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--frozen-stages", type=int, default=9,
                       help="trunk stages kept at their ImageNet weights (0: fine-tune everything)")
    train.add_argument("--views", type=int, default=1, help="augmented copies cached per image when frozen")
    train.add_argument("--limit", type=int, help="train on this many images (quick runs)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    train.add_argument("--scratch", action="store_true",
                       help="random initial weights (default: ImageNet; ResNets download theirs)")
    train.add_argument("--tasks", default=DEFAULT_TASK,
                       help=f"what the network predicts: {DEFAULT_TASK}, or {DEFAULT_TASK} with others, "
                            f"comma-separated ({','.join(TASKS)})")
    train.add_argument("--init", help="start from this checkpoint's weights (its trunk, and the heads of the tasks "
                                      "it has) instead of ImageNet's")
    train.add_argument("--align-jitter", type=float, default=0.5,
                       help="share of training images rotated and scaled as the aligned crop moves faces (default 0.5)")
    train.add_argument("--sizes", metavar="PX,PX,...",
                       help="progressive resizing with --frozen-stages 0: the epochs split into runs at these sizes, "
                            "smallest first (e.g. 128,160; the last is the checkpoint's input size)")
    train.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                       help="keep a moving average of the weights with this decay per step (e.g. 0.998) and save it")
    train.add_argument("--group-dro", type=float, default=0.0, metavar="STEP",
                       help="weigh each task's loss towards the race groups it does worst on (group DRO), the weights "
                            "growing by exp(STEP x a group's loss) each batch (e.g. 0.01; default 0: off)")
    train.set_defaults(run=cmd_train, heavy=True)

    evaluate = commands.add_parser("evaluate", help="evaluate a model over a split and write the cache")
    evaluate.add_argument("--data", help="FairFace folder, or any folder of faces with --labels (default: "
                                         "FAIRCAM_DATA or ../shared/fairface)")
    evaluate.add_argument("--split", default="val", choices=["train", "val"])
    evaluate.add_argument("--labels", metavar="FILE",
                          help="a CSV of the folder's faces: `file` (relative to --data), gender (and race, age, "
                               "any other task's label), and any other columns, which become groupings "
                               "(default: FAIRCAM_LABELS; without: FairFace's layout and --split)")
    evaluate.add_argument("--out", required=True,
                          help="parquet file to write, or a name without suffix for a folder of parquet parts")
    evaluate.add_argument("--limit", type=int, help="only the first N images")
    evaluate.add_argument("--model", metavar="NAME|PATH", help=MODEL_HELP)
    evaluate.add_argument("--cam-layer", metavar="NAME", help=CAM_LAYER_HELP)
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--faithfulness-per-cell", type=int, default=FAITHFULNESS_PER_CELL, metavar="N",
                          help="images per race x gender cell that get ROAD and deletion/insertion AUCs "
                               f"(slow; 0: off; default {FAITHFULNESS_PER_CELL})")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the faithfulness sample and ROAD's noise")
    evaluate.add_argument("--no-cams", action="store_true", help="predictions only: no maps, focus or faithfulness")
    evaluate.add_argument("--cam-task", choices=list(TASKS),
                          help="the decision the maps explain (the model must have that head; default: "
                               f"{DEFAULT_TASK}, or a model's first task when it has no {DEFAULT_TASK} head)")
    evaluate.add_argument("--tta", action="store_true",
                          help="flip test-time augmentation: each answer averaged with the mirror image's "
                               "(recorded in the cache; the maps explain the averaged answer)")
    evaluate.add_argument("--engine", choices=["local", "ray"], default="local",
                          help="where the batches run: this process, or Ray actors (pip install -e '.[ray]')")
    evaluate.add_argument("--address", metavar="ADDR",
                          help="a running Ray cluster (`ray start --head` prints it; default: a local Ray)")
    evaluate.add_argument("--workers", type=int, default=2, metavar="N", help="Ray actors, each with its own model")
    evaluate.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                          help="GPUs per Ray actor (the model and MTCNN then run on CUDA)")
    evaluate.set_defaults(run=cmd_evaluate, heavy=True)

    imported = commands.add_parser("import-predictions", help="a table of a model's answers (no model) as an "
                                                              "evaluation cache every table page and the report read")
    imported.add_argument("file", help="CSV or parquet: `file` (as the data's labels name it), pred_gender (and "
                                       "pred_race, pred_age: any spelling of a class), optionally prob_<task> (the "
                                       "probability of the predicted class)")
    imported.add_argument("--data", help="FairFace folder, or any folder of faces with --labels (default: "
                                         "FAIRCAM_DATA or ../shared/fairface)")
    imported.add_argument("--split", default="val", choices=["train", "val"])
    imported.add_argument("--labels", metavar="FILE", help="the folder's label CSV, as for `faircam evaluate`")
    imported.add_argument("--out", required=True, help="parquet cache to write")
    imported.add_argument("--mapping", metavar="JSON|FILE.json", help=MAPPING_HELP)
    imported.set_defaults(run=cmd_import_predictions)

    quality = commands.add_parser("add-quality", help="add the image-quality columns to existing caches from their "
                                                      "images alone (the model is not run)")
    quality.add_argument("cache", nargs="+", help="evaluation caches to update in place (files or folders of parts)")
    quality.add_argument("--data", help="the folder of their images (default: the one each cache was evaluated on)")
    quality.add_argument("--batch-size", type=int, default=32)
    quality.set_defaults(run=cmd_add_quality, heavy=True)

    explain = commands.add_parser("explain", help="every CAM method's map for one image, as a figure and JSON")
    explain.add_argument("image")
    explain.add_argument("--out", help="PNG figure to write")
    explain.add_argument("--crop", action="store_true", help="crop and align the face with MTCNN")
    explain.add_argument("--blur", action="store_true", help="blur the background around the face")
    explain.add_argument("--face", type=int, default=0, help="which face when there are several (0: largest)")
    explain.add_argument("--model", metavar="NAME|PATH", help=MODEL_HELP)
    explain.add_argument("--task", help=f"the decision the maps explain: {DEFAULT_TASK} (default; a model without a "
                                        f"{DEFAULT_TASK} head: its first task), or another task "
                                        "the model has a head for")
    explain.add_argument("--target", metavar="CLASS",
                         help="explain this class of the task (Female, Indian, 20-29, ...), not the predicted one")
    explain.set_defaults(run=cmd_explain, heavy=True)

    template = commands.add_parser("template", help="measure the face template of the crop on FairFace's train split")
    template.add_argument("--data", help="FairFace folder (default: FAIRCAM_DATA or ../shared/fairface)")
    template.add_argument("--out", required=True, help="JSON file to write (the crop reads assets/face_template.json)")
    template.add_argument("--limit", type=int, default=2000, help="training images sampled (default 2000)")
    template.add_argument("--seed", type=int, default=0, help="seed of the sample")
    template.set_defaults(run=cmd_template, heavy=True)

    card = commands.add_parser("model-card", help="write the model card from a checkpoint and its evaluation")
    card.add_argument("--out", required=True, help="Markdown file to write")
    card.add_argument("--model", metavar="NAME|PATH", help=MODEL_HELP)
    card.add_argument("--cache", help="evaluation cache (default: the model's cache, see `faircam models`)")
    card.set_defaults(run=cmd_model_card)

    report = commands.add_parser("report", help="write the self-contained HTML audit report (and a CSV of the rows)")
    report.add_argument("--out", required=True, help="HTML file to write")
    report.add_argument("--csv", help="also write the per-image rows to this CSV file")
    report.add_argument("--cache", help="evaluation cache (default: FAIRCAM_CACHE or the bundled cache)")
    report.add_argument("--model", metavar="NAME|PATH", help=MODEL_HELP + " whose evaluation and card are reported")
    report.set_defaults(run=cmd_report)

    models = commands.add_parser("models", help="list the models faircam can audit")
    models.add_argument("--json", action="store_true", help="print JSON instead of text")
    models.add_argument("--remove", metavar="NAME", help="remove a model brought with install-model or the page")

    install = commands.add_parser("install-model", help="bring a model to this server's store (as the \"Audit a "
                                                        "model\" page does): every page can then audit it")
    install.add_argument("file", help="a .zip of a Hugging Face folder (or of a faircam-model.json with its "
                                      "weights), a state dict (.safetensors, .pt), an .onnx file, or a table of "
                                      "answers (.csv, .parquet)")
    install.add_argument("--name", required=True, help="the name the pages list it by")
    install.add_argument("--json", metavar="FILE", help="the weights' faircam-model.json (instead of --arch ...)")
    install.add_argument("--format", default="torchvision", choices=["torchvision", "timm"],
                         help="where --arch comes from (default torchvision)")
    install.add_argument("--arch", help="the state dict's architecture (e.g. resnet50)")
    install.add_argument("--classes", help="its class names in output order, comma-separated (e.g. female,male)")
    install.add_argument("--task", choices=list(TASKS), help="the task of its classes (default: found from them)")
    install.add_argument("--input-size", type=int, default=224)
    install.add_argument("--mean", help="three numbers on the 0-1 scale (default ImageNet's)")
    install.add_argument("--std", help="three numbers on the 0-1 scale (default ImageNet's)")
    install.add_argument("--view", default="whole", choices=["whole", "crop"],
                         help="whole FairFace-style images, or aligned face crops")
    install.add_argument("--cam-layer", metavar="NAME", help=CAM_LAYER_HELP)
    install.add_argument("--data", help="for a table of answers: the data folder (default: FAIRCAM_DATA)")
    install.add_argument("--split", default="val", choices=["train", "val"])
    install.add_argument("--labels", metavar="FILE", help="for a table of answers: the folder's label CSV")
    install.add_argument("--mapping", metavar="JSON|FILE.json", help="for a table of answers: " + MAPPING_HELP)
    install.set_defaults(run=cmd_install_model)
    models.set_defaults(run=cmd_models)

    fetch = commands.add_parser("fetch-fairface", help="download FairFace (needs internet)")
    fetch.add_argument("--out", required=True, help="folder to write FairFace's layout into")
    fetch.add_argument("--limit", type=int, help="at most N images per split")
    fetch.set_defaults(run=cmd_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "heavy", False):
            allocator_setting()  # a bad FAIRCAM_ALLOCATOR stops here, before any work
            if argv is None:
                # The commands that run a network, as a program of their own (not a call from Python), on tcmalloc.
                from faircam.allocator import use_allocator

                use_allocator()
        args.run(args)
    except KNOWN_ERRORS as exc:
        print(f"faircam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faircam: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
