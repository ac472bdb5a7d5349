"""Models brought by their users (faircam.models.kinds, faircam.models.foreign) and tables of answers (`faircam
import-predictions`): real networks the tests build and save as their makers would (nothing downloaded), loaded
through the registry and audited by the command line on real FairFace images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from faircam.cli import main
from faircam.evaluation.cache import read_cache
from faircam.models.registry import load_model
from faircam.vision.cams import CamExplainer
from faircam.vision.preprocess import fit_square

SIZE = 64  # the torchvision models' input: small, so the evaluations stay quick
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
FAST = ["--limit", "8", "--faithfulness-per-cell", "0", "--batch-size", "8"]


def _vit(folder: Path, labels: list[str]) -> Path:
    """A tiny randomly initialised ViT image classifier saved as Hugging Face saves one (safetensors, config,
    preprocessor config with its own mean and std)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, id2label=dict(enumerate(labels)),
                       label2id={label: i for i, label in enumerate(labels)})
    ViTForImageClassification(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
                      ).save_pretrained(folder)
    return folder


def _spec(folder: Path, **fields: object) -> Path:
    spec = {"format": "torchvision", "arch": "resnet18", "weights": "model.safetensors",
            "outputs": [{"task": "gender", "classes": ["female", "male"]}], "input_size": SIZE, **IMAGENET,
            "view": "whole"} | fields
    (folder / "faircam-model.json").write_text(json.dumps(spec))
    return folder / "faircam-model.json"


def _resnet(classes: int, seed: int = 0) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=classes).eval()


@pytest.fixture(scope="module")
def brought(tmp_path_factory) -> dict:
    """One model of each kind, and the torch networks they were made from."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("brought")
    made: dict = {"vit": _vit(root / "vit", ["female", "male"]), "vit-mw": _vit(root / "vit-mw", ["Man", "Woman"])}
    made["resnet_net"] = resnet = _resnet(2)
    (root / "resnet").mkdir()
    save_file(resnet.state_dict(), root / "resnet" / "model.safetensors")
    made["resnet"] = _spec(root / "resnet")
    (root / "onnx").mkdir()
    torch.onnx.export(resnet, torch.zeros(1, 3, SIZE, SIZE), root / "onnx" / "model.onnx", dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    made["onnx"] = _spec(root / "onnx", format="onnx", arch="", weights="model.onnx")
    made["sigmoid_net"] = sigmoid = _resnet(1, seed=1)
    (root / "sigmoid").mkdir()
    torch.save(sigmoid.state_dict(), root / "sigmoid" / "weights.pt")
    made["sigmoid"] = _spec(root / "sigmoid", weights="weights.pt",
                            outputs=[{"task": "gender", "classes": ["male"]}])
    return made


@pytest.fixture(scope="module")
def faces(fairface) -> list[np.ndarray]:
    from faircam.data.fairface import read_data_image

    return [read_data_image(fairface, f"val/{i}.jpg") for i in range(1, 5)]


def _batch(model, faces: list[np.ndarray]) -> torch.Tensor:
    return model.to_tensor([fit_square(face, model.input_size)[0] for face in faces])


def test_huggingface_labels_are_mapped_by_name(brought, faces):
    """female/male and Man/Woman (the other order) both give faircam's (Female, Male) probabilities, from the
    folder's own mean and std, with the input of the last ViT block as the CAM layer."""
    for key, order in (("vit", [0, 1]), ("vit-mw", [1, 0])):
        model = load_model(brought[key])
        assert (model.info["kind"], model.input_size, model.mean, model.std) == ("huggingface", 32, (0.5,) * 3,
                                                                                 (0.5,) * 3)
        assert model.tasks == {"gender": ("Female", "Male")}
        batch = _batch(model, faces)
        with torch.no_grad():
            raw = torch.softmax(model.net.net(batch).logits, dim=1)[:, order].numpy()
        assert np.allclose(model.predict_all([fit_square(f, 32)[0] for f in faces])["gender"], raw, atol=1e-6)
        assert model.info["cam_layer"] == "vit.layers.1.layernorm_before"
    assert load_model(brought["vit-mw"]).info["label_mapping"] == {"gender": "Man → Male, Woman → Female"}


