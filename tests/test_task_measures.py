"""Every task's numbers (gender, race, age): the confusion matrix, precision, recall and F1 per class, accuracy
per group and within one age bin, the multi-class fairness gaps and the precision-recall curves, checked
against scikit-learn, SciPy and fairlearn on the multi-task model's real evaluation cache; and the Evaluation,
Fairness and About pages, `faircam report` and the model card, for each task of that model."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    recall_score,
)
from streamlit.testing.v1 import AppTest

from faircam import wording
from faircam.audit import accuracy, groups, metrics
from faircam.audit.modelcard import model_card
from faircam.audit.report import build_report
from faircam.charts import plots
from faircam.cli import main
from faircam.config import DEFAULT_MODEL_NAME, PROJECT_ROOT, cache_path_for
from faircam.data.fairface import AGES, GENDERS, RACES
from faircam.evaluation.cache import read_cache
from faircam.models.registry import load_model
from faircam.tasks import TASKS as SPECS

TIMEOUT = 240
TASKS = ("gender", "race", "age")


@pytest.fixture(scope="module")
def mt_cache(multitask_files):
    return read_cache(multitask_files["caches"] / "eval_val-multitask.parquet")


def wilson(k: int, n: int) -> tuple[float, float]:
    interval = binomtest(k, n).proportion_ci(method="wilson")
    return interval.low, interval.high


def synthetic(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    """Rows with every task's truth and prediction; race and age predictions right about 60% and 50% of the time,
    worse for some groups, so gaps exist."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"race": rng.choice(RACES, n), "gender": rng.choice(GENDERS, n),
                         "age": rng.choice(AGES, n, p=[.03, .1, .1, .3, .2, .12, .08, .05, .02])})
    hit = rng.random(n) < np.where(rows["race"] == "Black", 0.45, 0.65)
    rows["race_pred"] = np.where(hit, rows["race"], rng.choice(RACES, n))
    rows["age_pred"] = np.where(rng.random(n) < 0.5, rows["age"], rng.choice(AGES, n))
    rows["pred"] = np.where(rng.random(n) < 0.85, rows["gender"], rng.choice(GENDERS, n))
    rows["p_male"] = np.clip(np.where(rows["gender"] == "Male", 0.7, 0.3) + rng.normal(0, 0.25, n), 0, 1)
    return rows


# --- numbers against scikit-learn, SciPy and fairlearn --------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_confusion_and_class_scores_match_scikit_learn(mt_cache, task):
    rows, spec = mt_cache.rows, SPECS[task]
    classes = list(spec.classes)
    y_true, y_pred = rows[spec.truth], rows[spec.pred]
    matrix = accuracy.confusion(rows, task)
    assert matrix.shape == (len(classes), len(classes)) and list(matrix.index) == classes
    assert matrix.to_numpy().tolist() == confusion_matrix(y_true, y_pred, labels=classes).tolist()

    scores = accuracy.overall_scores(rows, task, n_boot=200)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    table = scores.drop(index="all")
    assert table["precision"].tolist() == pytest.approx(precision)
    assert table["recall"].tolist() == pytest.approx(recall)
    assert table["f1"].tolist() == pytest.approx(f1)
    assert table["n"].tolist() == support.tolist()
    assert scores.loc["all", "accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    for cls, row in table.iterrows():
        hits = int(((y_true == cls) & (y_pred == cls)).sum())
        assert row["precision_n"] == (y_pred == cls).sum()
        if row["recall_n"]:
            assert (row["recall_low"], row["recall_high"]) == pytest.approx(wilson(hits, int(row["recall_n"])))
        if row["precision_n"]:
            assert (row["precision_low"], row["precision_high"]) == pytest.approx(
                wilson(hits, int(row["precision_n"])))
        if row["n"] + row["precision_n"]:
            assert row["f1_low"] - 1e-9 <= row["f1"] <= row["f1_high"] + 1e-9


def test_f1_bootstrap_resamples_rows_as_a_plain_bootstrap_does():
    """The F1 interval (multinomial cell counts, `groups.bootstrap`) agrees with resampling rows and asking sklearn."""
    rows = synthetic(600)
    ours = accuracy.overall_scores(rows, "race", n_boot=4000).loc["Black"]
    rng = np.random.default_rng(5)
    draws = [f1_score(rows["race"].to_numpy()[i], rows["race_pred"].to_numpy()[i], labels=["Black"], average="macro")
             for i in (rng.integers(0, len(rows), len(rows)) for _ in range(500))]
    assert (ours["f1_low"], ours["f1_high"]) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])), abs=0.03)


