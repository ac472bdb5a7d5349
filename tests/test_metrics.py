"""Known-answer tests of the group table, the accuracy tables and the fairness audit on small hand-made
evaluation rows, and a cross-check of the hand-counted tables against scikit-learn, SciPy and fairlearn."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from scipy.stats import binomtest
from scipy.stats import t as student_t
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from faircam.audit.accuracy import confusion, overall_scores
from faircam.audit.groups import (
    GROUPINGS,
    INTERVALS,
    MEASURES,
    GroupFrame,
    group_table,
    mean_of,
    ranked,
    shown,
    size_label,
    wilson_interval,
)
from faircam.audit.metrics import fairness
from faircam.config import DEFAULT_MODEL_NAME, cache_path_for
from faircam.evaluation.cache import read_cache
from faircam.tasks import TASKS

CLASSES = TASKS["gender"].classes
RATES = ("accuracy", "tpr", "fpr", "selection_rate")
GAPS = ("accuracy gap", "equalized odds difference", "demographic parity difference")


def group_accuracy(rows: pd.DataFrame, by: list[str], min_size: int = 30) -> pd.DataFrame:
    """Accuracy per group, large groups ranked first: what the Evaluation page lists."""
    return ranked(group_table(rows, by, min_size=min_size))


def spread(rows: pd.DataFrame, by: list[str], min_size: int = 30):
    """The accuracy gap: what the Evaluation page says above its table."""
    return GroupFrame(rows, by, min_size=min_size, n_boot=200).gap("accuracy gap")


def make_rows(groups: list[tuple[str, str, str, str, int]]) -> pd.DataFrame:
    """Rows from (race, age, gender, pred, count) tuples."""
    records = [
        {"race": race, "age": age, "gender": gender, "pred": pred}
        for race, age, gender, pred, n in groups
        for _ in range(n)
    ]
    rows = pd.DataFrame.from_records(records)
    rows["correct"] = rows["gender"] == rows["pred"]
    return rows


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval, written out from its formula."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# 10 rows: 4 women (3 called Female, 1 Male), 6 men (4 called Male, 2 Female). 7 correct.
TEN = make_rows([
    ("White", "20-29", "Female", "Female", 3),
    ("White", "20-29", "Female", "Male", 1),
    ("Black", "30-39", "Male", "Male", 4),
    ("Black", "30-39", "Male", "Female", 2),
])


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    for k, n in ((0, 5), (7, 10), (29, 30), (500, 1000)):
        assert wilson_interval(k, n) == pytest.approx(wilson(k, n), abs=1e-9), (k, n)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_overall_scores():
    table = overall_scores(TEN)
    assert list(table.index) == ["all", "Female", "Male"]
    assert table.loc["all", "accuracy"] == pytest.approx(0.7)
    assert table.loc["all", "n"] == 10
    assert (table.loc["all", "accuracy_low"], table.loc["all", "accuracy_high"]) == pytest.approx(wilson(7, 10))
    assert table.loc["Female", "precision"] == pytest.approx(3 / 5)
    assert table.loc["Female", "recall"] == pytest.approx(3 / 4)
    assert table.loc["Male", "precision"] == pytest.approx(4 / 5)
    assert table.loc["Male", "recall"] == pytest.approx(4 / 6)
    assert table.loc["Male", "f1"] == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))
    assert table.loc["Female", "n"] == 4 and table.loc["Male", "n"] == 6


def test_overall_scores_without_any_female_prediction():
    rows = make_rows([("White", "20-29", "Male", "Male", 3), ("White", "20-29", "Female", "Male", 2)])
    table = overall_scores(rows)
    assert table.loc["Female", "precision"] == 0 and table.loc["Female", "recall"] == 0
    assert table.loc["all", "accuracy"] == pytest.approx(0.6)


def test_confusion_counts():
    matrix = confusion(TEN)
    assert list(matrix.index) == ["Female", "Male"] and list(matrix.columns) == ["Female", "Male"]
    assert matrix.index.name == "true" and matrix.columns.name == "predicted"
    assert matrix.to_numpy().tolist() == [[3, 1], [2, 4]]


# Race groups: White 8/10 correct, Black 3/6, Indian 1/4 (small with min_size 5).
GROUPS = make_rows([
    ("White", "20-29", "Male", "Male", 5),
    ("White", "20-29", "Female", "Female", 3),
    ("White", "20-29", "Female", "Male", 2),
    ("Black", "30-39", "Male", "Male", 3),
    ("Black", "30-39", "Male", "Female", 3),
    ("Indian", "30-39", "Female", "Female", 1),
    ("Indian", "30-39", "Female", "Male", 3),
])


def test_group_accuracy():
    table = group_accuracy(GROUPS, ["race"], min_size=5)
    assert table["race"].tolist() == ["White", "Black", "Indian"]  # sorted by accuracy
    assert table["accuracy"].tolist() == pytest.approx([0.8, 0.5, 0.25])
    assert table["n"].tolist() == [10, 6, 4]
    assert table["small"].tolist() == [False, False, True]
    white = table.iloc[0]
    assert white["accuracy_low"] == pytest.approx(0.4902, abs=1e-3)
    assert white["accuracy_high"] == pytest.approx(0.9433, abs=1e-3)
    assert (table["accuracy_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["accuracy_high"]).all()
    assert (table.iloc[1]["accuracy_low"], table.iloc[1]["accuracy_high"]) == pytest.approx(wilson(3, 6))
    # The default threshold (30) flags all of these small groups.
    assert group_accuracy(GROUPS, ["race"])["small"].all()


def by_cell(table: pd.DataFrame) -> dict:
    columns = (table["race"], table["gender"], table["accuracy"], table["n"])
    return {(r, g): (a, n) for r, g, a, n in zip(*columns)}


# Every race x gender cell present: White men 5/5, White women 3/5, Black men 3/6, Black women 2/2.
CELLS = make_rows([
    ("White", "20-29", "Male", "Male", 5),
    ("White", "20-29", "Female", "Female", 3),
    ("White", "20-29", "Female", "Male", 2),
    ("Black", "30-39", "Male", "Male", 3),
    ("Black", "30-39", "Male", "Female", 3),
    ("Black", "30-39", "Female", "Female", 2),
])


def test_group_accuracy_two_columns():
    table = group_accuracy(CELLS, ["race", "gender"], min_size=5)
    cells = by_cell(table)
    assert cells == {
        ("White", "Male"): (1.0, 5),
        ("Black", "Female"): (1.0, 2),
        ("White", "Female"): (pytest.approx(0.6), 5),
        ("Black", "Male"): (0.5, 6),
    }
    assert table["small"].tolist() == [n < 5 for n in table["n"]]
    gap = spread(CELLS, ["race", "gender"], min_size=5)
    assert gap.highest["group"] == "White / Male" and gap.lowest["group"] == "Black / Male"
    assert gap.value == pytest.approx(0.5) and gap.groups_compared == 3
    assert gap.low <= gap.value <= gap.high


def test_group_accuracy_with_an_empty_cell():
    table = group_accuracy(GROUPS, ["race", "gender"], min_size=1)  # no Black women, no Indian men
    cells = by_cell(table)
    assert cells == {
        ("White", "Male"): (1.0, 5),
        ("White", "Female"): (pytest.approx(0.6), 5),
        ("Black", "Male"): (0.5, 6),
        ("Indian", "Female"): (0.25, 4),
    }


def test_accuracy_gap_ignores_small_groups():
    gap = spread(GROUPS, ["race"], min_size=5)
    assert gap.value == pytest.approx(0.8 - 0.5)  # Indian (0.25, n=4) is left out
    assert gap.side("highest") == "White (80.0%, n=10)" and gap.side("lowest") == "Black (50.0%, n=6)"
    assert gap.groups_compared == 2 and gap.excluded == ["Indian (n=4)"]

    everyone = spread(GROUPS, ["race"], min_size=1)
    assert everyone.value == pytest.approx(0.8 - 0.25) and everyone.lowest["group"] == "Indian"


def test_accuracy_gap_needs_two_usable_groups():
    one = spread(GROUPS, ["race"], min_size=7)
    assert not one.defined and one.groups_compared == 1 and one.highest is None
    assert one.note == "Fewer than two groups have 7 or more images."
    none = spread(GROUPS, ["race"], min_size=100)
    assert not none.defined and none.groups_compared == 0


def test_accuracy_tables_match_scikit_learn_scipy_and_fairlearn():
    """`faircam.audit.accuracy` counts by hand to keep those imports off the Evaluation page; on the bundled
    2,500-image cache and on random subsets it must give the libraries' numbers."""
    everything = read_cache(cache_path_for(DEFAULT_MODEL_NAME)).rows
    rng = np.random.default_rng(0)
    for rows in (everything, everything.sample(97, random_state=1), everything[everything["race"] == "Black"],
                 everything.iloc[rng.choice(len(everything), 12, replace=False)]):
        truth, pred = rows["gender"], rows["pred"]
        assert confusion(rows).to_numpy().tolist() == confusion_matrix(truth, pred, labels=list(CLASSES)).tolist()
        scores = overall_scores(rows)
        precision, recall, f1, support = precision_recall_fscore_support(truth, pred, labels=list(CLASSES),
                                                                         zero_division=0)
        assert scores.loc[list(CLASSES), "precision"].tolist() == pytest.approx(precision.tolist())
        assert scores.loc[list(CLASSES), "recall"].tolist() == pytest.approx(recall.tolist())
        assert scores.loc[list(CLASSES), "f1"].tolist() == pytest.approx(f1.tolist())
        assert scores.loc[list(CLASSES), "n"].tolist() == support.tolist()
        assert scores.loc["all", "accuracy"] == pytest.approx(accuracy_score(truth, pred))
        for by in (["race"], ["race", "gender"], ["age"]):
            ours = group_accuracy(rows, by, min_size=1).set_index(by).sort_index()
            theirs = MetricFrame(metrics={"accuracy": accuracy_score, "n": lambda t, p: len(t)}, y_true=truth,
                                 y_pred=pred, sensitive_features=rows[by]).by_group.dropna(subset=["n"])
            theirs = theirs.reset_index().set_index(by).sort_index()
            assert ours.index.tolist() == theirs.index.tolist()
            assert ours["accuracy"].tolist() == pytest.approx(theirs["accuracy"].tolist())
            assert ours["n"].tolist() == theirs["n"].astype(int).tolist()
            columns = ["n", "accuracy", "accuracy_low", "accuracy_high"]
            for (n, acc, low, high) in ours[columns].itertuples(index=False):
                ci = binomtest(round(acc * n), n).proportion_ci(confidence_level=0.95, method="wilson")
                assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-12)


