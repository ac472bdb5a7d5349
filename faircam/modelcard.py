"""The model card: a checkpoint's metadata and its cached evaluation, written as Markdown.

Every number in it is read from the checkpoint or computed from the evaluation cache, so
`faircam model-card` rewrites it whenever either changes. Values read from files (names, labels,
dates) go through `faircam.text.md`: the card is rendered as Markdown in the app and the report.
"""

from __future__ import annotations

import pandas as pd

from faircam.accuracy import accuracy_gap, group_accuracy, overall_scores
from faircam.cache import EvalCache
from faircam.config import MIN_GROUP_SIZE
from faircam.model import LoadedModel
from faircam.text import md


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _group_lines(table: pd.DataFrame, by: list[str]) -> list[str]:
    header = " | ".join(by) + " | accuracy | 95% interval | n |"
    lines = ["| " + header, "|" + "---|" * (len(by) + 3)]
    for _, row in table.iterrows():
        flag = " ⚠ small" if row["small"] else ""
        labels = " | ".join(md(row[c]) for c in by)
        lines.append(f"| {labels} | {_pct(row['accuracy'])} | {_pct(row['ci_low'])} – {_pct(row['ci_high'])} "
                     f"| {int(row['n'])}{flag} |")
    return lines


def model_card(model: LoadedModel, cache: EvalCache) -> str:
    """Markdown model card of `model`, with the audit numbers of `cache`."""
    rows = cache.rows
    training = model.info.get("training", {})
    recipe = training.get("recipe", {})
    overall = overall_scores(rows).loc["all"]
    by_race = group_accuracy(rows, ["race"])
    by_cell = group_accuracy(rows, ["race", "gender"])
    race_gap = accuracy_gap(by_race)
    large_cells = by_cell[~by_cell["small"]]
    data = cache.meta["data"]
    lines = [
        f"# Model card: {md(model.name)}",
        "",
        "## What it is",
        f"- A binary gender classifier ({' / '.join(model.classes)}) for face crops, "
        f"architecture **{md(model.arch)}**, input {model.input_size}×{model.input_size} RGB.",
        "- Intended use: teaching and auditing (how a face classifier decides, and for whom it fails). "
        "Not for decisions about people: gender is not visible in a face, and FairFace's labels are "
        "annotators' perceptions on a binary scale.",
        *([f"- Origin: {md(model.info['origin'])}; licence: {md(model.info['licence'])}."]
          if "origin" in model.info else []),
        f"- Checkpoint sha256 `{model.sha256[:16]}…`.",
        "",
        "## Training",
    ]
    if recipe:
        lines += [
            f"- Data: {training.get('train_images', '?'):,} FairFace training images "
            f"(validation during training: {training.get('val_images', '?'):,}).",
            f"- Start: ImageNet EfficientNet-Lite0 weights; the first {recipe.get('frozen_stages')} trunk stages "
            f"frozen, their outputs computed once for {recipe.get('views')} augmented cop"
            f"{'y' if recipe.get('views') == 1 else 'ies'} per image (random resized crop, flip, colour jitter).",
            f"- Recipe: AdamW (lr {recipe.get('lr')}, weight decay {recipe.get('weight_decay')}), warm-up then "
            f"cosine decay, label smoothing {recipe.get('label_smoothing')}, batch {recipe.get('batch_size')}, "
            f"seed {recipe.get('seed')}, device {recipe.get('device')}; this checkpoint is epoch "
            f"{training.get('epoch')} of {recipe.get('epochs')} scheduled (the best validation epoch saved).",
        ]
    else:
        lines.append("- No training record in this checkpoint.")
    lines += [
        "",
        f"## Evaluation on {len(rows):,} FairFace {md(data['split'])} images",
        f"Computed by `faircam evaluate` ({md(cache.meta['created'])}); 95% Wilson intervals; groups under 30 "
        "images are marked small.",
        "",
        f"- **Accuracy: {_pct(overall['accuracy'])}** ({_pct(overall['ci_low'])} – {_pct(overall['ci_high'])}, "
        f"n = {int(overall['n']):,}).",
    ]
    if race_gap["gap"] is not None:
        lines.append(
            f"- **Gap between best and worst race group: {race_gap['gap'] * 100:.1f} points** "
            f"({md(race_gap['best'])}, n = {race_gap['best_n']}, vs {md(race_gap['worst'])}, "
            f"n = {race_gap['worst_n']})."
        )
    if large_cells.empty:
        lines.append(f"- No race × gender cell has {MIN_GROUP_SIZE} or more images: too few to name the worst.")
    else:
        worst_cell = large_cells.iloc[-1]
        lines.append(
            f"- **Worst race × gender cell: {md(worst_cell['race'])} {md(worst_cell['gender'])}**, "
            f"{_pct(worst_cell['accuracy'])} ({_pct(worst_cell['ci_low'])} – {_pct(worst_cell['ci_high'])}, "
            f"n = {int(worst_cell['n'])})."
        )
    lines += [
        "",
        "### By race",
        *_group_lines(by_race, ["race"]),
        "",
        "### By race × gender",
        *_group_lines(by_cell, ["race", "gender"]),
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
