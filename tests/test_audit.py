"""The audit aggregates on hand-built cache rows whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control, ttest_ind

from faircam.audit import explanations as audit
from faircam.audit.groups import mean_interval, wilson_interval
from faircam.evaluation.cache import (
    AGREEMENT_MEAN,
    FOCUS_KEYS,
    agreement_column,
    focus_column,
    method_pairs,
    view_column,
)
from faircam.vision.cams import METHODS

T_975_DF2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom


def frame(records: list[dict]) -> pd.DataFrame:
    """Cache rows in the schema-v2 column names: every column the audit reads, 0.2 unless given."""
    rows = []
    for i, given in enumerate(records):
        row = {"file": f"val/{i + 1}.jpg", "race": "White", "gender": "Female", "age": "20-29", "pred": "Female",
               "correct": True, "face_found": True, "faith_sampled": False}
        for method in METHODS:
            for key in (*FOCUS_KEYS, *audit.FAITHFULNESS):
                row[focus_column(method, key)] = 0.2
        for view in audit.COUNTERFACTUAL_VIEWS:
            for key in [c for c in row if " | " in c]:
                row[view_column(view, key)] = row[key]
        for a, b in method_pairs(tuple(METHODS)):
            row[agreement_column(a, b)] = 0.5
        row.update(given)
        for view in audit.COUNTERFACTUAL_VIEWS:
            row.setdefault(view_column(view, "pred"), row["pred"])
            row.setdefault(view_column(view, "correct"), row[view_column(view, "pred")] == row["gender"])
        rows.append(row)
    table = pd.DataFrame(rows)
    table[AGREEMENT_MEAN] = table[[agreement_column(a, b) for a, b in method_pairs(tuple(METHODS))]].mean(axis=1)
    return table


MOUTH = focus_column("Grad-CAM", "mouth")


def test_mean_interval_known_answers():
    mean, low, high, n = mean_interval([1.0, 2.0, 3.0, np.nan])
    half = T_975_DF2 * 1.0 / math.sqrt(3)
    assert (mean, n) == (2.0, 3)
    assert low == pytest.approx(2.0 - half) and high == pytest.approx(2.0 + half)
    assert mean_interval([0.4, 0.4]) == (0.4, 0.4, 0.4, 2)  # no spread, no width
    mean, low, high, n = mean_interval([0.7])
    assert (mean, n) == (0.7, 1) and math.isnan(low) and math.isnan(high)
    assert mean_interval([])[3] == 0


def test_select_outcome_splits_correct_and_wrong():
    rows = frame([{"correct": True}, {"correct": False}, {"correct": True}])
    assert len(audit.select_outcome(rows, "all")) == 3
    assert list(audit.select_outcome(rows, "correct").index) == [0, 2]
    assert list(audit.select_outcome(rows, "wrong").index) == [1]
    with pytest.raises(ValueError, match="outcome"):
        audit.select_outcome(rows, "right")


def test_region_parity_means_per_group_and_outcome():
    rows = frame([
        {"race": "Black", MOUTH: 0.1}, {"race": "Black", MOUTH: 0.3}, {"race": "Black", MOUTH: 0.9, "correct": False},
        {"race": "White", MOUTH: 0.5}, {"race": "White", MOUTH: 0.5},
    ])
    parity = audit.region_parity(rows, tuple(METHODS), "Grad-CAM", ["race"], "correct", min_size=2)
    assert set(parity["region"]) == set(audit.PARITY_KEYS)
    mouth = parity[parity["region"] == "mouth"].set_index("race")
    assert mouth.loc["Black", "mean"] == pytest.approx(0.2) and mouth.loc["Black", "n"] == 2
    assert mouth.loc["White", "mean"] == pytest.approx(0.5)
    assert mouth.loc["White", "mean_low"] == pytest.approx(0.5) == mouth.loc["White", "mean_high"]
    wrong = audit.region_parity(rows, tuple(METHODS), "Grad-CAM", ["race"], "wrong", min_size=2)
    wrong_mouth = wrong[wrong["region"] == "mouth"]
    assert list(wrong_mouth["race"]) == ["Black"] and wrong_mouth["mean"].item() == pytest.approx(0.9)
    assert wrong_mouth["small"].item()  # one image is under min_size 2
    overall = audit.region_parity(rows, tuple(METHODS), "Grad-CAM", [], "all")
    assert overall[overall["region"] == "mouth"]["mean"].item() == pytest.approx((0.1 + 0.3 + 0.9 + 1.0) / 5)


def test_region_spread_ranks_regions_and_skips_small_groups():
    wobble = [-0.02, 0.0, 0.02] * 4
    rows = frame(
        [{"race": "Black", "gender": "Male", MOUTH: 0.5 + w} for w in wobble]
        + [{"race": "White", "gender": "Male", MOUTH: 0.2 + w} for w in wobble]
        + [{"race": "Indian", "gender": "Male", MOUTH: 0.99}]  # a single image: flagged, not ranked
    )
    by = ["race", "gender"]
    parity = audit.region_parity(rows, tuple(METHODS), "Grad-CAM", by, min_size=2)
    spread = audit.region_spread(parity, by)
    top = spread.iloc[0]
    assert top["region"] == "mouth"
    assert top["spread"] == pytest.approx(0.3)
    assert (top["highest"], top["highest_n"], top["lowest"]) == ("Black / Male", 12, "White / Male")
    assert top["separated"] and top["groups_compared"] == 2
    assert top["highest_q"] < 0.05 and top["lowest_q"] < 0.05
    assert (spread["spread"].iloc[1:] == 0).all()  # every other region is 0.2 everywhere
    assert not spread["separated"].iloc[1:].any()
    assert parity.loc[parity["small"], "q"].isna().all()  # the single image is never tested


def test_region_parity_controls_the_false_discovery_rate():
    """Every group, region and method drawn from one distribution: many tests, no finding. The q-values
    are Benjamini-Hochberg's over every large group x region x method, as SciPy computes them."""
    rng = np.random.default_rng(5)
    races = ["Black", "White", "Indian", "East Asian"]
    rows = frame([{"race": race} for race in races for _ in range(40)])
    for method in METHODS:
        for key in audit.PARITY_KEYS:
            rows[focus_column(method, key)] = rng.uniform(0, 1, len(rows))
    parity = audit.region_parity(rows, tuple(METHODS), "LayerCAM", ["race"], min_size=30)
    p_values = [
        ttest_ind(rows.loc[rows["race"] == race, focus_column(m, k)], rows.loc[rows["race"] != race,
                  focus_column(m, k)], equal_var=False).pvalue
        for m in METHODS for k in audit.PARITY_KEYS for race in ["Black", "White", "Indian", "East Asian"]
    ]
    assert min(p_values) < 0.05  # by chance, some single test looks like a finding...
    q = false_discovery_control(p_values).reshape(len(METHODS), len(audit.PARITY_KEYS), len(races))
    ours = parity.set_index(["region", "race"])["q"]
    layer = list(METHODS).index("LayerCAM")
    for j, key in enumerate(audit.PARITY_KEYS):
        for i, race in enumerate(races):
            assert ours[(key, race)] == pytest.approx(q[layer, j, i])
    assert not parity["flagged"].any()  # ...but none survives the false discovery rate control
    assert not audit.region_spread(parity, ["race"])["separated"].any()


