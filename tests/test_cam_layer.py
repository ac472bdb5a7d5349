"""The layer a brought model's maps explain, chosen by its user (faircam.models.foreign.cam_layers, the store's
`choose_cam_layer`, `cam_layer` in a faircam-model.json, `--cam-layer` of `faircam install-model` and `faircam
evaluate`, the "Audit a model" page): real networks the tests build (nothing downloaded), their maps on real FairFace
faces checked against pytorch-grad-cam's own; a bad layer is one line and changes nothing."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from streamlit.testing.v1 import AppTest
from test_model_kinds import FAST, _resnet, _spec, _vit
from test_model_store import nothing_left, run_cli
from test_page_audit_a_model import ok, open_page

from faircam.config import PROJECT_ROOT, cache_path_for
from faircam.errors import ModelError
from faircam.evaluation import jobs
from faircam.evaluation.cache import read_cache
from faircam.models import registry, store
from faircam.models.foreign import TokenGrid
from faircam.vision.cams import CamExplainer
from faircam.vision.explain import Pipeline
from faircam.vision.preprocess import fit_square

SIZE = 128  # layer3 of a ResNet-18 sees an 8x8 grid, layer4 a 4x4 one


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """A ResNet-18 (female, male) as a state dict, and as a faircam-model.json beside it."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("layers")
    net = _resnet(2)
    save_file(net.state_dict(), root / "model.safetensors")
    return {"net": net, "state": root / "model.safetensors", "json": _spec(root, input_size=SIZE), "root": root}


@pytest.fixture(scope="module")
def faces(fairface) -> list[np.ndarray]:
    from faircam.data.fairface import read_data_image

    return [fit_square(read_data_image(fairface, f"val/{i}.jpg"), SIZE)[0] for i in range(1, 5)]


def library_gradcam(net: torch.nn.Module, layer: torch.nn.Module, batch: torch.Tensor, targets) -> np.ndarray:
    with GradCAM(model=net, target_layers=[layer]) as cam:
        return cam(input_tensor=batch, targets=[ClassifierOutputTarget(int(t)) for t in targets])


def test_a_resnet_installed_with_layer3_explains_layer3(made, faces, capsys):
    """Installed with `--cam-layer layer3`, the model every page loads by its name gives Grad-CAM maps equal to
    pytorch-grad-cam's GradCAM on the network's layer3, not its layer4's (faircam's choice)."""
    status, out, err = run_cli(["install-model", str(made["state"]), "--name", "rn3", "--arch", "resnet18",
                                "--classes", "female,male", "--input-size", str(SIZE), "--cam-layer", "layer3"],
                               capsys)
    assert status == 0, err
    facts = json.loads(out)
    assert facts["cam_layer"] == "layer3"
    listed = {layer["name"]: layer for layer in facts["cam_layers"]}
    assert listed["layer3"] == {"name": "layer3", "grid": [8, 8], "default": False}
    assert listed["layer4"] == {"name": "layer4", "grid": [4, 4], "default": True}
    assert "fc" not in listed and "avgpool" not in listed  # no grid left
    assert "layer1.0.relu" not in listed  # a ReLU a block runs twice: its maps would mix two places
    pipeline = Pipeline.load("rn3")
    assert pipeline.model.info["cam_layer"] == "layer3"
    batch = pipeline.model.to_tensor(faces)
    maps = pipeline.explainer(batch, None, pipeline.model.outputs)
    net = made["net"]
    expected = library_gradcam(net, net.layer3, batch, maps.targets)
    np.testing.assert_allclose(maps.maps["Grad-CAM"], expected, atol=1e-5)
    last = library_gradcam(net, net.layer4, batch, maps.targets)
    assert np.abs(maps.maps["Grad-CAM"] - last).mean() > 0.05