def test_within_one_bin_counts_neighbouring_age_bins(mt_cache):
    rows = mt_cache.rows
    steps = np.abs(rows["age"].map(AGES.index).to_numpy() - rows["age_pred"].map(AGES.index).to_numpy())
    table = groups.group_table(rows, ["race"], ["within_one"], task="age").set_index("race")
    for race, part in rows.groupby("race"):
        hits = int((steps[rows["race"] == race] <= 1).sum())
        assert table.loc[race, "within_one"] == pytest.approx(hits / len(part))
        assert (table.loc[race, "within_one_low"], table.loc[race, "within_one_high"]) == pytest.approx(
            wilson(hits, len(part)))


def recall_of(cls: str):
    def recall(y_true, y_pred) -> float:
        return recall_score(y_true, y_pred, labels=[cls], average="macro", zero_division=np.nan)

    return recall


@pytest.mark.parametrize("task", ["race", "age"])
@pytest.mark.parametrize("grouping", ["gender", "race × gender", "race"])
def test_multiclass_fairness_matches_fairlearn(task, grouping):
    rows = synthetic()
    by = groups.GROUPINGS[grouping]
    spec = SPECS[task]
    audit = metrics.fairness(rows, by, task=task, n_boot=300)
    frame = MetricFrame(metrics={"accuracy": accuracy_score, **{c: recall_of(c) for c in spec.classes}},
                        y_true=rows[spec.truth], y_pred=rows[spec.pred], sensitive_features=rows[by])
    by_group = frame.by_group
    by_group.index = [groups.group_label(dict(zip(by, i if isinstance(i, tuple) else (i,))), by)
                      for i in by_group.index]
    table = audit.groups.set_index("group")
    assert table["accuracy"].to_numpy() == pytest.approx(by_group.loc[table.index, "accuracy"].to_numpy())
    large = table[~table["small"]]
    gap = audit.gaps.loc["accuracy gap"]
    assert gap["value"] == pytest.approx(large["accuracy"].max() - large["accuracy"].min())
    assert gap["ci_low"] <= gap["value"] <= gap["ci_high"]
    for cls in spec.classes:
        column = groups.recall_of(cls).name
        present = table[f"{column}_n"] > 0
        expected = by_group.loc[table.index[present], cls].to_numpy()
        assert table.loc[present, column].to_numpy() == pytest.approx(expected)
        row = audit.gaps.loc[f"recall gap: {groups.label(cls)}"]
        eligible = table[table[f"{column}_n"] >= audit.min_size]
        if by == [spec.truth]:
            assert math.isnan(row["value"]) and "the label itself" in row["note"]
        elif len(eligible) >= 2:
            assert row["value"] == pytest.approx(eligible[column].max() - eligible[column].min())
            assert row["groups_compared"] == len(eligible)
        else:
            assert math.isnan(row["value"]) and "Fewer than two groups" in row["note"]
    if spec.ordinal:
        within = audit.gaps.loc["within-one gap"]
        assert within["value"] == pytest.approx(large["within_one"].max() - large["within_one"].min())
    assert "equalized odds difference" not in audit.gaps.index  # binary-only measures stay gender's


def test_multiclass_fairness_leaves_small_groups_out_of_gaps(mt_cache):
    """On the 42-image cache every race group is small: flagged, and no accuracy gap is claimed."""
    audit = metrics.fairness(mt_cache.rows, ["race"], task="race", n_boot=100)
    assert audit.groups["small"].all()
    assert math.isnan(audit.gaps.loc["accuracy gap", "value"])
    assert "Fewer than two groups have 30 or more images" in audit.gaps.loc["accuracy gap", "note"]
    loose = metrics.fairness(mt_cache.rows, ["gender"], task="age", min_size=5, n_boot=100)
    assert not math.isnan(loose.gaps.loc["accuracy gap", "value"])


