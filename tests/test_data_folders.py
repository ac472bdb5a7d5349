"""Broken data folders through the CLI and the Explore page: the problem and the rows are named, the
rest still works (other rows are evaluated and shown, uploads still work)."""

from __future__ import annotations

import shutil

import pytest
from test_cli import assert_one_line_error
from test_cli import run as cli
from test_pages import run, texts

from faircam.data.fairface import describe_dropped, load_split
from faircam.errors import DataError
from faircam.evaluation.cache import read_cache
from faircam.text import md

HEADER = "file,age,gender,race,service_test\n"
GOOD = ("val/1.jpg,3-9,Male,East Asian,False\n", "val/2.jpg,50-59,Female,East Asian,True\n",
        "val/3.jpg,30-39,Male,White,True\n", "val/4.jpg,20-29,Female,Indian,True\n")


def folder(root, fairface, *bad_rows: str, unreadable: bool = False):
    """A FairFace-layout folder with four real val images, and `bad_rows` appended to the labels."""
    (root / "val").mkdir(parents=True)
    for n in (1, 2, 3, 4):
        shutil.copyfile(fairface / "val" / f"{n}.jpg", root / "val" / f"{n}.jpg")
    rows = list(GOOD)
    if unreadable:
        (root / "val" / "broken.jpg").write_bytes((fairface / "val" / "5.jpg").read_bytes()[:900])
        rows.insert(2, "val/broken.jpg,20-29,Male,Black,True\n")
    (root / "fairface_label_val.csv").write_text(HEADER + "".join(rows) + "".join(bad_rows))
    return root


BAD_ROWS = (
    "val/404.jpg,20-29,Female,White,True\n",      # image missing
    "val/1.jpg,30-39,Male,Martian,True\n",        # unknown race
    "val/2.jpg,30-39,Robot,White,True\n",         # unknown gender
    "val/3.jpg,100+,Male,White,True\n",           # unknown age
    ",30-39,Male,White,True\n",                   # no file name
    "val/4.jpg,30-39,,White,True\n",              # no gender
    "val/405.jpg,20-29,Female,White,True\n",      # image missing
)


# --- the message itself ----------------------------------------------------------------------


def test_dropped_rows_are_named_with_line_and_reason(tmp_path, fairface):
    split = load_split(folder(tmp_path, fairface, *BAD_ROWS), "val")
    assert len(split.rows) == 4
    assert split.dropped["line"].tolist() == [6, 7, 8, 9, 10, 11, 12]
    assert split.dropped["reason"].tolist() == [
        "image missing or unreadable", "unknown race 'Martian'", "unknown gender 'Robot'", "unknown age '100+'",
        "no file name", "no gender", "image missing or unreadable",
    ]
    assert describe_dropped(split.dropped) == (
        "7 label rows dropped: line 6 val/404.jpg (image missing or unreadable), "
        "line 7 val/1.jpg (unknown race 'Martian'), "
        "line 8 val/2.jpg (unknown gender 'Robot'), line 9 val/3.jpg (unknown age '100+'), "
        "line 10 (no file name) and 2 more."
    )
    assert describe_dropped(split.dropped.head(0)) == ""


def test_wrong_layout_names_the_problem(tmp_path, fairface):
    # Images beside the CSV instead of in val/: every row's image is missing.
    for n in (1, 2):
        shutil.copyfile(fairface / "val" / f"{n}.jpg", tmp_path / f"{n}.jpg")
    (tmp_path / "fairface_label_val.csv").write_text(HEADER + "".join(GOOD[:2]))
    with pytest.raises(DataError, match=r"no usable rows: 2 label rows dropped: "
                                        r"line 2 val/1.jpg \(image missing or unreadable\), "
                                        r"line 3 val/2.jpg \(image missing or unreadable\)\. "
                                        "Image paths are read relative to"):
        load_split(tmp_path, "val")


