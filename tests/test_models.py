"""The model registry and the third-party ports: equality with the original runtimes (onnxruntime
for dlib, recorded TF.js outputs for face-api.js), CAMs on them, registration, and the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from faircam.cli import main
from faircam.config import PROJECT_ROOT
from faircam.data.images import read_image
from faircam.errors import ModelError
from faircam.evaluation.cache import read_cache
from faircam.models import registry
from faircam.models.thirdparty import TfSamePad, read_tfjs_weights
from faircam.tasks import TASKS
from faircam.vision import preprocess
from faircam.vision.cams import METHODS, CamExplainer
from faircam.vision.preprocess import FaceGeometry, five_point_chip, make_view

REFERENCE = json.loads((PROJECT_ROOT / "tests" / "data" / "faceapi_reference.json").read_text())
DLIB_ONNX = PROJECT_ROOT / "assets" / "thirdparty" / "dlib-gender" / "gender-v1.onnx"
LIBRARY = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus, "XGrad-CAM": XGradCAM, "LayerCAM": LayerCAM}


@pytest.fixture(scope="module")
def models():
    return {name: registry.load_model(name) for name in ("dlib", "face-api")}


def reference_inputs(fairface, model) -> list[np.ndarray]:
    """The exact inputs TF.js was given: each recorded face rebuilt from its FairFace image and the
    landmarks MTCNN found when the reference was recorded."""
    images = []
    for item in REFERENCE["results"]:
        face = FaceGeometry(np.array(item["box"], np.float32), np.array(item["landmarks"], np.float32), 1.0)
        view = make_view(read_image(fairface / item["file"]), model.input_size, None, crop=False, blur=False,
                         faces=[face], alignment=model.alignment)
        images.append(view.image)
    return images


def recorded_inputs(fairface, model, monkeypatch) -> list[np.ndarray]:
    """The exact inputs TF.js was given, rebuilt: they were recorded before faircam's crops filled the
    area beyond the photo with a constant, when the warp replicated the photo's border instead."""
    def replicating(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
        to_index = np.vstack([matrix, [0, 0, 1]])
        # Pixel centres are at +0.5 in faircam's coordinates and at integers in warpAffine's.
        to_index = (np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]]) @ to_index @
                    np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]]))[:2]
        return cv2.warpAffine(np.ascontiguousarray(image), to_index, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    monkeypatch.setattr(preprocess, "_warp", replicating)
    align = preprocess.ALIGNMENTS[model.alignment]
    return [align(read_image(fairface / item["file"]),
                  FaceGeometry(np.array(item["box"], np.float32), np.array(item["landmarks"], np.float32), 1.0),
                  model.input_size)[0] for item in REFERENCE["results"]]


# --- equality with the original runtimes ------------------------------------------------------


def test_dlib_port_equals_onnxruntime(fairface, models, pipeline, sample_images):
    model = models["dlib"]
    views = [make_view(image, model.input_size, pipeline.detector, crop=False, blur=False,
                       alignment=model.alignment) for image in sample_images]
    assert all(v.face is not None and v.image.shape == (32, 32, 3) for v in views)
    inputs = model.to_tensor([v.image for v in views])
    # The export ends in a softmax; exposing its logits as an output compares the networks directly.
    graph = onnx.load(DLIB_ONNX)
    graph.graph.output.append(onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"images": inputs.numpy()})
    with torch.no_grad():
        ours = model.net(inputs).numpy()
    np.testing.assert_allclose(ours, logits, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba([v.image for v in views]), probabilities, atol=1e-6)
    assert np.abs(logits).max() > 0.1  # real faces give decided outputs, not a degenerate zero


