"""Crafted data on a shared classroom server, second round (issue #26): cache metadata, registry files,
checkpoint metadata and label files that someone else made, through the page or command a user would use.
Whatever they hold is shown as its text (no tag, no link, no image fetched, in every mode), pages show images
only from the data folder the server was given, and a file of the wrong shape is one line."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from test_cli import assert_one_line_error
from test_cli import run as cli
from test_data_folders import folder

from faircam.config import DEFAULT_MODEL, PROJECT_ROOT, settings
from faircam.dashboard import ui
from faircam.evaluation.cache import read_cache, write_cache
from faircam.text import WORD_JOINER

PIXEL = "http://evil.example/pixel.png"
OWN_LINK = re.compile(r'<a href="Glossary\?[^"<>:]*">')
LINKS = f"[click me](https://evil.example/phish) ![]({PIXEL})"
# GitHub's autolinks: Streamlit links these even when every character is backslash-escaped.
BARE = "see http://evil.example/a, www.evil.example or me@evil.example"
TAGS = f"<img src={PIXEL}><script>alert(1)</script>"
# A code span broken out of: no slash, so the text is also a plain file name (registry names must be).
BREAKOUT = "m` ![](http:evil.example) `x"

# What remark-gfm (Streamlit's Markdown) turns into a link in text, escapes or not.
AUTOLINK = re.compile(r"[a-z][a-z0-9+.-]*://|www\.|[\w.+-]+@[\w-]+\.\w", re.IGNORECASE)
# Markdown fields of Streamlit's elements; code, HTML, JSON, charts, data grids and select options are not Markdown.
MARKDOWN_FIELDS = {"body", "label", "help", "caption", "text", "delta"}
NOT_MARKDOWN = {"Code", "Html", "Json", "PlotlyChart", "Dataframe", "Exception"}


def markup_in(markdown: str) -> str:
    """What in `markdown` renders as more than its text (a link, an image, an autolink), or ""."""
    page = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).render(markdown)
    # The app's own links to its Glossary (`ui.glossary_link`) are meant; any other link or image is not.
    found = [m.group(0) for m in re.finditer(r"<(a|img)\b[^>]*>", page) if not OWN_LINK.fullmatch(m.group(0))]
    if found:
        return found[0]
    text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<code>.*?</code>", "", page, flags=re.S)))
    found = AUTOLINK.search(text)
    return found.group(0) if found else ""


def assert_inert(markdown: str, *shown: str) -> None:
    assert not markup_in(markdown), (markup_in(markdown), markdown)
    page = MarkdownIt("commonmark", {"html": False}).render(markdown)
    text = html.unescape(re.sub(r"<[^>]+>", "", page)).replace(WORD_JOINER, "")
    for part in shown:
        assert part in text, (part, text)


def _strings(message, names: set[str]) -> Iterator[str]:
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        if field.message_type is not None:
            for item in values:
                yield from _strings(item, names)
        elif field.name in names and field.type == field.TYPE_STRING:
            yield from values


def _nodes(node) -> Iterator:
    yield node
    children = getattr(node, "children", None) or {}
    for child in children.values() if isinstance(children, dict) else children:
        yield from _nodes(child)


def page_markdown(at: AppTest) -> list[str]:
    """Every text of the page that Streamlit renders as Markdown: bodies, labels, help, captions, radio options
    and static tables' cells and headers."""
    texts = []
    for node in _nodes(at._tree):
        kind, proto = type(node).__name__, getattr(node, "proto", None)
        if kind == "Table":
            frame = node.value
            texts += [v for v in [*frame.to_numpy().ravel(), *frame.columns, *frame.index] if isinstance(v, str)]
        elif proto is not None and kind not in NOT_MARKDOWN:
            texts += _strings(proto, MARKDOWN_FIELDS | ({"options"} if kind == "Radio" else set()))
    return texts


