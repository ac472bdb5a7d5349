"""What a brought model's classes mean: a model whose classes are coarser than FairFace's (five races) is audited in
its own classes through a mapping faircam proposes and its faircam-model.json may override, stated on the pages,
in the model card and in the report; the model card and report say which kind of model it was. Real networks the
tests build (nothing downloaded), audited by the command line on real FairFace faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from faircam.cli import main
from faircam.evaluation.cache import read_cache
from faircam.models.registry import load_model

SIZE = 64
# The first 24 val faces: two of them (val/16.jpg, val/20.jpg) are Middle Eastern, which five races leave out.
FAST = ["--limit", "24", "--faithfulness-per-cell", "0", "--batch-size", "12", "--no-cams"]
FIVE = ["african", "asian", "caucasian", "hispanic", "indian"]
PROPOSED = {"White": "caucasian", "Black": "african", "Latino_Hispanic": "hispanic", "East Asian": "asian",
            "Southeast Asian": "asian", "Indian": "indian", "Middle Eastern": None}


def _five_races(folder: Path, **fields: object) -> Path:
    """A torchvision ResNet-18 with a gender head and a five-race head (the AutoTrain model's classes), saved as
    its maker would: a state dict and its faircam-model.json."""
    import torchvision
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    net = torchvision.models.resnet18(num_classes=2 + len(FIVE)).eval()
    save_file(net.state_dict(), folder / "model.safetensors")
    spec = {"format": "torchvision", "arch": "resnet18", "weights": "model.safetensors", "input_size": SIZE,
            "outputs": [{"task": "gender", "classes": ["female", "male"]}, {"task": "race", "classes": FIVE}]}
    (folder / "faircam-model.json").write_text(json.dumps(spec | fields))
    return folder / "faircam-model.json"


@pytest.fixture(scope="module")
def five(tmp_path_factory, fairface) -> dict:
    """The five-race model with faircam's proposed mapping, and with Middle Eastern mapped onto caucasian by its
    JSON, each evaluated on the first 24 val faces."""
    root = tmp_path_factory.mktemp("five")
    made = {"spec": _five_races(root / "proposed"),
            "override": _five_races(root / "override", mapping={"race": {"middle eastern": "caucasian"}})}
    for key in ("spec", "override"):
        out = root / f"{key}.parquet"
        assert main(["evaluate", "--data", str(fairface), "--model", str(made[key]), "--out", str(out), *FAST]) == 0
        made[f"{key}_cache"] = out
    return made


def test_five_races_get_a_proposed_mapping(five):
    model = load_model(five["spec"])
    assert model.tasks == {"gender": ("Female", "Male"), "race": tuple(FIVE)}
    assert model.onto == {"race": PROPOSED}
    assert model.info["label_mapping"]["race"] == (
        "Black → african; East Asian, Southeast Asian → asian; White → caucasian; Latino_Hispanic → hispanic; "
        "Indian → indian; Middle Eastern: no counterpart (left out of its accuracy)")


def test_coarse_answers_are_compared_in_the_models_classes(five):
    """`race_correct` is the model's answer against the label's counterpart among its classes; the Middle Eastern
    faces have none and are left out (neither right nor wrong), and the cache records the mapping."""
    cache = read_cache(five["spec_cache"])
    rows = cache.rows
    assert cache.meta["model"]["onto"] == {"race": PROPOSED} and cache.tasks["race"] == tuple(FIVE)
    assert set(rows["race_pred"]) <= set(FIVE)
    middle = rows["race"] == "Middle Eastern"
    assert middle.sum() == 2 and rows.loc[middle, "race_correct"].isna().all()
    expected = rows.loc[~middle, "race"].map(PROPOSED) == rows.loc[~middle, "race_pred"]
    assert (rows.loc[~middle, "race_correct"].astype(bool) == expected).all()
    from faircam.audit.accuracy import confusion, overall_scores

    spec = cache.task("race")
    matrix = confusion(rows, spec)
    assert list(matrix.index) == FIVE and matrix.to_numpy().sum() == 22
    scores = overall_scores(rows, spec, n_boot=50)
    assert scores.loc["all", "n"] == 22 and scores.loc["all", "accuracy"] == pytest.approx(expected.mean())
    assert "2 of 24 faces have no counterpart" in cache.mapping_note("race")
    assert cache.mapping_note("gender") == ""


def test_the_json_mapping_overrides_the_proposal(five):
    cache = read_cache(five["override_cache"])
    assert cache.meta["model"]["onto"]["race"]["Middle Eastern"] == "caucasian"
    rows = cache.rows
    middle = rows["race"] == "Middle Eastern"
    assert rows.loc[middle, "race_correct"].notna().all()
    assert ((rows["race_pred"] == rows["race"].map(PROPOSED | {"Middle Eastern": "caucasian"}))
            == rows["race_correct"].astype(bool)).all()


@pytest.mark.parametrize(("mapping", "said"), [
    ({"race": {"Martian": "asian"}}, "mapping.race names 'Martian', not a race class faircam knows"),
    ({"race": {"White": "european"}}, "maps 'White' onto 'european', which is not one of the model's classes"),
    ({"age": {"0-2": "baby"}}, "its mapping names 'age', which none of its heads predicts"),
    ({"gender": {"Female": "female"}}, "its mapping names gender, whose two classes need none"),
])
def test_a_bad_mapping_is_one_line_and_exit_2(tmp_path, fairface, capsys, mapping, said):
    spec = _five_races(tmp_path / "bad", mapping=mapping)
    out = tmp_path / "out.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(spec), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faircam: error: ") and err.count("\n") == 1 and said in err, err
    assert not out.exists()


def test_an_unknown_coarse_class_asks_for_a_mapping(tmp_path, fairface, capsys):
    spec = _five_races(tmp_path / "unknown", outputs=[{"task": "gender", "classes": ["female", "male"]},
                                                     {"task": "race", "classes": [*FIVE[:4], "martian"]}])
    assert main(["evaluate", "--data", str(fairface), "--model", str(spec), "--out", str(tmp_path / "o.parquet"),
                 *FAST]) == 2
    err = capsys.readouterr().err
    assert "'martian' is not a race class faircam knows" in err and '"mapping"' in err and err.count("\n") == 1


def test_report_and_model_card_state_the_kind_and_the_mapping(five, tmp_path):
    report = tmp_path / "report.html"
    assert main(["report", "--cache", str(five["spec_cache"]), "--model", str(five["spec"]), "--out",
                 str(report)]) == 0
    html = report.read_text()
    assert "torchvision; gender classes mapped by name: female → Female, male → Male" in html
    assert "East Asian, Southeast Asian → asian" in html
    assert "2 of 24 faces have no counterpart and are left out of its race accuracy" in html
    card = tmp_path / "card.md"
    assert main(["model-card", "--model", str(five["spec"]), "--cache", str(five["spec_cache"]), "--out",
                 str(card)]) == 0
    text = card.read_text().replace("\\", "")  # Markdown escapes, read as rendered
    assert "Kind of model: **torchvision**" in text and "East Asian, Southeast Asian → asian" in text
    assert "left out of its race accuracy" in text


def test_a_class_name_with_markup_is_refused(tmp_path, fairface, capsys):
    spec = _five_races(tmp_path / "markup", outputs=[{"task": "gender", "classes": ["female", "male"]},
                                                    {"task": "race", "classes": [*FIVE[:4], "<b>indian</b>"]}],
                       mapping={"race": {"Indian": "<b>indian</b>"}})
    assert main(["evaluate", "--data", str(fairface), "--model", str(spec), "--out", str(tmp_path / "o.parquet"),
                 *FAST]) == 2
    assert "is not a plain name" in capsys.readouterr().err


@pytest.mark.parametrize("page", ["pages/2_Evaluation.py", "pages/4_Fairness.py"])
def test_pages_compare_in_the_models_classes_and_say_so(five, page, monkeypatch):
    """Evaluation and Fairness audit race in the model's five classes, say how they were mapped and how many
    faces were left out; the sidebar's accuracy is the same number."""
    from streamlit.testing.v1 import AppTest

    from faircam.config import PROJECT_ROOT

    monkeypatch.setenv("FAIRCAM_CACHE", str(five["spec_cache"]))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=300)
    at.session_state["faircam_task"] = "race"
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    said = " ".join(i.value for i in at.info).replace("\\", "")
    assert "compared in its own classes (african, asian, caucasian, hispanic, indian)" in said
    assert "2 of 24 faces have no counterpart" in said
    rows = read_cache(five["spec_cache"]).rows
    accuracy = rows["race_correct"].dropna().astype(bool).mean()
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert f"accuracy {accuracy:.1%}" in sidebar and "on 22 FairFace images" in sidebar
    if page == "pages/2_Evaluation.py":
        assert at.metric[0].value == f"{accuracy:.1%}"


