"""The audit report: one self-contained HTML file, and the CSV of the per-image rows.

`build_report` turns an evaluation cache into HTML with inline CSS and inline SVG figures
(matplotlib), no script and no external resource, so the file opens offline, mails as one
attachment and prints. It is a list of sections, `SECTIONS`: each is a function that takes the
`ReportContext` and returns a `Section` (or None when the cache lacks what it needs), so another
part of the audit is added to the report by adding one function to the list. Every task of the
model has its section (`_task_section`): accuracy with its interval, the confusion matrix, precision,
recall and F1 per class, and for race and age the per-group tables and gaps of `metrics.fairness`;
gender's fairness has the sections by grouping before them.
Torch-free: the model card is passed in as Markdown (see `model_card_markdown`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import pandas as pd
from markdown_it import MarkdownIt
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from faircam.audit.accuracy import confusion, overall_scores, row_shares
from faircam.audit.failures import (
    explanation_words,
    failure_attributes,
    quality_explanations,
    slice_name,
    slices,
)
from faircam.audit.groups import (
    BINARY_ONLY,
    GROUPINGS,
    INTERVALS,
    MULTIPLE_COMPARISONS,
    N_BOOT,
    SEED,
    class_cell,
    group_table,
    groupings,
    label,
    measure,
    ranked,
    size_label,
    small_mark,
    task_measures,
    text_or,
    with_interval,
)
from faircam.audit.metrics import Fairness, fairness
from faircam.config import MIN_GROUP_SIZE
from faircam.errors import ModelError
from faircam.evaluation.cache import EvalCache
from faircam.files import write_atomic
from faircam.tasks import DEFAULT_TASK, TASKS, Task, as_task
from faircam.text import html_text
from faircam.wording import OCCLUSION, OCCLUSION_MAPS, percent, q_value

if TYPE_CHECKING:
    from faircam.models.model import LoadedModel

# The caveats of the report and the Fairness page: those of the labels and of the measures are worded per task
# (`caveats`), the rest hold for any task.
LABEL_CAVEATS = {
    DEFAULT_TASK: "FairFace's gender labels are annotators' perceptions on a binary scale. Gender is not visible in "
                  "a face: an accurate classifier is still guessing a label, and this audit measures whose faces it "
                  "guesses wrong more often.",
}
GENERAL_CAVEATS = [
    f"Numbers hold for the images evaluated (one split of FairFace) and this model only. Groups with fewer "
    f"than {MIN_GROUP_SIZE} images are marked small and left out of every gap; so is every per-class rate that "
    f"counts fewer than {MIN_GROUP_SIZE} faces of its class.",
    f"A group's rate carries a {INTERVALS['proportion']}; a gap between groups a {INTERVALS['difference']}. "
    "For a best-minus-worst gap the bootstrap is approximate: when several groups are nearly tied at the top or the "
    "bottom, the interval covers the true gap less often than 95% of the time (about 80–90% in our "
    "simulations with accuracies like this model's); overlapping group intervals are not evidence of a "
    "difference.",
    "Class activation maps show where the evidence was, not why it means one class rather than another to the "
    "model, and not whether the model is fair.",
]


def caveats(tasks: Iterable[str]) -> list[str]:
    """The caveats for the `tasks` shown: each task's label caveat and, for a binary task, demographic parity's,
    in its own words; then the general ones."""
    said = []
    for task in tasks:
        spec = TASKS[task]
        said.append(LABEL_CAVEATS.get(task) or spec.caveat)
        if spec.binary:
            said.append(f"Demographic parity ignores the truth: a group with more {spec.people[1]} in it is called "
                        f"{spec.called[1]} more often even by a perfect model. Read it beside each group's share "
                        f"of {spec.people[1]}.")
    return [*dict.fromkeys(said), *GENERAL_CAVEATS]  # race and age share theirs


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1060px;margin:2rem auto;
padding:0 1.2rem;color:#1f2328;line-height:1.5}
h1{font-size:1.9rem;margin-bottom:.2rem}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2rem;margin-top:2.4rem}
h3{margin-top:1.6rem}.lead{color:#57606a}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left;vertical-align:top}
td .ci{display:inline-block;white-space:nowrap}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.small td{color:#8c959f;background:#fffbe6}.flag{color:#9a6700;font-weight:600}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:.8rem 0}
.card{border:1px solid #d0d7de;border-radius:8px;padding:.6rem .9rem;min-width:14rem;flex:1}
.card .v{font-size:1.5rem;font-weight:650}.card .ci{color:#57606a;font-size:.9rem}
.note{background:#f6f8fa;border-left:4px solid #8c959f;padding:.4rem .8rem;margin:.6rem 0}
.warn{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4rem .8rem;margin:.6rem 0}
figure{margin:.8rem 0}svg{max-width:100%;height:auto}nav ol{columns:2}
.card-md table{font-size:.85rem}
@media print{nav{display:none}h2{page-break-before:auto}}
"""