# Fairness audit. Positive class "Male": TPR = men called male, FPR = women called male.
# A: 10 men (8 called Male), 10 women (3 called Male): accuracy 15/20, TPR 0.8, FPR 0.3, selection 11/20.
# B: 20 men (18 called Male), 10 women (1 called Male): accuracy 27/30, TPR 0.9, FPR 0.1, selection 19/30.
# C: 2 men (1 called Male), 2 women (0 called Male): n = 4, under min_size = 10.
AUDIT = make_rows([
    ("A", "20-29", "Male", "Male", 8), ("A", "20-29", "Male", "Female", 2),
    ("A", "20-29", "Female", "Male", 3), ("A", "20-29", "Female", "Female", 7),
    ("B", "30-39", "Male", "Male", 18), ("B", "30-39", "Male", "Female", 2),
    ("B", "30-39", "Female", "Male", 1), ("B", "30-39", "Female", "Female", 9),
    ("C", "30-39", "Male", "Male", 1), ("C", "30-39", "Male", "Female", 1),
    ("C", "30-39", "Female", "Female", 2),
])


def test_fairness_group_rates_known_answers():
    audit = fairness(AUDIT, ["race"], min_size=10, n_boot=500)
    groups = audit.groups.set_index("group")
    assert audit.groups["group"].tolist() == ["B", "A", "C"]  # ranked by accuracy; the small group last
    assert groups["small"].tolist() == [False, False, True]
    assert groups[["n", "men", "women"]].loc["A"].tolist() == [20, 10, 10]
    assert groups[["n", "men", "women"]].loc["B"].tolist() == [30, 20, 10]
    assert groups.loc["A", ["accuracy", "tpr", "fpr", "selection_rate"]].tolist() == pytest.approx(
        [15 / 20, 0.8, 0.3, 11 / 20])
    assert groups.loc["B", ["accuracy", "tpr", "fpr", "selection_rate"]].tolist() == pytest.approx(
        [27 / 30, 0.9, 0.1, 19 / 30])
    assert groups.loc["C", ["accuracy", "tpr", "fpr"]].tolist() == pytest.approx([3 / 4, 0.5, 0.0])
    for rate in RATES:
        assert (groups[f"{rate}_low"] <= groups[rate] + 1e-12).all(), rate
        assert (groups[rate] <= groups[f"{rate}_high"] + 1e-12).all(), rate


