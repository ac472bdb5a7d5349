"""The model card: a checkpoint's metadata and its cached evaluation, written as Markdown.

Every number in it is read from the checkpoint or computed from the evaluation cache, so
`faircam model-card` rewrites it whenever either changes; the one exception is the table of backbone
probes (`PROBES`), measurements made once to choose the trunk and kept here as data with their
source. Each task of the model (gender, and race and age for a multi-task model) gets its accuracy
with intervals overall and per race, gender and race × gender, from the one group table. Values read
from files (names, labels, dates, recipe values) go through `faircam.text.md`: the card is rendered as
Markdown in the app and the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from faircam import wording
from faircam.audit.groups import (
    GROUPINGS,
    INTERVALS,
    GroupFrame,
    group_table,
    label,
    ranked,
    small_mark,
    with_interval,
)
from faircam.config import MIN_GROUP_SIZE
from faircam.evaluation.cache import EvalCache
from faircam.tasks import DEFAULT_TASK, TASKS, Task
from faircam.text import md

if TYPE_CHECKING:  # torch comes with it; the card only reads its metadata
    from faircam.models.model import LoadedModel

# Linear probes of candidate trunks on FairFace, measured once to choose the model's trunk: from
# shared/notes/backbone-probes.md (2026-11-30). Frozen trunk, features of the first 6,000 shared training
# images, scored on the 2,500 shared validation images, 2 CPU cores, one run each.
# The card is shown to the public (the About page): it says how they were measured, not where the notes lie.
PROBES_SOURCE = ("measured 2026-11-30: frozen trunk, features of the first 6,000 "
                 "shared FairFace training images, scored on the 2,500 shared validation images; 2 CPU cores, one "
                 "run each")
PROBES: list[dict[str, str]] = [
    {"trunk (frozen)": "EfficientNet-Lite0, ImageNet, 224 px", "features": "1280, mean-pooled",
     "head": "logistic regression", "gender": "73.5%", "race (7)": "31.8%", "age (9)": "30.8%",
     "cost per image": "54 ms (1 thread)"},
    {"trunk (frozen)": "dlib face-recognition ResNet, 150 px chip on 5 landmarks", "features": "128-D descriptor",
     "head": "logistic regression", "gender": "86.0%", "race (7)": "59.5%", "age (9)": "49.0%",
     "cost per image": "117 ms (HOG detection included)"},
    {"trunk (frozen)": "same dlib descriptor", "features": "128-D", "head": "RBF SVM (C=3)", "gender": "87.2%",
     "race (7)": "59.0%", "age (9)": "–", "cost per image": ""},
    {"trunk (frozen)": "same dlib descriptor", "features": "128-D", "head": "MLP (256)", "gender": "86.8%",
     "race (7)": "–", "age (9)": "–", "cost per image": ""},
]
PROBES_REFERENCE = ("the gender-only EfficientNet-Lite0 bundled when the probes were run, fine-tuned (first 9 stages "
                    "frozen, 1 epoch on 20,000 images at 160 px), reached 87.6% gender on the same validation images; "
                    "the multi-task model bundled since started from it.")
# The machine faircam's own checkpoints were trained on (README, "measured on the development machine").
DEVELOPMENT_MACHINE = "2 CPU cores"


def _v(value: Any) -> str:
    """A recipe value as Markdown: numbers as they are, text escaped (a checkpoint's metadata is anyone's)."""
    return str(value) if isinstance(value, int | float | bool) or value is None else md(value)


def _count(value: Any) -> str:
    """A count with thousands separators; anything else a checkpoint holds there as `_v` shows it."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _v(value)


def _record(value: Any) -> dict:
    """A part of the checkpoint's training record, a dict as `faircam train` writes it; anything else is read as an
    empty record (the rest of the card still shows)."""
    return value if isinstance(value, dict) else {}


def _task_words(spec: Task) -> str:
    """"gender (Female / Male)", "race (7 classes: White, Black, …)"."""
    if len(spec.classes) == 2:
        return f"{spec.title} ({' / '.join(spec.classes)})"
    return f"{spec.title} ({len(spec.classes)} classes: {', '.join(label(c) for c in spec.classes)})"


def _kind_lines(cache: EvalCache) -> list[str]:
    """What kind of model the evaluation ran (`faircam.models.kinds.KINDS`, or a table of answers) and how each of
    its tasks' class names were mapped onto FairFace's, as the cache records them."""
    model = cache.model_meta
    if "kind" not in model:
        return []
    mapped = model.get("label_mapping", {})
    return [f"- Kind of model: **{md(model['kind'])}**" + (", its classes mapped by name onto FairFace's:" if mapped
                                                          else "."),
            *[f"  - {md(task)}: {md(mapping)}" for task, mapping in mapped.items()]]


