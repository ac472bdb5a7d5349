"""Known-answer tests of the audit numbers on small hand-made evaluation rows."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from faircam.metrics import (
    accuracy_gap,
    confusion,
    focus_by_group,
    group_accuracy,
    overall_scores,
    wilson_interval,
)


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
    assert (table.loc["all", "ci_low"], table.loc["all", "ci_high"]) == pytest.approx(wilson(7, 10))
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
    assert white["ci_low"] == pytest.approx(0.4902, abs=1e-3)
    assert white["ci_high"] == pytest.approx(0.9433, abs=1e-3)
    assert (table["ci_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["ci_high"]).all()
    assert (table.iloc[1]["ci_low"], table.iloc[1]["ci_high"]) == pytest.approx(wilson(3, 6))
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
    gap = accuracy_gap(table)
    assert gap["best"] == "White / Male" and gap["worst"] == "Black / Male"
    assert gap["gap"] == pytest.approx(0.5) and gap["groups_compared"] == 3


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
    gap = accuracy_gap(group_accuracy(GROUPS, ["race"], min_size=5))
    assert gap["gap"] == pytest.approx(0.8 - 0.5)  # Indian (0.25, n=4) is left out
    assert gap["best"] == "White" and gap["best_n"] == 10
    assert gap["worst"] == "Black" and gap["worst_n"] == 6
    assert gap["groups_compared"] == 2

    everyone = accuracy_gap(group_accuracy(GROUPS, ["race"], min_size=1))
    assert everyone["gap"] == pytest.approx(0.8 - 0.25) and everyone["worst"] == "Indian"


def test_accuracy_gap_needs_two_usable_groups():
    one = accuracy_gap(group_accuracy(GROUPS, ["race"], min_size=7))
    assert one == {"gap": None, "best": None, "worst": None, "groups_compared": 1}
    none = accuracy_gap(group_accuracy(GROUPS, ["race"], min_size=100))
    assert none["gap"] is None and none["groups_compared"] == 0


def test_focus_by_group():
    rows = GROUPS.assign(score=[float(i) for i in range(len(GROUPS))])
    table = focus_by_group(rows, ["score"], ["race"]).set_index("race")
    for race in ("White", "Black", "Indian"):
        part = rows[rows["race"] == race]
        assert table.loc[race, "score"] == pytest.approx(part["score"].mean())
        assert table.loc[race, "n"] == len(part)