def assert_page_inert(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    for text in page_markdown(at):
        assert not markup_in(text), (markup_in(text), text)


def run(page: str, present: bool = False, model: str | None = None) -> AppTest:
    """The app as a browser opens it at `page`, in presentation mode or not, with a model chosen in the sidebar."""
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=180)
    at.switch_page(page)
    at.session_state[ui.PRESENT_KEY] = present
    if model is not None:
        at.session_state[ui.MODEL_KEY] = model
    return at.run()


@pytest.fixture(scope="module")
def bundled():
    return read_cache(settings().cache_path)


def edited_cache(bundled, path: Path, rows=None, **changes) -> Path:
    """A cache someone edited and re-saved through faircam's own writer (a recomputed checksum is accepted):
    `changes` replace top-level metadata; `data`, `model` and `faithfulness` are merged into the cache's own."""
    rows = bundled.rows.head(40).copy() if rows is None else rows
    meta = {k: v for k, v in bundled.meta.items() if k not in ("schema_version", "rows", "checksum")}
    for key, value in changes.items():
        meta[key] = meta[key] | value if isinstance(value, dict) and isinstance(meta.get(key), dict) else value
    write_cache(rows, path, meta)
    return path


def registry(entries: object) -> Path:
    """The model registry file (conftest makes it a throwaway one) holding `entries`."""
    path = Path(os.environ["FAIRCAM_REGISTRY"])
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def crafted_checkpoint(path: Path, **changes) -> Path:
    """The bundled checkpoint with metadata changed (`info` merged into its own), weights untouched."""
    payload = torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=True)
    for key, value in changes.items():
        payload[key] = payload[key] | value if key == "info" and isinstance(value, dict) else value
    torch.save(payload, path)
    return path


# --- 2. the report escapes every value of the cache's metadata ------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def report_problems(page: str) -> list[str]:
    """Tags the report must not have: scripts, images, links out, anything that loads a resource."""
    parser = _Tags()
    parser.feed(page)
    problems = [tag for tag, _ in parser.tags if tag in ("script", "img", "iframe", "object", "embed", "link")]
    problems += [f"{tag} {attrs}" for tag, attrs in parser.tags
                 if "src" in attrs or not str(attrs.get("href") or attrs.get("xlink:href") or "#").startswith("#")]
    return problems


@pytest.mark.parametrize("data", [{"limit": TAGS}, {"unreadable": TAGS}, {"dropped_total": TAGS}],
                         ids=["limit", "unreadable", "dropped_total"])
def test_report_refuses_cache_metadata_of_the_wrong_type(tmp_path, capsys, bundled, data):
    path, out = edited_cache(bundled, tmp_path / "edited.parquet", data=data), tmp_path / "report.html"
    code, stdout, err = cli(capsys, "report", "--out", out, "--cache", path)
    assert not out.exists() or not report_problems(out.read_text(encoding="utf-8"))
    assert_one_line_error(code, stdout, err, "unreadable faircam metadata", f"data.{next(iter(data))}")


def test_report_shows_cache_metadata_text_as_text(tmp_path, capsys, bundled):
    path = edited_cache(bundled, tmp_path / "edited.parquet", created=TAGS, data={"root": TAGS, "split": TAGS},
                        model={"name": TAGS, "arch": LINKS})
    out = tmp_path / "report.html"
    code, stdout, err = cli(capsys, "report", "--out", out, "--cache", path)
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert report_problems(page) == []
    assert TAGS in html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.parametrize("column", ["race", "pred"])
def test_labels_that_are_not_fairfaces_classes_are_refused(tmp_path, capsys, monkeypatch, bundled, column):
    # Group names become chart labels: Plotly links `<a href>` in them, matplotlib reads `$…$` as mathematics.
    rows = bundled.rows.head(40).copy()
    rows.loc[rows.index[:5], column] = "<a href='http://evil.example'>x</a> $\\frac{$"
    path = edited_cache(bundled, tmp_path / "edited.parquet", rows)
    code, stdout, err = cli(capsys, "report", "--out", tmp_path / "report.html", "--cache", path)
    assert_one_line_error(code, stdout, err, f"{column!r} column", "not its task's classes")
    monkeypatch.setenv("FAIRCAM_CACHE", str(path))
    at = run("pages/2_Evaluation.py")
    assert_page_inert(at)
    assert "No usable evaluation" in at.error[0].value


