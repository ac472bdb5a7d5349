"""Every page of the app for each kind of model a user brings (issue 23): a zipped Hugging Face folder, a torchvision
state dict with its JSON, an ONNX file converted to torch, an ONNX graph run as a black box, a coarser five-race
model, a table of answers and a table of five-race answers. Each is built by the test (nothing downloaded),
installed into a temporary store (`FAIRCAM_STORE`) as the "Audit a model" page installs it, evaluated on 14
stratified FairFace validation faces by the page's background job (a table: at install), chosen in the sidebar,
and then every page of app.py's navigation is opened with it: no exception, no error, and something real of that
model on each (its numbers, its name, its maps, or the one line saying what a table of answers or a black box
lacks). One install and evaluation per kind is shared by its pages (module-scoped), so the walk costs seven small
evaluations and 98 page runs."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_model_kinds import SIZE, _resnet, _vit
from test_model_mapping import _five_races, black_box_onnx
from test_model_store import zipped
from test_task_measures import table_with

from faircam.config import PROJECT_ROOT, cache_path_for
from faircam.evaluation import jobs
from faircam.evaluation.cache import read_cache
from faircam.models import store
from faircam.text import md
from faircam.wording import OCCLUSION_MAPS

FACES = 14  # one validation face of each race x gender group
# A table's race answers in the AutoTrain model's five classes (Middle Eastern answered caucasian).
FIVE_OF = {"White": "caucasian", "Black": "african", "Latino_Hispanic": "hispanic", "East Asian": "asian",
           "Southeast Asian": "asian", "Indian": "indian", "Middle Eastern": "caucasian"}


def _install(kind: str, root: Path, rows: pd.DataFrame) -> store.Installed:
    """The model of `kind` built under `root` and installed in the store as the page installs it."""
    if kind == "huggingface":
        return store.install_archive(kind, zipped(_vit(root / "vit", ["Woman", "Man"])), "vit.zip")
    if kind in ("torchvision", "onnx"):
        from safetensors.torch import save_file

        net = _resnet(2)
        if kind == "torchvision":
            save_file(net.state_dict(), root / "w.safetensors")
            spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
            return store.install_weights(kind, (root / "w.safetensors").read_bytes(), "w.safetensors", spec)
        torch.onnx.export(net, torch.zeros(1, 3, SIZE, SIZE), root / "m.onnx", dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        spec = {"format": "onnx", "weights": "m.onnx", "input_size": SIZE,
                "outputs": [{"task": "gender", "classes": ["F", "M"]}]}
        return store.install_weights(kind, (root / "m.onnx").read_bytes(), "m.onnx", spec)
    if kind == "black box":
        spec, _ = black_box_onnx(root)
        return store.install_weights(kind, (root / "model.onnx").read_bytes(), "model.onnx",
                                     json.loads(spec.read_text()))
    if kind == "five races":
        return store.install_archive(kind, zipped(_five_races(root / "five").parent), "five.zip")
    table = pd.DataFrame({"file": rows["file"], "pred_gender": rows["gender"].str.lower()})
    table.loc[::3, "pred_gender"] = table.loc[::3, "pred_gender"].map({"female": "man", "male": "woman"})
    if kind == "five-race answers":
        table["pred_race"] = rows["race"].map(FIVE_OF).to_numpy()
    table.to_csv(root / "answers.csv", index=False)
    return store.install_answers(kind, root / "answers.csv", "answers.csv")[0]


KINDS = ("huggingface", "torchvision", "onnx", "black box", "five races", "answers", "five-race answers")
ANSWERS = ("answers", "five-race answers")


@pytest.fixture(scope="module")
def shelf(tmp_path_factory, fairface):
    """The module's own store and data settings, shared by every kind's install and every page run."""
    root = tmp_path_factory.mktemp("walk")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAIRCAM_STORE", str(root / "store"))
        patch.setenv("FAIRCAM_REGISTRY", str(root / "registry.json"))
        patch.setenv("FAIRCAM_DATA", str(fairface))
        patch.setenv("FAIRCAM_AUDIT_FACES", str(FACES))
        yield root


@pytest.fixture(scope="module", params=KINDS)
def brought(request, shelf, val_split) -> str:
    """One kind installed in the module's store and evaluated on 14 stratified faces by the page's job."""
    kind = request.param
    folder = shelf / kind.replace(" ", "_")
    folder.mkdir()
    rows = val_split.rows[val_split.rows["file"].isin(jobs.sample_files(val_split.rows, FACES))]
    model = _install(kind, folder, rows)
    if kind not in ANSWERS:
        jobs.submit(model.name, FACES, batch_size=FACES)
        deadline = time.monotonic() + 600
        while jobs.job(model.name).state not in jobs.ENDED and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jobs.job(model.name).state == "done", jobs.job(model.name)
    assert len(read_cache(cache_path_for(model.name)).rows) == FACES
    return model.name


@pytest.fixture
def walk_env(shelf, monkeypatch):
    """The module's store and settings again, over the per-test ones conftest sets."""
    monkeypatch.setenv("FAIRCAM_STORE", str(shelf / "store"))
    monkeypatch.setenv("FAIRCAM_REGISTRY", str(shelf / "registry.json"))


