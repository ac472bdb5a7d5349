"""The HTML audit report, the CSV of rows, and `faircam report`, on the bundled evaluation cache."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from faircam.audit.groups import label
from faircam.audit.report import SECTIONS, Section, build_report, rows_csv
from faircam.cli import main
from faircam.config import settings
from faircam.evaluation.cache import EvalCache, read_cache, write_cache


class Resources(HTMLParser):
    """Every tag, and every attribute that makes a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.fetched: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "xlink:href") and value:
                self.fetched.append(value)
            if name == "style" and value and "url(" in value:
                self.fetched.append(value)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def cache() -> EvalCache:
    return read_cache(settings().cache_path)


@pytest.fixture(scope="module")
def page(cache) -> str:
    return build_report(cache, model_card="# Model card: test\n\n## What it is\n- a <script>x</script> model\n",
                        n_boot=300)


def test_report_is_self_contained(page):
    parsed = Resources()
    parsed.feed(page)
    assert parsed.tags[:3] == ["html", "head", "meta"]
    assert "script" not in parsed.tags and "link" not in parsed.tags and "iframe" not in parsed.tags
    external = [v for v in parsed.fetched if not v.startswith("#")]
    assert external == []  # only in-page anchors: nothing to download, opens offline
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)  # nor from the stylesheet
    assert page.count("<svg") >= 4  # the figures are inline SVG


def test_report_holds_the_cache_numbers_with_their_n(cache, page):
    rows = cache.rows
    assert f"{rows['correct'].mean():.1%}" in page and f"n = {len(rows):,}" in page
    for race, part in rows.groupby("race"):
        # The group's row in the "by race" table: its label, its n, then its accuracy.
        expected = f"<td>{label(race)}</td><td class='num'>{len(part):,}</td>"
        assert expected in page, race
        row = page[page.index(expected):].split("</tr>")[0]
        assert f"{part['correct'].mean():.1%}" in row, race
        assert f">{(part['gender'] == 'Male').sum():,}<" in row  # its men
    for (race, gender), part in rows.groupby(["race", "gender"]):
        assert f"<td>{label(race)}</td><td>{gender}</td><td class='num'>{len(part):,}</td>" in page, (race, gender)
    for name in ("accuracy gap", "equalized odds difference", "demographic parity difference"):
        assert name in page
    assert "not defined" in page  # equalized odds by gender
    for section in ("Summary", "The data", "Model card", "Caveats", "Fairness by race × gender", "Fairness by age"):
        assert f">{section}</h2>" in page


def test_report_model_card_is_rendered_and_escaped(page):
    assert "<h3>Model card: test</h3>" in page and "<h4>What it is</h4>" in page  # under the section's h2
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_report_without_model_card_says_why(cache):
    page = build_report(cache, model_card=None, model_card_note="the checkpoint is damaged",
                        sections=[s for s in SECTIONS if s.__name__ == "model_card_section"], n_boot=50)
    assert "No model card: the checkpoint is damaged" in page


def test_report_sections_are_extensible(cache):
    def parity(ctx):
        if "agree | mean" not in ctx.cache.rows:  # a v2-only section stays out of a v1 report
            return None
        return Section("Explanation parity", "<p>parity</p>")

    def hello(ctx):
        return Section("Hello", f"<p>{len(ctx.cache.rows)} rows; race gap "
                                f"{ctx.audits['race'].gaps.loc['accuracy gap', 'value']:.3f}</p>")

    page = build_report(cache, sections=[hello, parity], n_boot=50)
    assert ">Hello</h2>" in page and f"<p>{len(cache.rows)} rows; race gap" in page
    assert ">Explanation parity</h2>" in page  # the bundled cache has the v2 columns
    without = dataclasses.replace(cache, rows=cache.rows.drop(columns="agree | mean"))
    assert "Explanation parity" not in build_report(without, sections=[hello, parity], n_boot=50)


@pytest.fixture(scope="module")
def tiny(cache, tmp_path_factory):
    """The first 40 images: every race x gender cell under 30 images."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.parquet"
    meta = {k: v for k, v in cache.meta.items() if k not in ("schema_version", "rows")}
    write_cache(cache.rows.head(40), path, meta)
    return path


def test_report_on_a_cache_too_small_to_rank(tiny):
    page = build_report(read_cache(tiny), n_boot=100)
    assert "No race × gender group has 30 or more images" in page
    assert "Fewer than two groups have 30 or more images" in page
    assert "⚠ small" in page and "worst race × gender group" not in page


def test_cli_report_on_a_tiny_cache(capsys, tmp_path, tiny):
    code = main(["report", "--out", str(tmp_path / "tiny.html"), "--cache", str(tiny)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "too few to name the worst" in (tmp_path / "tiny.html").read_text(encoding="utf-8")  # the model card


def test_rows_csv_round_trips(cache):
    back = pd.read_csv(io.BytesIO(rows_csv(cache)))
    # The attributes' level columns are categorical in memory, their levels' text in the file.
    levels = {a.column: str for a in cache.attributes}
    pd.testing.assert_frame_equal(back, cache.rows.astype(levels).reset_index(drop=True), check_dtype=False)


# --- faircam report --------------------------------------------------------------------------


def test_cli_report_writes_html_and_csv(capsys, tmp_path):
    out, csv = tmp_path / "out" / "audit.html", tmp_path / "rows.csv"
    code = main(["report", "--out", str(out), "--csv", str(csv)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result == {"out": str(out), "images": 2500, "model_card": True, "csv": str(csv)}
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Model card: faircam" in page
    assert len(pd.read_csv(csv)) == 2500


@pytest.mark.parametrize("content", [None, b"PAR1 not parquet"])
def test_cli_report_bad_cache_exits_2(capsys, tmp_path, content):
    bad = tmp_path / "cache.parquet"
    if content is not None:
        bad.write_bytes(content)
    code = main(["report", "--out", str(tmp_path / "r.html"), "--cache", str(bad)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faircam: error: ") and "Traceback" not in captured.err
    assert not (tmp_path / "r.html").exists()


def test_cli_report_with_a_damaged_model_still_writes_the_audit(capsys, tmp_path):
    broken = tmp_path / "model.pt"
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "audit.html"
    code = main(["report", "--out", str(out), "--model", str(broken)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["model_card"] is False
    assert "No model card:" in out.read_text(encoding="utf-8")
