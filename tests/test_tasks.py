"""A task is one entry of `faircam.tasks.TASKS`: an emotion task registered here, and nowhere else, reaches every
place that lists tasks (the command line, the checkpoint reader, the cache's checks, the sidebar, the Evaluation
and Fairness pages, the report and the model card). And the one synonym table reads labels written other ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score
from streamlit.testing.v1 import AppTest
from test_task_measures import table_with

from faircam.audit.modelcard import model_card
from faircam.audit.report import build_report
from faircam.cli import build_parser
from faircam.config import DEFAULT_MODEL_NAME, PROJECT_ROOT, cache_path_for
from faircam.evaluation.cache import read_cache, write_cache
from faircam.models.model import build_model, load_checkpoint, parse_tasks, save_checkpoint
from faircam.models.registry import register_checkpoint
from faircam.tasks import TASKS, Task, task_classes

TIMEOUT = 240
EMOTION = Task("emotion", ("angry", "happy", "neutral"), synonyms={"happy": ("joy", "smiling")})


@pytest.fixture
def emotion(monkeypatch) -> Task:
    monkeypatch.setitem(TASKS, "emotion", EMOTION)
    return EMOTION


@pytest.fixture
def emotion_model(emotion, tmp_path, monkeypatch) -> tuple[str, Path]:
    """A checkpoint with a gender and an emotion head (untrained), registered, and its evaluation: the bundled
    cache's first 600 rows with emotion labels and predictions, right for 70% of the faces."""
    classes = task_classes(["gender", "emotion"])
    checkpoint = tmp_path / "emo.pt"
    save_checkpoint(build_model("efficientnet-lite0", tasks=classes), checkpoint, "efficientnet-lite0", 160,
                    {"name": "emo"}, tasks=classes)
    register_checkpoint("emo", checkpoint, 160, "untrained, for a test", tuple(classes))
    bundled = read_cache(cache_path_for(DEFAULT_MODEL_NAME))
    rows = bundled.rows.head(600).copy()
    rng = np.random.default_rng(0)
    rows["emotion"] = rng.choice(emotion.classes, len(rows))
    rows[emotion.pred] = np.where(rng.random(len(rows)) < 0.7, rows["emotion"], rng.choice(emotion.classes, len(rows)))
    rows[emotion.prob] = rng.uniform(0.34, 1, len(rows))
    rows[emotion.correct] = rows[emotion.pred] == rows["emotion"]
    meta = {k: v for k, v in bundled.meta.items() if k not in ("schema_version", "rows", "checksum")}
    meta["tasks"] = {t: list(c) for t, c in classes.items()}
    meta["model"] = {**meta["model"], "name": "emo", "sha256": load_checkpoint(checkpoint).sha256,
                     "path": str(checkpoint)}
    monkeypatch.setenv("FAIRCAM_CACHE_DIR", str(tmp_path))
    write_cache(rows, cache_path_for("emo"), meta)
    return "emo", checkpoint


def test_labels_written_other_ways_are_read_by_name():
    gender, race, age = TASKS["gender"], TASKS["race"], TASKS["age"]
    assert [gender.canonical(v) for v in ("female", " Woman ", "F", "Female ♀", "MALE", "man", "x")] == [
        "Female", "Female", "Female", "Female", "Male", "Male", None]
    assert [race.canonical(v) for v in ("latino", "Latino Hispanic", "latino_hispanic", "east-asian", "Asian")] == [
        "Latino_Hispanic", "Latino_Hispanic", "Latino_Hispanic", "East Asian", None]
    assert [age.canonical(v) for v in ("70+", "more_than_70", "20-29", "20–29", "29")] == [
        "more than 70", "more than 70", "20-29", "20-29", None]


def test_a_new_task_reaches_the_command_line_and_the_checkpoint_reader(emotion):
    cam_task = next(a for a in build_parser()._subparsers._group_actions[0].choices["evaluate"]._actions
                    if a.dest == "cam_task")
    assert "emotion" in cam_task.choices
    assert parse_tasks("emotion,gender") == {"gender": TASKS["gender"].classes, "emotion": emotion.classes}
    assert emotion.canonical("Joy") == "happy" and emotion.pred == "emotion_pred" and not emotion.binary


def test_a_new_task_flows_to_the_pages_report_and_card(emotion_model, emotion):
    name, checkpoint = emotion_model
    cache = read_cache(cache_path_for(name))
    assert list(cache.tasks) == ["gender", "emotion"]
    rows = cache.rows

    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/2_Evaluation.py")
    at.session_state["faircam_model"] = name
    at.run()
    task_box = at.sidebar.selectbox[1]
    assert task_box.options == ["gender", "emotion"]
    task_box.set_value("emotion").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    metric = {m.label: m.value for m in at.metric}
    assert metric["Accuracy"] == f"{accuracy_score(rows['emotion'], rows[emotion.pred]):.1%}"
    assert table_with(at, "class")["class"].tolist() == list(emotion.classes)

    at.switch_page("pages/4_Fairness.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert "accuracy gap" in [m.label for m in at.metric]
    gaps = table_with(at, "class")
    assert gaps["class"].tolist() == list(emotion.classes)

    report = build_report(cache, n_boot=50)
    assert "Emotion: confusion and per class" in report
    assert "### Emotion" in model_card(load_checkpoint(checkpoint), cache)


def test_a_cache_of_an_unknown_task_is_refused(tmp_path):
    bundled = read_cache(cache_path_for(DEFAULT_MODEL_NAME))
    meta = {k: v for k, v in bundled.meta.items() if k not in ("schema_version", "rows", "checksum")}
    meta["tasks"] = {**meta["tasks"], "emotion": list(EMOTION.classes)}
    write_cache(pd.DataFrame(bundled.rows.head(5)), tmp_path / "c.parquet", meta)
    with pytest.raises(Exception, match="names tasks or classes faircam does not know"):
        read_cache(tmp_path / "c.parquet")
