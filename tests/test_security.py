"""faircam on a shared classroom server (issue #16): attacks and careless inputs, through the command or page a
user would use. Each fails safely: one line and exit 2, nothing lost, nothing run, nothing fetched."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from markdown_it import MarkdownIt
from PIL import Image
from test_cli import assert_one_line_error
from test_cli import run as cli
from test_data_folders import folder
from test_pages import run

from faircam.config import PROJECT_ROOT, SHARED_FAIRFACE, settings
from faircam.evaluation.cache import AVERAGES_KEY, META_KEY, read_cache, write_cache
from faircam.text import WORD_JOINER

LINKS = "[click me](https://evil.example/phish) ![](https://evil.example/pixel.png)"
BREAKOUT = "val/x` ![](https://evil.example/pixel.png) `y.jpg"  # a backtick ends inline code early


def faircam_process(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The `faircam` command as a separate program, as a shell runs it."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "faircam.cli", *map(str, argv)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_exit_2(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faircam: error: "), done.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


def rendered(markdown: str) -> str:
    """HTML as a CommonMark renderer (Streamlit's, markdown-it's) makes it, raw HTML off as in Streamlit."""
    return MarkdownIt("commonmark", {"html": False}).render(markdown)


def text_of(markdown: str) -> str:
    """What a reader sees of `markdown` (the escape's word joiners are invisible)."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered(markdown))).replace(WORD_JOINER, "")


def assert_plain_text(markdown: str, *shown: str) -> None:
    """No link, image or code break-out: the data reads exactly as written."""
    page = rendered(markdown)
    assert "<a " not in page and "<img" not in page, page
    for part in shown:
        assert part in text_of(markdown), (part, text_of(markdown))


@pytest.fixture(scope="module")
def bundled():
    return read_cache(settings().cache_path)


def edited_cache(bundled, path, rows: pd.DataFrame | None = None, **meta) -> None:
    """A cache someone edited and re-saved through faircam's own writer (a recomputed checksum is accepted)."""
    rows = bundled.rows.head(40).copy() if rows is None else rows
    kept = {k: v for k, v in bundled.meta.items() if k not in ("schema_version", "rows", "checksum")}
    write_cache(rows, path, kept | meta)


# --- 1. no code from a training-state file --------------------------------------------------------


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_train_refuses_a_state_file_that_holds_code(tmp_path, capsys):
    out, marker = tmp_path / "m.pt", tmp_path / "code-ran"
    (tmp_path / "m.work").mkdir()
    torch.save({"settings": RunsCode(marker)}, tmp_path / "m.work" / "state.pt")
    code, stdout, err = cli(capsys, "train", "--data", SHARED_FAIRFACE, "--out", out, "--limit", "8",
                            "--epochs", "1", "--batch-size", "8")
    assert not marker.exists(), "the state file's code ran"
    assert_one_line_error(code, stdout, err, "state.pt", "delete")
    assert not out.exists(), "training started afresh over someone else's state"


# --- 2. no markup from the data ----------------------------------------------------------------------


def test_explore_shows_label_values_and_file_names_as_text(monkeypatch, tmp_path, fairface):
    data = folder(tmp_path, fairface, f"val/1.jpg,20-29,Female,{LINKS},True\n", f"{BREAKOUT},20-29,Male,White,True\n")
    monkeypatch.setenv("FAIRCAM_DATA", str(data))
    at = run("pages/1_Explore.py")
    assert not at.exception, [e.value for e in at.exception]
    warned = [w.value for w in at.warning if "left out" in w.value]
    assert len(warned) == 1, [w.value for w in at.warning]
    assert_plain_text(warned[0], LINKS, BREAKOUT)


def rows_with_mistakes(bundled) -> pd.DataFrame:
    """40 of the bundled cache's rows, 8 of them wrong answers (the Gallery lists mistakes), in the cache's order."""
    correct = bundled.rows["correct"].astype(bool)
    chosen = bundled.rows[~correct].head(8).index.union(bundled.rows[correct].head(32).index)
    return bundled.rows.loc[chosen].copy()


def test_gallery_and_evaluation_show_cache_values_as_text(monkeypatch, tmp_path, bundled, fairface):
    rows = rows_with_mistakes(bundled)
    wrong = rows.index[~rows["correct"]]
    rows.loc[wrong, "file"] = f"{BREAKOUT} {LINKS}"  # labels are FairFace's classes or the cache is refused
    path = tmp_path / "edited.parquet"
    edited_cache(bundled, path, rows, created=LINKS)
    monkeypatch.setenv("FAIRCAM_CACHE", str(path))
    monkeypatch.setenv("FAIRCAM_DATA", str(fairface))
    at = run("pages/7_Gallery.py")
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value for c in at.caption if "evil.example" in text_of(c.value)]
    assert len(captions) == len(wrong) > 0
    for caption in captions:
        assert_plain_text(caption, BREAKOUT, LINKS)
    at = run("pages/2_Evaluation.py")
    assert not at.exception, [e.value for e in at.exception]
    (said,) = [c.value for c in at.caption if "evil.example" in text_of(c.value)]
    assert_plain_text(said, f"computed {LINKS}")