def test_huggingface_convnext_man_woman(tmp_path, fairface):
    """A small ConvNeXt saved by transformers with labels Man/Woman (the other order): audited by name, maps on
    its last stage."""
    from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessor

    torch.manual_seed(0)
    folder = tmp_path / "convnext"
    config = ConvNextConfig(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32,
                            id2label={0: "Man", 1: "Woman"}, label2id={"Man": 0, "Woman": 1})
    ConvNextForImageClassification(config).eval().save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0, image_mean=[0.5] * 3,
                           image_std=[0.5] * 3).save_pretrained(folder)
    model = load_model(folder)
    assert model.info["label_mapping"] == {"gender": "Man → Male, Woman → Female"}
    out = tmp_path / "convnext.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(folder), "--out", str(out), "--limit", "8",
                 "--faithfulness-per-cell", "0", "--batch-size", "8"]) == 0
    cache = read_cache(out)
    assert cache.has_cams and cache.meta["model"]["kind"] == "huggingface"
    assert cache.meta["model"]["label_mapping"] == {"gender": "Man → Male, Woman → Female"}
    assert cache.rows["Grad-CAM | face"].notna().all()
    # The answers are the network's, its Woman column read as Female.
    from faircam.data.fairface import read_data_image
    from faircam.vision.preprocess import fit_square

    faces = [fit_square(read_data_image(fairface, f), model.input_size)[0] for f in cache.rows["file"][:4]]
    with torch.no_grad():
        raw = torch.softmax(model.net.net(model.to_tensor(faces)).logits, dim=1).numpy()
    assert np.allclose(cache.rows["prob"][:4], raw.max(axis=1), atol=1e-5)
    assert (cache.rows["pred"][:4] == pd.Series(np.where(raw[:, 1] > raw[:, 0], "Female", "Male"))).all()


