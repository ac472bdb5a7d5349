"""Light pages and caching: cache-only pages never import torch, the model and MTCNN load once per
process, and a repeated view of the same image with the same toggles does no model work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from faircam.config import DEFAULT_MODEL, PROJECT_ROOT
from faircam.errors import ModelError
from faircam.models.checkpoint import read_metadata

TIMEOUT = 180
# Pages that only read the evaluation cache (contracts §3); those not written yet are skipped.
LIGHT_PAGES = ("0_Home", "2_Evaluation", "3_About", "4_Fairness", "5_Attention", "6_Faithfulness", "7_Gallery",
               "10_Classroom", "12_Glossary")
PRESENT = [f"pages/{name}.py" for name in LIGHT_PAGES if (PROJECT_ROOT / "pages" / f"{name}.py").is_file()]

# Runs in a fresh interpreter: the test process itself imported torch long ago (conftest).
PROBE = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout={timeout})
if {page!r} != "app.py":
    at.switch_page({page!r})
at.run()
heavy = sorted(m for m in ("torch", "torchvision", "facenet_pytorch", "pytorch_grad_cam") if m in sys.modules)
science = sorted(m for m in ("fairlearn", "sklearn", "scipy") if m in sys.modules)
print(json.dumps({{"heavy": heavy, "science": science, "exceptions": [e.value for e in at.exception],
                  "errors": [e.value for e in at.error],
                  "sidebar": [m.label for m in at.sidebar.selectbox]}}))
"""


def _probe(page: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(page=page, timeout=TIMEOUT)], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("page", ["app.py", *PRESENT])
def test_cache_only_page_opens_without_torch(page):
    result = _probe(page)
    assert not result["exceptions"] and not result["errors"], result
    assert result["heavy"] == [], f"{page} imported {result['heavy']}"
    assert result["sidebar"] == ["Model", "Task"]  # the sidebar names the model and the task, through selectors


@pytest.mark.parametrize("page", ["app.py", "pages/2_Evaluation.py"])
def test_first_pages_skip_the_slow_scientific_imports(page):
    # fairlearn brings scikit-learn and SciPy: seconds of import before the first page shows (bench/).
    assert _probe(page)["science"] == []


def test_model_page_does_import_torch():
    # The probe can see torch: the Explore page, which runs the model, brings it in.
    assert "torch" in _probe("pages/1_Explore.py")["heavy"]


def test_checkpoint_metadata_without_torch_matches_torch_load(pipeline):
    meta = read_metadata(DEFAULT_MODEL)
    model = pipeline.model
    assert (meta["arch"], meta["input_size"], tuple(meta["classes"])) == (model.arch, model.input_size, model.classes)
    assert tuple(meta["mean"]) == model.mean and tuple(meta["std"]) == model.std
    assert meta["info"] == model.info
    assert "state_dict" not in meta


def test_checkpoint_metadata_refuses_other_files(tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        read_metadata(bogus)
    with pytest.raises(ModelError, match="does not exist"):
        read_metadata(tmp_path / "missing.pt")


@pytest.fixture
def counters(monkeypatch):
    """Counts of pipeline loads, MTCNN constructions, CAM passes and detections in this process."""
    from faircam.vision.cams import CamExplainer
    from faircam.vision.explain import Pipeline
    from faircam.vision.preprocess import FaceDetector

    counts = {"load": 0, "mtcnn": 0, "cams": 0, "detect": 0}

    def counted(key, original):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(Pipeline, "load", classmethod(counted("load", Pipeline.load.__func__)))
    monkeypatch.setattr(FaceDetector, "__init__", counted("mtcnn", FaceDetector.__init__))
    monkeypatch.setattr(CamExplainer, "__call__", counted("cams", CamExplainer.__call__))
    monkeypatch.setattr(FaceDetector, "detect_batch", counted("detect", FaceDetector.detect_batch))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield counts
    st.cache_resource.clear()


def _open(page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    return at.run()


def test_evaluation_page_never_calls_the_pipeline(counters, monkeypatch):
    from faircam.dashboard import ui

    def forbidden():
        raise AssertionError("a cache-only page asked for the model")

    monkeypatch.setattr(ui, "pipeline", forbidden)
    for page in ("pages/2_Evaluation.py", "pages/0_Home.py", "pages/3_About.py"):
        at = _open(page)
        assert not at.exception, [e.value for e in at.exception]
    assert [m.label for m in _open("pages/2_Evaluation.py").metric] == ["Accuracy", "95% interval", "Images"]
    assert counters["load"] == 0
    # The stand-in is the one the pages call: a page that runs the model trips over it.
    assert any("asked for the model" in e.value for e in _open("pages/1_Explore.py").exception)


def test_model_and_mtcnn_load_once_per_process(counters):
    at = _open("pages/1_Explore.py")
    at.button[1].click().run()
    at.toggle[0].set_value(True).run()
    assert "The model says" in "\n".join(m.value for m in at.markdown)
    # Other pages and a second session (another browser tab) reuse the loaded pipeline.
    for page in ("pages/2_Evaluation.py", "pages/3_About.py", "pages/1_Explore.py"):
        assert not _open(page).exception
    other = _open("pages/1_Explore.py")
    other.button[2].click().run()
    assert not other.exception
    assert (counters["load"], counters["mtcnn"]) == (1, 1)


def test_repeated_view_does_no_model_work(counters):
    at = _open("pages/1_Explore.py")
    at.button[1].click().run()
    assert (counters["cams"], counters["detect"]) == (1, 1)
    at.toggle[0].set_value(True).run()  # crop: a new view, one more pass
    assert counters["cams"] == 2
    at.toggle[0].set_value(False).run()  # back to the first view: memoised
    at.run()  # a plain rerun (any widget elsewhere)
    assert (counters["cams"], counters["detect"]) == (2, 2)
    # Another session viewing the same face with the same toggles gets the memoised result too.
    other = _open("pages/1_Explore.py")
    other.button[1].click().run()
    assert other.session_state["picked"] == at.session_state["picked"]
    assert "The model says" in "\n".join(m.value for m in other.markdown)
    assert (counters["cams"], counters["detect"]) == (2, 2)


def test_the_model_loads_in_the_background_after_the_first_page(counters, monkeypatch):
    from faircam.dashboard import ui

    monkeypatch.setenv("FAIRCAM_PRELOAD", "1")
    at = _open("pages/2_Evaluation.py")
    assert not at.exception, [e.value for e in at.exception]
    ui.warm_up().join(timeout=TIMEOUT)  # started by app.py once the page had run
    assert (counters["load"], counters["mtcnn"]) == (1, 1)
    # The first face then reuses that model: no second load.
    explore = _open("pages/1_Explore.py")
    explore.button[1].click().run()
    assert "The model says" in "\n".join(m.value for m in explore.markdown)
    assert (counters["load"], counters["mtcnn"]) == (1, 1)