def test_pages_show_no_image_from_outside_the_data_folder(monkeypatch, tmp_path, bundled, fairface):
    # A cache's file names come from whoever wrote it: Gallery must not show a picture beside the data folder.
    data = folder(tmp_path / "data", fairface)
    shutil.copyfile(fairface / "val" / "5.jpg", tmp_path / "outside.jpg")
    rows = rows_with_mistakes(bundled)
    wrong = rows.index[~rows["correct"]]
    rows.loc[wrong, "file"] = "../outside.jpg"
    path = tmp_path / "edited.parquet"
    edited_cache(bundled, path, rows)
    monkeypatch.setenv("FAIRCAM_CACHE", str(path))
    monkeypatch.setenv("FAIRCAM_DATA", str(data))
    at = run("pages/7_Gallery.py")
    assert not at.exception, [e.value for e in at.exception]
    assert len(wrong) > 0 and not at.get("image") and not at.get("imgs")
    assert sum("is missing" in i.value for i in at.info) == len(wrong)


def test_report_of_an_edited_cache_fetches_nothing(tmp_path, capsys, bundled):
    path, out = tmp_path / "edited.parquet", tmp_path / "report.html"
    edited_cache(bundled, path, created=LINKS)
    code, stdout, err = cli(capsys, "report", "--out", out, "--cache", path)
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert json.loads(stdout)["model_card"] is True
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page), "the report links or loads an external resource"
    assert "![](https://evil.example/pixel.png)" in html.unescape(re.sub(r"<[^>]+>", "", page))


# --- 3. cache metadata under the checksum -------------------------------------------------------------


@pytest.mark.parametrize("key, value", [("model", {"name": "x", "arch": "x", "sha256": "0" * 64, "path": None}),
                                        ("created", LINKS), ("data", {"root": "/elsewhere"})])
def test_edited_cache_metadata_is_refused(tmp_path, capsys, key, value):
    path = tmp_path / "eval.parquet"
    table = pq.read_table(settings().cache_path)
    meta = json.loads(table.schema.metadata[META_KEY]) | {key: value}
    # Only the metadata changes: rows and the stored averages stay as they were.
    table = table.replace_schema_metadata({**table.schema.metadata, META_KEY: json.dumps(meta)})
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({AVERAGES_KEY: pq.read_metadata(settings().cache_path).metadata[AVERAGES_KEY]})
    code, stdout, err = cli(capsys, "report", "--out", tmp_path / "r.html", "--cache", path)
    assert_one_line_error(code, stdout, err, "checksum")



def test_cam_method_names_in_a_cache_are_plain_names(tmp_path, capsys, bundled):
    # Method names become headings and captions on the pages: a re-saved cache naming one as markup is refused.
    path = tmp_path / "eval.parquet"
    edited_cache(bundled, path, methods=[*bundled.methods[:3], LINKS])
    code, stdout, err = cli(capsys, "report", "--out", tmp_path / "r.html", "--cache", path)
    assert_one_line_error(code, stdout, err, "not plain names")
# --- 4. output paths: checked before any work, never over an input, no temporary files left -----------


def test_evaluate_to_an_unwritable_place_fails_at_once():
    start = time.monotonic()
    done = faircam_process("evaluate", "--limit", "2", "--out", "/proc/nope/x.parquet")
    assert_one_line_exit_2(done, "/proc/nope/x.parquet", "cannot write")
    assert time.monotonic() - start < 10, "the run (or torch) came before the check"


@pytest.mark.parametrize("argv, words", [
    (["evaluate", "--limit", "0", "--out", "{tmp}/x.parquet"], ["--limit"]),
    (["evaluate", "--out", "{tmp}"], ["--out", ".parquet"]),
    (["evaluate", "--out", "{tmp}/x.parquet"], ["is a folder"]),
    (["evaluate", "--out", "{data}/fairface_label_val.csv"], [".parquet"]),
    (["report", "--out", "{tmp}/x.html"], ["is a folder"]),
    (["report", "--out", "/proc/x/y.html"], ["cannot write"]),
    (["report", "--out", "{tmp}/r.html", "--csv", "{data}/fairface_label_val.parquet"], [".csv"]),
    (["report", "--out", "{tmp}/r.html", "--csv", "{tmp}/x.csv"], ["is a folder"]),
    (["model-card", "--out", "{tmp}/x.md"], ["is a folder"]),
    (["model-card", "--out", "/proc/x/card.md"], ["cannot write"]),
    (["explain", "{data}/val/1.jpg", "--out", "{tmp}/x.png"], ["is a folder"]),
    (["explain", "{data}/val/1.jpg", "--out", "/proc/x/y.png"], ["cannot write"]),
    (["explain", "{data}/val/1.jpg", "--out", "{data}/val/1.jpg/y.png"], ["cannot write", "not a folder"]),
    (["train", "--out", "/proc/x/m.pt"], ["cannot write"]),
], ids=["evaluate-limit", "evaluate-kind", "evaluate-dir", "evaluate-over-labels", "report-dir", "report-proc",
        "report-csv-kind", "report-csv-dir", "card-dir", "card-proc", "explain-dir", "explain-proc",
        "explain-under-a-file", "train-proc"])
