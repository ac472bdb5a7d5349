"""The Compare models page and the sidebar model selector, through Streamlit's AppTest."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest
from test_task_measures import table_with

from faircam.config import PROJECT_ROOT
from faircam.vision.cams import METHODS

TIMEOUT = 300
LIMIT = 12


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, fairface):
    """Real caches of the two third-party models on the first val images (the bundled cache of
    faircam's own model holds all 2,500, so the page must compare on the shared 12)."""
    from faircam.evaluation.evaluate import run_evaluation
    from faircam.vision.explain import Pipeline

    folder = tmp_path_factory.mktemp("caches")
    detector = None
    for name in ("dlib", "face-api"):
        pipeline = Pipeline.load(name, detector=detector)
        detector = pipeline.detector
        run_evaluation(fairface, "val", folder / f"eval_val-{name}.parquet", pipeline.model, pipeline.detector,
                       pipeline.explainer, limit=LIMIT, progress=False)
    return folder


@pytest.fixture(autouse=True)
def environment(cache_dir, monkeypatch):
    monkeypatch.setenv("FAIRCAM_CACHE_DIR", str(cache_dir))


def run(page: str, model: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    at.run()
    if model is not None:
        at.sidebar.selectbox[0].set_value(model).run()
    return at


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.error, *at.warning, *at.info])


def picks(at: AppTest) -> list:
    """The FairFace picker's thumbnail buttons (the shared image source)."""
    return [b for b in at.button if b.key and b.key.startswith("pick")]


def test_compare_shows_one_face_through_three_models_and_their_evaluations():
    at = run("pages/9_Compare.py")
    assert not [m for m in at.markdown if " says **" in m.value]  # nothing picked yet
    picks(at)[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    verdicts = [m.value for m in at.markdown if " says **" in m.value]
    assert [v.split()[1].replace("\\", "") for v in verdicts] == ["faircam", "dlib", "face-api"]
    assert all("FairFace label" in v for v in verdicts)
    focus = table_with(at, list(METHODS)[0])
    assert list(focus.index) == ["faircam", "dlib", "face-api"]
    assert list(focus.columns) == [*METHODS, "chance level"]
    assert focus.stack().between(0, 1).all()
    summary = table_with(at, "model")
    assert list(summary["model"]) == ["faircam", "dlib", "face-api"]
    assert (summary["images"] == f"{LIMIT:,}").all()  # compared on the images all three caches hold
    # Gaps in points with their bootstrap interval, as every page writes them; accuracies with their interval as
    # "82.0% (75.1–87.3%)".
    assert all(g == "–" or re.fullmatch(r"\d+\.\d points \(95% interval \d+\.\d–\d+\.\d\)", g)
               for g in summary["race gap"])
    assert all(re.fullmatch(r"\d+\.\d% \(\d+\.\d%–\d+\.\d%\)", a) for a in summary.filter(like="accuracy").iloc[:, 0])
    assert f"**{LIMIT}** images every cache holds" in texts(at)
    race = table_with(at, "race")
    assert list(race.columns) == ["race", "faircam", "dlib", "face-api"]
    assert race["race"].str.endswith("⚠ small").all()  # 12 images: every race group is under MIN_GROUP_SIZE
    assert not any("_" in g for g in race["race"])  # human labels: "Latino Hispanic"
    # Any attribute of the caches groups them too: here an image-quality slice every cache holds.
    at.session_state["compare-grouping"] = "Group by…"
    at.run()
    at.selectbox(key="compare-grouping-by").set_value("head turn").run()
    assert not at.exception, [e.value for e in at.exception]
    turn = table_with(at, "head turn")
    assert list(turn.columns) == ["head turn", "faircam", "dlib", "face-api"]


def test_compare_another_face_and_fewer_models():
    at = run("pages/9_Compare.py")
    picks(at)[0].click().run()
    first = at.session_state["picked"]
    picks(at)[3].click().run()
    assert at.session_state["picked"] != first
    assert sum(f"FairFace label: {at.session_state['picked']['gender']}" in m.value for m in at.markdown) == 3
    at.multiselect[0].set_value(["dlib", "face-api"]).run()
    assert not at.exception, [e.value for e in at.exception]
    verdicts = [m.value for m in at.markdown if " says **" in m.value]
    assert [v.split()[1].replace("\\", "") for v in verdicts] == ["dlib", "face-api"]
    at.multiselect[0].set_value(["dlib"]).run()
    assert any("two or more" in i.value for i in at.info)


def test_model_without_cache_gets_the_command_to_make_one(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRCAM_CACHE_DIR", str(tmp_path / "empty"))
    at = run("pages/9_Compare.py")
    assert not at.exception, [e.value for e in at.exception]
    warned = " ".join(w.value for w in at.warning)
    assert "faircam evaluate --split val --model dlib" in warned and "--model face-api" in warned


def test_sidebar_selection_drives_the_other_pages():
    at = run("pages/2_Evaluation.py", model="dlib")
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert "Model **dlib** on **12** images" in texts(at)
    assert at.metric[2].value == "12"
    at.switch_page("pages/3_About.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Model card: dlib" in texts(at)  # the choice survives a page change
    assert at.session_state["faircam_model"] == "dlib"
