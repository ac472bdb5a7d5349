"""`GroupFrame`: groups x measures for any grouping and the intersection of two, checked against fairlearn's
`MetricFrame`, equalized odds and demographic parity (the oracle); each gap's bootstrap interval from the measure's
own definition, as a plain bootstrap of the rows gives it; and a measure added in one entry of `MEASURES`,
found on the Fairness page with its gap and interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score
from streamlit.testing.v1 import AppTest
from test_task_measures import table_with

from faircam.audit.groups import MEASURES, GroupFrame, Measure, mean_of, size_label
from faircam.config import DEFAULT_MODEL_NAME, PROJECT_ROOT, cache_path_for
from faircam.evaluation.cache import read_cache

RATES = ("accuracy", "tpr", "fpr", "selection_rate")


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return read_cache(cache_path_for(DEFAULT_MODEL_NAME)).rows


def binary(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return (rows["gender"] == "Male").to_numpy(int), (rows["pred"] == "Male").to_numpy(int)


@pytest.mark.parametrize("by", [["race"], ["race", "gender"], ["age"], ["race", "age"]])
def test_group_frame_matches_fairlearn(rows, by):
    frame = GroupFrame(rows, by, RATES, n_boot=200)
    y_true, y_pred = binary(rows)
    theirs = MetricFrame(metrics={"accuracy": accuracy_score, "tpr": true_positive_rate, "fpr": false_positive_rate,
                                  "selection_rate": selection_rate}, y_true=y_true, y_pred=y_pred,
                         sensitive_features=rows[by]).by_group
    ours = frame.by_group.set_index(by)
    for rate in RATES:
        # fairlearn writes 0 where a group has no one to count (no men for a TPR); the frame writes NaN.
        assert ours[rate].fillna(0).to_numpy() == pytest.approx(theirs.loc[ours.index, rate].to_numpy()), rate
    eligible = ours[~ours["small"]].index
    keep = pd.MultiIndex.from_frame(rows[by]).isin(eligible) if len(by) > 1 else rows[by[0]].isin(eligible)
    gaps = frame.gaps()
    assert gaps.loc["accuracy gap", "value"] == pytest.approx(
        MetricFrame(metrics=accuracy_score, y_true=y_true[keep], y_pred=y_pred[keep],
                    sensitive_features=rows.loc[keep, by]).difference())
    if "gender" in by:
        assert math.isnan(gaps.loc["equalized odds difference", "value"])
        assert "split by gender" in gaps.loc["equalized odds difference", "note"]
        return
    both = ours[(ours["tpr_n"] >= 30) & (ours["fpr_n"] >= 30)].index
    odds = pd.MultiIndex.from_frame(rows[by]).isin(both) if len(by) > 1 else rows[by[0]].isin(both)
    if len(both) >= 2:
        assert gaps.loc["equalized odds difference", "value"] == pytest.approx(equalized_odds_difference(
            y_true[odds], y_pred[odds], sensitive_features=rows.loc[odds, by]))
    assert gaps.loc["demographic parity difference", "value"] == pytest.approx(demographic_parity_difference(
        y_true[keep], y_pred[keep], sensitive_features=rows.loc[keep, by]))
    if len(by) == 1:  # with dozens of small intersections, best minus worst is biased upwards (the report's caveat)
        for name, gap in gaps.iterrows():
            assert math.isnan(gap["value"]) or gap["ci_low"] <= gap["value"] <= gap["ci_high"], name


def test_gap_interval_is_a_bootstrap_of_the_rows_with_the_measures_own_definition(rows):
    """The equalized odds interval from resampled cells equals, within resampling noise, fairlearn's equalized odds
    recomputed on rows resampled with replacement: one definition, two ways of resampling."""
    frame = GroupFrame(rows, ["race"], RATES, n_boot=2000)
    ours = frame.gap("equalized odds difference")
    y_true, y_pred = binary(rows)
    rng = np.random.default_rng(1)
    theirs = []
    for _ in range(300):
        pick = rng.integers(0, len(rows), len(rows))
        theirs.append(equalized_odds_difference(y_true[pick], y_pred[pick],
                                                sensitive_features=rows["race"].to_numpy()[pick]))
    low, high = np.quantile(theirs, [0.025, 0.975])
    assert (ours.low, ours.high) == pytest.approx((low, high), abs=0.02)
    assert ours.measure in ("tpr", "fpr") and ours.groups_compared == 7


def test_gap_of_a_mean_resamples_each_groups_values():
    rows = pd.DataFrame({"race": ["A"] * 40 + ["B"] * 40, "share": [0.2, 0.4] * 20 + [0.5, 0.7] * 20})
    gap = GroupFrame(rows, ["race"], {"share": mean_of("share")}, n_boot=500).gap("share spread")
    assert gap.value == pytest.approx(0.3) and gap.highest["group"] == "B"
    # Each group's mean has a standard error of 0.1 / sqrt(40): the difference's about 0.022.
    assert gap.low == pytest.approx(0.3 - 1.96 * 0.0224, abs=0.01) and gap.high == pytest.approx(0.3 + 0.044, abs=0.01)


def test_intersection_of_two_any_columns(rows):
    table = GroupFrame(rows.assign(camera=np.where(rows.index % 3 == 0, "phone", "studio")), ["camera", "gender"],
                       n_boot=50).by_group
    assert table["group"].tolist() == ["phone / Female", "phone / Male", "studio / Female", "studio / Male"]
    assert table["n"].sum() == len(rows)


FNR = Measure("fnr", "proportion", "{positives} called {neg} (FNR)",
              "False negative rate (FNR): share of the group's {positives} the model calls {neg}.",
              hit=lambda t: (np.indices((2, 2))[0] == 1) & (np.indices((2, 2))[1] == 0),
              among=lambda t: np.indices((2, 2))[0] == 1, applies=lambda t: t.binary,
              gap="false negative rate gap", gap_words="Highest minus lowest FNR.", counted="{positives}")


def test_a_measure_added_in_one_entry_is_on_the_fairness_page(monkeypatch, rows):
    monkeypatch.setitem(MEASURES, "fnr", FNR)
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=240)
    at.switch_page("pages/4_Fairness.py")
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    metrics = {m.label: m.value for m in at.metric}
    assert list(metrics) == ["accuracy gap", "equalized odds difference", "demographic parity difference",
                             "false negative rate gap"]
    gap = GroupFrame(rows, ["race"], ["fnr"]).gap("false negative rate gap")
    assert metrics["false negative rate gap"] == f"{gap.value * 100:.1f} points"
    assert any(f"{gap.low * 100:.1f} – {gap.high * 100:.1f} points" in c.value for c in at.caption)
    table = table_with(at, "race").set_index("race")
    men = rows[(rows["race"] == "Black") & (rows["gender"] == "Male")]
    label = size_label("Black", int((rows["race"] == "Black").sum()), False)
    assert table.loc[label, "men called female (FNR)"].startswith(f"{(men['pred'] == 'Female').mean():.1%} (")