def test_fairness_gaps_known_answers_leave_out_small_groups():
    gaps = fairness(AUDIT, ["race"], min_size=10, n_boot=500).gaps
    assert list(gaps.index) == list(GAPS)
    assert gaps.loc["accuracy gap", "value"] == pytest.approx(0.9 - 0.75)
    assert gaps.loc["equalized odds difference", "value"] == pytest.approx(max(0.9 - 0.8, 0.3 - 0.1))
    assert gaps.loc["demographic parity difference", "value"] == pytest.approx(19 / 30 - 11 / 20)
    assert gaps.loc["equalized odds difference", "rate"] == "fpr"  # FPR spread (0.2) beats TPR spread (0.1)
    assert gaps.loc["accuracy gap", "highest"] == "B (90.0%, n=30)"
    assert gaps.loc["accuracy gap", "lowest"] == "A (75.0%, n=20)"
    assert (gaps["excluded"] == "C (n=4)").all() and (gaps["groups_compared"] == 2).all()
    assert (gaps["ci_low"] <= gaps["value"]).all() and (gaps["value"] <= gaps["ci_high"]).all()
    assert (gaps["note"] == "").all()

    # With the small group let in, C's TPR of 0.5 widens the TPR spread to 0.9 - 0.5 = 0.4.
    everyone = fairness(AUDIT, ["race"], min_size=1, n_boot=200).gaps
    assert everyone.loc["equalized odds difference", "value"] == pytest.approx(0.4)
    assert everyone.loc["equalized odds difference", "rate"] == "tpr"
    assert everyone.loc["accuracy gap", "excluded"] == ""


