"""Fuzzing what other people's files put on the pages and in the report, with hypothesis: cache metadata,
the model registry, checkpoint metadata and label files, through the pages (AppTest) and `faircam report`.

Whatever they hold, a page raises no exception and renders no link, image or tag from them (every Markdown text
checked as Streamlit renders it, autolinks included), and the report holds no tag that loads or links anything; a
file of the wrong shape is one line (`faircam: error: …`, exit 2). Pages run a few examples each (an AppTest run
costs seconds), the commands more. `HYPOTHESIS_PROFILE=long` runs twenty times as many.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import assert_one_line_error
from test_cli import run as cli
from test_crafted_data import (
    BARE,
    BREAKOUT,
    LINKS,
    TAGS,
    assert_page_inert,
    edited_cache,
    markup_in,
    report_problems,
    run,
)
from test_data_folders import folder
from test_fuzz import PROFILE

from faircam.config import DEFAULT_MODEL
from faircam.config import settings as faircam_settings
from faircam.evaluation.cache import read_cache

PAYLOADS = [LINKS, BARE, TAGS, BREAKOUT, "<faircam-tag>x</faircam-tag>", "$x^2$ :red[red] :material/home: ~~s~~",
            "**bold** _i_ `code` ``` ~~~", "# heading\n- item\n> quote", "javascript:alert(1)", "WWW.EVIL.EXAMPLE",
            "<a href=http://evil.example>x</a>", "&lt;img&gt; &amp; &#60;", "x\u2060y", "ftp://evil.example/x", "|a|b|"]
text = st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=30),
                 st.builds(str.__add__, st.sampled_from(PAYLOADS), st.text(max_size=8)))
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                          max_leaves=6)


def scaled(examples: int) -> int:
    return examples if PROFILE == "ci" else examples * 20


def fuzzed(examples: int):
    return settings(settings.get_profile(PROFILE), max_examples=scaled(examples),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def bundled():
    return read_cache(faircam_settings().cache_path)


# --- cache metadata ---------------------------------------------------------------------------------------------

record = {"file": text, "reason": text}
cache_metadata = st.fixed_dictionaries({}, optional={
    "created": json_value,
    "model": json_value | st.fixed_dictionaries({}, optional={k: json_value for k in ("name", "arch", "sha256")}),
    "data": json_value | st.fixed_dictionaries({}, optional={
        **{k: json_value for k in ("root", "split", "limit", "labelled", "unreadable", "dropped_total")},
        "dropped": st.lists(json_value | st.fixed_dictionaries(record, optional={"line": json_value}), max_size=3)}),
    "faithfulness": json_value | st.fixed_dictionaries({}, optional={"per_cell": json_value}),
})


def report_of(capsys, folder_: Path, cache: Path, *argv: str) -> None:
    """`faircam report` of `cache`: a report that loads and links nothing, or one line and exit 2."""
    out = folder_ / "report.html"
    code, stdout, err = cli(capsys, "report", "--out", out, "--cache", cache, *argv)
    if code == 0:
        assert report_problems(out.read_text(encoding="utf-8")) == []
    else:
        assert_one_line_error(code, stdout, err)


@fuzzed(20)
@given(changes=cache_metadata)
def test_report_of_crafted_cache_metadata(capsys, bundled, changes):
    with tempfile.TemporaryDirectory() as tmp:
        report_of(capsys, Path(tmp), edited_cache(bundled, Path(tmp) / "c.parquet", **changes))


CACHE_PAGES = ["pages/2_Evaluation.py", "pages/4_Fairness.py", "pages/6_Faithfulness.py", "pages/7_Gallery.py"]


@fuzzed(6)
@given(changes=cache_metadata, page=st.sampled_from(CACHE_PAGES), present=st.booleans())
def test_pages_of_crafted_cache_metadata(bundled, changes, page, present):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAIRCAM_CACHE", str(edited_cache(bundled, Path(tmp) / "c.parquet", **changes)))
        patch.setenv("FAIRCAM_DATA", str(Path(tmp) / "no-images"))  # Gallery lists the files in a table
        assert_page_inert(run(page, present=present))


# --- the model registry -------------------------------------------------------------------------------------------

entry = st.fixed_dictionaries({"path": st.just(str(DEFAULT_MODEL)) | json_value},
                              optional={k: json_value for k in ("input_size", "trained", "tasks")})
registry_file = json_value | st.dictionaries(text, entry | json_value, max_size=3)


def write_registry(value: object) -> None:
    Path(os.environ["FAIRCAM_REGISTRY"]).write_text(json.dumps(value), encoding="utf-8")


@fuzzed(60)
@given(value=registry_file)
def test_models_lists_a_crafted_registry_or_says_why_not(capsys, value):
    write_registry(value)
    code, stdout, err = cli(capsys, "models", "--json")
    if code == 0:
        assert isinstance(json.loads(stdout), list)
    else:
        assert_one_line_error(code, stdout, err, "model registry")


@fuzzed(5)
@given(value=registry_file, page=st.sampled_from(["pages/0_Home.py", "pages/3_About.py"]), present=st.booleans())
def test_pages_of_a_crafted_registry(value, page, present):
    write_registry(value)
    chosen = next(iter(value), None) if isinstance(value, dict) else None  # the sidebar's model, when it is one
    assert_page_inert(run(page, present=present, model=chosen))


# --- checkpoint metadata ------------------------------------------------------------------------------------------

recipe = st.fixed_dictionaries({}, optional={k: json_value for k in (
    "tasks", "align_jitter", "views", "frozen_stages", "lr", "weight_decay", "label_smoothing", "batch_size", "seed",
    "device", "epochs", "pretrained")})
training = st.fixed_dictionaries({}, optional={"recipe": recipe | json_value, "started_from": json_value,
                                               "compute": json_value, "train_images": json_value,
                                               "val_images": json_value, "epoch": json_value})
info = st.fixed_dictionaries({}, optional={"name": json_value, "origin": json_value, "licence": json_value,
                                           "metrics": json_value, "training": training | json_value})
checkpoint_metadata = st.fixed_dictionaries({}, optional={"arch": json_value, "input_size": json_value,
                                                          "classes": json_value, "tasks": json_value,
                                                          "info": info | json_value})


@pytest.fixture(scope="module")
def payload() -> dict:
    return torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def small_cache(bundled, tmp_path_factory) -> Path:
    """40 rows of the bundled cache: the report's bootstrap over all 2,500 takes a minute."""
    return edited_cache(bundled, tmp_path_factory.mktemp("small") / "small.parquet")