def test_region_spread_not_separated_when_intervals_overlap():
    rows = frame([{"race": "Black", MOUTH: v} for v in (0.1, 0.5, 0.9)]
                 + [{"race": "White", MOUTH: v} for v in (0.2, 0.4, 0.6)])
    spread = audit.region_spread(audit.region_parity(rows, tuple(METHODS), "Grad-CAM", ["race"], min_size=2), ["race"])
    mouth = spread.set_index("region").loc["mouth"]
    assert mouth["spread"] == pytest.approx(0.1) and not mouth["separated"]


def test_faithfulness_counts_only_sampled_images_and_names_the_best():
    road = {m: focus_column(m, "road") for m in METHODS}
    deletion = {m: focus_column(m, "deletion") for m in METHODS}
    sampled = {"faith_sampled": True, road["LayerCAM"]: 0.6, deletion["Grad-CAM++"]: 0.05}
    rows = frame([sampled] * 4 + [{"faith_sampled": False, road["Grad-CAM"]: np.nan}] * 2)
    summary = audit.faithfulness_summary(rows, tuple(METHODS), [])
    assert (summary["n"] == 4).all()
    layer_road = summary[(summary["method"] == "LayerCAM") & (summary["metric"] == "road")]
    assert layer_road["mean"].item() == pytest.approx(0.6)
    best = audit.most_faithful(summary).set_index("metric")
    assert best.loc["road", "best"] == "LayerCAM" and best.loc["road", "separated"]
    assert best.loc["deletion", "best"] == "Grad-CAM++" and best.loc["deletion", "best_mean"] == pytest.approx(0.05)
    assert not best.loc["insertion", "separated"] and best.loc["insertion", "tied"]  # all four at 0.2
    assert not best.loc["road", "tied"]
    per_group = audit.faithfulness_summary(rows, tuple(METHODS), ["gender"])
    assert set(per_group["gender"]) == {"Female"} and per_group["small"].all()
    assert audit.has_faithfulness(rows) and not audit.has_faithfulness(rows.assign(faith_sampled=False))