PAGES = ("0_Home", "1_Explore", "2_Evaluation", "3_About", "4_Fairness", "5_Attention", "6_Faithfulness", "7_Gallery",
         "8_Inside", "9_Compare", "10_Classroom", "11_Failures", "12_Glossary", "13_Audit_a_model")
# The pages that show the model's maps (Explore and Compare once a face is picked).
MAP_PAGES = ("5_Attention", "6_Faithfulness", "10_Classroom")
# The task each kind is walked with: a coarser model's own classes where it has them.
TASK = {"five races": "race", "five-race answers": "race"}


def said(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.warning, *at.success,
                                            *at.metric, *at.title])


def _accuracy(name: str, task: str) -> float:
    cache = read_cache(cache_path_for(name))
    return float(cache.rows[cache.task(task).correct].dropna().astype(bool).mean())


@pytest.mark.parametrize("page", PAGES)
def test_every_page_audits_each_kind(brought, page, walk_env):
    name, task = brought, TASK.get(brought, "gender")
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=300)
    at.session_state["faircam_model"] = name
    at.session_state["faircam_task"] = task
    at.switch_page(f"pages/{page}.py")
    at.run()
    if (page == "1_Explore" and name not in ANSWERS) or (page == "8_Inside" and name not in (*ANSWERS, "black box")):
        at.button[1].click().run()  # the first face of the grid (button 0 shuffles)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.sidebar.selectbox[0].value == name and at.sidebar.selectbox[1].value == task
    accuracy = _accuracy(name, task)
    assert f"accuracy {accuracy:.1%}" in " ".join(c.value for c in at.sidebar.caption)
    text = said(at)
    # A command the page offers runs as shown: the model's name and its cache's path quoted for the shell.
    for shown in text.split("faircam evaluate --split val")[1:]:
        assert shown.startswith(f" --model {shlex.quote(name)} --out {shlex.quote(str(cache_path_for(name)))}"), shown
    for shown in text.split("faircam add-quality")[1:]:
        assert shown.startswith(f" {shlex.quote(str(cache_path_for(name)))}"), shown
    assert "nan%" not in text
    lacks = (f"{md(name, code=True)} is a table of answers: no model ran, so it has no maps and cannot answer "
             "other faces.")
    no_maps = ("This audit is of a table of answers (`faircam import-predictions`): no model ran, so it has no "
               "maps.")
    infos = [i.value for i in at.info]
    if page == "0_Home":
        assert f"**Model:** {md(name)} " in text
    elif page in ("1_Explore", "8_Inside"):
        if name in ANSWERS:
            assert lacks in infos
        elif page == "1_Explore":
            verdict = next(m.value for m in at.markdown if m.value.startswith("### "))
            assert " sure)" in verdict and len(at.get("image")) >= 2, verdict  # the face and its maps
            assert (OCCLUSION_MAPS in infos) == (name == "black box")
            assert ("four class activation maps" in text) == (name != "black box")  # as its maps are named
        elif name == "black box":
            assert any("runs as a black box (onnxruntime)" in i for i in infos), infos
        else:
            assert "filters of the first convolution" in text
            assert "(CAM layer)** · " in text  # the picked face's stages, its CAM layer among them
    elif page == "2_Evaluation":
        assert at.metric[0].value == f"{accuracy:.1%}"
        assert f"Model **{md(name)}** on **{FACES}** images" in text
    elif page == "3_About":
        assert f"## Model card: {md(name)}" in text
    elif page in MAP_PAGES:
        if name in ANSWERS:
            assert no_maps in infos
        else:
            assert (OCCLUSION_MAPS in infos) == (name == "black box"), infos
            if page == "5_Attention":
                assert ("Occlusion" if name == "black box" else "Grad-CAM") in text
            elif page == "6_Faithfulness":
                assert ("there is no other map to agree with" in text) == (name == "black box")
            else:
                assert "**Pick one** below" in text
    elif page == "7_Gallery":
        wrong = int((~read_cache(cache_path_for(name)).rows[read_cache(cache_path_for(name)).task(task).correct]
                     .dropna().astype(bool)).sum())
        assert f"**{wrong} mistake{'s' if wrong != 1 else ''}** among **" in text
    elif page == "9_Compare":
        assert name in at.multiselect[0].value  # the model chosen in the sidebar is compared
        summary = table_with(at, "model")
        assert name in list(summary["model"])
    elif page == "12_Glossary":
        assert "focus score" in text
    elif page == "13_Audit_a_model":
        assert at.selectbox(key="audit_model").value == name  # the model chosen in the sidebar is shown
    if name in TASK and page in ("2_Evaluation", "3_About", "4_Fairness", "7_Gallery", "9_Compare", "11_Failures"):
        assert "compared in its own classes (african, asian, caucasian, hispanic, indian)" in text.replace("\\", "")
