"""The Attention, Faithfulness and Inside pages through Streamlit's AppTest, on a cache made here.

The cache is a real `faircam evaluate` run over the first 72 val images (40 men, 32 women: both
genders reach MIN_GROUP_SIZE, so the pages make a comparison), with faithfulness scored on two
images per race x gender cell. A second cache without the
counterfactual, faithfulness and agreement columns checks that the pages then say how to get them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_pages import TIMEOUT, assert_clean, linked_images, texts
from test_task_measures import shown_tables

from faircam.audit import explanations as audit
from faircam.audit.groups import size_label
from faircam.config import MIN_GROUP_SIZE, PROJECT_ROOT
from faircam.evaluation.cache import group_averages, read_cache, write_cache
from faircam.models import registry

LIMIT = 72
V2_PREFIXES = ("crop: ", "blur: ", "agree | ")
V2_SUFFIXES = (" | road", " | deletion", " | insertion")


@pytest.fixture(scope="module")
def cache_path(pipeline, fairface, tmp_path_factory) -> Path:
    from faircam.evaluation.evaluate import EvalOptions, run_evaluation

    out = tmp_path_factory.mktemp("audit-pages") / "eval_val.parquet"
    # Two faithfulness images per race x gender cell keep the run short (and under MIN_GROUP_SIZE).
    run_evaluation(fairface, "val", out, pipeline.model, pipeline.detector, limit=LIMIT, progress=False,
                   options=EvalOptions(faithfulness_per_cell=2))
    return out


@pytest.fixture(scope="module")
def bare_cache_path(cache_path) -> Path:
    """The same evaluation without the counterfactual views, faithfulness scores and agreement."""
    cache = read_cache(cache_path)
    rows = cache.rows[[c for c in cache.rows.columns
                       if not c.startswith(V2_PREFIXES) and not c.endswith(V2_SUFFIXES) and c != "faith_sampled"]]
    out = cache_path.with_name("bare.parquet")
    write_cache(rows, out, {k: v for k, v in cache.meta.items() if k not in ("faithfulness", "checksum")})
    return out


def open_page(page: str, monkeypatch, cache: Path) -> AppTest:
    monkeypatch.setenv("FAIRCAM_CACHE", str(cache))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    return at.run()


def test_attention_parity_answers_the_mouth_question(monkeypatch, cache_path):
    at = open_page("pages/5_Attention.py", monkeypatch, cache_path)
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    # A gender-only model's maps explain the one task there is: no line about which decision they explain.
    assert not any("The cached maps explain" in i.value for i in at.info)
    # race x gender: every cell of 72 images is under MIN_GROUP_SIZE, so nothing is ranked.
    assert any("Fewer than two groups" in i.value for i in at.info)
    at.radio[0].set_value("gender").run()
    assert_clean(at)
    said = texts(at)
    assert "Does Grad-CAM look at the mouth more for some groups (all images)?" in said
    assert "The share of heat on the mouth ranges from" in said and "n=40" in said and "n=32" in said
    assert "The region whose share differs most across groups is" in said
    heatmap = at.get("plotly_chart")[0].proto.spec
    assert "Female (n=32)" in heatmap and "Male (n=40)" in heatmap

    at.selectbox[0].set_value("LayerCAM").run()
    at.radio[1].set_value("wrong").run()
    assert_clean(at)
    # Few wrong predictions among 72 images: no group is large enough, which the page says.
    assert "Does LayerCAM look at the mouth more" in texts(at)
    assert any("Fewer than two groups" in i.value for i in at.info)


def test_attention_counterfactuals_and_average_maps(monkeypatch, cache_path):
    cache = read_cache(cache_path)
    at = open_page("pages/5_Attention.py", monkeypatch, cache_path)
    assert_clean(at)
    infos = [i.value for i in at.info]
    if audit.has_views(cache.rows):
        labels = [m.label for m in at.metric]
        assert labels == ["Flip rate, raw → crop", "Flip rate, raw → blur", "Accuracy, crop", "Accuracy, blur"]
        assert all(m.value.endswith("%") for m in at.metric)
        flips = [*audit.flipped(cache.rows, "crop")["file"], *audit.flipped(cache.rows, "blur")["file"]]
        assert flips and linked_images(at) == flips  # the flipped faces open on Explore
        # The numbers as people read them, narrow enough for a projector (they were 20 columns of raw names and
        # bounds that scrolled sideways at 800 px): each group with its n, each measure and its interval in one cell.
        first, second = [t for t in shown_tables(at) if list(t.columns)[:2] == ["group", "view"]]
        assert first[["group", "view"]].equals(second[["group", "view"]])
        assert len(first.columns) + len(second.columns) - 2 == 7
        assert first["group"].str.contains(r"\(n=").all() and set(first["view"]) == set(audit.COUNTERFACTUAL_VIEWS)
        flip = first["flip rate (95% Wilson interval)"]
        assert flip.str.fullmatch(r"\d+\.\d% \(\d+\.\d%–\d+\.\d%\): [\d,]+ of [\d,]+").all(), flip.tolist()
        focus = second["change of the focus score (95% t interval)"]
        assert focus.str.fullmatch(r"–|[+-]\d+\.\d points( \([+-]\d+\.\d to [+-]\d+\.\d\))?").all(), focus.tolist()
    else:
        assert any("no counterfactual data" in i for i in infos)
    averages = group_averages(cache)
    if averages.empty:
        assert any("no group average maps" in i for i in infos)
    else:
        shown = averages[averages["outcome"] == "correct"]
        assert len(at.get("image")) >= 2 * len(shown)  # the average face and its overlay per cell
        captions = [c for image in at.get("image") for c in image.captions]
        first = shown.iloc[0]
        assert any(c.startswith(size_label(first["gender"], first["n"], first["n"] < MIN_GROUP_SIZE)) for c in captions)


def test_pages_without_v2_data_say_how_to_get_it(monkeypatch, bare_cache_path):
    at = open_page("pages/5_Attention.py", monkeypatch, bare_cache_path)
    assert_clean(at)
    assert any("no counterfactual data" in i.value for i in at.info)
    assert "Where the maps fall" in texts(at)  # the raw focus scores are still compared
    at = open_page("pages/6_Faithfulness.py", monkeypatch, bare_cache_path)
    assert_clean(at)
    infos = " ".join(i.value for i in at.info)
    assert "no faithfulness data" in infos and "no method agreement data" in infos and "faircam evaluate" in infos


def test_faithfulness_page(monkeypatch, cache_path):
    cache = read_cache(cache_path)
    at = open_page("pages/6_Faithfulness.py", monkeypatch, cache_path)
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    said = texts(at)
    assert not any("The cached maps explain" in i.value for i in at.info)
    if audit.has_faithfulness(cache.rows):
        n = int(cache.rows["faith_sampled"].sum())
        assert f"Scored on a balanced sample of **{n:,}**" in said
        best = [m.value for m in at.markdown if "the most faithful by" in m.value]  # "is" or "tie for"
        assert len(best) == 3 and all(any(method in b for method in cache.methods) for b in best)
        if n < MIN_GROUP_SIZE:
            assert any("too few for firm conclusions" in w.value for w in at.warning)
        # The numbers behind the charts, as people read them: groups by name with their n, one cell per mean and
        # its interval (the table used to show Latino_Hispanic, the group twice, and True for a small group).
        (numbers,) = [t for t in shown_tables(at) if "score" in t.columns]
        assert list(numbers.columns) == ["group", "score", "method", "mean (95% t interval)"]
        assert not numbers["group"].str.contains("_").any() and numbers["group"].str.contains(r"\(n=").all()
        assert numbers["score"].isin([s.title for s in audit.FAITHFULNESS.values()]).all()
        assert numbers["mean (95% t interval)"].str.fullmatch(r"–|-?\d\.\d{3} \(-?\d\.\d{3}–-?\d\.\d{3}\)").all()
        at.radio[1].set_value("deletion").run()
        assert_clean(at)
    else:
        assert "no faithfulness data" in " ".join(i.value for i in at.info)
    if audit.has_agreement(cache.rows):
        worst = audit.least_agreement(cache.rows, cache.methods, 8)
        captions = " ".join(c.value for c in at.caption)
        assert all(f"`{f}`" in captions for f in worst["file"])
        assert sorted(linked_images(at)) == sorted(worst["file"])  # each opens on Explore
        assert len(at.get("image")) >= 8  # thumbnails read from the FairFace folder
    else:
        assert "no method agreement data" in " ".join(i.value for i in at.info)


def picks(at: AppTest) -> list:
    """The FairFace picker's thumbnail buttons (the shared image source)."""
    return [b for b in at.button if b.key and b.key.startswith("pick")]


