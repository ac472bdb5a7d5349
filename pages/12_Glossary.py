"""Glossary: every term the app uses, defined once (`faircam.glossary`)."""

import streamlit as st

from faircam.dashboard import ui
from faircam.glossary import TERMS
from faircam.text import md

ui.page_setup("Glossary: the words of the audit", "📖")
st.caption("Each term once, in plain words, with the pages where you meet it.")
for term in TERMS:
    st.markdown(f"**{md(term.name)}**: {term.definition}"
                + (f"  \n*Used on: {', '.join(term.pages)}.*" if term.pages else ""))