# --- 4. pages: tables in presentation mode, registry fields, checkpoint fields, the faithfulness caption ---------


def rows_with_mistakes(bundled):
    correct = bundled.rows["correct"].astype(bool)
    return bundled.rows.loc[bundled.rows[~correct].head(8).index.union(bundled.rows[correct].head(32).index)].copy()


def test_presentation_tables_show_file_names_as_text(monkeypatch, tmp_path, bundled):
    # Without the images, Gallery lists the mistakes in a table: in presentation mode a static one.
    rows = rows_with_mistakes(bundled)
    wrong = rows.index[~rows["correct"]]
    rows.loc[wrong, "file"] = LINKS
    monkeypatch.setenv("FAIRCAM_CACHE", str(edited_cache(bundled, tmp_path / "edited.parquet", rows)))
    monkeypatch.setenv("FAIRCAM_DATA", str(tmp_path / "no-images-here"))
    at = run("pages/7_Gallery.py", present=True)
    (table,) = at.table
    assert len(table.value) == len(wrong)
    for cell in table.value["file"]:
        assert_inert(cell, LINKS)
    assert_page_inert(at)


def test_registry_fields_are_text_on_about_home_and_in_the_sidebar(monkeypatch, tmp_path):
    weights = tmp_path / f"{BREAKOUT}.pt"
    weights.symlink_to(DEFAULT_MODEL)
    registry({BREAKOUT: {"path": str(weights), "input_size": 160, "trained": LINKS, "tasks": ["gender"]}})
    monkeypatch.setenv("FAIRCAM_CACHE_DIR", str(tmp_path))  # no cache for it: the sidebar says how to make one
    at = run("pages/3_About.py")
    (models,) = [t.value for t in at.table if "origin" in t.value.columns]
    (origin,) = [o for name, o in models[["name", "origin"]].to_numpy() if name.replace("\\", "") == BREAKOUT]
    assert_inert(origin, LINKS)
    assert_page_inert(at)
    at = run("pages/0_Home.py", model=BREAKOUT)
    (using,) = [m.value for m in at.markdown if "**Model:**" in m.value]
    assert_inert(using, BREAKOUT)
    (files,) = [m.value for m in at.markdown if "**Model weights:**" in m.value]
    assert_inert(files, str(weights))
    (warning,) = [w.value for w in at.sidebar.warning]
    # The one evaluate command every page offers (its cache's path too), quoted for the shell.
    assert_inert(warning, ui.evaluate_command(BREAKOUT))
    assert_page_inert(at)