AGES_SAID = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]


@pytest.fixture(scope="module")
def age_only(tmp_path_factory, fairface) -> dict:
    """An age-only torchvision model (no gender head), evaluated with its maps on the first 24 val faces."""
    import torchvision
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("age")
    torch.manual_seed(5)
    net = torchvision.models.resnet18(num_classes=len(AGES_SAID)).eval()
    save_file(net.state_dict(), root / "model.safetensors")
    (root / "faircam-model.json").write_text(json.dumps({
        "format": "torchvision", "arch": "resnet18", "weights": "model.safetensors", "input_size": SIZE,
        "outputs": [{"task": "age", "classes": AGES_SAID}]}))
    out = root / "age.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(root), "--out", str(out), "--limit", "24",
                 "--faithfulness-per-cell", "0", "--batch-size", "12"]) == 0
    return {"spec": root / "faircam-model.json", "cache": out}


def test_an_age_only_model_is_audited_on_age(age_only, fairface, capsys):
    """No gender head: the maps explain its age decisions (in the cache and in `faircam explain`), and the cache
    holds age alone."""
    capsys.readouterr()
    assert main(["explain", str(fairface / "val" / "1.jpg"), "--model", str(age_only["spec"])]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["task"] == "age" and said["prediction"] in ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59",
                                                            "60-69", "more than 70")
    cache = read_cache(age_only["cache"])
    assert list(cache.tasks) == ["age"] and cache.cam_task == "age" and cache.main_task == "age"
    assert cache.has_cams and "pred" not in cache.rows and cache.rows["age_pred"].notna().all()
    assert cache.rows["Grad-CAM | face"].notna().all()