def test_bad_output_paths_fail_in_one_line_before_torch(tmp_path, argv, words):
    for name in ("x.parquet", "x.html", "x.csv", "x.md", "x.png"):
        (tmp_path / name).mkdir()
    labels = tmp_path / "data"
    folder(labels, SHARED_FAIRFACE)
    before = (labels / "fairface_label_val.csv").read_bytes()
    argv = [a.format(tmp=tmp_path, data=labels) for a in argv]
    start = time.monotonic()
    done = faircam_process(*argv, "--data", labels) if argv[0] in ("evaluate", "train") else faircam_process(*argv)
    assert_one_line_exit_2(done, *words)
    assert time.monotonic() - start < 10
    assert (labels / "fairface_label_val.csv").read_bytes() == before


# --- 5. only regular files inside the data folder; 6. temporary files of killed runs ------------------


def test_evaluate_reads_only_regular_files_inside_the_data_folder(tmp_path, capsys, fairface):
    data = folder(tmp_path / "data", fairface)
    outside = tmp_path / "secret.jpg"
    shutil.copyfile(fairface / "val" / "5.jpg", outside)
    (data / "val" / "link-out.jpg").symlink_to(outside)
    (data / "val" / "link-in.jpg").symlink_to(data / "val" / "1.jpg")
    os.mkfifo(data / "val" / "fifo.jpg")
    (data / "val" / "folder.jpg").mkdir()
    rows = ["../secret.jpg", str(outside), "val/link-out.jpg", "../nothing.jpg", "val/fifo.jpg", "val/folder.jpg",
            "val/404.jpg", "val/link-in.jpg"]
    with open(data / "fairface_label_val.csv", "a") as labels:
        labels.writelines(f"{file},20-29,Female,White,True\n" for file in rows)
    out = tmp_path / "eval.parquet"
    # A run killed (SIGKILL) while writing left its temporary file; the next run removes it.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = out.with_name(f".{out.name}.{gone.pid}.tmp")
    stale.write_bytes(b"half a parquet file")

    code, stdout, err = cli(capsys, "evaluate", "--data", data, "--out", out, "--no-cams", "--batch-size", "4")
    assert code == 0, err
    assert not stale.exists()
    dropped = {row["file"]: row["reason"] for row in read_cache(out).meta["data"]["dropped"]}
    assert dropped == {
        "../secret.jpg": "outside the data folder", str(outside): "outside the data folder",
        "val/link-out.jpg": "outside the data folder", "../nothing.jpg": "outside the data folder",
        # Missing and unreadable read the same: the answer tells nothing about what exists.
        "val/fifo.jpg": "image missing or unreadable", "val/folder.jpg": "image missing or unreadable",
        "val/404.jpg": "image missing or unreadable",
    }
    assert sorted(read_cache(out).rows["file"]) == ["val/1.jpg", "val/2.jpg", "val/3.jpg", "val/4.jpg",
                                                    "val/link-in.jpg"]
    assert "secret" in err and "outside the data folder" in err


def test_explain_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    try:
        done = faircam_process("explain", fifo, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("faircam explain waited on a FIFO")
    assert_one_line_exit_2(done, "not a regular file")


def test_explain_refuses_a_huge_file_before_reading_it(tmp_path, capsys):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as file:  # 1 GB, sparse: nothing is stored until it is read
        file.truncate(1024 ** 3)
    code, stdout, err = cli(capsys, "explain", huge)
    assert_one_line_error(code, stdout, err, "larger than 20 MB")


# --- 6. smaller: spreadsheet formulas, animated images ----------------------------------------------


def test_rows_csv_defuses_spreadsheet_formulas(tmp_path, capsys, bundled):
    rows = bundled.rows.head(40).copy()
    formulas = ["=HYPERLINK(\"https://evil.example\")", "+1+1", "-2+3", "@SUM(A1)"]
    rows.loc[rows.index[:4], "file"] = formulas
    path, csv = tmp_path / "edited.parquet", tmp_path / "rows.csv"
    edited_cache(bundled, path, rows)
    code, stdout, err = cli(capsys, "report", "--out", tmp_path / "r.html", "--cache", path, "--csv", csv)
    assert code == 0, err
    files = pd.read_csv(csv, dtype=str)["file"].tolist()
    assert files[:4] == [f"'{f}" for f in formulas]
    assert files[4:] == rows["file"].iloc[4:].tolist()
    assert pd.read_csv(csv)["prob"].iloc[0] == pytest.approx(rows["prob"].iloc[0])


def test_explain_refuses_an_animated_gif(tmp_path, capsys, fairface):
    face = Image.open(fairface / "val" / "1.jpg")
    gif = tmp_path / "moving.gif"
    face.save(gif, save_all=True, append_images=[face.rotate(10), face.rotate(20)], duration=100)
    code, stdout, err = cli(capsys, "explain", gif)
    assert_one_line_error(code, stdout, err, "animated", "3 frames")
