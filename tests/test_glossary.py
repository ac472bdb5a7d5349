"""The Glossary page (every term once, `faircam.glossary`), its links from the pages that use the terms, and Home
and About in plain words (file paths, hashes and commands only under "Details for auditors")."""

from __future__ import annotations

import re

from streamlit.testing.v1 import AppTest

from faircam.config import PROJECT_ROOT
from faircam.glossary import TERMS
from faircam.text import md

TIMEOUT = 180


def run(page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def main_text(at: AppTest) -> str:
    """The page's words outside its expanders."""
    inside = {id(e.proto) for x in at.expander for e in [*x.markdown, *x.caption]}
    return "\n".join(e.value for e in [*at.markdown, *at.caption] if id(e.proto) not in inside)


def glossary_links(at: AppTest) -> int:
    return sum(link.proto.page == "Glossary" for link in at.get("page_link"))


def test_every_term_is_defined_once():
    names = [t.name.lower() for t in TERMS]
    assert len(names) == len(set(names))
    for needed in ("tpr", "fpr", "wilson", "bootstrap", "cam", "focus score", "chance level", "road", "deletion",
                   "insertion", "equalized odds", "demographic parity"):
        assert sum(needed in n for n in names) == 1, needed


def test_the_glossary_page_shows_each_term_once():
    at = run("pages/12_Glossary.py")
    shown = [m.value for m in at.markdown]
    for term in TERMS:
        assert sum(m.startswith(f"**{md(term.name)}**") for m in shown) == 1, term.name


def test_pages_link_to_the_glossary():
    for page in ("pages/0_Home.py", "pages/3_About.py", "pages/4_Fairness.py"):
        assert glossary_links(run(page)) == 1, page


def test_home_keeps_files_for_auditors():
    at = run("pages/0_Home.py")
    said = main_text(at)
    assert "**Model:**" in said and "`" not in said and ".pt" not in said and ".parquet" not in said
    details = next(x for x in at.expander if x.label.startswith("Details for auditors"))
    assert ".pt" in "\n".join(m.value for m in details.markdown)


def test_about_keeps_hashes_commands_and_notes_out_of_its_main_text():
    at = run("pages/3_About.py")
    said = main_text(at)
    assert "sha256" not in said and "faircam evaluate" not in said and "assets/" not in said
    everything = "\n".join(e.value for e in [*at.markdown, *at.caption])
    assert "shared/notes" not in everything and "backbone-probes" not in everything
    assert "sha256" in "\n".join(m.value for x in at.expander if x.label.startswith("Details for auditors")
                                 for m in x.markdown)


def words_shown(at: AppTest) -> str:
    """Everything the page puts in words: its text, its charts' labels and its tables' column names."""
    return "\n".join([e.value for e in [*at.markdown, *at.caption, *at.info]]
                     + [c.proto.spec for c in at.get("plotly_chart")]
                     + [" | ".join(map(str, d.value.columns)) for d in at.dataframe]
                     + [t.proto.SerializeToString().decode("utf-8", "replace") for t in at.table])


def test_attention_speaks_plainly_and_links_its_terms():
    at = run("pages/5_Attention.py")
    at.radio[0].set_value("gender").run()  # two groups large enough: the page gives its verdict
    assert not at.exception, [e.value for e in at.exception]
    said = words_shown(at)
    read = re.sub(r"\]\(Glossary\?[^)]*\)", "]", said)  # what a reader reads: a link's words, not its address
    assert "Does Grad-CAM look at the mouth more for some groups" in said
    for jargon in ("Welch", "focus_change", "flip_rate", "chance_change", "highest_q", "q = ", "MTCNN",
                   "false discovery"):
        assert jargon not in read, jargon
    assert "change of the focus score (dotted line: no change)" in said
    for term in ("q+value", "Welch%27s+t-test", "MTCNN", "focus+score", "chance+level"):
        assert re.search(rf"\]\(Glossary\?model=[^)]*&term={re.escape(term)}\)", said), term


def test_a_link_to_a_term_opens_the_glossary_at_that_term():
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/12_Glossary.py")
    at.query_params["term"] = "q value"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.info[0].value.startswith("**q value**: A p-value adjusted")
    at.query_params["term"] = "no such term"
    at.run()
    assert not at.info and not at.exception


def test_explores_toggles_name_no_detector():
    at = run("pages/1_Explore.py")
    labels = [t.label for t in at.main.toggle]
    assert "Crop and align the face" in labels and not any("MTCNN" in label for label in labels), labels
