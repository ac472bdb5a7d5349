"""About: the model card of the selected model (every task's numbers), what race and age predictions are and are not,
the models faircam can audit, and how to read a CAM."""

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from faircam import wording
from faircam.audit import compare, groups
from faircam.config import ASSETS, MIN_GROUP_SIZE
from faircam.dashboard import ui
from faircam.models import registry
from faircam.tasks import DEFAULT_TASK, TASKS
from faircam.text import md

ui.page_setup("About the model and the maps", "ℹ️")
entry = registry.entries()[ui.selected_model()]
# Read from the weights file without loading the network: this page needs no torch.
model = ui.checkpoint()
info = model.get("info") or {}
path = Path(model["path"])

st.markdown(f"## Model card: {md(entry.name)}")
st.markdown(f"**{md(entry.title)}** · origin: {md(entry.origin)} · licence: {md(entry.licence)}")
c1, c2, c3 = st.columns(3)
# Metric values render as Markdown: the checkpoint's metadata and the registry's text are escaped.
c1.metric("Architecture", md(model.get("arch", entry.title)))
c2.metric("Input", md(f"{model['input_size']}×{model['input_size']} RGB" if "input_size" in model else entry.input))
tasks = ui.model_tasks(entry.name)
if len(tasks) > 1:
    c3.metric("Tasks", ", ".join(TASKS[t].title for t in tasks),
              help="One network, one head per task: " + "; ".join(
                  f"{TASKS[t].title}: {' / '.join(groups.label(c) for c in TASKS[t].classes)}"
                  for t in tasks))
else:
    c3.metric("Classes", md(" / ".join(model.get("classes") or ()) or entry.classes))
caches, _ = ui.available_evaluations([entry.name])
if entry.name in caches:
    # The evaluation cache, like the sidebar, the card and every other page; the accuracy the
    # checkpoint recorded during training (in its metadata below) is another measurement.
    cache = caches[entry.name]
    rows = cache.rows
    if DEFAULT_TASK in cache.tasks:
        overall = groups.group_table(rows, []).iloc[0]
        accuracy = groups.with_interval(*overall[["accuracy", "accuracy_low", "accuracy_high"]])
        what = "gender accuracy" if len(tasks) > 1 else "accuracy"
        st.markdown(f"**Validation {what}:** {accuracy} on {overall['n']:,} FairFace validation images "
                    f"({groups.INTERVALS['proportion']}; measured on the saved evaluation).")
    else:
        st.info(ui.lacking(cache, DEFAULT_TASK))
    measured = [t for t in tasks if t in cache.tasks]
    for t in measured:  # a coarser model's tasks: compared in its own classes, through the mapping said here
        if cache.mapping_note(t):
            st.info(md(cache.mapping_note(t)))
    if len(tasks) > 1:
        table = []
        for t in measured:
            spec = cache.task(t)
            one = groups.group_table(rows, [], ["accuracy", "within_one"] if spec.ordinal else ["accuracy"],
                                     task=spec).iloc[0]
            table.append({"task": spec.title, "classes": len(spec.classes),
                          f"accuracy ({groups.INTERVALS['proportion']})": groups.with_interval(
                              *one[["accuracy", "accuracy_low", "accuracy_high"]]),
                          "within one bin": groups.with_interval(*one[["within_one", "within_one_low",
                                                                       "within_one_high"]])
                          if spec.ordinal else "–", "n": int(one["accuracy_n"])})
        ui.table(pd.DataFrame(table), hide_index=True, static=True)
        missing = [TASKS[t].title for t in tasks if t not in cache.tasks]
        if missing:
            st.caption(f"Not in this evaluation: {', '.join(missing)}. Run {ui.evaluate_hint(entry.name)}.")
    task = ui.selected_task()
    if task in measured:
        title = TASKS[task].title
        if len(tasks) > 1:
            st.markdown(f"**{title.capitalize()} accuracy by race** (the task chosen in the sidebar)")
        by_race = groups.ranked(groups.group_table(rows, groups.GROUPINGS["race"], task=cache.task(task)))
        ui.table(pd.DataFrame({
            "race": [groups.size_label(g, n, small) for g, n, small in by_race[["group", "n", "small"]].to_numpy()],
            f"accuracy ({groups.INTERVALS['proportion']})": [
                groups.with_interval(*v) for v in by_race[["accuracy", "accuracy_low", "accuracy_high"]].to_numpy()],
        }), hide_index=True, static=True)
