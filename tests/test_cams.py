"""The CAM method registry, and CamExplainer against pytorch-grad-cam's own per-method classes, on the bundled model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from faircam.config import DEFAULT_CACHE
from faircam.evaluation.cache import read_cache
from faircam.vision.cams import METHODS, PASS_VIEWS, CamExplainer


@pytest.fixture(scope="module")
def inputs(pipeline, sample_images) -> torch.Tensor:
    """Normalised model input for three real val photos, as the pipeline builds it."""
    views = [pipeline.view(image) for image in sample_images]
    return pipeline.model.to_tensor([v.image for v in views])


@pytest.fixture(scope="module")
def batch(pipeline, inputs):
    """The maps of the model's gender decision (its first task's outputs)."""
    return pipeline.explainer(inputs, None, pipeline.model.outputs)


def library_maps(net: torch.nn.Module, layer: torch.nn.Module, inputs: torch.Tensor, classes) -> dict:
    """Each registered method the library's own way: one method object, its own forward and backward."""
    maps = {}
    for name, cls in METHODS.items():
        with cls(model=net, target_layers=[layer]) as cam:
            maps[name] = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return maps


def test_registry_holds_the_methods_of_the_bundled_cache():
    # The bundled caches were computed with these methods; a new method gets its columns on the next
    # `faircam evaluate` (tests/test_fifth_method.py), and until then readers follow each cache's own list.
    assert tuple(METHODS) == read_cache(DEFAULT_CACHE).methods == ("Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM")


def test_unknown_method_is_refused(pipeline):
    with pytest.raises(ValueError, match="Unknown CAM methods"):
        CamExplainer(pipeline.model.net, pipeline.model.net.cam_layer, methods=("Grad-CAM", "NoSuchCAM"))


def test_maps_shape_range_and_probabilities(pipeline, inputs, batch):
    size = pipeline.model.input_size
    assert inputs.shape == (3, 3, size, size)
    assert set(batch.maps) == set(METHODS)
    for name, maps in batch.maps.items():
        assert maps.shape == (3, size, size), name
        assert np.isfinite(maps).all(), name
        assert maps.min() >= 0 and maps.max() <= 1 + 1e-6, name
        assert (maps.reshape(3, -1).max(axis=1) > 0.99).all(), name  # normalised per image
    assert batch.probs.shape == (3, len(pipeline.model.classes))
    np.testing.assert_allclose(batch.probs.sum(axis=1), 1.0, atol=1e-6)
    with torch.no_grad():
        expected = torch.softmax(pipeline.model.head(inputs), dim=1).numpy()
    np.testing.assert_allclose(batch.probs, expected, atol=1e-5)
    np.testing.assert_array_equal(batch.targets, expected.argmax(axis=1))


def test_maps_equal_library_per_method(pipeline, inputs, batch):
    reference = library_maps(pipeline.model.net, pipeline.model.net.cam_layer, inputs, batch.targets)
    for name in METHODS:
        np.testing.assert_allclose(batch.maps[name], reference[name], atol=1e-5, err_msg=name)