@pytest.mark.parametrize("source", ["multitask", "bundled"])
def test_pr_curves_match_scikit_learn(source, mt_cache):
    rows = mt_cache.rows if source == "multitask" else read_cache(cache_path_for(DEFAULT_MODEL_NAME)).rows
    curves = accuracy.pr_curves(rows, ["race"]).set_index("group")
    assert set(curves.index) == {groups.label(r) for r in rows.loc[rows["gender"] == "Male", "race"]}
    for race, part in rows.groupby("race"):
        if not (part["gender"] == "Male").any():
            continue
        precision, recall, _ = precision_recall_curve(part["gender"] == "Male", part["p_male"])
        curve = curves.loc[groups.label(race)]
        assert curve["precision"] == pytest.approx(precision) and curve["recall"] == pytest.approx(recall)
        assert curve["average_precision"] == pytest.approx(average_precision_score(part["gender"] == "Male",
                                                                                   part["p_male"]))
        assert curve["n"] == len(part) and curve["positives"] == (part["gender"] == "Male").sum()


def test_pr_chart_draws_a_thinned_curve_with_its_ends():
    # Drawn, a curve keeps at most MAX_CURVE_POINTS of its points, evenly along it, and its two ends.
    rows = read_cache(cache_path_for(DEFAULT_MODEL_NAME)).rows
    long = pd.concat([rows] * 8, ignore_index=True).assign(p_male=lambda f: np.random.default_rng(0).random(len(f)))
    curves = accuracy.pr_curves(long, ["race"])
    figure = plots.pr_curves(curves, "Male")
    assert max(len(c) for c in curves["recall"]) > 2 * plots.MAX_CURVE_POINTS
    for trace, (_, curve) in zip(figure.data, curves.iterrows()):
        assert len(trace.x) == min(len(curve["recall"]), plots.MAX_CURVE_POINTS)
        assert (trace.x[0], trace.x[-1]) == (curve["recall"][0], curve["recall"][-1])
        assert (trace.y[0], trace.y[-1]) == (curve["precision"][0], curve["precision"][-1])


def test_interval_dots_put_each_groups_n_on_its_own_line():
    # One line per label would be cut in a column of an 800-pixel screen ("atino Hispanic / Female (n=191)").
    rows = read_cache(cache_path_for(DEFAULT_MODEL_NAME)).rows
    table = groups.group_table(rows, ["race", "gender"], ["accuracy"])
    labels = list(plots.interval_dots(table, "accuracy").data[0].y)
    assert sorted(labels) == sorted(f"{g}<br>(n={n:,})" for g, n in zip(table["group"], table["n"]))


# --- pages ----------------------------------------------------------------------------------------------


def run(page: str, task: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    at.session_state["faircam_model"] = "multitask"
    at.session_state["faircam_task"] = task
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.warning, *at.info])


def as_read(value: object) -> object:
    return re.sub(r"\\(.)", r"\1", value) if isinstance(value, str) else value


def shown_tables(at: AppTest) -> list[pd.DataFrame]:
    """The page's tables as a reader reads them: its data grids, then its static tables (whose text is
    Markdown-escaped)."""
    return [d.value for d in at.dataframe] + [t.value.map(as_read).rename(index=as_read, columns=as_read)
                                              for t in at.table]


def table_with(at: AppTest, first_column: str) -> pd.DataFrame:
    """The one table of `first_column` first (`shown_tables`): a table split into static tables that each lead with
    `first_column` joined back."""
    first, *rest = [t for t in shown_tables(at) if list(t.columns)[:1] == [first_column]]
    table = pd.concat([first, *(part.iloc[:, 1:] for part in rest)], axis=1)
    same_rows = all(part[first_column].equals(first[first_column]) for part in rest)
    assert table.columns.is_unique and same_rows, [list(t.columns) for t in (first, *rest)]
    return table