def test_fairness_equalized_odds_needs_enough_men_and_women():
    # A has 10 men and B 10 women: with min_size 11 no group is left for equalized odds.
    gaps = fairness(AUDIT, ["race"], min_size=11, n_boot=200).gaps
    assert gaps.loc["accuracy gap", "value"] == pytest.approx(0.9 - 0.75)
    assert math.isnan(gaps.loc["equalized odds difference", "value"])
    assert "of each gender" in gaps.loc["equalized odds difference", "note"]


def test_fairness_by_gender_says_which_gaps_are_undefined():
    audit = fairness(AUDIT, ["gender"], min_size=10, n_boot=200)
    groups = audit.groups.set_index("group")
    assert groups.loc["Male", "accuracy"] == pytest.approx(27 / 32) and groups.loc["Male", "n"] == 32
    assert groups.loc["Female", "accuracy"] == pytest.approx(18 / 22) and groups.loc["Female", "n"] == 22
    # A rate with no one to count is undefined (fairlearn itself would report 0).
    assert math.isnan(groups.loc["Female", "tpr"]) and math.isnan(groups.loc["Male", "fpr"])
    assert math.isnan(groups.loc["Female", "tpr_low"])
    gaps = audit.gaps
    assert gaps.loc["accuracy gap", "value"] == pytest.approx(27 / 32 - 18 / 22)
    for name in ("equalized odds difference", "demographic parity difference"):
        assert math.isnan(gaps.loc[name, "value"]) and gaps.loc[name, "note"], name
        assert gaps.loc[name, "groups_compared"] == 0 and gaps.loc[name, "excluded"] == ""