def test_explicit_target_classes(pipeline, inputs):
    class0 = pipeline.explainer(inputs, target_classes=[0, 0, 0])
    class1 = pipeline.explainer(inputs, target_classes=[1, 1, 1])
    np.testing.assert_array_equal(class0.targets, [0, 0, 0])
    np.testing.assert_array_equal(class1.targets, [1, 1, 1])
    np.testing.assert_allclose(class0.probs, class1.probs, atol=1e-6)  # same forward, other target
    for name in METHODS:
        assert np.abs(class0.maps[name] - class1.maps[name]).max() > 0.05, name
    mixed = pipeline.explainer(inputs, target_classes=[1, 0, 1])
    reference = library_maps(pipeline.model.net, pipeline.model.net.cam_layer, inputs, [1, 0, 1])
    for name in METHODS:
        np.testing.assert_allclose(mixed.maps[name], reference[name], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(mixed.maps[name][0], class1.maps[name][0], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(mixed.maps[name][1], class0.maps[name][1], atol=1e-6, err_msg=name)


def test_one_forward_and_one_backward_per_call(pipeline, inputs):
    net = pipeline.model.net
    calls = {"forward": 0, "backward": 0}

    def count_forward(module, args, output):
        calls["forward"] += 1

    def count_backward(module, grad_input, grad_output):
        calls["backward"] += 1

    handles = [
        net.register_forward_hook(count_forward),
        net.classifier.register_full_backward_hook(count_backward),
    ]
    try:
        pipeline.explainer(inputs)
        assert calls == {"forward": 1, "backward": 1}
        # The counters do count: the library's per-method class runs a pass of its own.
        with GradCAM(model=net, target_layers=[net.cam_layer]) as cam:
            cam(input_tensor=inputs, targets=None)
        assert calls == {"forward": 2, "backward": 2}
    finally:
        for handle in handles:
            handle.remove()


def test_explainer_is_reusable_and_independent_of_batch(pipeline, inputs, batch):
    # A one-image call gives that image's row of the batch call (no state left between calls).
    single = pipeline.explainer(inputs[1:2], None, pipeline.model.outputs)
    np.testing.assert_allclose(single.probs[0], batch.probs[1], atol=1e-5)
    for name in METHODS:
        np.testing.assert_allclose(single.maps[name][0], batch.maps[name][1], atol=1e-5, err_msg=name)


def test_a_batch_of_more_views_than_one_pass_takes_is_explained_alike(pipeline, inputs):
    # `PASS_VIEWS` views per forward and backward pass: a larger batch gets the maps, classes and answers one pass
    # over all of it gets from the library.
    net, outputs = pipeline.model.net, pipeline.model.outputs
    many = torch.cat([inputs, inputs.flip(3)] * 3)[: 2 * PASS_VIEWS + 1]
    classes = [i % 2 for i in range(len(many))]
    result = pipeline.explainer(many, classes, outputs)
    np.testing.assert_array_equal(result.targets, classes)
    with torch.no_grad():
        np.testing.assert_allclose(result.probs, torch.softmax(net(many)[:, outputs], dim=1).numpy(), atol=1e-5)
    reference = library_maps(net, net.cam_layer, many, classes)
    for name in METHODS:
        np.testing.assert_allclose(result.maps[name], reference[name], atol=1e-5, err_msg=name)
    assert all(len(r) == len(many) for r in result.ranges.values())


def test_maps_are_made_when_first_read_and_once(pipeline, inputs):
    # `faircam evaluate` reads them on its worker thread, beside the next batch's pass.
    batch = pipeline.explainer(inputs, None, pipeline.model.outputs)
    made, make = [], batch.make_maps
    batch.make_maps = lambda: made.append(1) or make()
    assert len(batch.maps) == len(METHODS) and made == [1]
    assert len(batch.ranges) == len(METHODS) and batch.maps and made == [1]


def test_subset_of_methods(pipeline, inputs, batch):
    net = pipeline.model.net
    result = CamExplainer(net, net.cam_layer, methods=("LayerCAM",))(inputs, None, pipeline.model.outputs)
    assert list(result.maps) == ["LayerCAM"]
    np.testing.assert_allclose(result.maps["LayerCAM"], batch.maps["LayerCAM"], atol=1e-6)


def test_other_forwards_leave_nothing_in_the_explainer(pipeline, sample_images):
    pipeline.explainer(pipeline.model.to_tensor([pipeline.view(sample_images[0]).image]))
    images = [pipeline.view(image).image for image in sample_images]
    for _ in range(3):
        pipeline.model.predict_proba(images)
    # Hooks exist only during a call: nothing stays registered on the CAM layer to record these.
    assert not pipeline.model.net.cam_layer._forward_hooks