def _group_lines(table: pd.DataFrame, by: list[str], within_one: bool, names: list[str] | None = None) -> list[str]:
    """A Markdown table of groups (ranked, or in the order given with `names`, the groupings' names as headers)."""
    extra = " within one bin (95% interval) |" if within_one else ""
    header = " | ".join(md(n) for n in names or by) + f" | accuracy (95% interval) |{extra} n |"
    lines = ["| " + header, "|" + "---|" * (len(by) + 2 + within_one)]
    for _, row in (table if names else ranked(table)).iterrows():
        labels = " | ".join(md(label(row[c])) for c in by)
        within = (f" {with_interval(row['within_one'], row['within_one_low'], row['within_one_high'])} |"
                  if within_one else "")
        lines.append(f"| {labels} | {with_interval(row['accuracy'], row['accuracy_low'], row['accuracy_high'])} |"
                     f"{within} {int(row['n']):,}{small_mark(row['small'])} |")
    return lines


def _task_lines(cache: EvalCache, task: str, heading: str) -> list[str]:
    """One task's numbers: accuracy (and within one bin), the race gap, the worst race × gender cell, and the
    tables by race, gender and race × gender; compared in the model's classes where they are coarser (said)."""
    rows, spec = cache.rows, cache.task(task)
    measures = ["accuracy", "within_one"] if spec.ordinal else ["accuracy"]
    overall = group_table(rows, [], measures, task=spec).iloc[0]
    frames = {name: GroupFrame(rows, GROUPINGS[name], measures, task=spec)
              for name in ("race", "gender", "race × gender")}
    tables = {name: frame.by_group for name, frame in frames.items()}
    race_gap = frames["race"].gap("accuracy gap")
    large_cells = ranked(tables["race × gender"])
    large_cells = large_cells[~large_cells["small"]]
    lines = [
        heading,
        *([f"- {md(cache.mapping_note(task))}"] if cache.mapping_note(task) else []),
        f"- **Accuracy: {with_interval(overall['accuracy'], overall['accuracy_low'], overall['accuracy_high'])}**, "
        f"n = {int(overall['accuracy_n']):,}.",
    ]
    if spec.ordinal:
        within = with_interval(overall["within_one"], overall["within_one_low"], overall["within_one_high"])
        lines.append(f"- **Within one bin: {within}** (the right age bin or a neighbouring one).")
    if race_gap.defined:
        lines.append(
            f"- **Gap between best and worst race group: {race_gap.value * 100:.1f} points** (95% interval "
            f"{race_gap.low * 100:.1f}–{race_gap.high * 100:.1f}; {md(race_gap.highest['group'])}, n = "
            f"{race_gap.highest['n']}, vs {md(race_gap.lowest['group'])}, n = {race_gap.lowest['n']})."
        )
    if large_cells.empty:
        lines.append(f"- No race × gender cell has {MIN_GROUP_SIZE} or more images: too few to name the worst.")
    else:
        worst_cell = large_cells.iloc[-1]
        lines.append(
            f"- **Worst race × gender cell: {md(worst_cell['group'])}**, "
            f"{with_interval(worst_cell['accuracy'], worst_cell['accuracy_low'], worst_cell['accuracy_high'])}, "
            f"n = {int(worst_cell['n']):,}."
        )
    level = "#" * (heading.index(" ") + 1)
    for name, table in tables.items():
        lines += ["", f"{level} By {name}", *_group_lines(table, GROUPINGS[name], spec.ordinal)]
    return lines


def _align_words(recipe: dict) -> str:
    """The recipe's alignment jitter in words ("" for a recipe without it, as before faircam recorded it)."""
    share = recipe.get("align_jitter") or 0
    if not share:
        return ""
    words = f"{share:.0%}" if isinstance(share, int | float) and not isinstance(share, bool) else _v(share)
    return f"; {words} of the images also rotated and scaled as the aligned crop moves faces"


def _started_from(training: dict, recipe: dict, arch: str) -> str:
    """Where training started, from the checkpoint's record ("ImageNet", "random weights" or the checkpoint
    `faircam train --init` copied)."""
    start = training.get("started_from")
    if isinstance(start, dict):
        sha = str(start.get("sha256", ""))[:16]
        listed = start.get("tasks") or []
        tasks = ", ".join(md(t) for t in listed) if isinstance(listed, list) else _v(listed)
        return (f"the trunk and shared heads of the checkpoint {md(start.get('name', '?'))} (sha256 `{md(sha)}…`; "
                f"tasks {tasks})")
    if start in (None, "ImageNet") and recipe.get("pretrained", True):
        return f"ImageNet {'EfficientNet-Lite0' if arch == 'efficientnet-lite0' else md(arch)} weights"
    return md(start or "random weights")