def test_faceapi_port_equals_recorded_tfjs(fairface, models, monkeypatch):
    model = models["face-api"]
    images = recorded_inputs(fairface, model, monkeypatch)
    # The inputs are byte for byte those TF.js saw...
    assert [hashlib.sha256(i.tobytes()).hexdigest() for i in images] == \
        [item["input_sha256"] for item in REFERENCE["results"]]
    with torch.no_grad():
        ours = model.net(model.to_tensor(images)).numpy()
    # ...and the outputs agree to float32 rounding; face-api's order is (male, female), ours (Female, Male).
    tfjs = np.array([item["gender_logits"] for item in REFERENCE["results"]])[:, ::-1]
    np.testing.assert_allclose(ours, tfjs, atol=1e-4)
    tfjs_probabilities = np.array([item["gender_probabilities"] for item in REFERENCE["results"]])[:, ::-1]
    np.testing.assert_allclose(model.predict_proba(images), tfjs_probabilities, atol=1e-5)
    assert len(images) >= 10 and REFERENCE["class_order"] == ["male", "female"]


def test_class_order_is_faircams(fairface, models, val_split, monkeypatch):
    """With the classes swapped, accuracy on balanced real faces would fall well under a half (on
    the recorded inputs: a test of the class order, not of the crop)."""
    files = [item["file"] for item in REFERENCE["results"]]
    truth = val_split.rows.set_index("file").loc[files, "gender"].tolist()
    for name, model in models.items():
        assert model.classes == TASKS["gender"].classes
        probabilities = model.predict_proba(recorded_inputs(fairface, model, monkeypatch))
        predicted = [TASKS["gender"].classes[i] for i in probabilities.argmax(axis=1)]
        accuracy = np.mean([p == t for p, t in zip(predicted, truth)])
        assert accuracy >= 0.65, (name, accuracy)


# --- CAMs on the third-party models -----------------------------------------------------------


@pytest.mark.parametrize("name", ["dlib", "face-api"])
def test_cams_equal_library_per_method(name, fairface, models):
    model = models[name]
    inputs = model.to_tensor(reference_inputs(fairface, model)[:3])
    batch = CamExplainer(model.net, model.cam_layer)(inputs)
    size = model.input_size
    for method in METHODS:
        with LIBRARY[method](model=model.net, target_layers=[model.cam_layer]) as cam:
            expected = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(int(c)) for c in batch.targets])
        assert batch.maps[method].shape == (3, size, size)
        assert (batch.maps[method].reshape(3, -1).max(axis=1) > 0.99).all(), method
        np.testing.assert_allclose(batch.maps[method], expected, atol=1e-5, err_msg=method)


# --- pieces of the ports, with known answers --------------------------------------------------


def test_tf_same_padding_puts_the_extra_pixel_bottom_right():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    padded = TfSamePad(3, 2)(x)  # out 2, total padding (2 - 1) * 2 + 3 - 4 = 1: none before, one after
    assert padded.shape == (1, 1, 5, 5)
    assert torch.equal(padded[..., :4, :4], x) and padded[..., 4, :].abs().sum() == 0
    assert TfSamePad(3, 1)(x).shape == (1, 1, 6, 6)  # stride 1: symmetric, one each side
    assert torch.equal(TfSamePad(1, 2)(x), x)  # 1x1 strided: no padding at all


def test_truncated_tfjs_weights_are_refused(tmp_path):
    source = PROJECT_ROOT / "assets" / "thirdparty" / "faceapi-age-gender"
    manifest = source / "age_gender_model-weights_manifest.json"
    short = tmp_path / "short.bin"
    short.write_bytes((source / "age_gender_model.bin").read_bytes()[:-10])
    with pytest.raises(ValueError):
        read_tfjs_weights(manifest, short)