def test_checkpoint_metadata_is_text_on_about(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRCAM_MODEL", str(crafted_checkpoint(tmp_path / "m.pt", arch=LINKS)))
    at = run("pages/3_About.py")
    assert_inert(at.metric[0].value, LINKS)
    assert_page_inert(at)
    # A field the page reads that is not of the type faircam writes: "cannot be loaded", in one message.
    monkeypatch.setenv("FAIRCAM_MODEL", str(crafted_checkpoint(tmp_path / "n.pt", input_size=LINKS)))
    at = run("pages/3_About.py")
    assert_page_inert(at)
    (error,) = at.error
    assert "cannot be loaded" in error.value and "input\\_size" in error.value


def test_faithfulness_caption_refuses_a_crafted_sample_size(monkeypatch, tmp_path, bundled):
    path = edited_cache(bundled, tmp_path / "edited.parquet", bundled.rows, faithfulness={"per_cell": LINKS})
    monkeypatch.setenv("FAIRCAM_CACHE", str(path))
    at = run("pages/6_Faithfulness.py")
    assert_page_inert(at)
    assert any("faithfulness\\.per\\_cell" in e.value for e in at.error), [e.value for e in at.error]


# --- 5. images only from the data folder the server was given --------------------------------------------------


def test_faithfulness_shows_no_image_from_the_caches_own_root(monkeypatch, tmp_path, bundled, fairface):
    outside = tmp_path / "secret" / "face.jpg"
    outside.parent.mkdir()
    shutil.copyfile(fairface / "val" / "5.jpg", outside)
    rows = bundled.rows.copy()
    rows["file"] = str(outside.relative_to("/"))
    path = edited_cache(bundled, tmp_path / "edited.parquet", rows, data={"root": "/"})
    monkeypatch.setenv("FAIRCAM_CACHE", str(path))
    monkeypatch.setenv("FAIRCAM_DATA", str(folder(tmp_path / "data", fairface)))
    at = run("pages/6_Faithfulness.py")
    assert not at.exception, [e.value for e in at.exception]
    assert any("Do the four maps agree" in m.value for m in at.markdown)
    assert not at.get("imgs") and not at.get("image"), "an image from outside FAIRCAM_DATA was shown"


# --- 8. a registry file of the wrong shape -----------------------------------------------------------------------


WRONG_REGISTRIES = {
    "a list": [{"path": "x.pt"}],
    "a dict of strings": {"mine": "runs/mine.pt"},
    "no path": {"mine": {"input_size": 160}},
    "a path that is a number": {"mine": {"path": 5}},
    "tasks that are a number": {"mine": {"path": str(DEFAULT_MODEL), "tasks": 3}},
    "a name leading out of the cache folder": {"../../elsewhere": {"path": str(DEFAULT_MODEL)}},
}


@pytest.mark.parametrize("entries", WRONG_REGISTRIES.values(), ids=WRONG_REGISTRIES.keys())
def test_registry_of_the_wrong_shape_is_one_line(capsys, fairface, entries):
    path = registry(entries)
    for argv in (["models"], ["evaluate", "--data", fairface, "--limit", "1", "--out", path.with_suffix(".parquet")],
                 ["explain", fairface / "val" / "1.jpg"]):
        code, stdout, err = cli(capsys, *argv)
        assert_one_line_error(code, stdout, err, "model registry", str(path))
    at = run("pages/0_Home.py")
    assert not at.exception, [e.value for e in at.exception]
    (warning,) = at.warning
    assert "model registry cannot be used" in warning.value


# --- 9. bare URLs and e-mail addresses are not links ---------------------------------------------------------------


def test_bare_urls_in_label_files_are_not_links(monkeypatch, tmp_path, fairface):
    files = ["http://evil.example/a.jpg", "www.evil.example", "me@evil.example", "HTTPS://EVIL.EXAMPLE"]
    data = folder(tmp_path, fairface, *[f"{f},20-29,Female,White,True\n" for f in files])
    monkeypatch.setenv("FAIRCAM_DATA", str(data))
    at = run("pages/1_Explore.py")
    (warned,) = [w.value for w in at.warning if "left out" in w.value]
    assert_inert(warned, *files)
    assert_page_inert(at)


# --- 10. crafted checkpoint recipes and cache counts ---------------------------------------------------------------


def test_crafted_training_record_is_shown_as_text(tmp_path, capsys, bundled):
    recipe = {"tasks": 5, "align_jitter": LINKS, "views": [1], "lr": {"x": 1}, "device": LINKS}
    training = {"train_images": "many", "val_images": None, "recipe": recipe, "started_from": {"tasks": 7},
                "compute": ["2 cores"]}
    checkpoint = crafted_checkpoint(tmp_path / "crafted.pt", info={"training": training})
    card, cache = tmp_path / "card.md", edited_cache(bundled, tmp_path / "small.parquet")
    code, stdout, err = cli(capsys, "model-card", "--model", checkpoint, "--out", card, "--cache", cache)
    assert code == 0, err
    text = card.read_text(encoding="utf-8")
    assert_inert(text, "many FairFace training images", LINKS)
    out = tmp_path / "report.html"
    code, stdout, err = cli(capsys, "report", "--model", checkpoint, "--out", out, "--cache", cache)
    assert code == 0 and json.loads(stdout)["model_card"] is True, err
    assert report_problems(out.read_text(encoding="utf-8")) == []


def test_training_record_of_the_wrong_shape_is_one_line(tmp_path, capsys):
    checkpoint = crafted_checkpoint(tmp_path / "crafted.pt", info={"training": ["epoch 1"]})
    code, stdout, err = cli(capsys, "model-card", "--model", checkpoint, "--out", tmp_path / "card.md",
                            "--cache", settings().cache_path)
    assert_one_line_error(code, stdout, err, "unreadable metadata", "info.training")


@pytest.mark.parametrize("data", [{"unreadable": "abc"}, {"dropped": [1, 2], "dropped_total": 2},
                                  {"dropped": [{"file": 3}], "dropped_total": 1}],
                         ids=["unreadable", "dropped", "dropped-record"])
def test_evaluation_says_in_one_line_that_crafted_counts_are_unusable(monkeypatch, tmp_path, bundled, data):
    monkeypatch.setenv("FAIRCAM_CACHE", str(edited_cache(bundled, tmp_path / "edited.parquet", data=data)))
    at = run("pages/2_Evaluation.py")
    assert_page_inert(at)
    (error,) = at.error
    assert "No usable evaluation" in error.value and "unreadable faircam metadata" in error.value


# --- the same, as a browser renders it --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crafted_server(tmp_path_factory, bundled, fairface):
    """A server whose label file names bare URLs and whose cache's file names are Markdown links and images."""
    from test_browser import _serve

    root = tmp_path_factory.mktemp("crafted-server")
    bare = ["http://evil.example/a.jpg", "www.evil.example", "me@evil.example"]
    data = folder(root / "data", fairface, *[f"{f},20-29,Female,White,True\n" for f in bare])
    rows = bundled.rows.copy()
    rows["file"] = [f"{LINKS} {BARE} {i}" for i in range(len(rows))]
    cache = edited_cache(bundled, root / "crafted.parquet", rows)
    yield from _serve({"FAIRCAM_DATA": str(data), "FAIRCAM_CACHE": str(cache)})


@pytest.mark.browser
@pytest.mark.parametrize("path", ["Explore", "Faithfulness?present=1", "Gallery?present=1"])
def test_browser_fetches_and_links_nothing_from_crafted_data(crafted_server, path):
    from playwright.sync_api import sync_playwright
    from test_browser import ARGS, CHROMIUM, _no_exception, _settle

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_context(viewport={"width": 1400, "height": 2200}).new_page()
        fetched = []
        page.on("request", lambda request: fetched.append(request.url) if "evil.example" in request.url else None)
        page.goto(f"{crafted_server}/{path}", timeout=180_000)
        _settle(page)
        _no_exception(page)
        main = page.locator("[data-testid='stMain']")
        assert "evil.example" in main.inner_html(), "the crafted names are not on the page"
        links = main.locator("a[href*='evil.example'], a[href^='mailto:'], img[src*='evil.example']")
        assert links.count() == 0, [links.nth(i).evaluate("e => e.outerHTML") for i in range(links.count())]
        assert fetched == []
        browser.close()


def test_a_file_listed_twice_is_left_out_once_and_explore_opens(monkeypatch, tmp_path, fairface):
    # Found by tests/test_fuzz_data.py: the grid's buttons are keyed by file, so a repeated row crashed Explore.
    monkeypatch.setenv("FAIRCAM_DATA", str(folder(tmp_path, fairface, "val/1.jpg,30-39,Male,Indian,True\n")))
    at = run("pages/1_Explore.py")
    assert_page_inert(at)
    (warned,) = [w.value for w in at.warning if "left out" in w.value]
    assert "1 label row dropped" in warned and "listed again" in warned
    assert len([b for b in at.button if re.search(r"\b(Female|Male)\b", b.label)]) == 4  # one button per image