def test_counterfactual_flip_rate_and_focus_change():
    crop_pred, crop_face = view_column("crop", "pred"), view_column("crop", focus_column("Grad-CAM", "face"))
    face = focus_column("Grad-CAM", "face")
    crop_chance = view_column("crop", focus_column("Grad-CAM", "face_baseline"))
    rows = frame([
        {"race": "Black", face: 0.4, crop_face: 0.7, crop_chance: 0.5},
        {"race": "Black", face: 0.4, crop_face: 0.5, crop_pred: "Male", crop_chance: 0.7},
        {"race": "Black", face: 0.4, crop_face: 0.6, crop_chance: 0.6},
        {"race": "Black", face: 0.4, crop_face: 0.6, crop_chance: 0.6},
        {"race": "Black", "face_found": False, crop_pred: "Male"},
        {"race": "White", view_column("blur", "pred"): "Male"},
    ])
    effects = audit.counterfactual_effects(rows, ["race"], "Grad-CAM", min_size=2).set_index(["race", "view"])
    crop = effects.loc[("Black", "crop")]
    assert crop["n"] == 4 and crop["flips"] == 1  # the image without a face is left out
    assert crop["flip_rate"] == pytest.approx(0.25)
    assert (crop["flip_rate_low"], crop["flip_rate_high"]) == pytest.approx(wilson_interval(1, 4))
    assert crop["accuracy_raw"] == 1.0 and crop["accuracy_view"] == pytest.approx(0.75)
    assert crop["focus_change"] == pytest.approx(0.2)
    assert crop["chance_change"] == pytest.approx(0.4)  # the face's share of the picture: 0.2 raw, 0.6 cropped
    assert effects.loc[("Black", "blur"), "flips"] == 0
    white_blur = effects.loc[("White", "blur")]
    assert white_blur["flip_rate"] == 1.0 and white_blur["small"] and white_blur["accuracy_view"] == 0.0
    assert audit.has_views(rows) and not audit.has_views(rows.drop(columns=[crop_pred]))


def test_agreement_matrix_and_least_agreeing_images():
    ab = agreement_column("Grad-CAM", "LayerCAM")
    rows = frame([{ab: 0.9}, {ab: 0.1, "file": "val/odd.jpg"}, {ab: 0.5}])
    matrix = audit.agreement_matrix(rows, tuple(METHODS))
    assert matrix.loc["Grad-CAM", "LayerCAM"] == pytest.approx(0.5) == matrix.loc["LayerCAM", "Grad-CAM"]
    assert np.allclose(np.diag(matrix), 1.0)
    assert matrix.loc["Grad-CAM", "XGrad-CAM"] == pytest.approx(0.5)
    worst = audit.least_agreement(rows, tuple(METHODS), k=2)
    assert list(worst["file"]) == ["val/odd.jpg", "val/3.jpg"]
    assert worst[AGREEMENT_MEAN].iloc[0] == pytest.approx((0.5 * 5 + 0.1) / 6)
    assert len(method_pairs(tuple(METHODS))) == 6
    by_race = audit.agreement_by_group(rows.assign(race=["Black", "Black", "White"]), ["race"], min_size=2)
    black = by_race.set_index("race").loc["Black"]
    assert black["mean"] == pytest.approx((0.5 * 5 + 0.9 + 0.5 * 5 + 0.1) / 12) and black["n"] == 2
    assert not black["small"] and by_race.set_index("race").loc["White", "small"]


def test_flipped_lists_the_surest_flips_with_a_face():
    rows = pd.DataFrame({
        "file": ["a", "b", "c", "d", "e"], "race": ["White"] * 5, "gender": ["Male"] * 5,
        "pred": ["Male", "Male", "Female", "Male", "Male"], "prob": [0.6, 0.9, 0.8, 0.99, 0.7],
        "face_found": [True, True, True, False, True],
        view_column("crop", "pred"): ["Female", "Female", "Male", "Female", "Male"],
    })
    # d flips but has no face (its views equal the raw image); e keeps its answer.
    assert list(audit.flipped(rows, "crop", k=2)["file"]) == ["b", "c"]
    assert list(audit.flipped(rows, "crop")["file"]) == ["b", "c", "a"]