def test_a_vit_lists_its_token_layers_up_to_its_last_blocks_input(tmp_path, faces):
    """A Hugging Face ViT's layers are its patch tokens reshaped into their grid, class token dropped: the input of
    its last block is faircam's choice, and an earlier block's input can be chosen and explains the answers."""
    folder = _vit(tmp_path / "vit", ["female", "male"])
    listed = {layer["name"]: layer for layer in registry.load_model(folder).info["cam_layers"]}
    assert listed["vit.layers.1.layernorm_before"] == {"name": "vit.layers.1.layernorm_before", "grid": [4, 4],
                                                       "default": True}
    assert listed["vit.layers.0.layernorm_before"]["grid"] == [4, 4]
    # After the last block's input the patch tokens feed no answer: no gradient, so not offered.
    assert not [name for name in listed if name.startswith("vit.layers.1.") and name != "vit.layers.1.layernorm_before"]
    model = registry.load_model(folder, "vit.layers.0.layernorm_before")
    assert model.info["cam_layer"] == "vit.layers.0.layernorm_before"
    assert model.net.cam_reshape == TokenGrid(prefix=1, side=4)
    assert model.cam_layer is model.net.net.vit.layers[0].layernorm_before
    explainer = CamExplainer(model.net, model.cam_layer)
    batch = model.to_tensor([fit_square(face, 32)[0] for face in faces])
    grad_cam = explainer(batch, None, model.outputs).maps["Grad-CAM"]
    assert grad_cam.shape == (4, 32, 32) and np.isfinite(grad_cam).all() and grad_cam.std() > 0


def test_the_descriptions_cam_layer_and_the_option_reach_the_evaluation(made, tmp_path, fairface):
    """`"cam_layer": "layer3"` in faircam-model.json is the layer `faircam evaluate --model` explains, and the cache
    says so; `--cam-layer` overrides it for one run."""
    described = _spec(tmp_path, input_size=SIZE, cam_layer="layer3")
    (tmp_path / "model.safetensors").write_bytes(made["state"].read_bytes())
    out = tmp_path / "json.parquet"
    assert main_ok(["evaluate", "--data", str(fairface), "--model", str(described), "--out", str(out), *FAST])
    assert read_cache(out).meta["model"]["cam_layer"] == "layer3"
    out = tmp_path / "option.parquet"
    assert main_ok(["evaluate", "--data", str(fairface), "--model", str(described), "--out", str(out),
                    "--cam-layer", "layer2", *FAST])
    assert read_cache(out).meta["model"]["cam_layer"] == "layer2"


def test_an_unfinished_run_on_another_layer_is_not_resumed(made, tmp_path, fairface, monkeypatch, capsys):
    """Ctrl-C during `faircam evaluate` keeps its work for a resume; rerun with another `--cam-layer`, it starts
    over, so no cache holds maps of two layers."""
    from test_evaluate import counting_passes

    out = tmp_path / "eval.parquet"
    args = ["evaluate", "--data", str(fairface), "--model", str(made["json"]), "--out", str(out), "--limit", "8",
            "--batch-size", "4", "--faithfulness-per-cell", "0"]
    counting_passes(monkeypatch, interrupt_at=3)  # rows 0-1 and 1-3 done (`batch_bounds`), 3-7 interrupted
    assert run_cli(args, capsys)[0] == 130
    calls = counting_passes(monkeypatch)
    assert main_ok([*args, "--cam-layer", "layer3"])
    assert len(calls) == 4 and read_cache(out).meta["model"]["cam_layer"] == "layer3"


def main_ok(args: list[str]) -> bool:
    from faircam.cli import main

    return main(args) == 0


