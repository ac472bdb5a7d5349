"""The "Audit a model" page through Streamlit's AppTest, as a user who does not code would use it: upload a zipped
Hugging Face folder, a state dict with its architecture and classes, an ONNX file with its description, or a table
of answers; see what was recognised and the answers on a few real FairFace faces; evaluate in the background; then
Evaluation and Compare audit the brought model. Bad uploads are one line and install nothing."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_model_kinds import SIZE, _resnet, _vit
from test_model_store import nothing_left, zipped
from test_task_measures import table_with

from faircam.config import PROJECT_ROOT
from faircam.evaluation import jobs
from faircam.models import registry
from faircam.text import md

ZIP, WEIGHTS, ONNX, ANSWERS = ("A Hugging Face model (a zip of its folder)", "A state dict and its architecture",
                               "An ONNX file and its description", "A table of answers (CSV)")


def open_page(fairface, monkeypatch) -> AppTest:
    """The Audit a model page, run once, on the shared data with a quick evaluation's number of faces."""
    monkeypatch.setenv("FAIRCAM_DATA", str(fairface))
    monkeypatch.setenv("FAIRCAM_AUDIT_FACES", "14")  # one face per race x gender group: a quick evaluation
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=180)
    at.switch_page("pages/13_Audit_a_model.py")
    return at.run()


@pytest.fixture
def page(fairface, monkeypatch) -> AppTest:
    return open_page(fairface, monkeypatch)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def upload(at: AppTest, what: str, files: list[tuple[str, bytes]], name: str) -> AppTest:
    at.radio(key="audit_what").set_value(what).run()
    for uploader, (filename, data) in zip(at.file_uploader, files):
        uploader.set_value((filename, data, "application/octet-stream"))
    at.run()
    next(t for t in at.text_input if t.label == "Its name on the pages").set_value(name)
    return button(at.run(), "Install").click().run()


def shown(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.success, *at.info, *at.warning])


def evaluate(at: AppTest, name: str) -> AppTest:
    button(at, "Evaluate").click().run()
    deadline = time.monotonic() + 300
    while jobs.job(name).state not in jobs.ENDED and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    assert jobs.job(name).state == "done", jobs.job(name)
    assert "Evaluated on 14 faces" in shown(ok(at))
    return at


def audited_on_evaluation_and_compare(at: AppTest, name: str, images: int) -> None:
    at.switch_page("pages/2_Evaluation.py").run()
    at.sidebar.selectbox[0].set_value(name).run()  # the sidebar's model selector offers it
    assert f"Model **{md(name)}** on **{images}** images" in shown(ok(at))
    at.switch_page("pages/9_Compare.py").run()
    at.multiselect[0].set_value(["faircam", name]).run()
    summary = table_with(ok(at), "model")
    assert list(summary["model"]) == ["faircam", name]


VIT = "my_vit (v2)"


def test_a_zipped_hugging_face_folder_is_checked_previewed_evaluated_and_audited(page, tmp_path):
    at = upload(page, ZIP, [("vit.zip", zipped(_vit(tmp_path / "vit", ["Woman", "Man"])))], VIT)
    text = shown(ok(at))
    assert f"Installed **{md(VIT)}**" in text and md(VIT) != VIT  # the user's name, escaped
    assert md("Woman → Female, Man → Male") in text and "`vit.layers.1.layernorm_before`" in text
    assert md("32×32 RGB") in text
    button(at, "Show its answers").click().run()
    answers = [c.value for c in ok(at).caption if "says **" in c.value]
    assert len(answers) == 14 and all(" → Female" in a or " → Male" in a for a in answers)
    assert all(("says **Woman** → Female" in a) or ("says **Man** → Male" in a) for a in answers)
    evaluate(at, VIT)
    assert VIT in registry.entries()
    audited_on_evaluation_and_compare(at, VIT, 14)


def test_a_state_dict_with_its_architecture_and_classes(page, tmp_path):
    from safetensors.torch import save_file

    save_file(_resnet(2).state_dict(), tmp_path / "w.safetensors")
    at = page
    at.radio(key="audit_what").set_value(WEIGHTS).run()
    at.selectbox(key="audit_arch_torchvision").set_value("resnet18")
    at.text_input(key="audit_classes").set_value("man, woman")
    at.number_input(key="audit_size").set_value(SIZE)
    at = upload(at, WEIGHTS, [("w.safetensors", (tmp_path / "w.safetensors").read_bytes())], "rn18")
    text = shown(ok(at))
    assert md("man → Male, woman → Female") in text and "`layer4`" in text and md("64×64 RGB") in text
    evaluate(at, "rn18")
    audited_on_evaluation_and_compare(at, "rn18", 14)