def _compute(training: dict, recipe: dict) -> str:
    """What it was trained on: the checkpoint's own record when it has one, else the recipe's device."""
    compute = _record(training.get("compute"))
    if compute:
        return ", ".join(f"{md(k)} {_v(v)}" for k, v in compute.items())
    device = recipe.get("device")
    if device == "cpu":
        return ("CPU only, no GPU (the recipe's device); the checkpoint does not record its cores: faircam's own "
                f"checkpoints are trained on its development machine, {DEVELOPMENT_MACHINE}")
    return f"device {_v(device)} (the recipe's)" if device else "not recorded"


def _training_lines(model: LoadedModel) -> list[str]:
    training = _record(model.info.get("training"))
    recipe = _record(training.get("recipe"))
    if not recipe:
        return ["- No training record in this checkpoint."]
    views = recipe.get("views")
    tasks = [t for t in str(recipe.get("tasks") or DEFAULT_TASK).split(",") if t in TASKS] or [DEFAULT_TASK]
    augment = f"random resized crop, flip, colour jitter{_align_words(recipe)}"
    if recipe.get("frozen_stages"):
        start = (f"the first {_v(recipe.get('frozen_stages'))} trunk stages frozen, their outputs computed once for "
                 f"{_v(views)} augmented cop{'y' if views == 1 else 'ies'} per image ({augment})")
    else:
        sizes = recipe.get("sizes") if isinstance(recipe.get("sizes"), list | tuple) else []
        grown = (f"; progressive resizing, the epochs at {' then '.join(_v(s) for s in sizes)} px" if len(sizes) > 1
                 else "")
        start = f"every trunk stage trained (full fine-tune), each image augmented afresh each epoch ({augment}){grown}"
    ema = recipe.get("ema")
    return [
        f"- Data: {_count(training.get('train_images', '?'))} FairFace training images "
        f"(validation during training: {_count(training.get('val_images', '?'))}).",
        f"- Tasks: {'; '.join(_task_words(TASKS[t]) for t in tasks)}, one head each on one shared trunk."
        if len(tasks) > 1 else f"- Task: {_task_words(TASKS[tasks[0]])}.",
        f"- Start: {_started_from(training, recipe, model.arch)}; {start}.",
        f"- Recipe: AdamW (lr {_v(recipe.get('lr'))}, weight decay {_v(recipe.get('weight_decay'))}), warm-up then "
        f"cosine decay, label smoothing {_v(recipe.get('label_smoothing'))}, batch {_v(recipe.get('batch_size'))}, "
        f"seed {_v(recipe.get('seed'))}, device {_v(recipe.get('device'))}"
        + (f", a moving average of the weights (decay {_v(ema)} per step) validated and saved" if ema else "")
        + f"; this checkpoint is epoch {_v(training.get('epoch'))} of {_v(recipe.get('epochs'))} scheduled "
        "(the best validation epoch by the mean of its tasks' accuracies saved).",
        f"- Compute: {_compute(training, recipe)}.",
        *_epoch_lines(model.info.get("history"), tasks),
    ]


def _epoch_lines(history: Any, tasks: list[str]) -> list[str]:
    """Every epoch's validation accuracies, as the training recorded them (none for an older checkpoint)."""
    if not isinstance(history, list) or not history or not all(isinstance(h, dict) for h in history):
        return []

    def number(value: Any, fmt: str, scale: int = 1) -> str:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "?"
        return format(value / scale if scale != 1 else value, fmt)

    columns = ["epoch", "input (px)", *[f"{t} accuracy" for t in tasks], "minutes"]
    return [
        "", "Every epoch, validated on the validation images above (at that epoch's input size):", "",
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
        *["| " + " | ".join([number(h.get("epoch"), "d"), number(h.get("input_size"), "d"),
                             *[number(h.get(f"val_{t}_accuracy"), ".1%") for t in tasks],
                             number(h.get("seconds"), ".1f", 60)]) + " |"
          for h in history],
    ]


def _probe_lines() -> list[str]:
    columns = list(PROBES[0])
    return [
        "## Backbone probes (measured)",
        "How much of each task a frozen trunk already carries before any fine-tuning: a linear (or small) head "
        f"on its features, {PROBES_SOURCE}. A probe does not say where fine-tuning ends.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *["| " + " | ".join(p[c] for c in columns) + " |" for p in PROBES],
        "",
        f"For reference, from the same note: {PROBES_REFERENCE}",
        "",
        "A face-trained trunk starts far ahead of an ImageNet one; fine-tuning every stage of an ImageNet trunk "
        "(as recorded above) closes much of that distance, and more epochs or a larger input are the route further.",
    ]