def stages(at: AppTest):
    return next(m for m in at.multiselect if m.label == "Stages")


def test_inside_shows_stages_and_filters(monkeypatch, cache_path):
    at = open_page("pages/8_Inside.py", monkeypatch, cache_path)
    assert_clean(at)
    assert "The model says" not in texts(at) and "The 32 filters of the first convolution" in texts(at)
    picks(at)[0].click().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    said = texts(at)
    assert "The model says" in said and "18 stages" in said
    stage_titles = [m.value for m in at.markdown if "channels of" in m.value]
    s = [registry.load_model(None).input_size // d for d in (2, 4, 8, 16, 32)]  # 96 to 6 px at 192
    names = [("stem", 32, 0), ("stage 1", 16, 0), ("stage 3", 24, 1), ("stage 5", 40, 2), ("stage 11", 112, 3),
             ("CAM layer", 1280, 4)]
    assert stage_titles == [f"**{name}** · {c} channels of {s[i]}×{s[i]}" for name, c, i in names]
    assert "The 32 filters of the first convolution" in said
    stages(at).set_value(["CAM layer"]).run()
    cam_layer = f"**CAM layer** · 1280 channels of {s[4]}×{s[4]}"
    assert [m.value for m in at.markdown if "channels of" in m.value] == [cam_layer]
    picked = at.session_state["picked"]
    at.toggle[0].set_value(True).run()  # crop: the same face, another view
    assert_clean(at)
    assert "The model says" in texts(at) and at.session_state["picked"] == picked


def test_inside_upload_and_not_a_photo(monkeypatch, cache_path, fairface):
    at = open_page("pages/8_Inside.py", monkeypatch, cache_path)
    at.radio[0].set_value("Upload a photo").run()
    at.get("file_uploader")[0].set_value(("face.jpg", (fairface / "val" / "3.jpg").read_bytes(), "image/jpeg")).run()
    assert_clean(at)
    assert "The model says" in texts(at)
    at.get("file_uploader")[0].set_value(("notes.png", b"this is not a picture", "image/png")).run()
    assert_clean(at)
    assert any("This image cannot be used" in e.value for e in at.error)