def test_fairness_race_by_gender_cells():
    audit = fairness(AUDIT, ["race", "gender"], min_size=10, n_boot=200)
    cells = audit.groups.set_index("group")
    assert cells.loc["B / Male", ["n", "accuracy"]].tolist() == [20, pytest.approx(0.9)]
    assert cells.loc["A / Female", ["n", "accuracy"]].tolist() == [10, pytest.approx(0.7)]
    assert cells.loc["B / Female", ["n", "accuracy"]].tolist() == [10, pytest.approx(0.9)]
    assert cells["small"].sum() == 2  # C / Male and C / Female, two each
    assert audit.gaps.loc["accuracy gap", "value"] == pytest.approx(0.9 - 0.7)
    assert math.isnan(audit.gaps.loc["equalized odds difference", "value"])


def test_fairness_intervals_are_seeded():
    one = fairness(AUDIT, ["race"], min_size=10, n_boot=300, seed=3)
    again = fairness(AUDIT, ["race"], min_size=10, n_boot=300, seed=3)
    other = fairness(AUDIT, ["race"], min_size=10, n_boot=300, seed=4)
    pd.testing.assert_frame_equal(one.groups, again.groups)
    pd.testing.assert_frame_equal(one.gaps, again.gaps)
    assert not one.gaps["ci_low"].equals(other.gaps["ci_low"])


def test_gap_bootstrap_matches_fairlearns_own_bootstrap():
    """Our multinomial shortcut resamples rows as fairlearn's MetricFrame bootstrap does."""
    y_true = (AUDIT["gender"] == "Male").to_numpy(int)
    y_pred = (AUDIT["pred"] == "Male").to_numpy(int)
    gap_low, gap_high = MetricFrame(
        metrics=lambda t, p: float(np.mean(t == p)), y_true=y_true[:50], y_pred=y_pred[:50],
        sensitive_features=AUDIT["race"][:50], n_boot=400, ci_quantiles=[0.025, 0.975], random_state=1,
    ).difference_ci()
    ours = fairness(AUDIT.head(50), ["race"], min_size=10, n_boot=4000).gaps.loc["accuracy gap"]
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx((gap_low, gap_high), abs=0.04)


def test_fairness_rates_are_the_group_tables_wilson_intervals():
    """One number per group everywhere: the audit's rates are the group table's, to the last digit."""
    audit = fairness(AUDIT, ["race"], min_size=10, n_boot=100).groups.set_index("race")
    table = group_table(AUDIT, ["race"], list(RATES), min_size=10).set_index("race")
    for rate in RATES:
        for suffix in ("", "_low", "_high"):
            assert audit[rate + suffix].tolist() == pytest.approx(table.loc[audit.index, rate + suffix].tolist(),
                                                                  nan_ok=True)
    assert (audit.loc["A", "tpr_low"], audit.loc["A", "tpr_high"]) == pytest.approx(wilson(8, 10))
    assert (audit.loc["B", "fpr_low"], audit.loc["B", "fpr_high"]) == pytest.approx(wilson(1, 10))


def test_intervals_cover_the_true_gap_and_rate_about_95_percent_of_the_time():
    """Synthetic population with known rates: two groups, half men, 1,000 faces per sample. The gaps'
    bootstrap intervals and a group's Wilson interval of its TPR each cover the truth about 95% of the time.

    Group 0: TPR 0.95, FPR 0.05; group 1: TPR 0.85, FPR 0.10. So the true accuracy gap is
    0.95 - 0.875 = 0.075, equalized odds 0.10 (TPR), demographic parity 0.50 - 0.475 = 0.025.
    """
    tpr, fpr = np.array([0.95, 0.85]), np.array([0.05, 0.10])
    truth = {"accuracy gap": 0.075, "equalized odds difference": 0.10, "demographic parity difference": 0.025}
    rng = np.random.default_rng(2024)
    repetitions, hits, tpr_hits = 200, dict.fromkeys(truth, 0), 0
    for rep in range(repetitions):
        group, y_true = rng.integers(0, 2, 1000), rng.integers(0, 2, 1000)
        y_pred = (rng.random(1000) < np.where(y_true == 1, tpr[group], fpr[group])).astype(int)
        rows = pd.DataFrame({"race": group.astype(str), "gender": np.where(y_true == 1, "Male", "Female"),
                             "pred": np.where(y_pred == 1, "Male", "Female")})
        gaps = GroupFrame(rows, ["race"], RATES, min_size=1, n_boot=1000, seed=rep).gaps()
        for name, value in truth.items():
            hits[name] += gaps.loc[name, "ci_low"] <= value <= gaps.loc[name, "ci_high"]
        second = group_table(rows, ["race"], ["tpr"]).set_index("race").loc["1"]
        tpr_hits += second["tpr_low"] <= tpr[1] <= second["tpr_high"]
    for name, count in hits.items():
        assert 0.90 <= count / repetitions <= 0.99, (name, count / repetitions)
    assert 0.90 <= tpr_hits / repetitions <= 0.99


