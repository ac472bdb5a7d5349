"""Glossary: every term the app uses, defined once (`faircam.glossary`)."""

import streamlit as st

from faircam.dashboard import ui
from faircam.glossary import TERMS, Term, find
from faircam.text import md

ui.page_setup("Glossary: the words of the audit", "📖")
st.caption("Each term once, in plain words, with the pages where you meet it.")


def definition(term: Term) -> str:
    used = f"  \n*Used on: {', '.join(term.pages)}.*" if term.pages else ""
    return f"**{md(term.name)}**: {term.definition}{used}"


# A page's link to one term (`ui.glossary_link`) opens the Glossary with that term first; the page writes no other
# state, so the address's `term` is always the one asked about (a menu change of page empties it).
try:
    st.info(definition(find(st.query_params.get("term", ""))))
except KeyError:
    pass
for term in TERMS:
    st.markdown(definition(term))