def model_card(model: LoadedModel, cache: EvalCache) -> str:
    """Markdown model card of `model`, with the audit numbers of `cache` for every task both have."""
    rows = cache.rows
    tasks = [t for t in TASKS if t in model.tasks]
    audited = [t for t in tasks if t in cache.tasks]
    data = cache.data_meta
    multi = len(tasks) > 1
    what = (f"A face classifier with one head per task ({'; '.join(_task_words(model.specs[t]) for t in tasks)})"
            if multi else f"A binary {TASKS[DEFAULT_TASK].title} classifier "
                          f"({' / '.join(model.tasks[DEFAULT_TASK])})" if tasks == [DEFAULT_TASK]
            else f"A classifier of {_task_words(model.specs[tasks[0]])} with no {TASKS[DEFAULT_TASK].title} head,")
    lines = [
        f"# Model card: {md(model.name)}",
        "",
        "## What it is",
        f"- {what} for face crops, architecture **{md(model.arch)}**, input {model.input_size}×{model.input_size} "
        "RGB.",
        "- Intended use: teaching and auditing (how a face classifier decides, and for whom it fails). "
        "Not for decisions about people: gender is not visible in a face, and FairFace's labels are "
        "annotators' perceptions on a binary scale.",
        *([f"- Origin: {md(model.info['origin'])}; licence: {md(model.info['licence'])}."]
          if "origin" in model.info else []),
        f"- Checkpoint sha256 `{model.sha256[:16]}…`.",
        *_kind_lines(cache),
        "",
        "## What it must not be used for",
        "- Deciding anything about a person from a face: who they are, what gender they are, how they are treated.",
    ]
    if any(TASKS[t].caveat for t in tasks):
        lines += [
            "- Race and age prediction exist here only as subjects of the audit: to see where the model fails and "
            f"whether its gender errors follow them. {wording.RACE_AGE_IS} {wording.RACE_AGE_MUST_NOT}",
        ]
    lines += ["", "## Training", *_training_lines(model)]
    lines += [
        "",
        f"## Evaluation on {len(rows):,} "
        + (f"images of {md(data['root'])} (labels {md(Path(data['labels']).name)})" if data.get("labels")
           else f"FairFace {md(data['split'])} images"),
        f"Computed by `faircam evaluate` ({md(cache.created)}); {INTERVALS['proportion']}s; gaps with their "
        f"{INTERVALS['difference']}; groups under "
        f"{MIN_GROUP_SIZE} images are marked small." + (f" {md(cache.answers_note)}" if cache.answers_note else ""),
    ]
    for task in audited:
        subject = " (a subject of the audit, not a feature)" if TASKS[task].caveat else ""
        lines += ["", *_task_lines(cache, task, f"### {TASKS[task].title.capitalize()}{subject}")]
    # By attribute: gender's accuracy, or a model without a gender head's first task's.
    main = DEFAULT_TASK if DEFAULT_TASK in cache.tasks else next(iter(cache.tasks))
    if cache.attributes:
        lines += ["", f"### {TASKS[main].title.capitalize()} accuracy by attribute of the photos",
                  "Image quality measured on each face by `faircam evaluate` (or `faircam add-quality`), and the label "
                  "file's other columns."]
        for attribute in cache.attributes:
            frame = GroupFrame(rows, [attribute.column], task=cache.task(main))
            gap = frame.gap("accuracy gap")
            lines += ["", f"#### By {md(attribute.name)}",
                      *_group_lines(frame.shown(), [attribute.column], False, names=[attribute.name])]
            if gap.defined:
                lines.append(f"\nGap between best and worst: {gap.value * 100:.1f} points (95% interval "
                             f"{gap.low * 100:.1f}–{gap.high * 100:.1f}; {md(gap.side('highest'))} vs "
                             f"{md(gap.side('lowest'))}).")
    missing = [TASKS[t].title for t in tasks if t not in cache.tasks]
    if missing:
        lines += ["", f"This evaluation holds no {', '.join(missing)} predictions: run `faircam evaluate` again "
                      "with this model to measure them."]
    if _record(_record(model.info.get("training")).get("recipe")):
        lines += ["", *_probe_lines()]
    lines += [
        "",
        "## Known weaknesses",
        "- The lowest cells above: read their intervals before ranking them; overlapping intervals are not "
        "evidence of a difference.",
        "- Trained and evaluated on FairFace's tight face crops: uploads framed differently (whole body, "
        "profile, several faces) are further from its training data; the crop toggle brings them closer.",
        "- Children's faces (ages 0–9) carry weaker gender cues; see the age tab of the Evaluation page.",
        "- The CAM layer is the last convolutional stage, a grid far coarser than the "
        f"{model.input_size}-pixel input (5×5 cells for faircam's own model): maps are coarse by construction.",
    ]
    return "\n".join(lines) + "\n"