def test_five_point_chip_maps_a_template_face_onto_the_template():
    from faircam.vision.preprocess import _DLIB_CHIP_PADDING, _DLIB_MEAN_FACE

    template = (_DLIB_MEAN_FACE + _DLIB_CHIP_PADDING) / (1 + 2 * _DLIB_CHIP_PADDING)
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (template * 90) @ rotation.T + [40, 25]  # the template, turned, scaled and moved
    face = FaceGeometry(np.array([30, 20, 140, 140], np.float32), landmarks.astype(np.float32), 1.0)
    image = np.random.default_rng(0).integers(0, 255, (180, 180, 3), dtype=np.uint8)
    chip, matrix = five_point_chip(image, face, 32)
    assert chip.shape == (32, 32, 3)
    np.testing.assert_allclose(face.transformed(matrix).landmarks, template * 32, atol=1e-3)


# --- the registry -----------------------------------------------------------------------------


def test_registry_lists_three_models_and_refuses_unknown_names():
    assert registry.names()[:3] == ["faircam", "dlib", "face-api"]
    for entry in registry.entries().values():
        assert entry.origin and entry.licence and entry.input
    with pytest.raises(ModelError, match="Unknown model 'nope'"):
        registry.load_model("nope")


def test_each_model_describes_its_input(models):
    dlib, faceapi = models["dlib"], models["face-api"]
    assert (dlib.input_size, dlib.alignment) == (32, "dlib-chip")
    assert (faceapi.input_size, faceapi.alignment) == (112, "face-box")
    # dlib: (x - mean) / 256 and face-api: (x - mean) / 255, as LoadedModel's (x / 255 - mean) / std.
    pixel = np.full((1, 1, 3), 200, np.uint8)
    np.testing.assert_allclose(dlib.to_tensor([pixel]).flatten(), (200 - np.array([122.782, 117.001, 104.298])) / 256,
                               rtol=1e-5)
    np.testing.assert_allclose(faceapi.to_tensor([pixel]).flatten(),
                               (200 - np.array([122.782, 117.001, 104.298])) / 255, rtol=1e-5)


def test_trained_checkpoints_register_themselves(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRCAM_REGISTRY", str(tmp_path / "models.json"))
    bundled = PROJECT_ROOT / "assets" / "model.pt"
    copy = tmp_path / "mine.pt"
    copy.write_bytes(bundled.read_bytes())
    registry.register_checkpoint("mine", copy, 160, "efficientnet-lite0, 1 epochs")
    registry.register_checkpoint("faircam", copy, 160, "a name clash")
    assert registry.names() == ["faircam", "dlib", "face-api", "mine", "faircam-trained"]
    assert registry.load_model("mine").sha256 == registry.load_model("faircam").sha256
    copy.unlink()
    assert "mine" not in registry.names()  # a deleted checkpoint is no longer offered


def test_registry_and_comparison_do_not_import_torch():
    code = ("import sys, faircam.models.registry, faircam.audit.compare; faircam.models.registry.entries(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr


# --- the command line -------------------------------------------------------------------------


def test_cli_models_lists_the_registry(capsys):
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed][:3] == ["faircam", "dlib", "face-api"]
    assert listed[1]["licence"] == "CC0 1.0" and listed[2]["licence"] == "MIT"
    assert listed[2]["cache"].endswith("eval_val-face-api.parquet")
    assert main(["models"]) == 0
    assert "origin:" in capsys.readouterr().out


def test_cli_explain_and_evaluate_with_a_third_party_model(capsys, tmp_path, fairface):
    assert main(["explain", str(fairface / "val/1.jpg"), "--model", "dlib"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "dlib" and result["cropped"] is True
    assert set(result["region_shares"]) == set(METHODS)
    out = tmp_path / "eval.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", "face-api", "--limit", "4", "--out", str(out)]) == 0
    cache = read_cache(out)
    assert cache.meta["model"]["name"] == "face-api" and len(cache.rows) == 4


def test_cli_unknown_model_is_a_one_line_error(capsys, fairface):
    assert main(["explain", str(fairface / "val/1.jpg"), "--model", "no-such-model"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "faircam: error: Unknown model 'no-such-model': use one of faircam, dlib, face-api, a checkpoint, a Hugging "
        "Face folder or a faircam-model.json."
    ]