if entry.kind == "checkpoint" and "accuracy" not in (info.get("metrics") or {}):
    st.warning("This checkpoint records no validation accuracy: it is a placeholder, not an audited model.")
if entry.notice is not None and entry.notice.is_file():
    with st.expander("Origin and licence notice"):
        st.markdown(entry.notice.read_text(encoding="utf-8"))

card = ASSETS / "MODEL_CARD.md"
if path.resolve() == (ASSETS / "model.pt").resolve() and card.is_file():
    with st.expander("Details for auditors: the full model card (training record, checkpoint hash, probes)"):
        st.markdown(card.read_text(encoding="utf-8"))
with st.expander("Details for auditors: the checkpoint's metadata and file"):
    st.code(json.dumps({"name": info.get("name") or path.name, **model}, indent=2, default=str), language="json")

st.markdown("## Race and age predictions: what they are and are not")
st.markdown(f"{wording.RACE_AGE_IS}\n\n**{wording.RACE_AGE_MUST_NOT}**\n\n{wording.RACE_AGE_WHY}")

st.markdown("## Models faircam can audit")
st.caption("Pick one in the sidebar, or compare them on *Compare models*. Accuracy and gaps are measured on the "
           "validation images every saved evaluation holds; gaps are best minus worst group among groups of at least "
           f"{MIN_GROUP_SIZE} images.")
entries = registry.entries()
# Static tables: their text wraps, where a data grid would cut the titles and licences.
ui.table(pd.DataFrame([e.describe() for e in entries.values()]).drop(columns="weights"), hide_index=True, lead=1)
caches, missing = ui.available_evaluations(list(entries))
# The table compares gender decisions: a model without a gender head is named below it.
without = [name for name, cache in caches.items() if DEFAULT_TASK not in cache.tasks]
caches = {name: cache for name, cache in caches.items() if name not in without}
if caches:
    ui.table(compare.summary_shown(compare.summary(compare.shared_rows(caches))), hide_index=True, lead=1)
if without:
    st.caption(f"Not in this {TASKS[DEFAULT_TASK].title} table: {md(', '.join(without))}, whose evaluation holds no "
               f"{TASKS[DEFAULT_TASK].title} predictions (no {TASKS[DEFAULT_TASK].title} head).")
if missing:
    st.caption(f"Not evaluated yet: {md(', '.join(missing))}.")

st.markdown("## How to read a class activation map")
st.markdown(
    """
A **class activation map (CAM)** colours the parts of the picture that pushed the model towards the
answer it gave. Red means *a strong push*, blue means *little or none*. It is computed from the last
convolutional layer, whose grid is coarse (5×5 cells for a 160-pixel input), so maps are blurry
by nature: read them as "roughly here", not as outlines.

The four methods differ in how they weigh that layer's channels:

| method | idea |
|---|---|
| **Grad-CAM** | weigh each channel by its average gradient |
| **Grad-CAM++** | weigh by positive gradients, giving several objects (or face parts) their due |
| **XGrad-CAM** | weigh by gradients scaled by the activations, a choice with axiomatic grounding |
| **LayerCAM** | weigh each *location* by its own positive gradient, for finer maps |

When the four agree, the picture is clearer; when they disagree, be careful with conclusions.

**Focus score.** faircam finds the face and five landmarks (eyes, nose, mouth corners) with MTCNN and
measures which share of each map's heat falls on the face (the **focus score**) and on the eyes, nose,
mouth and the rest of the face, which add up to the focus score. Compare it with its **chance level**,
the share a map spread evenly over the picture would score: a focus score of 60% when the face covers
55% of the image says little; 90% says a lot.

**What a CAM is not.** It shows where the evidence was, not *why* that evidence means "male" or
"female" to the model, and not whether the model is fair. Use the Evaluation page for that.
"""
)
ui.page_link("pages/12_Glossary.py", "Every term of the audit, defined once: the Glossary", "📖")