@dataclass
class ReportContext:
    """What every section reads: the cache, gender's fairness audits by grouping, the other tasks' audits
    (`task_audits[task][grouping]`), and the model card."""

    cache: EvalCache
    audits: dict[str, Fairness]
    model_card: str | None = None
    model_card_note: str = ""
    task_audits: dict[str, dict[str, Fairness]] = field(default_factory=dict)


@dataclass
class Section:
    title: str
    body: str
    anchor: str = field(default="")


# A section of the report, or several of a kind (one per task), or None where the cache lacks what it needs.
SectionFunction = Callable[[ReportContext], Section | list[Section] | None]


def _as_list(built: Section | list[Section] | None) -> list[Section]:
    return built if isinstance(built, list) else [] if built is None else [built]


def _with_interval(value: float, low: float, high: float) -> str:
    return f"<span class='ci'>{html_text(with_interval(value, low, high))}</span>"


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: small and searchable
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return f"<figure>{text[text.index('<svg'):]}</figure>"


def _table(header: list[str], rows: list[list[str]], numeric: set[int], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html_text(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f"<td class='num'>{c}</td>" if j in numeric else f"<td>{c}</td>" for j, c in enumerate(row))
        css = f" class='{classes[i]}'" if classes and classes[i] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def rate_figure(audit: Fairness, rate: str = "accuracy") -> str:
    """One rate per group as a dot with its 95% interval, n in the label; small groups in grey."""
    data = audit.groups.dropna(subset=[rate]).iloc[::-1]
    labels = [size_label(g, n, s) for g, n, s in zip(data["group"], data["n"], data["small"])]
    fig = Figure(figsize=(8.5, 0.34 * len(data) + 1.1))
    ax = fig.subplots()
    for y, (_, row) in enumerate(data.iterrows()):
        colour = "#8c959f" if row["small"] else "#0969da"
        # Clipped at 0: at a rate of 0 or 1 the Wilson bound can sit a rounding error inside it.
        errors = [[max(0.0, row[rate] - row[f"{rate}_low"])], [max(0.0, row[f"{rate}_high"] - row[rate])]]
        ax.errorbar(row[rate], y, xerr=errors,
                    fmt="o", color=colour, ecolor=colour, capsize=3, markersize=5, linewidth=1.2)
        ax.annotate(f"{row[rate]:.1%}", (row[rate], y), textcoords="offset points", xytext=(0, 5), ha="center",
                    fontsize=7.5, color="#57606a")
    ax.set_yticks(range(len(data)), labels, fontsize=9)
    low = float(data[f"{rate}_low"].min())
    ax.set_xlim(0 if low < 0.3 else low - 0.05, 1)
    ax.set_ylim(-0.7, len(data) - 0.3)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(f"{measure(rate).title_for(as_task(audit.task))} with its {INTERVALS['proportion']}")
    ax.grid(axis="x", color="#eaeef2")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def equalized_odds_figure(audit: Fairness) -> str:
    """Each large group at (FPR, TPR) with both intervals: equal odds put them on one point."""
    data = audit.groups.dropna(subset=["tpr", "fpr"])
    data = data[~data["small"]]
    fig = Figure(figsize=(6.5, 4.4))
    ax = fig.subplots()
    ax.errorbar(data["fpr"], data["tpr"], xerr=[data["fpr"] - data["fpr_low"], data["fpr_high"] - data["fpr"]],
                yerr=[data["tpr"] - data["tpr_low"], data["tpr_high"] - data["tpr"]], fmt="o", color="#4c78a8",
                ecolor="#8c959f", capsize=2)
    for _, row in data.iterrows():
        ax.annotate(row["group"], (row["fpr"], row["tpr"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    spec = as_task(audit.task)
    ax.set_xlabel(f"{measure('fpr').title_for(spec)}: lower is better")
    ax.set_ylabel(f"{measure('tpr').title_for(spec)}: higher is better")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def gap_cards(audit: Fairness) -> str:
    cards = []
    for name, gap in audit.gaps.iterrows():
        if pd.isna(gap["value"]):
            cards.append(f"<div class='card'><div>{html_text(name)}</div><div class='v'>not defined</div>"
                         f"<div class='ci'>{html_text(text_or(gap['note']))}</div></div>")
            continue
        cards.append(
            f"<div class='card'><div>{html_text(name)}</div><div class='v'>{gap['value'] * 100:.1f} points</div>"
            f"<div class='ci'>95% interval {gap['ci_low'] * 100:.1f} – {gap['ci_high'] * 100:.1f}; "
            f"{gap['groups_compared']} groups compared<br>highest: {html_text(gap['highest'])}<br>"
            f"lowest: {html_text(gap['lowest'])}</div></div>"
        )
    excluded = {g["excluded"] for _, g in audit.gaps.iterrows() if g["excluded"]}
    warn = "".join(f"<div class='warn'>Left out of the gaps as too small: {html_text(e)}.</div>" for e in excluded)
    return f"<div class='cards'>{''.join(cards)}</div>{warn}"


def groups_table(audit: Fairness) -> str:
    """Every group's rates with their intervals: a binary task's people counts beside n, a per-class rate (a
    class's recall) with its own n."""
    spec = as_task(audit.task)
    people = [p for p in reversed(spec.people) if p in audit.groups]
    header = [*audit.by, "n", *people, *[measure(r).title_for(spec) for r in audit.rates]]
    rows, classes = [], []
    for _, g in audit.groups.iterrows():
        flag = f" <span class='flag'>{small_mark(True)} (n&lt;{audit.min_size})</span>" if g["small"] else ""
        labels = [html_text(label(g[c])) for c in audit.by]
        labels[-1] += flag
        cells = []
        for r in audit.rates:
            cell = _with_interval(g[r], g[f"{r}_low"], g[f"{r}_high"])
            if measure(r).per_class:
                cell = class_cell(cell, g[f"{r}_n"], audit.min_size)
            cells.append(cell)
        rows.append([*labels, f"{g['n']:,}", *[f"{g[p]:,}" for p in people], *cells])
        classes.append("small" if g["small"] else "")
    return _table(header, rows, set(range(len(audit.by), len(header))), classes)


def summary_section(ctx: ReportContext) -> Section:
    spec = ctx.cache.task(ctx.cache.main_task)
    overall = group_table(ctx.cache.rows, [], task=spec).iloc[0]
    race = ctx.audits["race"].gaps if "race" in ctx.audits else pd.DataFrame(columns=["value"])
    cell = ctx.audits.get("race × gender")
    large = ranked(cell.groups) if cell is not None else pd.DataFrame(columns=["small"])
    large = large[~large["small"].astype(bool)].iloc[::-1]
    body = [
        "<div class='cards'>",
        f"<div class='card'><div>{'' if spec.name == DEFAULT_TASK else html_text(spec.title) + ' '}accuracy</div>"
        f"<div class='v'>{overall['accuracy']:.1%}</div>"
        f"<div class='ci'>"
        f"{html_text(with_interval(overall['accuracy'], overall['accuracy_low'], overall['accuracy_high']))}"
        f"; n = {int(overall['accuracy_n']):,}</div></div>",
    ]
    for name in [n for n in ("accuracy gap", "equalized odds difference") if n in race.index]:
        gap = race.loc[name]
        if not pd.isna(gap["value"]):
            body.append(f"<div class='card'><div>{html_text(name)} across race</div><div class='v'>"
                        f"{gap['value'] * 100:.1f} points</div><div class='ci'>95% interval "
                        f"{gap['ci_low'] * 100:.1f} – {gap['ci_high'] * 100:.1f}</div></div>")
    if len(large):
        worst = large.iloc[0]
        body.append(
            f"<div class='card'><div>worst race × gender group</div><div class='v'>{html_text(worst['group'])}</div>"
            f"<div class='ci'>"
            f"{html_text(with_interval(worst['accuracy'], worst['accuracy_low'], worst['accuracy_high']))}"
            f", n = {worst['n']:,}</div></div>"
        )
    body.append("</div>")
    if cell is not None and not len(large):
        body.append(f"<p class='warn'>No race × gender group has {cell.min_size} or more images: the numbers "
                    "below are too thin to rank anyone.</p>")
    if spec.name != DEFAULT_TASK:
        body.append(f"<p class='warn'>{html_text(ctx.cache.model_meta['name'])} has no {TASKS[DEFAULT_TASK].title} "
                    f"head: this report audits its {html_text(spec.title)} decisions "
                    f"({html_text(', '.join(ctx.cache.task(t).title for t in ctx.cache.tasks))} only).</p>")
    if ctx.cache.mapping_note(spec.name):
        body.append(f"<p class='warn'>{html_text(ctx.cache.mapping_note(spec.name))}</p>")
    if spec.binary:
        body.append(
            f"<p>Positive class for the rates: <b>{html_text(spec.positive)}</b> (fairlearn's convention). The true "
            f"positive rate (TPR) is the share of {spec.people[1]} the model calls {spec.called[1]}, the false "
            f"positive rate (FPR) the share of {spec.people[0]} it calls {spec.called[1]}; read the other way, 1 − TPR "
            f"of {spec.people[1]} are called {spec.called[0]} and 1 − FPR of {spec.people[0]} are called "
            f"{spec.called[0]}, correctly.</p>"
        )
    return Section("Summary", "".join(body))


def data_section(ctx: ReportContext) -> Section:
    meta, rows = ctx.cache.meta, ctx.cache.rows
    data, model = ctx.cache.data_meta, ctx.cache.model_meta
    limit = f", first {html_text(data['limit'])}" if data["limit"] else ""
    facts = [
        ("model", f"{html_text(model['name'])} ({html_text(model['arch'])}), sha256 "
                  f"<code>{html_text(model['sha256'][:16])}…</code>"),
        *([("kind of model", html_text(model["kind"]) + "".join(
            f"; {html_text(task)} classes mapped by name: {html_text(mapping)}"
            for task, mapping in model.get("label_mapping", {}).items()))] if model.get("kind") else []),
        *([("maps", html_text(OCCLUSION_MAPS.replace("**", "")))] if OCCLUSION in ctx.cache.methods else []),
        ("images", (f"{len(rows):,} of the labelled folder <code>{html_text(data['root'])}</code> (labels "
                    f"<code>{html_text(data['labels'])}</code>)" if data.get("labels") else
                    f"{len(rows):,} of the <b>{html_text(data['split'])}</b> split of FairFace "
                    f"(<code>{html_text(data['root'])}</code>)") + limit),
        ("computed", f"{html_text(ctx.cache.created)} by faircam {html_text(meta.get('faircam_version', '?'))}, "
                     f"cache schema {html_text(meta.get('schema_version', '?'))}"),
        *([("answers", html_text(ctx.cache.answers_note))] if ctx.cache.answers_note else []),
        ("left out", f"{html_text(data['dropped_total'])} label rows dropped, {html_text(data['unreadable'])} images "
                     "unreadable" + (f", {html_text(data['unanswered'])} not answered by the table and "
                                     f"{html_text(data['not_in_data'])} of its files not in the data"
                                     if "not_in_data" in data else "")),
        ("faces found", f"MTCNN found a face in {rows['face_found'].mean():.1%} of the images"
         if "face_found" in rows else "not recorded"),
    ]
    facts += [(f"grouped by {a.name}", f"{len(a.levels)} levels: " + html_text(", ".join(map(label, a.levels))) +
               (" (image quality, measured on each face)" if a.source == "quality" else ""))
              for a in ctx.cache.attributes]
    facts += [("not a grouping", html_text(note)) for note in data.get("notes", [])]
    table = _table(["", ""], [[f"<b>{html_text(k)}</b>", v] for k, v in facts], set())
    parts = [table]
    if rows["race"].notna().any():
        counts = rows.groupby(["race", "gender"]).size().unstack(fill_value=0)
        counts["total"] = counts.sum(axis=1)
        parts += ["<h3>Images per race and gender</h3>", _table(
            ["race", *counts.columns],
            [[html_text(label(race)), *[f"{v:,}" for v in values]] for race, values in counts.iterrows()],
            set(range(1, len(counts.columns) + 1)))]
    if rows["age"].notna().any():
        ages = group_table(rows, GROUPINGS["age"], [])
        parts += ["<h3>Images per age group</h3>",
                  _table(["age", "n"], [[html_text(a), f"{n:,}"] for a, n in zip(ages["group"], ages["n"])], {1})]
    return Section("The data", "".join(parts))


def definitions_section(ctx: ReportContext) -> Section:
    audit = next(iter(ctx.audits.values()))
    spec, measures = as_task(audit.task), task_measures(audit.task).values()
    gaps = {m.gap: m.gap_words_for(spec) for m in measures if m.gap}
    items = "".join(f"<li>{html_text(text)}</li>" for text in (*[m.words_for(spec) for m in measures], *gaps.values()))
    return Section("How to read the numbers", f"<ul>{items}</ul><p class='note'>Every number carries its n and a "
                   f"95% interval: a group's rate its {INTERVALS['proportion']}, a gap between groups its 95% "
                   f"percentile bootstrap interval ({audit.n_boot:,} resamples, seed {audit.seed}). Groups under "
                   f"{audit.min_size} images are flagged ⚠ small, listed last and left out of the gaps.</p>")


def grouping_sections(ctx: ReportContext) -> list[Section]:
    """One section per grouping of the cache (FairFace's, then its attributes: `groups.groupings`): the default
    task's gaps with their intervals, its accuracy per group, equalized odds and every group's rates."""
    sections = []
    for name, audit in ctx.audits.items():
        parts = [gap_cards(audit), rate_figure(audit, "accuracy")]
        if as_task(audit.task).binary and as_task(audit.task).label_column not in audit.by:
            parts += [f"<h3>Equalized odds: who is called {as_task(audit.task).called[1]}</h3>",
                      equalized_odds_figure(audit)]
        parts += ["<h3>Every group's rates (95% intervals)</h3>", groups_table(audit)]
        sections.append(Section(f"Fairness by {name}", "".join(parts)))
    return sections


def failures_section(ctx: ReportContext) -> Section | None:
    """Where the model fails: its worst slices (image quality, the label file's columns; alone and with race and
    gender) with their intervals and Benjamini-Hochberg flags, and whether image quality explains a group gap."""
    attributes = failure_attributes(ctx.cache.attributes)
    if not attributes:
        return None
    rows, spec = ctx.cache.rows, ctx.cache.task(ctx.cache.main_task)
    found = slices(rows, attributes, task=spec)
    worst = found[~found["small"]].head(15)
    table = _table(["slice", "n", f"accuracy ({INTERVALS['proportion']})", "the other images", "q", "stands apart"],
                   [[html_text(slice_name(r["grouping"], r["group"])), f"{r['n']:,}",
                     _with_interval(r["accuracy"], r["accuracy_low"], r["accuracy_high"]),
                     percent(r["rest"]), q_value(r["q"]),
                     "★" if r["flagged"] else ""] for _, r in worst.iterrows()], {1, 2, 3, 4})
    found_words = explanation_words(quality_explanations(rows, attributes, groupings(rows, ctx.cache.attributes),
                                                         task=spec))
    words = "".join(f"<li>{html_text(sentence)}</li>" for sentence in found_words)
    return Section("Where does it fail?", f"<p>The slices of the data with the lowest accuracy, worst first (slices "
                   f"under {MIN_GROUP_SIZE} images left out); ★: the slice stands apart from the other images after "
                   f"{MULTIPLE_COMPARISONS} over every slice.</p>{table}"
                   + (f"<h3>Does image quality explain a group gap?</h3><ul>{words}</ul>" if words else ""))


def confusion_table(rows: pd.DataFrame, task: str | Task) -> str:
    """The confusion matrix as a table: true classes down, predicted across, each cell its count and its share
    of the row (the diagonal, each class's recall, in bold)."""
    matrix = confusion(rows, task)
    share = row_shares(matrix)
    body = []
    for i, true in enumerate(matrix.index):
        cells = []
        for j, predicted in enumerate(matrix.columns):
            cell = f"{matrix.loc[true, predicted]:,}<br><span class='ci'>{share.loc[true, predicted]:.0%}</span>"
            cells.append(f"<b>{cell}</b>" if i == j else cell)
        body.append([f"<b>{html_text(label(true))}</b> (n = {matrix.loc[true].sum():,})", *cells])
    header = ["true \\ predicted", *[label(c) for c in matrix.columns]]
    return _table(header, body, set(range(1, len(header))))


def class_table(rows: pd.DataFrame, task: str | Task, n_boot: int, seed: int) -> str:
    """Precision and recall per class with their Wilson intervals, F1 with its bootstrap interval, and the n of each."""
    scores = overall_scores(rows, task, n_boot=n_boot, seed=seed).drop(index="all")

    def cell(value: float, low: float, high: float, n: int) -> str:
        return _with_interval(value, low, high) if n else "– (none)"

    body = [[html_text(label(c)), f"{int(r['n']):,}",
             cell(r["precision"], r["precision_low"], r["precision_high"], r["precision_n"]),
             f"{int(r['precision_n']):,}", cell(r["recall"], r["recall_low"], r["recall_high"], r["recall_n"]),
             cell(r["f1"], r["f1_low"], r["f1_high"], r["n"])] for c, r in scores.iterrows()]
    header = ["class", "images (n)", f"precision ({INTERVALS['proportion']})", "predicted as it",
              f"recall ({INTERVALS['proportion']})", f"F1 ({INTERVALS['difference']})"]
    return _table(header, body, {1, 2, 3, 4, 5})


def gaps_table(audit: Fairness) -> str:
    """An audit's gaps as one table: each gap with its interval, the groups it compares, the highest and lowest, and
    what it leaves out or why it is not defined."""
    body = []
    for name, gap in audit.gaps.iterrows():
        defined = not pd.isna(gap["value"])
        # An undefined gap names no highest or lowest group; its last cell says why it is not defined.
        why = " ".join(text_or(t, "") for t in (gap["note"], gap["excluded"] and f"Left out: {gap['excluded']}."))
        body.append([html_text(name), f"{gap['value'] * 100:.1f} points" if defined else "not defined",
                     f"{gap['ci_low'] * 100:.1f} – {gap['ci_high'] * 100:.1f}" if defined else "–",
                     f"{gap['groups_compared']}", html_text(text_or(gap["highest"])),
                     html_text(text_or(gap["lowest"])), html_text(why.strip() or "–")])
    header = ["gap", "value", "95% interval (points)", "groups compared", "highest", "lowest",
              f"left out (under {audit.min_size}) or why not"]
    return _table(header, body, {1, 2, 3})


def task_sections(ctx: ReportContext) -> list[Section]:
    """One section per task of the cache, in `TASKS`' order (`_task_section`)."""
    return [_task_section(ctx, task) for task in TASKS if task in ctx.cache.tasks]


def _task_section(ctx: ReportContext, task: str) -> Section:
    """One task's section: its accuracy, confusion and per-class numbers; for a multi-class task also the per-group
    rates and gaps by every grouping (a binary task's are the fairness sections)."""
    spec = ctx.cache.task(task)
    rows = ctx.cache.rows
    boot = next(iter(ctx.audits.values()))
    measures = {"accuracy": f"{spec.title} accuracy", **({"within_one": "within one bin"} if spec.ordinal else {})}
    overall = group_table(rows, [], list(measures), task=spec).iloc[0]
    every = task_measures(spec).values()
    cards = "".join(
        f"<div class='card'><div>{html_text(title)}</div><div class='v'>{overall[m]:.1%}</div><div class='ci'>"
        f"{html_text(with_interval(overall[m], overall[f'{m}_low'], overall[f'{m}_high']))}; n = "
        f"{int(overall[f'{m}_n']):,}</div></div>" for m, title in measures.items())
    parts = [f"<div class='cards'>{cards}</div>"]
    if ctx.cache.mapping_note(task):
        parts.insert(0, f"<p class='warn'>{html_text(ctx.cache.mapping_note(task))}</p>")
    if not spec.binary:
        # The per-class measures are one family: said once, for the first class.
        said = [m for m in every if not m.per_class] + [next(m for m in every if m.per_class)]
        words = "".join(f"<li>{html_text(m.words_for(spec))}</li>" for m in said)
        gaps = "".join(f"<li><b>{html_text(m.gap)}</b>: {html_text(m.gap_words_for(spec))}</li>" for m in said if m.gap)
        parts = [f"<p class='note'>{html_text(spec.caveat)} {html_text(BINARY_ONLY)}</p>", *parts,
                 f"<ul>{words}{gaps}</ul>"]
    parts += ["<h3>Confusion matrix</h3><p>Each cell: the images of the true class (row) given the predicted "
              "class (column), and their share of the row; the diagonal holds each class's recall.</p>",
              confusion_table(rows, spec), "<h3>Per class</h3>", class_table(rows, spec, boot.n_boot, boot.seed)]
    for grouping, audit in ctx.task_audits.get(task, {}).items():
        parts += [f"<h3>By {html_text(grouping)}</h3>", gaps_table(audit), rate_figure(audit, "accuracy"),
                  groups_table(audit)]
    title = (f"{spec.title.capitalize()} predictions (a subject of the audit)" if spec.caveat
             else f"{spec.title.capitalize()}: confusion and per class")
    return Section(title, "".join(parts))


def model_card_section(ctx: ReportContext) -> Section:
    if ctx.model_card is None:
        return Section("Model card", f"<p class='warn'>No model card: {html_text(ctx.model_card_note)}</p>")
    note = f"<p class='note'>{html_text(ctx.model_card_note)}</p>" if ctx.model_card_note else ""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(ctx.model_card)
    for token in tokens:  # the card's own headings sit under this section's heading
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 2, 6)}"
    rendered = md.renderer.render(tokens, md.options, {})
    return Section("Model card", f"{note}<div class='card-md'>{rendered}</div>")


def caveats_section(ctx: ReportContext) -> Section:
    said = caveats(task for task in TASKS if task in ctx.cache.tasks)
    return Section("Caveats", "<ul>" + "".join(f"<li>{html_text(c)}</li>" for c in said) + "</ul>")


SECTIONS: list[SectionFunction] = [
    summary_section,
    definitions_section,
    grouping_sections,
    failures_section,
    task_sections,
    data_section,
    model_card_section,
    caveats_section,
]


def build_report(cache: EvalCache, model_card: str | None = None, model_card_note: str = "",
                 sections: list[SectionFunction] | None = None, n_boot: int = N_BOOT, seed: int = SEED) -> str:
    """The audit of `cache` as one self-contained HTML document."""
    # The fairness sections audit gender, or the first task of a model without a gender head (`main_task`); each
    # other multi-class task's groups are in its own section.
    audits = {name: fairness(cache.rows, by, n_boot=n_boot, seed=seed, task=cache.task(cache.main_task))
              for name, by in groupings(cache.rows, cache.attributes).items()}
    task_audits = {task: {name: fairness(cache.rows, by, n_boot=n_boot, seed=seed, task=cache.task(task))
                          for name, by in groupings(cache.rows).items()}
                   for task in cache.tasks if TASKS[task].positive is None and task != cache.main_task}
    ctx = ReportContext(cache=cache, audits=audits, model_card=model_card, model_card_note=model_card_note,
                        task_audits=task_audits)
    built = [s for f in (sections or SECTIONS) for s in _as_list(f(ctx))]
    for i, section in enumerate(built):
        section.anchor = section.anchor or f"s{i + 1}"
    model = cache.model_meta["name"]
    toc = "".join(f"<li><a href='#{s.anchor}'>{html_text(s.title)}</a></li>" for s in built)
    body = "".join(f"<section id='{s.anchor}'><h2>{html_text(s.title)}</h2>{s.body}</section>" for s in built)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>faircam audit: {html_text(model)}</title><style>{_CSS}</style></head><body>"
        f"<h1>faircam audit report</h1><p class='lead'>{html_text(model)} on {len(cache.rows):,} FairFace "
        f"{html_text(cache.data_meta['split'])} images · report written {now} from the evaluation "
        f"computed {html_text(cache.created)}</p><nav><ol>{toc}</ol></nav>{body}</body></html>"
    )


# A text cell starting with one of these runs as a formula when the CSV is opened in a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def rows_csv(cache: EvalCache) -> bytes:
    """The per-image rows of the cache as CSV (UTF-8, one header line).

    Text cells that a spreadsheet would run as a formula get a leading apostrophe, which
    spreadsheets read as "this is text"; numbers are written as they are.
    """
    rows = cache.rows.copy()
    for column in rows.columns:
        if pd.api.types.is_string_dtype(rows[column]):
            rows[column] = [f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v for v in rows[column]]
    return rows.to_csv(index=False).encode("utf-8")


def recorded_model(cache: EvalCache) -> LoadedModel:
    """The model `cache` was computed with, found by what its metadata records (its registered name, its files'
    path; the bundled cache names the run that trained the bundled model, so the default model is tried last) and
    taken only where its checksum is the cache's; `ModelError` saying which model is missing, or that a table of
    answers has none."""
    from faircam.models import registry

    meta = cache.model_meta
    if cache.answers_only:
        raise ModelError(f"{meta['name']} is a table of answers: no model ran, so there is no model to describe.")
    entries = registry.entries()
    path = meta.get("path")
    candidates = [*([meta["name"]] if meta["name"] in entries else []),
                  *(name for name, entry in entries.items() if path and str(entry.weights) == path),
                  *([path] if path and Path(path).exists() else []), None]
    for candidate in dict.fromkeys(candidates):
        try:
            model = registry.load_model(candidate)
        except ModelError:
            continue  # another candidate may be it
        if model.sha256 == meta["sha256"]:
            return model
    raise ModelError(f"the model this evaluation was computed for ({meta['name']}, {meta.get('kind', 'checkpoint')}) "
                     "is not on this server: pass --model NAME|PATH to describe it.")


def model_card_markdown(cache: EvalCache, model_path: Path | str | None = None) -> tuple[str | None, str]:
    """The model card of a registered model name or checkpoint path (None: the model the cache was computed with,
    `recorded_model`) as Markdown and a note, or (None, why not).

    Loading a model needs torch, imported here only when a report is written.
    """
    from faircam.audit.modelcard import model_card
    from faircam.models.registry import load_model

    try:
        model = recorded_model(cache) if model_path is None else load_model(model_path)
    except ModelError as exc:
        return None, str(exc)
    note = ""
    if model.sha256 != cache.model_meta["sha256"]:
        note = (f"The checkpoint {Path(model_path).name} is not the model this evaluation was computed for: "
                "the card's description is of that checkpoint, its numbers of this evaluation.")
    return model_card(model, cache), note


def write_report(cache: EvalCache, out: Path, csv: Path | None = None, model_path: Path | str | None = None) -> dict:
    """Write the HTML report (and the CSV), with the card of `model_path` (None: of the model the cache was computed
    with); returns what was written, for the CLI to print."""
    card, note = model_card_markdown(cache, model_path)
    write_atomic(out, build_report(cache, card, note))
    written = {"out": str(out), "images": len(cache.rows), "model_card": card is not None}
    if csv is not None:
        write_atomic(csv, rows_csv(cache))
        written["csv"] = str(csv)
    return written

