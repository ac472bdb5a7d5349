"""Maps that say when not to trust them: per image, how far the four CAM maps agree, which map is a small blob or
was stretched from near zero, and each map's raw range; in the library and on Explore (real model, real faces)."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from faircam.config import PROJECT_ROOT
from faircam.data.images import read_image
from faircam.evaluation import agreement
from faircam.evaluation.cache import method_pairs

# A face the bundled model calls Male, 94% sure: explaining Female, Grad-CAM and XGrad-CAM shrink to a corner blob
# stretched from almost nothing, while Grad-CAM++ and LayerCAM light the face.
FACE = "val/1.jpg"


@pytest.fixture(scope="module")
def explained(pipeline, fairface):
    image = read_image(fairface / FACE)
    answer = pipeline.explain(image)
    other = next(c for c in answer.probs if c != answer.label)
    return answer, pipeline.explain(image, target=other)


def test_raw_ranges_are_the_maps_before_stretching(explained):
    answer, other = explained
    for explanation in explained:
        assert set(explanation.raw_ranges) == set(explanation.maps)
        for low, high in explanation.raw_ranges.values():
            assert 0 <= low <= high
    # The stretched maps hide it; the raw peaks do not: the other class's Grad-CAM is a fraction of the answer's.
    assert other.maps["Grad-CAM"].max() == pytest.approx(answer.maps["Grad-CAM"].max(), abs=1e-3)
    assert other.raw_ranges["Grad-CAM"][1] < 0.1 * answer.raw_ranges["Grad-CAM"][1]


def test_checks_flag_the_maps_of_a_class_the_model_did_not_choose(explained):
    answer, other = explained
    assert not any(c.words() for c in agreement.map_checks(answer).values())
    checks = agreement.map_checks(other, answer)
    flagged = {m for m, c in checks.items() if c.faint and c.blob}
    assert flagged == {"Grad-CAM", "XGrad-CAM"}, checks
    assert not checks["LayerCAM"].words() and not checks["Grad-CAM++"].words()
    assert checks["Grad-CAM"].half_heat == pytest.approx(agreement.half_heat_share(other.maps["Grad-CAM"]))


def test_image_agreement_is_the_mean_histogram_intersection(explained):
    answer, other = explained
    for explanation in explained:
        pairs = [agreement.map_agreement(explanation.maps[a][None], explanation.maps[b][None])[0]
                 for a, b in method_pairs(tuple(explanation.maps))]
        assert agreement.image_agreement(explanation.maps) == pytest.approx(np.mean(pairs))
    assert agreement.image_agreement(answer.maps) >= agreement.AGREE > agreement.image_agreement(other.maps)


def test_half_heat_share():
    blob = np.zeros((10, 10))
    blob[0, 0] = 1.0
    assert agreement.half_heat_share(blob) == 0.01
    assert agreement.half_heat_share(np.ones((10, 10))) == 0.5
    assert np.isnan(agreement.half_heat_share(np.zeros((4, 4))))


def test_explore_says_when_not_to_trust_the_maps():
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=300)
    at.switch_page("pages/1_Explore.py")
    at.query_params["image"] = FACE
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = "\n".join(e.value for e in [*at.markdown, *at.caption])
    assert "maps agree at" in said and "much the same places" in said
    assert "Raw values before stretching to 0–1: Grad-CAM 0" in said
    assert not [w for w in at.warning if "Read with care" in w.value]
    target = next(s for s in at.selectbox if "class the maps explain" in s.label)
    target.set_value("Female").run()
    assert not at.exception
    careful = [w.value for w in at.warning if "Read with care" in w.value]
    assert len(careful) == 2 and all("stretched from near zero" in w and "a small blob" in w for w in careful)
    said = "\n".join(e.value for e in [*at.markdown, *at.caption])
    assert "disagree" in said or "only in part" in said
