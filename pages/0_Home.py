"""Home: what faircam is, where to go, and which model, cache and data the app uses."""

import streamlit as st

from faircam.config import cache_path_for, settings
from faircam.dashboard import ui
from faircam.data.labelled import data_splits
from faircam.models import registry
from faircam.tasks import TASKS
from faircam.text import md

ui.page_setup("faircam: why does a face classifier decide, and for whom does it fail?", "🔍")

st.markdown(
    """
faircam audits a **face classifier** on faces from **FairFace**, a dataset balanced across seven
race groups: its gender decisions, and for a model with those heads its race and age decisions, which are
here only as subjects of the audit. It answers two questions, without any code:

- **Why** does the model decide what it decides? Class activation maps show where it looked.
- **For whom** does it fail? Accuracy per race, gender and age, with sample sizes and intervals.
"""
)
c1, c2, c3, c4 = st.columns(4)
with c1:
    ui.page_link("pages/1_Explore.py", "**Explore a face**", "🔍")
    st.caption("Pick a FairFace face or upload a photo; crop, blur, and compare four kinds of heat map.")
with c2:
    ui.page_link("pages/2_Evaluation.py", "**Evaluation**", "📊")
    st.caption("Confusion matrix and accuracy by race, gender and race × gender.")
with c3:
    ui.page_link("pages/10_Classroom.py", "**Classroom**", "🎓")
    st.caption("For a class: one face, step by step, in plain words; with example faces or your own photo. "
               "Turn on *Presentation mode* in the sidebar for a projector.")
with c4:
    ui.page_link("pages/3_About.py", "**About the model and the maps**", "ℹ️")
    st.caption("The model card, and how to read a class activation map.")
ui.page_link("pages/12_Glossary.py", "Glossary: every term of the audit in plain words", "📖")

st.divider()
current = settings()
splits = data_splits(current.data_dir, current.labels_path)
st.markdown("#### What this app is using")
model = ui.selected_model()
tasks = ", ".join(f"**{TASKS[t].title}**" if t == ui.selected_task() else TASKS[t].title
                  for t in ui.model_tasks(model))
st.markdown(
    f"- **Model:** {md(model)} (pick another in the sidebar, or compare them on *Compare models*)\n"
    f"- **Decisions it makes:** {tasks} (the sidebar's *Task* picks the one every page audits)\n"
    + (f"- **Photos:** a labelled folder of {', '.join(splits)} photos" if splits and current.labels_path
       else f"- **Photos:** FairFace's {', '.join(splits)} photos" if splits
       else "- **Photos:** no FairFace folder found; you can still upload your own photos on Explore")
)
with st.expander("Details for auditors: files"):
    st.markdown(
        f"- **Model weights:** {md(registry.entries()[model].weights, code=True)}\n"
        f"- **Evaluation cache:** {md(cache_path_for(model), code=True)}\n"
        + (f"- **Labelled folder:** {md(current.data_dir, code=True)} (labels {md(current.labels_path, code=True)})"
           if splits and current.labels_path
           else f"- **FairFace folder:** {md(current.data_dir, code=True)}" if splits
           else "- **FairFace folder:** none: set `FAIRCAM_DATA`, or run `faircam fetch-fairface`")
    )
