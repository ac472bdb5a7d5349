"""A fifth CAM method, registered in `faircam.vision.cams.METHODS` only, reaches every step on real val images.

The fixture adds pytorch-grad-cam's EigenCAM to the registry and takes it out afterwards. From there
it must flow through `explain`, `faircam evaluate`, the cache (its meta, focus, view and agreement
columns, the group averages) and the Attention page, which reads the cache's own method list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pytorch_grad_cam import EigenCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from streamlit.testing.v1 import AppTest
from test_pages import TIMEOUT, assert_clean, texts

from faircam.cli import main
from faircam.config import PROJECT_ROOT
from faircam.evaluation.cache import FOCUS_KEYS, agreement_column, focus_column, group_averages, read_cache, view_column
from faircam.vision import cams
from faircam.vision.explain import Pipeline

# EigenCAM, not HiResCAM: behind this model's global average pooling the gradient is the same at every
# position, so HiResCAM's maps equal Grad-CAM's and would not show a fifth map apart from the four.
FIFTH = "EigenCAM"
FOUR = ("Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM")
LIMIT = 6


FIVE = (*FOUR, FIFTH)


def register_fifth(patch: pytest.MonkeyPatch) -> None:
    """EigenCAM after the four in the registry, until `patch` is undone."""
    patch.setitem(cams.METHODS, FIFTH, EigenCAM)


@pytest.fixture
def five_methods(monkeypatch) -> tuple[str, ...]:
    register_fifth(monkeypatch)
    return FIVE


@pytest.fixture(scope="module")
def cache_path(fairface, tmp_path_factory) -> Path:
    """`faircam evaluate --limit` with the fifth method registered; the registry is back to four afterwards."""
    out = tmp_path_factory.mktemp("fifth-method") / "eval_val.parquet"
    with pytest.MonkeyPatch.context() as patch:
        register_fifth(patch)
        assert main(["evaluate", "--data", str(fairface), "--split", "val", "--out", str(out),
                     "--limit", str(LIMIT), "--faithfulness-per-cell", "0"]) == 0
    assert tuple(cams.METHODS) == FOUR
    return out


def test_explain_gives_the_fifth_map_as_the_library_does(five_methods, pipeline, sample_images):
    net = pipeline.model.net
    five = Pipeline(pipeline.model, pipeline.detector, cams.CamExplainer(net, net.cam_layer))
    explanation = five.explain(sample_images[0], crop=True)
    assert tuple(explanation.maps) == tuple(explanation.focus) == five_methods
    target = pipeline.model.classes.index(explanation.label)
    with EigenCAM(net, [net.cam_layer]) as library:
        expected = library(input_tensor=pipeline.model.to_tensor([explanation.view.image]),
                           targets=[ClassifierOutputTarget(target)])
    np.testing.assert_allclose(explanation.maps[FIFTH], expected[0], atol=1e-5)
    # The fifth map is not one of the four under another name, and leaves the four as they were.
    four = pipeline.explain(sample_images[0], crop=True)
    assert tuple(four.maps) == FOUR
    for method in FOUR:
        np.testing.assert_allclose(explanation.maps[method], four.maps[method], atol=1e-6, err_msg=method)
        assert np.abs(explanation.maps[method] - explanation.maps[FIFTH]).max() > 0.01, method


def test_evaluate_writes_the_fifth_method_into_the_cache(cache_path):
    cache = read_cache(cache_path)
    assert cache.meta["methods"] == list(FIVE) and cache.methods == FIVE
    rows = cache.rows
    assert len(rows) == LIMIT
    for view in ("raw", "crop", "blur"):
        for key in FOCUS_KEYS:
            assert rows[view_column(view, focus_column(FIFTH, key))].notna().all(), (view, key)
    pairs = [agreement_column(m, FIFTH) for m in FOUR]
    assert rows[pairs].notna().all().all()
    assert len([c for c in rows.columns if c.startswith("agree | ") and "~" in c]) == 10
    averages = group_averages(cache)
    assert not averages.empty and FIFTH in averages.columns


def test_attention_page_offers_and_shows_the_fifth_method(monkeypatch, cache_path):
    # The page reads the cache only: the registry is back to four here, the cache still holds five.
    monkeypatch.setenv("FAIRCAM_CACHE", str(cache_path))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/5_Attention.py")
    at.run()
    assert_clean(at)
    method = at.selectbox[0]
    assert tuple(method.options) == FIVE
    method.set_value(FIFTH).run()
    assert_clean(at)
    said = texts(at)
    assert f"Does {FIFTH} look at the mouth more for some groups" in said
    assert f"with the average {FIFTH} map" in said