def crafted(payload: dict, changes: dict, path: Path) -> Path:
    torch.save({**payload, **changes}, path)
    return path


@fuzzed(6)
@given(changes=checkpoint_metadata)
def test_report_of_a_crafted_checkpoint(capsys, payload, small_cache, changes):
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = crafted(payload, changes, Path(tmp) / "m.pt")
        report_of(capsys, Path(tmp), small_cache, "--model", str(checkpoint))
        card = Path(tmp) / "card.md"
        code, stdout, err = cli(capsys, "model-card", "--model", checkpoint, "--out", card, "--cache", small_cache)
        if code == 0:
            assert not markup_in(card.read_text(encoding="utf-8"))
        else:
            assert_one_line_error(code, stdout, err)


@fuzzed(5)
@given(changes=checkpoint_metadata, page=st.sampled_from(["pages/3_About.py", "pages/0_Home.py"]),
       present=st.booleans())
def test_pages_of_a_crafted_checkpoint(payload, changes, page, present):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAIRCAM_MODEL", str(crafted(payload, changes, Path(tmp) / "m.pt")))
        assert_page_inert(run(page, present=present))


# --- label files --------------------------------------------------------------------------------------------------

cell = text | st.sampled_from(["val/1.jpg", "val/2.jpg", "20-29", "Female", "Male", "White", "Black", "True"])
label_row = st.one_of(
    st.lists(cell, min_size=5, max_size=5).map(lambda cells: ",".join(json.dumps(c) for c in cells)),
    st.text(max_size=60).map(lambda line: line.replace("\n", " ").replace("\r", " ")),
)


@fuzzed(5)
@given(rows=st.lists(label_row, min_size=1, max_size=6))
def test_explore_of_a_crafted_label_file(fairface, rows):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAIRCAM_DATA", str(folder(Path(tmp) / "data", fairface, *[f"{r}\n" for r in rows])))
        assert_page_inert(run("pages/1_Explore.py"))