@pytest.mark.parametrize(("args", "said"), [
    (["evaluate", "--model", "{json}", "--cam-layer", "layer9"],
     "has no layer named 'layer9' (its CAM layers: layer4 (4×4) (faircam's choice), layer3 (8×8), layer2 (16×16), "
     "layer1 (32×32), maxpool (32×32) … ("),
    (["evaluate", "--model", "{json}", "--cam-layer", "fc"], "cannot explain its answers with 'fc'"),
    (["evaluate", "--model", "{bad_json}"], "cam_layer must name one of the network's layers"),
    (["evaluate", "--cam-layer", "layer3"], "'faircam' is a faircam checkpoint (`faircam train`): it has no CAM "
                                            "layer to choose"),
    (["install-model", "{state}", "--name", "x", "--arch", "resnet18", "--classes", "female,male", "--cam-layer",
      "layer9"], "has no layer named 'layer9'"),
    (["install-model", "{csv}", "--name", "x", "--cam-layer", "layer3"], "is a table of answers"),
])
def test_a_bad_layer_is_one_line_and_exit_2(made, tmp_path, fairface, capsys, args, said):
    bad = _spec(tmp_path, input_size=SIZE, cam_layer=3)
    (tmp_path / "answers.csv").write_text("file,pred_gender\nval/1.jpg,male\n")
    paths = {"json": made["json"], "bad_json": bad, "state": made["state"], "csv": tmp_path / "answers.csv"}
    out = tmp_path / "out.parquet"
    command = [a.format(**paths) for a in args]
    command += ["--data", str(fairface), "--out", str(out), *FAST] if command[0] == "evaluate" else []
    status, _, err = run_cli(command, capsys)
    assert status == 2 and err.startswith("faircam: error: ") and err.count("\n") == 1 and said in err, err
    assert not out.exists() and nothing_left()


def test_choosing_a_layer_it_lacks_changes_nothing(made):
    spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
    model = store.install_weights("rn", made["state"], "w.safetensors", spec)
    manifest = (model.folder / store.MANIFEST).read_text()
    for layer, said in (("layer9", "has no CAM layer 'layer9'"), ("fc", "has no CAM layer 'fc'")):
        with pytest.raises(ModelError, match=said):
            store.choose_cam_layer("rn", layer)
    assert (model.folder / store.MANIFEST).read_text() == manifest


def _evaluated(at: AppTest, name: str) -> AppTest:
    deadline = time.monotonic() + 300
    while jobs.job(name).state not in jobs.ENDED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert jobs.job(name).state == "done", jobs.job(name)
    return ok(at.run())