@pytest.mark.parametrize("task", TASKS)
def test_evaluation_page_for_each_task(multitask_model, mt_cache, task):
    at = run("pages/2_Evaluation.py", task)
    assert_clean(at)
    rows, spec = mt_cache.rows, SPECS[task]
    names = [groups.label(c) for c in spec.classes]
    heatmap = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert heatmap["type"] == "heatmap" and heatmap["x"] == names and heatmap["y"] == names
    matrix = confusion_matrix(rows[spec.truth], rows[spec.pred], labels=list(spec.classes))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    assert np.shape(heatmap["text"]) == (len(names), len(names))  # 2x2, 7x7, 9x9: counts and row shares
    assert heatmap["text"][-1][-1] == f"{matrix[-1, -1]:,}<br>{shares[-1, -1]:.0%}"

    per_class = table_with(at, "class")
    precision, recall, _, support = precision_recall_fscore_support(rows[spec.truth], rows[spec.pred],
                                                                    labels=list(spec.classes), zero_division=0)
    assert per_class["class"].tolist() == names
    assert per_class["images (n)"].tolist() == support.tolist()
    recall_column = next(c for c in per_class.columns if c.startswith("recall"))
    for cell, value, n in zip(per_class[recall_column], recall, support):
        assert cell.startswith(f"{value:.1%} (") if n else cell.startswith("–")
    assert "F1 (95% bootstrap interval)" in per_class.columns

    metric = {m.label: m.value for m in at.metric}
    assert metric["Accuracy"] == f"{accuracy_score(rows[spec.truth], rows[spec.pred]):.1%}"
    by_race = table_with(at, "race")
    assert len(by_race) == rows["race"].nunique()
    said = texts(at)
    assert f"explain the model's **{SPECS[mt_cache.cam_task].title}** decision" in said
    if task == "age":
        assert "Within one bin" in metric and any(c.startswith("within one bin") for c in by_race.columns)
    if task == "gender":
        assert len(at.get("plotly_chart")) >= 3  # confusion, group dots, precision-recall curves
        curves = json.loads(at.get("plotly_chart")[2].proto.spec)["data"]
        assert all(re.search(r"\(n=\d+\).* · AP \d\.\d\d$", c["name"]) for c in curves), [c["name"] for c in curves]
    else:
        assert wording.RACE_AGE_CAPTION in said


@pytest.mark.parametrize("task", TASKS)
def test_fairness_page_for_each_task(multitask_model, mt_cache, task):
    at = run("pages/4_Fairness.py", task)
    assert_clean(at)
    rows = mt_cache.rows
    rates = table_with(at, "race")
    expected = groups.group_table(rows, ["race"], task=task).set_index("group")
    for label, cell in zip(rates["race"], rates["accuracy"]):
        group = label.split(" (n=")[0]
        assert cell == groups.with_interval(*expected.loc[group, ["accuracy", "accuracy_low", "accuracy_high"]])
    metric_labels = [m.label for m in at.metric]
    if task == "gender":
        assert metric_labels == ["accuracy gap", "equalized odds difference", "demographic parity difference"]
    else:
        assert groups.BINARY_ONLY in texts(at)
        assert metric_labels == ["accuracy gap", *(["within-one gap"] if task == "age" else [])]
        # The race tab splits race by race: the recall gaps say once why they are not defined.
        assert "the label itself" in texts(at) if task == "race" else True
        at.session_state["fairness-grouping"] = "gender"
        at.run()
        assert_clean(at)
        gaps = table_with(at, "class")
        assert gaps["class"].tolist() == [groups.label(c) for c in SPECS[task].classes]
        per_group = table_with(at, "gender")
        recall = next(c for c in per_group.columns if c.startswith("recall of"))
        # A class's recall with the n it counts, marked small under MIN_GROUP_SIZE.
        assert all(re.search(r", n=[\d,]+( ⚠ small)?$", v) or v == "–" for v in per_group[recall])