def test_huggingface_folder_evaluates_with_maps(brought, tmp_path, fairface, capsys):
    out = tmp_path / "vit.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(brought["vit"]), "--out", str(out), *FAST]) == 0
    cache = read_cache(out)
    assert cache.has_cams and len(cache.rows) == 8
    assert cache.meta["model"]["kind"] == "huggingface"
    assert cache.meta["model"]["cam_layer"] == "vit.layers.1.layernorm_before"
    # Maps of patch tokens: focus scores are numbers, and not the same for every face.
    focus = cache.rows["Grad-CAM | face"]
    assert focus.notna().all() and focus.nunique() > 1
    assert set(cache.rows["pred"]) <= {"Female", "Male"} and cache.rows["prob"].between(0.5, 1).all()


def test_torchvision_and_onnx_give_the_torch_models_answers_and_maps(brought, faces):
    """The state dict with its JSON answers as the network it came from; its ONNX export, converted by onnx2torch,
    answers as it and its maps equal the torch model's."""
    torch_model, onnx_model = load_model(brought["resnet"].parent), load_model(brought["onnx"])
    batch = _batch(torch_model, faces)
    with torch.no_grad():
        expected = torch.softmax(brought["resnet_net"](batch), dim=1).numpy()
    assert np.allclose(torch_model.answers(batch)["gender"], expected, atol=1e-6)
    assert np.allclose(onnx_model.answers(batch)["gender"], expected, atol=1e-4)
    assert torch_model.info["cam_layer"] == "layer4"
    maps = [CamExplainer(m.net, m.cam_layer)(batch).maps for m in (torch_model, onnx_model)]
    for method, torch_maps in maps[0].items():
        assert torch_maps.std() > 0
        assert np.allclose(torch_maps, maps[1][method], atol=1e-3), method


def test_onnx_model_evaluates_from_its_json(brought, tmp_path, fairface):
    out = tmp_path / "onnx.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(brought["onnx"]), "--out", str(out), *FAST]) == 0
    cache = read_cache(out)
    assert cache.has_cams and cache.meta["model"]["kind"] == "onnx" and len(cache.rows) == 8


def test_sigmoid_head_is_p_of_its_class(brought, faces):
    model = load_model(brought["sigmoid"])
    batch = _batch(model, faces)
    with torch.no_grad():
        p_male = torch.sigmoid(brought["sigmoid_net"](batch)[:, 0]).numpy()
    assert np.allclose(model.answers(batch)["gender"][:, 1], p_male, atol=1e-6)
    assert model.info["label_mapping"] == {"gender": "male → p(Male)"}
    # Both classes' maps follow the one logit: neither is left without gradient.
    explainer = CamExplainer(model.net, model.cam_layer)
    for target in (0, 1):
        assert explainer(batch, [target] * len(faces)).maps["Grad-CAM"].std() > 0


def _bad(brought: dict, root: Path, case: str) -> Path:
    """A model with one thing wrong, as `case` says."""
    from safetensors.torch import save_file

    folder = root / case
    if case.startswith("hf-"):
        shutil.copytree(brought["vit"], folder)
        config = json.loads((folder / "config.json").read_text())
        if case == "hf-pickle":
            (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
        elif case == "hf-remote-code":
            config["auto_map"] = {"AutoModelForImageClassification": "evil.Model"}
        elif case == "hf-labels":
            config["id2label"] = {"0": "cat", "1": "dog"}
        (folder / "config.json").write_text(json.dumps(config))
        return folder
    folder.mkdir()
    if case == "json":
        return _spec(folder, format="keras")
    if case == "output-size":  # the ONNX graph has two outputs, its JSON names one
        shutil.copy(brought["onnx"].with_name("model.onnx"), folder / "model.onnx")
        return _spec(folder, format="onnx", weights="model.onnx", outputs=[{"task": "gender", "classes": ["male"]}])
    if case == "nan":
        net = _resnet(2)
        with torch.no_grad():
            net.fc.bias.fill_(float("nan"))
        save_file(net.state_dict(), folder / "model.safetensors")
        return _spec(folder)
    if case == "pickle":
        torch.save({"weights": pd.DataFrame({"a": [1]})}, folder / "model.pt")  # not tensors: refused unpickled
        return _spec(folder, weights="model.pt")
    if case == "wrong-arch":
        shutil.copy(brought["resnet"].with_name("model.safetensors"), folder / "model.safetensors")
        return _spec(folder, arch="resnet34")
    raise AssertionError(case)


@pytest.mark.parametrize(("case", "said"), [
    ("json", "format must be one of torchvision, timm, onnx"),
    ("output-size", "its output is (2, 2) per batch, but its classes name 1 outputs"),
    ("nan", "predicts NaN"),
    ("pickle", "is not readable weights"),
    ("wrong-arch", "the weights do not fit torchvision resnet34"),
    ("hf-pickle", "no .safetensors weights"),
    ("hf-remote-code", "runs no code that comes with a model"),
    ("hf-labels", "are not one of faircam's tasks"),
])
def test_a_bad_model_is_one_line_and_exit_2(brought, tmp_path, fairface, capsys, case, said):
    model = _bad(brought, tmp_path, case)
    out = tmp_path / "out.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(model), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faircam: error: ") and err.count("\n") == 1 and said in err, err
    assert not out.exists()


