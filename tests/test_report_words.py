"""The audit report and the Fairness page as people read them, on the bundled (gender, race and age) evaluation:
no `nan`, group names as people write them, caveats worded for each task, and every per-class rate that counts
too few faces flagged."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from streamlit.testing.v1 import AppTest
from test_task_measures import as_read

from faircam.cli import main
from faircam.config import MIN_GROUP_SIZE, PROJECT_ROOT
from faircam.tasks import TASKS


class Cells(HTMLParser):
    """The report's text, and its table cells one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Cells:
    out = tmp_path_factory.mktemp("report") / "audit.html"
    assert main(["report", "--out", str(out)]) == 0
    parsed = Cells()
    parsed.feed(out.read_text(encoding="utf-8"))
    return parsed


def test_the_report_has_no_nan(report):
    text = " ".join(report.text)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE), re.findall(r".{80}\bnan\b.{20}", text)[:3]
    # An undefined gap says why instead.
    assert any("Fewer than two groups have" in c for c in report.cells)


def test_the_report_writes_group_names_as_people_do(report):
    text = " ".join(report.text)
    assert "Latino_Hispanic" not in text and "Latino Hispanic" in text


def test_the_report_words_its_caveats_for_each_task(report):
    caveats = " ".join(report.text).split("Caveats")[-1]
    assert TASKS["race"].caveat in caveats
    assert "called male more often" in caveats and "why it means male or female" not in caveats


def test_every_per_class_cell_under_the_threshold_is_flagged(report):
    counted = [(c, int(n.replace(",", ""))) for c in report.cells if (n := next(iter(re.findall(r", n=([\d,]+)", c)),
                                                                                      None))]
    small = [c for c, n in counted if n < MIN_GROUP_SIZE]
    assert small and all(c.endswith("⚠ small") for c in small), small[:3]
    assert all("⚠" not in c for c, n in counted if n >= MIN_GROUP_SIZE)


def test_fairness_page_on_age_has_no_nan_and_flags_small_cells():
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=240)
    at.switch_page("pages/4_Fairness.py")
    at.session_state["faircam_task"] = "age"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [str(as_read(v)) for frame in [*at.dataframe, *at.table] for v in frame.value.to_numpy().ravel()]
    said = " ".join(m.value for m in [*at.markdown, *at.caption]) + " ".join(shown)
    assert not re.search(r"\bnan\b", said, re.IGNORECASE)
    cells = [v for v in shown if re.search(r", n=\d+", v)]
    small = [v for v in cells if int(re.search(r", n=([\d,]+)", v)[1].replace(",", "")) < MIN_GROUP_SIZE]
    assert small and all(v.endswith("⚠ small") for v in small)
    assert TASKS["age"].caveat in said and "more men in it" not in said