def test_report_and_card_of_an_age_only_model(age_only, tmp_path):
    report = tmp_path / "report.html"
    assert main(["report", "--cache", str(age_only["cache"]), "--model", str(age_only["spec"]), "--out",
                 str(report)]) == 0
    html = report.read_text()
    assert "has no gender head: this report audits its age group decisions" in html
    rows = read_cache(age_only["cache"]).rows
    assert f"<div class='v'>{rows['age_correct'].mean():.1%}</div>" in html
    card = tmp_path / "card.md"
    assert main(["model-card", "--model", str(age_only["spec"]), "--cache", str(age_only["cache"]), "--out",
                 str(card)]) == 0
    assert "with no gender head" in card.read_text()


LACKS = ("This evaluation has no gender {what}: its model has no gender head or its data no gender labels. It "
         "holds age group only.")


@pytest.mark.parametrize(("page", "what"), [
    ("pages/2_Evaluation.py", "numbers"), ("pages/4_Fairness.py", "numbers"), ("pages/5_Attention.py", "predictions"),
    ("pages/7_Gallery.py", "predictions"), ("pages/11_Failures.py", "numbers"), ("pages/10_Classroom.py", "answers"),
    ("pages/3_About.py", "numbers"), ("pages/6_Faithfulness.py", None), ("pages/9_Compare.py", None),
])
def test_pages_name_the_task_an_age_only_model_lacks(age_only, page, what, monkeypatch):
    """With gender chosen in the sidebar, each page says in one line that the model has no gender head (not an error,
    not 0%); with age chosen, the task pages audit it."""
    from streamlit.testing.v1 import AppTest

    from faircam.config import PROJECT_ROOT

    monkeypatch.setenv("FAIRCAM_CACHE", str(age_only["cache"]))
    for task in ("gender", "age"):
        at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=300)
        at.session_state["faircam_task"] = task
        at.switch_page(page)
        at.run()
        assert not at.exception, (task, [e.value for e in at.exception])
        assert not at.error, (task, [e.value for e in at.error])
        said = [i.value for i in at.info]
        if what and task == "gender":
            assert LACKS.format(what=what) in said, said
        elif what:
            assert not any("has no age group" in s for s in said), said
    if page == "pages/2_Evaluation.py":
        rows = read_cache(age_only["cache"]).rows
        assert at.metric[0].value == f"{rows['age_correct'].mean():.1%}"


def test_a_table_of_age_answers_alone(tmp_path, fairface, val_split):
    """A table of answers with pred_age and no pred_gender is imported and reported."""
    rows = val_split.rows.head(20)
    table = tmp_path / "ages.csv"
    pd.DataFrame({"file": rows["file"], "pred_age": rows["age"].replace({"more than 70": "70+"})}).to_csv(
        table, index=False)
    out = tmp_path / "ages.parquet"
    assert main(["import-predictions", str(table), "--data", str(fairface), "--out", str(out)]) == 0
    cache = read_cache(out)
    assert list(cache.tasks) == ["age"] and cache.rows["age_correct"].all()
    assert main(["report", "--cache", str(out), "--out", str(tmp_path / "r.html")]) == 0


def black_box_onnx(root: Path) -> tuple[Path, torch.nn.Module]:
    """A ResNet-18 exported to ONNX with its pooling as GlobalMaxPool, a standard operator onnx2torch has no
    converter for (onnxruntime runs it), with its faircam-model.json (Woman, Man); and the torch network."""
    import onnx
    import torchvision

    torch.manual_seed(7)
    net = torchvision.models.resnet18(num_classes=2).eval()
    net.avgpool = torch.nn.AdaptiveMaxPool2d(1)
    torch.onnx.export(net, torch.zeros(1, 3, SIZE, SIZE), root / "model.onnx", dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load(str(root / "model.onnx"))
    pool = [n for n in graph.graph.node if n.op_type == "MaxPool"][-1]  # the head's pooling over the whole grid
    pool.op_type = "GlobalMaxPool"
    del pool.attribute[:]
    onnx.save(graph, str(root / "model.onnx"))
    (root / "faircam-model.json").write_text(json.dumps({
        "format": "onnx", "weights": "model.onnx", "input_size": SIZE,
        "outputs": [{"task": "gender", "classes": ["Woman", "Man"]}]}))
    return root / "faircam-model.json", net


@pytest.fixture(scope="module")
def black_box(tmp_path_factory, fairface) -> dict:
    """The black box (`black_box_onnx`), evaluated with its occlusion maps on the first 8 val faces."""
    root = tmp_path_factory.mktemp("blackbox")
    spec, net = black_box_onnx(root)
    out = root / "bb.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(root), "--out", str(out), "--limit", "8",
                 "--faithfulness-per-cell", "0", "--batch-size", "8"]) == 0
    return {"spec": spec, "onnx": root / "model.onnx", "net": net, "cache": out}