# --- the CLI: exit 2 and one line, or a result with the rows named -------------------------------


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda root: root / "nowhere", ["does not exist"]),
        (lambda root: root, ["is not a FairFace folder", "fairface_label_val.csv is missing"]),
        (lambda root: (root / "labels.csv").write_text(HEADER) and root / "labels.csv", ["is a file"]),
        (lambda root: (root / "fairface_label_val.csv").write_text("name;sex\n1.jpg;M\n") and root,
         ["lacks the column(s) file, race, gender, age"]),
        (lambda root: (root / "fairface_label_val.csv").write_bytes(b"\xff\xd8\xff\xe0 a JPEG named .csv") and root,
         ["cannot be read as CSV"]),
        (lambda root: (root / "fairface_label_val.csv").write_text(HEADER + GOOD[0]) and root,
         ["no usable rows", "line 2 val/1.jpg (image missing or unreadable)"]),
    ],
    ids=["missing", "empty", "file", "wrong-columns", "not-csv", "images-elsewhere"],
)
def test_cli_evaluate_unusable_folder(capsys, tmp_path, make, words):
    data = make(tmp_path)
    code, out, err = cli(capsys, "evaluate", "--data", data, "--out", tmp_path / "cache.parquet")
    assert_one_line_error(code, out, err, *words)
    assert not (tmp_path / "cache.parquet").exists()


def test_cli_evaluate_names_left_out_rows_and_counts_the_rest(capsys, monkeypatch, tmp_path, fairface):
    data = folder(tmp_path / "data", fairface, *BAD_ROWS, unreadable=True)
    out_file = tmp_path / "cache.parquet"
    code, out, err = cli(capsys, "evaluate", "--data", data, "--out", out_file, "--batch-size", "2")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("faircam: warning: ")]
    assert warnings == [
        "faircam: warning: " + describe_dropped(load_split(data, "val").dropped),
        "faircam: warning: 1 image could not be read and is not counted: val/broken.jpg.",
    ]
    cache = read_cache(out_file)
    assert sorted(cache.rows["file"]) == ["val/1.jpg", "val/2.jpg", "val/3.jpg", "val/4.jpg"]
    assert cache.meta["data"]["dropped_total"] == len(BAD_ROWS)
    assert describe_dropped(cache.rows.head(0), total=3) == "3 label rows dropped."

    # The Evaluation page of that cache says the same.
    monkeypatch.setenv("FAIRCAM_DATA", str(data))
    monkeypatch.setenv("FAIRCAM_CACHE", str(out_file))
    at = run("pages/2_Evaluation.py")
    assert not at.exception and not at.error
    said = [i.value for i in at.info]
    # Markdown-escaped on the page: the rows quote label values.
    assert f"{md(describe_dropped(load_split(data, 'val').dropped) + ' 1 image could not be read.')} They are not " \
        "counted." in said, said


# --- the Explore page ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda root: root / "nowhere", "does not exist"),
        (lambda root: root, "is not a FairFace folder"),
    ],
    ids=["missing", "empty"],
)
def test_explore_with_unusable_folder_still_explains_uploads(monkeypatch, tmp_path, fairface, make, words):
    monkeypatch.setenv("FAIRCAM_DATA", str(make(tmp_path)))
    at = run("pages/1_Explore.py")
    assert not at.exception
    assert len(at.error) == 1 and words in at.error[0].value and "cannot be used" in at.error[0].value
    at.radio[0].set_value("Upload a photo").run()
    at.file_uploader[0].set_value(("face.jpg", (fairface / "val" / "1.jpg").read_bytes(), "image/jpeg")).run()
    assert not at.exception and not at.error
    assert "The model says" in texts(at)


def test_explore_names_bad_rows_and_shows_the_rest(monkeypatch, tmp_path, fairface):
    data = folder(tmp_path, fairface, *BAD_ROWS, unreadable=True)
    monkeypatch.setenv("FAIRCAM_DATA", str(data))
    at = run("pages/1_Explore.py")
    assert not at.exception, [e.value for e in at.exception]
    said = [w.value for w in at.warning]
    assert any("fairface_label_val.csv" in w and md(describe_dropped(load_split(data, "val").dropped)) in w
               for w in said), said
    assert any("val/broken.jpg" in w and "cannot be read" in w for w in said), said
    assert "5 images match; showing 5" in texts(at)
    picks = [b for b in at.button if b.key and b.key.startswith("pickval/")]
    assert sorted(b.key for b in picks) == [f"pickval/{n}.jpg" for n in (1, 2, 3, 4)]
    picks[0].click().run()
    assert not at.exception and not at.error
    assert "The model says" in texts(at) and "FairFace label" in texts(at)
