"""The model card: a checkpoint's metadata and its cached evaluation, written as Markdown.

Every number in it is read from the checkpoint or computed from the evaluation cache, so
`faircam model-card` rewrites it whenever either changes. Values read from files (names, labels,
dates) go through `faircam.text.md`: the card is rendered as Markdown in the app and the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from faircam.audit.groups import GROUPINGS, INTERVALS, group_table, label, ranked, small_mark, spread, with_interval
from faircam.config import MIN_GROUP_SIZE
from faircam.evaluation.cache import EvalCache
from faircam.text import md

if TYPE_CHECKING:  # torch comes with it; the card only reads its metadata
    from faircam.models.model import LoadedModel


def _group_lines(table: pd.DataFrame, by: list[str]) -> list[str]:
    header = " | ".join(by) + " | accuracy (95% interval) | n |"
    lines = ["| " + header, "|" + "---|" * (len(by) + 2)]
    for _, row in ranked(table).iterrows():
        labels = " | ".join(md(label(row[c])) for c in by)
        lines.append(f"| {labels} | {with_interval(row['accuracy'], row['accuracy_low'], row['accuracy_high'])} "
                     f"| {int(row['n']):,}{small_mark(row['small'])} |")
    return lines


def model_card(model: LoadedModel, cache: EvalCache) -> str:
    """Markdown model card of `model`, with the audit numbers of `cache`."""
    rows = cache.rows
    training = model.info.get("training", {})
    recipe = training.get("recipe", {})
    overall = group_table(rows, []).iloc[0]
    by_race = group_table(rows, GROUPINGS["race"])
    by_cell = group_table(rows, GROUPINGS["race × gender"])
    race_gap = spread(by_race)
    large_cells = ranked(by_cell)
    large_cells = large_cells[~large_cells["small"]]
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
        f"Computed by `faircam evaluate` ({md(cache.meta['created'])}); {INTERVALS['proportion']}s; groups under "
        f"{MIN_GROUP_SIZE} images are marked small.",
        "",
        f"- **Accuracy: {with_interval(overall['accuracy'], overall['accuracy_low'], overall['accuracy_high'])}**, "
        f"n = {int(overall['n']):,}.",
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
            f"- **Worst race × gender cell: {md(worst_cell['group'])}**, "
            f"{with_interval(worst_cell['accuracy'], worst_cell['accuracy_low'], worst_cell['accuracy_high'])}, "
            f"n = {int(worst_cell['n']):,}."
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