def test_onnx2torch_lacks_the_operator(black_box):
    """The graph fails to convert on GlobalMaxPool itself (after the Identity nodes faircam drops first)."""
    import onnx
    from onnx2torch import convert

    from faircam.models.foreign import _without_identities

    with pytest.raises(NotImplementedError, match="GlobalMaxPool"):
        convert(_without_identities(onnx.load(str(black_box["onnx"]))))


def test_a_black_box_answers_as_onnxruntime(black_box, fairface):
    """Its answers are onnxruntime's (and the torch network's it was exported from), mapped by name; it has no CAM
    layer, so its maps are occlusion maps of the predicted class: where hiding the face lowers that answer."""
    import onnxruntime

    from faircam.data.fairface import read_data_image
    from faircam.vision.occlusion import explainer_for
    from faircam.vision.preprocess import fit_square
    from faircam.wording import OCCLUSION

    model = load_model(black_box["spec"])
    assert model.cam_layer is None and "occlusion" in model.info["maps"] and "cam_layer" not in model.info
    faces = [fit_square(read_data_image(fairface, f"val/{i}.jpg"), SIZE)[0] for i in range(1, 5)]
    batch = model.to_tensor(faces)
    session = onnxruntime.InferenceSession(str(black_box["onnx"]), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": batch.numpy()})[0]
    expected = torch.softmax(torch.from_numpy(logits), dim=1).numpy()[:, [0, 1]]  # Woman, Man = Female, Male
    assert np.allclose(model.answers(batch)["gender"], expected, atol=1e-6)
    with torch.no_grad():
        assert np.allclose(torch.softmax(black_box["net"](batch), dim=1).numpy(), expected, atol=1e-4)
    result = explainer_for(model.net, model.cam_layer)(batch)
    maps = result.maps[OCCLUSION]
    assert list(result.maps) == [OCCLUSION] and maps.shape == (4, SIZE, SIZE)
    assert maps.min() >= 0 and maps.max() <= 1 and all(m.std() > 0 for m in maps)
    assert (result.targets == expected.argmax(axis=1)).all()


def test_a_black_box_is_audited_with_occlusion_maps_named_as_such(black_box, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from faircam.config import PROJECT_ROOT
    from faircam.wording import OCCLUSION, OCCLUSION_MAPS

    cache = read_cache(black_box["cache"])
    assert cache.methods == (OCCLUSION,) and "occlusion" in cache.meta["model"]["maps"]
    assert cache.rows[f"{OCCLUSION} | face"].between(0, 1).all()
    report = tmp_path / "report.html"
    assert main(["report", "--cache", str(black_box["cache"]), "--model", str(black_box["spec"]), "--out",
                 str(report)]) == 0
    assert "occlusion maps, not CAMs" in report.read_text()
    monkeypatch.setenv("FAIRCAM_CACHE", str(black_box["cache"]))
    for page in ("pages/5_Attention.py", "pages/6_Faithfulness.py", "pages/7_Gallery.py", "pages/10_Classroom.py"):
        at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=300)
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert OCCLUSION_MAPS in [i.value for i in at.info], page


def test_compare_counts_each_model_in_its_own_classes(five):
    """Compare's table gives each model's race accuracy as its own pages do: the proposed and the overriding
    mapping count different faces."""
    from faircam.audit import compare

    caches = {"proposed": read_cache(five["spec_cache"]), "override": read_cache(five["override_cache"])}
    table = compare.summary(compare.shared_rows(caches), {n: c.task("race") for n, c in caches.items()})
    for name, cache in caches.items():
        assert table.loc[name, "accuracy"] == pytest.approx(cache.rows["race_correct"].dropna().astype(bool).mean())


def test_a_sigmoid_head_is_audited_through_the_command_and_pages(tmp_path, fairface, monkeypatch):
    """A one-output model (`["male"]`: p(male)) through `faircam evaluate --model`: its p_male is the sigmoid of its
    logit, and Evaluation, Fairness and the report read its cache."""
    import torchvision
    from safetensors.torch import save_file
    from streamlit.testing.v1 import AppTest

    from faircam.config import PROJECT_ROOT

    torch.manual_seed(11)
    net = torchvision.models.resnet18(num_classes=1).eval()
    save_file(net.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "faircam-model.json").write_text(json.dumps({
        "format": "torchvision", "arch": "resnet18", "weights": "model.safetensors", "input_size": SIZE,
        "outputs": [{"task": "gender", "classes": ["male"]}]}))
    out = tmp_path / "sigmoid.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(tmp_path), "--out", str(out), *FAST]) == 0
    cache = read_cache(out)
    assert cache.meta["model"]["label_mapping"] == {"gender": "male → p(Male)"}
    rows = cache.rows
    assert ((rows["p_male"] >= 0.5) == (rows["pred"] == "Male")).all()
    assert np.allclose(rows["prob"], np.maximum(rows["p_male"], 1 - rows["p_male"]))
    report = tmp_path / "report.html"
    assert main(["report", "--cache", str(out), "--model", str(tmp_path), "--out", str(report)]) == 0
    assert "male → p(Male)" in report.read_text()
    monkeypatch.setenv("FAIRCAM_CACHE", str(out))
    for page in ("pages/2_Evaluation.py", "pages/4_Fairness.py"):
        at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=300)
        at.switch_page(page)
        at.run()
        assert not at.exception and not at.error, page
        if page == "pages/2_Evaluation.py":
            assert at.metric[0].value == f"{rows['correct'].mean():.1%}"