def test_the_page_chooses_the_layer_and_the_evaluation_follows(made, fairface, monkeypatch):
    """Without an evaluation the layer chosen is saved at once; with one, "Use … and evaluate again" removes it and
    evaluates again on the same faces, so the cache's maps explain the layer the page names."""
    spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
    store.install_weights("rn", made["state"], "w.safetensors", spec)
    at = open_page(fairface, monkeypatch)
    chooser = next(s for s in at.selectbox if s.label == "The layer its maps explain")
    assert chooser.value == "layer4" and chooser.options[0] == "layer4 (4×4) (faircam's choice)"
    chooser.set_value("layer2").run()
    assert store.get("rn").facts["cam_layer"] == "layer2" and "`layer2`" in "\n".join(m.value for m in ok(at).markdown)
    next(b for b in at.button if b.label == "Evaluate").click().run()
    _evaluated(at, "rn")
    assert read_cache(cache_path_for("rn")).meta["model"]["cam_layer"] == "layer2"
    chooser = next(s for s in at.selectbox if s.label == "The layer its maps explain")
    chooser.set_value("layer3").run()
    assert store.get("rn").facts["cam_layer"] == "layer2"  # not yet: it has an evaluation of layer2
    assert any("Its evaluation explains `layer2`" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Use layer3 and evaluate again").click().run()
    assert store.get("rn").facts["cam_layer"] == "layer3"
    _evaluated(at, "rn")
    cache = read_cache(cache_path_for("rn"))
    assert cache.meta["model"]["cam_layer"] == "layer3" and len(cache.rows) == 14
    assert "`layer3`" in "\n".join(m.value for m in at.markdown)


def _pipelines_layer() -> None:
    """A page's pipeline of the brought model "rn" (`ui.pipeline`, as Explore, Inside and Compare load one)."""
    import streamlit as st

    from faircam.dashboard import ui

    st.write(ui.pipeline("rn").model.info["cam_layer"])


def test_the_pages_pipeline_follows_the_layer_chosen(made):
    """The pipeline the pages keep loaded is reloaded when the layer is chosen: its maps explain the new one."""
    spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
    store.install_weights("rn", made["state"], "w.safetensors", spec)
    at = AppTest.from_function(_pipelines_layer, default_timeout=120).run()
    assert [m.value for m in ok(at).markdown] == ["layer4"]
    store.choose_cam_layer("rn", "layer2")
    assert [m.value for m in ok(at.run()).markdown] == ["layer2"]


def test_a_model_installed_before_layers_were_listed_gets_them(made):
    """A manifest without `cam_layers` (a model installed by an earlier faircam) is loaded once to list them, and
    they are written into it; its layer is kept."""
    spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
    model = store.install_weights("old", made["state"], "w.safetensors", spec)
    manifest = json.loads((model.folder / store.MANIFEST).read_text())
    del manifest["facts"]["cam_layers"]
    (model.folder / store.MANIFEST).write_text(json.dumps(manifest))
    layers = store.cam_layers(store.get("old"))
    assert [layer["name"] for layer in layers if layer["default"]] == ["layer4"] and len(layers) > 40
    facts = store.get("old").facts
    assert facts["cam_layers"] == layers and facts["cam_layer"] == "layer4"
    assert store.choose_cam_layer("old", "layer1").facts["cam_layer"] == "layer1"


def test_choosing_the_layer_it_has_keeps_its_evaluation(made):
    spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
    store.install_weights("rn", made["state"], "w.safetensors", spec)
    cache_path_for("rn").write_bytes(b"an evaluation")
    store.choose_cam_layer("rn", "layer4")
    assert cache_path_for("rn").read_bytes() == b"an evaluation"
    store.choose_cam_layer("rn", "layer3")
    assert not cache_path_for("rn").exists() and store.get("rn").facts["cam_layer"] == "layer3"


def test_inside_the_network_shows_a_brought_models_layers(made, faces, fairface, monkeypatch):
    """A brought network has no trunk: Inside shows its outermost layers with a grid, in the order they run (the chosen
    CAM layer named, and the layers after it), each the
    output of that very layer for the face (bn1 before the in-place ReLU that follows it), the CAM layer named; on
    the page, a face picked with the brought model chosen draws them (it used to stop on `net.trunk`)."""
    from faircam.vision.inside import feature_maps

    model = registry.load_model(str(made["json"]), "layer3")
    stages = feature_maps(model, faces[0], top=4)
    assert [s.name for s in stages] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3 (CAM layer)",
                                        "layer4"]
    net = made["net"]
    x = model.to_tensor(faces[:1])
    with torch.no_grad():
        expected = {"bn1": net.bn1(net.conv1(x)), "layer3": net.layer3(net.layer2(net.layer1(net.maxpool(
            net.relu(net.bn1(net.conv1(x)))))))}
    for stage in stages:
        name = stage.name.split(" ")[0]
        if name in expected:
            output = expected[name][0].numpy()
            assert stage.shape == output.shape
            assert stage.mean_activation == pytest.approx(sorted(output.mean(axis=(1, 2)), reverse=True)[:4],
                                                          rel=1e-4)

    spec = store.read_description(made["json"].read_bytes(), "faircam-model.json")
    store.install_weights("inside rn", made["state"], "model.safetensors", spec)
    monkeypatch.setenv("FAIRCAM_DATA", str(fairface))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=180)
    at.session_state["faircam_model"] = "inside rn"
    at.switch_page("pages/8_Inside.py").run()
    at.button[1].click().run()  # the first face of the grid (button 0 shuffles)
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    shown = " ".join(m.value for m in at.markdown)
    assert "**layer4 (CAM layer)** · 512 channels of 4×4" in shown and "**conv1** · 64 channels of 64×64" in shown