def test_models_above_the_size_limit_are_refused(brought, tmp_path, fairface, capsys, monkeypatch):
    monkeypatch.setenv("FAIRCAM_MAX_MODEL_MB", "1")  # resnet18's weights are about 45 MB
    assert main(["evaluate", "--data", str(fairface), "--model", str(brought["resnet"]), "--out",
                 str(tmp_path / "out.parquet"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faircam: error: ") and "above the limit of 1 MB (FAIRCAM_MAX_MODEL_MB)" in err


def test_imported_predictions_are_audited_and_reported(tmp_path, fairface, val_split, capsys):
    """A table of answers (synonyms, one wrong on purpose in three, a file the data lacks) becomes a cache whose
    accuracy is the table's, and the report reads it."""
    rows = val_split.rows.head(30)
    said = {"Female": "woman", "Male": "M"}
    flipped = {"Female": "Male", "Male": "Female"}
    answers = pd.DataFrame({
        "file": [*rows["file"], "val/not-there.jpg"],
        "pred_gender": [said[flipped[g] if i % 3 == 0 else g] for i, g in enumerate(rows["gender"])] + ["man"],
        "prob_gender": [0.9] * (len(rows) + 1),
        "pred_race": [*rows["race"].str.lower(), "white"],
    })
    table = tmp_path / "answers.csv"
    answers.to_csv(table, index=False)
    # The rest of the split is not answered: its rows are left out.
    out = tmp_path / "answers.parquet"
    assert main(["import-predictions", str(table), "--data", str(fairface), "--split", "val", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "1 file of" in captured.err and "val/not-there.jpg" in captured.err
    cache = read_cache(out)
    assert len(cache.rows) == 30 and not cache.has_cams and set(cache.tasks) == {"gender", "race"}
    assert cache.rows["correct"].mean() == pytest.approx(20 / 30)
    assert cache.rows["race_correct"].all()
    assert cache.meta["data"]["not_in_data"] == 1 and cache.meta["data"]["not_in_data_files"] == ["val/not-there.jpg"]
    male = cache.rows["pred"] == "Male"
    assert np.allclose(cache.rows.loc[male, "p_male"], 0.9) and np.allclose(cache.rows.loc[~male, "p_male"], 0.1)
    report = tmp_path / "report.html"
    assert main(["report", "--cache", str(out), "--out", str(report)]) == 0
    # The report says what was audited and what was left out.
    html = report.read_text()
    assert "<td>predictions</td>" in html and "1 of its files not in the data" in html


def test_an_unknown_answer_is_one_line(tmp_path, fairface, capsys):
    table = tmp_path / "answers.csv"
    pd.DataFrame({"file": ["val/1.jpg"], "pred_gender": ["cat"]}).to_csv(table, index=False)
    assert main(["import-predictions", str(table), "--data", str(fairface), "--out", str(tmp_path / "a.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faircam: error: ") and err.count("\n") == 1 and "'cat'" in err


@pytest.fixture
def imported_cache(tmp_path, fairface, val_split, monkeypatch) -> Path:
    """A table of answers for 60 val images (one in four wrong), imported as the default model's cache."""
    rows = val_split.rows.head(60)
    flipped = {"Female": "Male", "Male": "Female"}
    table = tmp_path / "answers.csv"
    pd.DataFrame({"file": rows["file"],
                  "pred_gender": [flipped[g] if i % 4 == 0 else g for i, g in enumerate(rows["gender"])]}
                 ).to_csv(table, index=False)
    out = tmp_path / "answers.parquet"
    assert main(["import-predictions", str(table), "--data", str(fairface), "--out", str(out)]) == 0
    monkeypatch.setenv("FAIRCAM_CACHE", str(out))
    return out


@pytest.mark.parametrize("page", ["pages/2_Evaluation.py", "pages/4_Fairness.py", "pages/5_Attention.py",
                                  "pages/6_Faithfulness.py", "pages/11_Failures.py", "pages/7_Gallery.py",
                                  "pages/9_Compare.py", "pages/10_Classroom.py"])
def test_pages_read_a_table_of_answers(imported_cache, page):
    """The table pages audit it; the map pages say in one line that it has no maps."""
    from streamlit.testing.v1 import AppTest

    from faircam.config import PROJECT_ROOT

    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=180)
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if page in ("pages/5_Attention.py", "pages/6_Faithfulness.py", "pages/10_Classroom.py"):
        assert [i.value for i in at.info] == ["This audit is of a table of answers (`faircam import-predictions`): no "
                                              "model ran, so it has no maps."]


def test_timm_vit_from_its_json(tmp_path, faces):
    """A timm ViT (its test-sized one) with Woman/Man classes: answers mapped by name, maps on the input of its
    last block (norm1), class token dropped, with heat that differs across the image."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("test_vit", pretrained=False, num_classes=2).eval()
    save_file(net.state_dict(), tmp_path / "model.safetensors")
    spec = _spec(tmp_path, format="timm", arch="test_vit", input_size=160, mean=[0.5] * 3, std=[0.5] * 3,
                 outputs=[{"task": "gender", "classes": ["Woman", "Man"]}])
    model = load_model(spec)
    blocks = len(net.blocks)
    assert model.info["cam_layer"] == f"blocks.{blocks - 1}.norm1"
    batch = _batch(model, faces)
    with torch.no_grad():
        expected = torch.softmax(net(batch), dim=1).numpy()
    assert np.allclose(model.answers(batch)["gender"], expected, atol=1e-6)
    maps = CamExplainer(model.net, model.cam_layer)(batch).maps
    assert all(m.shape == (len(faces), 160, 160) and m.std() > 0 for m in maps.values())


def test_bundled_model_exported_to_onnx_audits_as_itself(tmp_path, fairface, pipeline):
    """The bundled model exported to ONNX (opset 17: onnx2torch lacks opset 20's ConstantOfShape, which this export
    writes at the default opset) and audited as a brought model gives the bundled model's predictions on the same
    faces (and so its accuracy)."""
    bundled = pipeline.model
    torch.onnx.export(bundled.net, torch.zeros(1, 3, bundled.input_size, bundled.input_size), tmp_path / "model.onnx",
                      dynamo=False, input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    spec = _spec(tmp_path, format="onnx", arch="", weights="model.onnx", input_size=bundled.input_size,
                 mean=list(bundled.mean), std=list(bundled.std),
                 outputs=[{"task": t, "classes": list(c)} for t, c in bundled.tasks.items()])
    caches = {}
    for name, model in (("bundled", str(bundled.path)), ("onnx", str(spec))):
        out = tmp_path / f"{name}.parquet"
        assert main(["evaluate", "--data", str(fairface), "--model", model, "--out", str(out), "--no-cams",
                     "--limit", "16"]) == 0
        caches[name] = read_cache(out).rows
    assert (caches["onnx"]["pred"] == caches["bundled"]["pred"]).all()
    assert np.allclose(caches["onnx"]["prob"], caches["bundled"]["prob"], atol=1e-4)
    assert caches["onnx"]["correct"].mean() == caches["bundled"]["correct"].mean()