def test_a_black_box_has_no_layer_to_choose(black_box, fairface, tmp_path, capsys, monkeypatch):
    """`--cam-layer` for a graph that runs in onnxruntime is one line and exit 2, no cache written; installed, the
    Audit page says in one line that it has no layer to choose, and offers none."""
    from streamlit.testing.v1 import AppTest

    from faircam.config import PROJECT_ROOT
    from faircam.errors import ModelError
    from faircam.models import store

    out = tmp_path / "layer.parquet"
    status = main(["evaluate", "--data", str(fairface), "--model", str(black_box["spec"]), "--out", str(out),
                   "--cam-layer", "layer3", "--limit", "8", "--faithfulness-per-cell", "0"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "runs in onnxruntime as a black box, with occlusion maps: it has no layer to choose" in err
    assert not out.exists()
    spec = store.read_description(black_box["spec"].read_bytes(), "faircam-model.json")
    store.install_weights("box", black_box["onnx"], "model.onnx", spec)
    with pytest.raises(ModelError, match="'box' has no layer to choose: it is a black box, with occlusion maps"):
        store.choose_cam_layer("box", "layer3")
    monkeypatch.setenv("FAIRCAM_DATA", str(fairface))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/13_Audit_a_model.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert any("**CAM layer:** none to choose: it runs as a black box, with occlusion maps" in m.value
               for m in at.markdown)
    assert not [s for s in at.selectbox if s.label == "The layer its maps explain"]


# A face API whose race answers are the AutoTrain model's five classes: right for every face it can be right for.
TABLE_FIVE = {"White": "caucasian", "Black": "african", "Latino_Hispanic": "hispanic", "East Asian": "asian",
              "Southeast Asian": "asian", "Indian": "indian", "Middle Eastern": "caucasian"}


@pytest.fixture
def five_table(tmp_path, val_split) -> Path:
    """A table of answers for the first 24 val faces: genders right, races in five classes (Middle Eastern answered
    caucasian), one East Asian face answered indian."""
    rows = val_split.rows.head(24)
    race = rows["race"].map(TABLE_FIVE).tolist()
    race[0] = "indian"  # val/1.jpg is East Asian
    table = tmp_path / "five.csv"
    pd.DataFrame({"file": rows["file"], "pred_gender": rows["gender"].str.lower(), "pred_race": race}).to_csv(
        table, index=False)
    return table


def test_a_table_of_five_race_answers_is_audited_in_its_classes(five_table, tmp_path, fairface, capsys):
    """`faircam import-predictions` of coarser answers: compared in the table's own classes through faircam's
    proposed mapping (the one models get), Middle Eastern left out and counted; the report states the mapping."""
    out = tmp_path / "five.parquet"
    assert main(["import-predictions", str(five_table), "--data", str(fairface), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["race_accuracy"] == round(21 / 22, 4)
    cache = read_cache(out)
    assert cache.tasks["race"] == tuple(FIVE) and cache.meta["model"]["onto"] == {"race": PROPOSED}
    rows = cache.rows
    middle = rows["race"] == "Middle Eastern"
    assert middle.sum() == 2 and rows.loc[middle, "race_correct"].isna().all()
    assert rows.loc[~middle, "race_correct"].astype(bool).tolist() == [False] + [True] * 21
    assert (rows["race_pred"] == pd.read_csv(five_table)["pred_race"]).all()  # its own names, as answered
    assert rows["correct"].all()
    report = tmp_path / "report.html"
    assert main(["report", "--cache", str(out), "--out", str(report)]) == 0
    html = report.read_text()
    assert "race classes mapped by name: Black → african; East Asian, Southeast Asian → asian" in html
    assert "2 of 24 faces have no counterpart and are left out of its race accuracy" in html


@pytest.mark.parametrize("given", ["text", "file"])
def test_a_mapping_for_a_table_overrides_the_proposal(five_table, tmp_path, fairface, given):
    mapping = json.dumps({"race": {"middle eastern": "caucasian"}})
    if given == "file":
        (tmp_path / "mapping.json").write_text(mapping)
        mapping = str(tmp_path / "mapping.json")
    out = tmp_path / "five.parquet"
    assert main(["import-predictions", str(five_table), "--data", str(fairface), "--out", str(out),
                 "--mapping", mapping]) == 0
    cache = read_cache(out)
    assert cache.onto["race"]["Middle Eastern"] == "caucasian"
    assert cache.rows["race_correct"].notna().all() and cache.rows["race_correct"].astype(bool).sum() == 23
    assert "White, Middle Eastern → caucasian" in cache.mapping_note("race")


@pytest.mark.parametrize(("answer", "mapping", "said"), [
    ("martian", None, "'martian' (file val/1.jpg) is not a race class faircam knows (White, Black"),
    ("asian", '{"race": {"Martian": "asian"}}', "mapping.race names 'Martian', not a race class faircam knows"),
    ("asian", '{"race": {"White": "european"}}', "maps 'White' onto 'european', which is not one of the model's"),
    ("asian", '{"age": {"0-2": "baby"}}', "The mapping names 'age', which five.csv does not answer"),
    ("asian", '{"gender": {"Female": "f"}}', "its mapping names gender, whose two classes need none"),
    ("asian", "{race: asian}", "--mapping {race: asian}: not JSON"),
    ("<b>asian</b>", '{"race": {"East Asian": "<b>asian</b>"}}', "is not a plain name"),
])
def test_a_table_answer_or_mapping_that_fits_nothing_is_one_line(five_table, tmp_path, fairface, capsys, answer,
                                                                  mapping, said):
    table = pd.read_csv(five_table)
    table.loc[0, "pred_race"] = answer
    table.to_csv(five_table, index=False)
    out = tmp_path / "o.parquet"
    assert main(["import-predictions", str(five_table), "--data", str(fairface), "--out", str(out),
                 *(["--mapping", mapping] if mapping else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faircam: error: ") and err.count("\n") == 1 and said in err, err
    assert not out.exists()
    if answer == "martian":
        assert "--mapping" in err


def test_install_model_takes_a_tables_mapping(five_table, tmp_path, fairface, capsys):
    """`faircam install-model` of a coarser table with --mapping: what it recognised states the mapping; --mapping
    for a model file is one line (its mapping belongs in its faircam-model.json)."""
    assert main(["install-model", str(five_table), "--name", "five API", "--data", str(fairface),
                 "--mapping", '{"race": {"Middle Eastern": "caucasian"}}']) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["kind"] == "predictions" and facts["tasks"]["race"] == FIVE
    assert "White, Middle Eastern → caucasian" in facts["label_mapping"]["race"]
    (tmp_path / "w.safetensors").write_bytes(b"x")
    assert main(["install-model", str(tmp_path / "w.safetensors"), "--name", "w", "--arch", "resnet18",
                 "--mapping", "{}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mapping is for a table of answers" in err