@pytest.mark.parametrize("task", TASKS)
def test_about_page_for_each_task(multitask_model, mt_cache, task):
    at = run("pages/3_About.py", task)
    assert_clean(at)
    rows = mt_cache.rows
    tasks = table_with(at, "task").set_index("task")
    for name in TASKS:
        spec = SPECS[name]
        assert tasks.loc[spec.title, "accuracy (95% Wilson interval)"].startswith(
            f"{accuracy_score(rows[spec.truth], rows[spec.pred]):.1%} (")
        assert tasks.loc[spec.title, "n"] == len(rows)
    by_race = table_with(at, "race")
    expected = groups.group_table(rows, ["race"], task=task).set_index("group")
    for label, cell in zip(by_race["race"], by_race["accuracy (95% Wilson interval)"]):
        assert cell == groups.with_interval(*expected.loc[label.split(" (n=")[0],
                                                          ["accuracy", "accuracy_low", "accuracy_high"]])
    said = texts(at)
    assert wording.RACE_AGE_IS in said and wording.RACE_AGE_MUST_NOT in said and wording.RACE_AGE_WHY in said


# --- report and model card ------------------------------------------------------------------------------


def test_report_has_every_tasks_section(multitask_files, mt_cache, tmp_path, capsys):
    out = tmp_path / "report.html"
    code = main(["report", "--out", str(out), "--cache", str(multitask_files["caches"] / "eval_val-multitask.parquet"),
                 "--model", str(multitask_files["checkpoint"])])
    assert code == 0, capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    titles = re.findall(r"<h2>([^<]+)</h2>", page)
    for title in ("Gender: confusion and per class", "Race predictions (a subject of the audit)",
                  "Age group predictions (a subject of the audit)", "Fairness by race", "Model card"):
        assert title in titles, titles
    race = page[page.index("<h2>Race predictions"):page.index("<h2>Age group predictions")]
    assert "recall gap: White" in race and "true \\ predicted" in race
    for cls in RACES:
        assert f"<b>{groups.label(cls)}</b> (n = {(mt_cache.rows['race'] == cls).sum():,})" in race
    assert "within-one gap" in page[page.index("<h2>Age group predictions"):]
    # Its model card covers every task too.
    assert "<h5>Race (a subject of the audit, not a feature)</h5>" in page


def test_report_of_a_gender_only_cache_has_no_race_or_age_section():
    page = build_report(read_cache(cache_path_for("dlib")), n_boot=50)
    assert ">Gender: confusion and per class</h2>" in page
    assert "Race predictions" not in page and "Age group predictions" not in page


def test_model_card_has_every_tasks_tables(multitask_files, mt_cache):
    card = model_card(load_model(multitask_files["checkpoint"]), mt_cache)
    rows = mt_cache.rows
    for name, heading in (("gender", "### Gender"), ("race", "### Race"), ("age", "### Age group")):
        section = card[card.index(heading):]
        spec = SPECS[name]
        overall = groups.group_table(rows, [], task=name).iloc[0]
        assert f"**Accuracy: {groups.with_interval(*overall[['accuracy', 'accuracy_low', 'accuracy_high']])}**" \
            in section
        for grouping in ("#### By race", "#### By gender", "#### By race × gender"):
            assert grouping in section
        cells = groups.group_table(rows, ["race", "gender"], task=name).set_index("group")
        black_female = cells.loc["Black / Female"]
        line = next(li for li in section.splitlines() if li.startswith("| Black | Female |"))
        assert groups.with_interval(*black_female[["accuracy", "accuracy_low", "accuracy_high"]]) in line
        if spec.ordinal:
            assert "within one bin (95% interval)" in section and "**Within one bin:" in section
    assert "## Backbone probes (measured)" in card and "| 86.0% | 59.5% | 49.0% |" in card
    assert "more epochs or a larger input are the route further" in card and "2 CPU cores" in card
    assert "Tasks: gender (Female / Male); race (7 classes" in card and "ImageNet EfficientNet-Lite0" in card
    assert "Race and age prediction exist here only as subjects of the audit" in card


@pytest.mark.parametrize("name", ["face-api", "dlib"])
def test_model_card_of_third_party_gender_models(name):
    card = model_card(load_model(name), read_cache(cache_path_for(name)))
    assert "### Gender" in card and "#### By race × gender" in card and "No training record" in card
    assert "### Race" not in card and "Backbone probes" not in card
