"""Any labelled face folder: `faircam evaluate --data DIR --labels FILE` on 64 real FairFace faces copied into a folder
of their own, with labels written other ways and extra columns (lighting, a 1-10 skin tone, a measured exposure, an
id), writes a cache with those columns and the image-quality ones; the report, the model card and every table page
group by them, alone and crossed with race; the Gallery filters by them; bad label files are one line, exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_cli import assert_one_line_error
from test_cli import run as cli
from test_task_measures import table_with

from faircam.audit.groups import GroupFrame, with_interval
from faircam.audit.modelcard import model_card
from faircam.cli import main
from faircam.config import DEFAULT_MODEL_NAME, PROJECT_ROOT
from faircam.data.labelled import MAX_LEVELS, load_labelled
from faircam.errors import DataError
from faircam.evaluation.cache import read_cache
from faircam.models.registry import load_model
from faircam.vision.quality import SLICES

TIMEOUT = 240
FACES = 64
# FairFace's names written the ways other label files write them.
SPOKEN = {"Female": "woman", "Male": "M", "Latino_Hispanic": "latino", "more than 70": "70+"}


@pytest.fixture(scope="module")
def labelled(fairface, tmp_path_factory) -> dict:
    """64 val faces under photos/, their labels.csv (and a bad row, a missing image), and `faircam evaluate` of it."""
    root = tmp_path_factory.mktemp("labelled")
    truth = pd.read_csv(fairface / "fairface_label_val.csv").head(FACES)
    (root / "photos").mkdir()
    for i, file in enumerate(truth["file"]):
        shutil.copyfile(fairface / file, root / "photos" / f"{i:03d}.jpg")
    rng = np.random.default_rng(3)
    table = pd.DataFrame({
        "file": [f"photos/{i:03d}.jpg" for i in range(FACES)],
        "Gender": [SPOKEN.get(g, g) for g in truth["gender"]],
        "race": [SPOKEN.get(r, r) for r in truth["race"]],
        "age": [SPOKEN.get(a, a) for a in truth["age"]],
        "lighting": rng.choice(["dim", "daylight", "studio"], FACES),
        "monk": rng.integers(1, 11, FACES),
        "exposure": rng.normal(0, 1, FACES).round(3),
        "id": [f"person-{i}" for i in range(FACES)],
    })
    table.columns = [c.lower() if c == "Gender" else c for c in table.columns]
    extra = pd.DataFrame({"file": ["photos/999.jpg", "photos/000.jpg"], "gender": ["Female", "robot"],
                          "race": "White", "age": "20-29"})
    pd.concat([table, extra]).to_csv(root / "labels.csv", index=False)
    out = root / "audit.parquet"
    return {"root": root, "labels": root / "labels.csv", "out": out, "table": table, "truth": truth}


@pytest.fixture(scope="module")
def evaluated(labelled) -> dict:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["evaluate", "--data", str(labelled["root"]), "--labels", str(labelled["labels"]),
                     "--out", str(labelled["out"]), "--faithfulness-per-cell", "0", "--batch-size", "16"])
    assert code == 0, err.getvalue()
    return labelled | {"stderr": err.getvalue(), "cache": read_cache(labelled["out"])}


def test_a_label_file_is_read_by_name_with_its_attributes(labelled, fairface):
    split = load_labelled(labelled["root"], labelled["labels"])
    truth = labelled["truth"]
    assert split.rows["gender"].tolist() == truth["gender"].tolist()  # "woman", "M" read as FairFace's classes
    assert split.rows["race"].tolist() == truth["race"].tolist() and split.rows["age"].tolist() == truth["age"].tolist()
    assert split.dropped["reason"].tolist() == ["image missing or unreadable", "unknown gender 'robot'"]
    attributes = {a["name"]: a for a in split.attributes}
    assert list(attributes) == ["lighting", "monk", "exposure"]  # not id: a value per face, more than MAX_LEVELS
    assert attributes["lighting"]["levels"] == ["daylight", "dim", "studio"] and not attributes["lighting"]["ordered"]
    assert attributes["monk"]["levels"] == [str(v) for v in range(1, 11)] and attributes["monk"]["ordered"]
    # A measured number: four quartile ranges, upper ends included, named by their ends.
    exposure = attributes["exposure"]
    assert len(exposure["levels"]) == 4 and exposure["column"] == "exposure (binned)"
    counts = split.rows["exposure (binned)"].value_counts()
    assert counts.sum() == FACES and counts.min() >= FACES // 4 - 1
    assert split.notes == [f"Column 'id' has {FACES} values, more than {MAX_LEVELS}: it is kept but not used as a "
                           "grouping."]


def test_numbers_are_named_as_people_write_them(labelled, tmp_path):
    """A camera's ISO (few values) and a measured size in thousands (quartiles) are named 1,600 and 12,300–45,600,
    never in exponent notation (a 1600 read as "1.6e+03" was a level name on every page)."""
    rows = labelled["table"].head(40)[["file", "gender"]].assign(
        iso=np.resize([100, 400, 1600, 3200], 40), pixels=np.linspace(12_345, 98_765, 40).round())
    for file in rows["file"]:
        (tmp_path / file).parent.mkdir(exist_ok=True)
        shutil.copyfile(labelled["root"] / file, tmp_path / file)
    rows.to_csv(tmp_path / "labels.csv", index=False)
    attributes = {a["name"]: a for a in load_labelled(tmp_path, tmp_path / "labels.csv").attributes}
    assert attributes["iso"]["levels"] == ["100", "400", "1,600", "3,200"]
    levels = attributes["pixels"]["levels"]
    assert levels[0].startswith("12,300–") and "e+" not in "".join(levels)


@pytest.mark.parametrize(("header", "row", "words"), [
    ("file,race", "photos/000.jpg,White", ["lacks the column 'gender'"]),
    ("file,gender,pred", "photos/000.jpg,Male,Male", ["'pred'", "faircam's own column"]),
    ("file,gender,face size", "photos/000.jpg,Male,big", ["'face size'"]),
])
def test_a_label_file_faircam_cannot_use_is_one_line(capsys, labelled, tmp_path, header, row, words):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{header}\n{row}\n")
    code, out, err = cli(capsys, "evaluate", "--data", labelled["root"], "--labels", bad,
                         "--out", tmp_path / "x.parquet")
    assert_one_line_error(code, out, err, *words)
    with pytest.raises(DataError):
        load_labelled(labelled["root"], bad)
    code, out, err = cli(capsys, "evaluate", "--data", labelled["root"], "--labels", tmp_path / "none.csv",
                         "--out", tmp_path / "x.parquet")
    assert_one_line_error(code, out, err, "does not exist")


def test_evaluate_writes_the_attributes_and_quality_columns(evaluated):
    cache, rows = evaluated["cache"], evaluated["cache"].rows
    assert len(rows) == FACES
    assert "2 label rows dropped" in evaluated["stderr"] and "'id' has 64 values" in evaluated["stderr"]
    for column in ("lighting", "monk", "monk (binned)", "exposure", "exposure (binned)", "id",
                   *[s.column for s in SLICES.values()], *SLICES):
        assert column in rows, column
    assert [a.name for a in cache.attributes] == ["lighting", "monk", "exposure", *SLICES]
    assert isinstance(rows["lighting"].dtype, pd.CategoricalDtype)
    assert rows["lighting"].astype(str).tolist() == evaluated["table"]["lighting"].tolist()
    assert cache.meta["data"]["labels"] == str(evaluated["labels"].resolve())
    assert list(cache.tasks) == ["gender", "race", "age"]  # the file has every label the bundled model predicts
    faces = rows["face_found"].astype(bool)
    assert rows.loc[faces, "quality_face_px"].between(20, 400).all()
    assert (rows.loc[~faces, "face size"].astype(str) == "no face found").all()


def test_report_groups_by_the_extra_columns(capsys, evaluated, tmp_path):
    out = tmp_path / "report.html"
    code, _, err = cli(capsys, "report", "--cache", evaluated["out"], "--out", out)
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    rows = evaluated["cache"].rows
    for name in ("lighting", "monk", "exposure", "face size", "brightness"):
        assert f"Fairness by {name}" in page, name
    for level in rows["lighting"].cat.categories:
        assert f"<td>{level}" in page
    assert "Where does it fail?" in page and "labelled folder" in page


def test_model_card_has_the_attributes_tables(evaluated):
    card = model_card(load_model(DEFAULT_MODEL_NAME), evaluated["cache"])
    assert "#### By lighting" in card and "#### By face size" in card
    rows = evaluated["cache"].rows
    daylight = GroupFrame(rows, ["lighting"], min_size=1).by_group.set_index("group").loc["daylight"]
    assert f"| daylight | {with_interval(*daylight[['accuracy', 'accuracy_low', 'accuracy_high']])} |" in card


def app(evaluated, monkeypatch, page: str) -> AppTest:
    monkeypatch.setenv("FAIRCAM_CACHE", str(evaluated["out"]))
    monkeypatch.setenv("FAIRCAM_DATA", str(evaluated["root"]))
    monkeypatch.setenv("FAIRCAM_LABELS", str(evaluated["labels"]))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize(("page", "key"), [("pages/2_Evaluation.py", "eval-grouping"),
                                           ("pages/4_Fairness.py", "fairness-grouping")])
def test_table_pages_group_by_an_extra_column_and_its_intersection_with_race(evaluated, monkeypatch, page, key):
    at = app(evaluated, monkeypatch, page)
    assert_clean(at)
    # The images are named as a labelled folder with its label file, not as a FairFace split called "labels".
    assert any("images of the labelled folder" in c.value and "labels.csv" in c.value for c in at.caption)
    assert not any("split" in c.value for c in at.caption)
    assert [t.label for t in at.tabs][-1] == "Group by…"
    at.session_state[key] = "Group by…"
    at.run()
    at.selectbox(key=f"{key}-by").set_value("lighting").run()
    assert_clean(at)
    rows = evaluated["cache"].rows
    table = table_with(at, "lighting")
    expected = GroupFrame(rows, ["lighting"]).by_group.set_index("group")
    for label, cell in zip(table["lighting"], table.filter(like="accuracy").iloc[:, 0]):
        group = label.split(" (n=")[0]
        assert cell == with_interval(*expected.loc[group, ["accuracy", "accuracy_low", "accuracy_high"]])
    at.selectbox(key=f"{key}-and").set_value("race").run()
    assert_clean(at)
    crossed = table_with(at, "lighting × race")
    assert len(crossed) == GroupFrame(rows, ["lighting", "race"]).by_group.shape[0]


@pytest.mark.parametrize(("page", "key"), [("pages/5_Attention.py", "attention-groups"),
                                           ("pages/6_Faithfulness.py", "agree-groups")])
def test_map_pages_group_by_an_extra_column(evaluated, monkeypatch, page, key):
    at = app(evaluated, monkeypatch, page)
    assert_clean(at)
    at.radio(key=key).set_value("Group by…").run()
    at.selectbox(key=f"{key}-by").set_value("monk").run()
    assert_clean(at)
    # The interval charts name each group "<level><br>(n=…)" on their axis.
    traces = [trace for chart in at.get("plotly_chart") for trace in json.loads(chart.proto.spec)["data"]]
    labels = {str(y).split("<br>")[0] for trace in traces for y in trace.get("y") or [] if isinstance(y, str)}
    assert set(evaluated["cache"].rows["monk (binned)"].dropna().astype(str)) <= labels


def test_gallery_filters_by_an_extra_column_and_by_a_link(evaluated, monkeypatch):
    at = app(evaluated, monkeypatch, "pages/7_Gallery.py")
    assert_clean(at)
    at.multiselect(key="gallery-lighting").set_value(["dim"]).run()
    assert_clean(at)
    rows = evaluated["cache"].rows
    dim = rows[rows["lighting"] == "dim"]
    assert f"among **{len(dim):,}** images matching the filters" in "\n".join(m.value for m in at.markdown)
    # The "Where does it fail?" page links here with ?filter=column=level.
    linked = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    linked.switch_page("pages/7_Gallery.py")
    linked.query_params["filter"] = ["lighting=studio", "race=White"]
    linked.run()
    assert_clean(linked)
    studio = rows[(rows["lighting"] == "studio") & (rows["race"] == "White")]
    assert f"among **{len(studio):,}** images matching the filters" in "\n".join(m.value for m in linked.markdown)


def test_a_label_file_with_gender_alone_audits_gender_alone(labelled, tmp_path):
    """Race and age are optional: their columns stay empty, their tasks are not audited, their groupings not
    offered, and the faithfulness sample and group averages fall back to the cells there are (gender)."""
    from faircam.audit.groups import groupings
    from faircam.data.fairface import balanced_sample
    from faircam.evaluation.evaluate import labelled_tasks
    from faircam.tasks import task_classes

    only = tmp_path / "gender.csv"
    labelled["table"][["file", "gender", "lighting"]].to_csv(only, index=False)
    split = load_labelled(labelled["root"], only)
    assert split.rows["race"].isna().all() and split.rows["age"].isna().all()
    assert list(labelled_tasks(task_classes(), split.rows)) == ["gender"]
    assert list(groupings(split.rows.assign(lighting=split.rows["lighting"]))) == ["gender"]
    sample = balanced_sample(split.rows, 3)
    assert len(sample) == 6 and sorted(sample["gender"].unique()) == ["Female", "Male"]
