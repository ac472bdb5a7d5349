"""One source for every number: a group's accuracy and interval read from every place that shows it
(the Evaluation, Fairness, About and Compare pages and the sidebar through AppTest, the model card, the
HTML report) are the same, and are the group table's."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest
from test_task_measures import table_with

from faircam.audit.groups import GROUPINGS, group_table, size_label, with_interval
from faircam.audit.modelcard import model_card
from faircam.audit.report import build_report
from faircam.config import ASSETS, DEFAULT_MODEL_NAME, PROJECT_ROOT, cache_path_for
from faircam.evaluation.cache import read_cache
from faircam.models.registry import load_model

TIMEOUT = 180


@pytest.fixture(scope="module")
def cache():
    return read_cache(cache_path_for(DEFAULT_MODEL_NAME))


def expected(cache, grouping: str, group: str) -> tuple[str, str]:
    """The group's row label ("Black (n=388)") and accuracy with interval, from the group table."""
    row = group_table(cache.rows, GROUPINGS[grouping]).set_index("group").loc[group]
    return (size_label(group, int(row["n"]), bool(row["small"])),
            with_interval(row["accuracy"], row["accuracy_low"], row["accuracy_high"]))


def page_cell(page: str, first_column: str, group_label: str) -> str:
    """The accuracy cell of a group's row in the page's table whose first column is `first_column`."""
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = table_with(at, first_column)
    accuracy = next(c for c in table.columns if str(c).startswith("accuracy"))
    return table.set_index(first_column).loc[group_label, accuracy]


def report_cell(page: str, labels: list[str]) -> str:
    """The accuracy cell of a group's row in a report table: its labels, n, (men, women), accuracy."""
    start = page.index("".join(f"<td>{label}</td>" for label in labels))
    row = page[start:page.index("</tr>", start)]
    return re.findall(r"<span class='ci'>([^<]+)</span>", row)[0]


def card_cell(card: str, labels: list[str]) -> str:
    """The accuracy cell of a group's row in the card's Markdown tables (the first table naming it)."""
    line = next(li for li in card.splitlines() if li.startswith("| " + " | ".join(labels) + " |"))
    return line.split(" | ")[len(labels)]


def test_a_groups_accuracy_is_the_same_everywhere(cache):
    label, black = expected(cache, "race", "Black")
    _, black_female = expected(cache, "race × gender", "Black / Female")
    everyone = with_interval(*group_table(cache.rows, []).iloc[0][["accuracy", "accuracy_low", "accuracy_high"]])

    card = model_card(load_model(DEFAULT_MODEL_NAME), cache)
    # The card the About page shows is the one written from this model and cache.
    assert (ASSETS / "MODEL_CARD.md").read_text(encoding="utf-8") == card
    report = build_report(cache, card, n_boot=50)

    found = {
        "Evaluation": page_cell("pages/2_Evaluation.py", "race", label),
        "Fairness": page_cell("pages/4_Fairness.py", "race", label),
        "About": page_cell("pages/3_About.py", "race", label),
        "model card": card_cell(card, ["Black"]),
        "report": report_cell(report, ["Black"]),
    }
    assert found == dict.fromkeys(found, black), found
    # Compare puts the models side by side, each cell "accuracy (interval), n=…"; the sidebar gives the overall.
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/9_Compare.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    side_by_side = table_with(at, "race")
    assert side_by_side.set_index("race").loc["Black", DEFAULT_MODEL_NAME].startswith(f"{black}, n=")
    assert any(f"Validation accuracy {everyone} on" in c.value for c in at.sidebar.caption)
    assert card_cell(card, ["Black", "Female"]) == black_female
    assert report_cell(report, ["Black", "Female"]) == black_female
    assert f"**Accuracy: {everyone}**" in card and everyone in report