def test_an_onnx_file_with_its_description(page, tmp_path):
    torch.onnx.export(_resnet(2), torch.zeros(1, 3, SIZE, SIZE), tmp_path / "m.onnx", dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    description = json.dumps({"format": "onnx", "weights": "m.onnx", "input_size": SIZE,
                              "outputs": [{"task": "gender", "classes": ["F", "M"]}]}).encode()
    at = upload(page, ONNX, [("m.onnx", (tmp_path / "m.onnx").read_bytes()), ("faircam-model.json", description)],
                "vendor")
    assert md("F → Female, M → Male") in shown(ok(at)) and "vendor" in registry.entries()


def test_a_table_of_answers_is_audited_at_once_and_removed(page, val_split):
    rows = val_split.rows.head(40)
    table = pd.DataFrame({"file": [*rows["file"], "val/not-there.jpg"],
                          "pred_gender": [*rows["gender"].map({"Female": "woman", "Male": "man"}), "man"]})
    at = upload(page, ANSWERS, [("api.csv", table.to_csv(index=False).encode())], "vendor API")
    assert "no maps" in shown(ok(at))
    assert ("1 of its files are not among FairFace's validation faces and are not counted (the first: "
            f"{md('val/not-there.jpg')}).") in shown(at)
    audited_on_evaluation_and_compare(at, "vendor API", 40)
    # A page that runs a model says in one line that a table has none.
    at.switch_page("pages/1_Explore.py").run()
    assert [i.value for i in ok(at).info] == [f"{md('vendor API', code=True)} is a table of answers: no model ran, "
                                              "so it has no maps and cannot answer other faces."]
    at.switch_page("pages/13_Audit_a_model.py").run()
    button(at, "Remove vendor API").click().run()
    assert "vendor API" not in registry.entries() and nothing_left()
    at.switch_page("pages/2_Evaluation.py").run()  # the sidebar falls back to the bundled model
    assert ok(at).sidebar.selectbox[0].value == "faircam"


@pytest.mark.parametrize(("what", "files", "said"), [
    (ZIP, [("evil.zip", b"not a zip")], "evil.zip is not a readable zip archive."),
    (ANSWERS, [("a.csv", b"file,pred_gender\nval/1.jpg,cat\n")], "'cat' (file val/1.jpg) is not a gender class"),
    (ONNX, [("m.onnx", b"\x00garbage"), ("d.json", b"[1, 2]")], "d.json is not a JSON object"),
])
def test_a_bad_upload_is_one_line_and_installs_nothing(page, what, files, said):
    at = upload(page, what, files, "bad")
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and md(said) in at.error[0].value and "\n" not in at.error[0].value, at.error
    assert "bad" not in registry.entries() and nothing_left()


def test_a_bad_number_of_faces_setting_is_one_line(page, tmp_path, monkeypatch):
    from faircam.models import store

    store.install_archive("vit", zipped(_vit(tmp_path / "vit", ["female", "male"])), "vit.zip")
    monkeypatch.setenv("FAIRCAM_AUDIT_FACES", "lots")
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert [e.value for e in page.error] == [md("FAIRCAM_AUDIT_FACES='lots': give a whole number of faces, 1 or more.")]


def test_a_table_of_five_race_answers_with_its_mapping(page, val_split):
    """A face API answering five races: installed with the mapping typed in the page's box over faircam's proposal,
    shown as recognised, and Evaluation audits race in the table's own classes and says how."""
    rows = val_split.rows.head(30)
    five = {"White": "caucasian", "Black": "african", "Latino_Hispanic": "hispanic", "East Asian": "asian",
            "Southeast Asian": "asian", "Indian": "indian", "Middle Eastern": "caucasian"}
    table = pd.DataFrame({"file": rows["file"], "pred_gender": rows["gender"], "pred_race": rows["race"].map(five)})
    page.radio(key="audit_what").set_value(ANSWERS).run()
    page.text_input(key="audit_mapping").set_value('{"race": {"Middle Eastern": "caucasian"}}')
    at = upload(page, ANSWERS, [("five.csv", table.to_csv(index=False).encode())], "five API")
    assert md("White, Middle Eastern → caucasian") in shown(ok(at))
    at.switch_page("pages/2_Evaluation.py").run()
    at.sidebar.selectbox[0].set_value("five API").run()
    at.sidebar.selectbox[1].set_value("race").run()
    said = " ".join(i.value for i in ok(at).info)
    assert md("compared in its own classes (african, asian, caucasian, hispanic, indian)") in said
    assert at.metric[0].value == "100.0%"


def test_a_mapping_that_is_not_json_is_one_line(page, val_split):
    rows = val_split.rows.head(5)
    table = pd.DataFrame({"file": rows["file"], "pred_race": ["asian"] * 5})
    page.radio(key="audit_what").set_value(ANSWERS).run()
    page.text_input(key="audit_mapping").set_value("{race: asian}")
    at = upload(page, ANSWERS, [("five.csv", table.to_csv(index=False).encode())], "bad")
    assert not at.exception and len(at.error) == 1, at.error
    assert at.error[0].value.startswith(f"**Not installed.** {md('Its mapping: not JSON')}")
    assert "\n" not in at.error[0].value
    assert "bad" not in registry.entries()