# --- the group table -------------------------------------------------------------------------


def test_group_table_cells_carry_value_n_interval_and_flag():
    table = group_table(AUDIT, ["race"], list(RATES), min_size=10).set_index("group")
    assert list(table.index) == ["A", "B", "C"]  # unknown labels sorted; known ones in their natural order
    assert table.loc["A", ["n", "accuracy_n", "tpr_n", "fpr_n", "selection_rate_n"]].tolist() == [20, 20, 10, 10, 20]
    assert table.loc["A", ["accuracy", "tpr", "fpr", "selection_rate"]].tolist() == pytest.approx(
        [15 / 20, 0.8, 0.3, 11 / 20])
    assert (table.loc["A", "accuracy_low"], table.loc["A", "accuracy_high"]) == pytest.approx(wilson(15, 20))
    assert table["small"].tolist() == [False, False, True]
    everyone = group_table(AUDIT, [], ["accuracy"]).iloc[0]
    assert everyone["group"] == "all" and everyone["n"] == len(AUDIT)
    assert everyone["accuracy"] == pytest.approx(AUDIT["correct"].mean())


def test_group_table_names_and_orders_groups_once():
    rows = make_rows([("Latino_Hispanic", "more than 70", "Male", "Male", 2), ("White", "3-9", "Female", "Male", 1),
                      ("White", "20-29", "Female", "Female", 3), ("Black", "10-19", "Male", "Male", 1)])
    by_race = group_table(rows, GROUPINGS["race"])
    assert by_race["group"].tolist() == ["White", "Black", "Latino Hispanic"]  # FairFace's order, readable
    assert by_race["race"].tolist() == ["White", "Black", "Latino_Hispanic"]  # the cache's values kept
    by_age = group_table(rows, GROUPINGS["age"], min_size=1)
    assert by_age["group"].tolist() == ["3-9", "10-19", "20-29", "more than 70"]  # age order, not text order
    assert shown(by_age, GROUPINGS["age"])["group"].tolist() == by_age["group"].tolist()  # ordinal: not ranked
    assert group_table(rows, GROUPINGS["race × gender"])["group"].iloc[-1] == "Latino Hispanic / Male"
    assert size_label("Black / Female", 1189, True) == "Black / Female (n=1,189) ⚠ small"
    assert INTERVALS["proportion"] == "95% Wilson interval"


def test_group_table_mean_measure_uses_the_t_interval():
    rows = make_rows([("White", "20-29", "Male", "Male", 4), ("Black", "20-29", "Male", "Male", 1)])
    rows["share"] = [0.1, 0.2, 0.3, np.nan, 0.9]
    table = group_table(rows, ["race"], {"share": mean_of("share")}, min_size=1).set_index("race")
    assert table.loc["White", ["share", "share_n", "n"]].tolist() == [pytest.approx(0.2), 3, 4]
    half = student_t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert (table.loc["White", "share_low"], table.loc["White", "share_high"]) == pytest.approx((0.2 - half,
                                                                                                0.2 + half))
    assert table.loc["Black", "share"] == pytest.approx(0.9) and math.isnan(table.loc["Black", "share_low"])


def test_group_table_takes_the_task_from_one_place():
    """Truth and prediction columns come from the task: a measure never names them itself."""
    assert MEASURES["tpr"].kind == MEASURES["accuracy"].kind == "proportion"
    with pytest.raises(KeyError):
        group_table(AUDIT, ["race"], task="race")  # the race head comes next round
