"""The Fairness, Gallery and Classroom pages through Streamlit's AppTest, on the bundled cache."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest
from test_pages import linked_images
from test_task_measures import table_with

from faircam.audit.groups import GROUPINGS, label, size_label
from faircam.config import PROJECT_ROOT, settings
from faircam.evaluation.cache import read_cache, view_column
from faircam.models.checkpoint import read_metadata

# What the Classroom says the model gets: its input's pixels, three numbers each (110,592 at 192 px).
INPUT_NUMBERS = read_metadata(settings().model_path)["input_size"] ** 2 * 3

TIMEOUT = 240


def run(page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.error, *at.warning, *at.info, *at.success])


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="module")
def rows():
    return read_cache(settings().cache_path).rows


# --- Fairness --------------------------------------------------------------------------------


def test_fairness_page_shows_gaps_with_intervals_and_n(rows):
    at = run("pages/4_Fairness.py")
    assert_clean(at)
    assert [t.label for t in at.tabs] == [*GROUPINGS, "Group by…"] == ["race", "gender", "race × gender", "age",
                                                                      "Group by…"]
    # Lazy tabs: only the open tab (race, the first) is computed.
    race = {m.label: m.value for m in at.metric}
    assert list(race) == ["accuracy gap", "equalized odds difference", "demographic parity difference"]
    assert all(v.endswith(" points") for v in race.values()), race
    said = texts(at)
    assert "95% Wilson interval" in said and "95% percentile bootstrap interval" in said
    assert "Across race, accuracy runs from" in said
    # Every race group's row carries its n (in its label) and its accuracy as the cache gives them.
    table = table_with(at, "race").set_index("race")
    for race, part in rows.groupby("race"):
        assert table.loc[size_label(label(race), len(part), False), "accuracy"].startswith(
            f"{part['correct'].mean():.1%} (")
    assert [b.label for b in at.get("download_button")] == ["⬇️ Audit report (HTML)", "⬇️ Per-image rows (CSV)"]
    assert "Caveats" in said

    at.session_state["fairness-grouping"] = "gender"
    at.run()
    assert_clean(at)
    gender = {m.label: m.value for m in at.metric}
    assert gender["accuracy gap"].endswith(" points") and gender["equalized odds difference"] == "not defined"
    ranked = rows.groupby("gender")["correct"].mean().sort_values(ascending=False).index.tolist()
    assert [g.split(" (")[0] for g in table_with(at, "gender")["gender"]] == ranked  # best first


def test_fairness_page_switches_the_rate_shown():
    at = run("pages/4_Fairness.py")
    at.radio(key="rate-race").set_value("fpr").run()
    assert_clean(at)
    assert any("False positive rate" in c.value for c in at.caption)


def test_fairness_page_on_a_cache_too_small_to_rank(monkeypatch, tmp_path, rows):
    from faircam.evaluation.cache import write_cache

    meta = read_cache(settings().cache_path).meta
    tiny = tmp_path / "tiny.parquet"
    write_cache(rows.head(40), tiny, {k: v for k, v in meta.items() if k not in ("schema_version", "rows")})
    monkeypatch.setenv("FAIRCAM_CACHE", str(tiny))
    at = run("pages/4_Fairness.py")
    assert_clean(at)
    assert "Fewer than two groups have 30 or more images" in texts(at)
    assert all(g.endswith("⚠ small") for g in table_with(at, "race")["race"])
    # No group to place on the equalized odds chart: one line says so, no empty 0-400% chart.
    assert "Nothing to draw: Fewer than two groups have 30 or more images" in texts(at)
    assert [c.key for c in at.get("plotly_chart")] == ["bars-race"]


def test_fairness_without_cache_says_how_to_make_one(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRCAM_CACHE", str(tmp_path / "missing.parquet"))
    at = run("pages/4_Fairness.py")
    assert not at.exception
    assert any("No usable evaluation" in e.value for e in at.error)


# --- Gallery ---------------------------------------------------------------------------------


def shown_files(at: AppTest) -> set[str]:
    """The files of the tiles on screen (AppTest lists them column by column, not in reading order)."""
    return {m for c in at.caption for m in re.findall(r"`([^`]+\.jpg)`", c.value)}


def first_page(wrong, ascending: bool, page: int = 1) -> set[str]:
    ordered = wrong.sort_values("prob", ascending=ascending, kind="stable")["file"]
    return set(ordered.iloc[(page - 1) * 24: page * 24])


def test_gallery_shows_mistakes_most_confident_first(rows):
    at = run("pages/7_Gallery.py")
    assert_clean(at)
    wrong = rows[~rows["correct"]]
    assert f"**{len(wrong):,} mistakes** among **{len(rows):,}**" in texts(at)
    assert shown_files(at) == first_page(wrong, ascending=False)
    tiles = [m.value for m in at.markdown if "sure)" in m.value]
    assert len(tiles) == 24 and all(t.startswith("Label **") and "** · model **" in t for t in tiles)
    assert f"({wrong['prob'].max():.0%} sure)" in tiles[0]
    assert sorted(linked_images(at)) == sorted(shown_files(at))  # each face opens on Explore


def test_gallery_filters_sorts_and_pages(rows):
    at = run("pages/7_Gallery.py")
    at.multiselect[0].set_value(["Black"]).run()
    at.multiselect[1].set_value(["Female"]).run()
    at.radio[0].set_value("least confident first").run()
    assert_clean(at)
    cell = rows[(rows["race"] == "Black") & (rows["gender"] == "Female")]
    wrong = cell[~cell["correct"]]
    assert f"**{len(wrong):,} mistakes** among **{len(cell):,}**" in texts(at)
    assert shown_files(at) == first_page(wrong, ascending=True)
    captions = [c.value for c in at.caption if "`val/" in c.value]
    assert captions and all(c.startswith("Black, age") for c in captions)
    assert len(wrong) > 24  # 42 in the bundled cache: a second page
    at.number_input[0].set_value(2).run()
    assert_clean(at)
    assert shown_files(at) == first_page(wrong, ascending=True, page=2)


def test_gallery_without_data_folder_lists_the_mistakes(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRCAM_DATA", str(tmp_path / "nowhere"))
    at = run("pages/7_Gallery.py")
    assert not at.exception
    assert any("FairFace images are not here" in w.value for w in at.warning)
    listed = at.dataframe[0].value
    assert list(listed.columns) == ["file", "race", "age", "label", "model says", "confidence"]
    assert (listed["label"] != listed["model says"]).all()


# --- Classroom -------------------------------------------------------------------------------


def test_classroom_walks_through_one_face(rows):
    at = run("pages/10_Classroom.py")
    assert_clean(at)
    picks = [b for b in at.button if b.label == "This one"]
    assert len(picks) == 6
    picks[0].click().run()
    assert_clean(at)
    # The lesson face is the session's image choice, so Explore opens it too.
    face = rows.set_index("file").loc[at.session_state["picked"]["file"]].to_dict()
    face["file"] = at.session_state["picked"]["file"]
    assert at.session_state["lesson_step"] == 1 and f"{INPUT_NUMBERS:,} numbers" in texts(at)

    def next_step() -> str:
        next(b for b in at.button if b.label == "Next →").click().run()
        assert_clean(at)
        return texts(at)

    said = next_step()
    assert f"The model says **{face['pred']}**" in said and f"said **{face['gender']}**" in said
    said = next_step()  # runs the model on this one face
    assert "of the heat is on the face" in said and len(at.get("imgs")) + len(at.get("image")) >= 1
    said = next_step()
    assert "cut out the face" in said and "of the heat" in said
    found = rows[rows["face_found"].astype(bool)]
    crop_flips = (found[view_column("crop", "pred")] != found["pred"]).mean()
    assert f"cutting out the face alone changed **{crop_flips:.0%}** of the answers" in said
    said = next_step()
    cell = rows[(rows["race"] == face["race"]) & (rows["gender"] == face["gender"])]
    assert f"right **{cell['correct'].mean():.0%}** of the time, out of **{len(cell)}** faces" in said
    said = next_step()
    assert "Gender is not visible in a face" in said
    assert not [b for b in at.button if b.label == "Next →"]  # the last step

    next(b for b in at.button if b.label == "← Back").click().run()
    assert at.session_state["lesson_step"] == 5
    next(b for b in at.button if b.label == "Start again").click().run()
    assert at.session_state["lesson_step"] == 0 and not at.exception


def test_classroom_offers_a_fresh_set_of_faces():
    at = run("pages/10_Classroom.py")
    shown = [b.key for b in at.button if b.label == "This one"]
    next(b for b in at.button if b.label == "🔀 Other faces").click().run()
    assert_clean(at)
    fresh = [b.key for b in at.button if b.label == "This one"]
    assert len(fresh) == 6 and set(fresh) != set(shown)


def test_classroom_walks_through_the_class_own_photo(fairface):
    at = run("pages/10_Classroom.py")
    # What the uploader's callback does with the class's photo (AppTest cannot drive an uploader).
    at.session_state["image_upload"] = (fairface / "val/26.jpg").read_bytes()
    at.session_state["image_source"] = "Upload a photo"
    at.session_state["lesson_step"] = 1
    at.run()
    assert_clean(at)
    assert f"{INPUT_NUMBERS:,} numbers" in texts(at)
    said = []
    for _ in range(5):
        next(b for b in at.button if b.label == "Next →").click().run()
        assert_clean(at)
        said.append(texts(at))
    assert "The model says **" in said[0] and "Nobody labelled your photo" in said[0]
    assert "focus score" in said[1] and "chance level" in said[1]
    assert "cut out the face" in said[2]
    assert "belongs to no group" in said[3] and "The worst:" in said[3]
    assert "Gender is not visible in a face" in said[4]


def test_classroom_without_data_folder_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRCAM_DATA", str(tmp_path / "nowhere"))
    at = run("pages/10_Classroom.py")
    assert not at.exception
    assert any("FairFace images are not here" in w.value for w in at.warning)


def test_classroom_tells_the_selected_models_facts():
    at = run("pages/10_Classroom.py")
    at.sidebar.selectbox[0].set_value("dlib").run()
    assert_clean(at)
    assert "from many example photos" in texts(at) and "20,000" not in texts(at)
    next(b for b in at.button if b.label == "This one").click().run()
    assert_clean(at)
    said = texts(at)
    assert "**32 × 32 dots**" in said and "**3,072 numbers**" in said and "160" not in said


def test_classroom_face_is_the_one_explore_opens():
    at = run("pages/10_Classroom.py")
    next(b for b in at.button if b.label == "This one").click().run()
    face = at.session_state["picked"]
    at.switch_page("pages/1_Explore.py").run()
    assert_clean(at)
    verdict = next(m.value for m in at.markdown if "The model says" in m.value)
    assert f"FairFace label: {face['gender']}" in verdict and at.session_state["picked"] == face
