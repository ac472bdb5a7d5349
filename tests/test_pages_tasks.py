"""Every page for every task: the app through Streamlit's AppTest with the multi-task checkpoint (gender, race
and age), with the bundled model for each of its tasks and with a gender-only one (dlib), a FairFace face
picked, and the task-aware pages' numbers (Gallery's confusions, Attention's splits, Faithfulness's answers)
checked against the cache rows.

The walk's checks are generic (no exception, no error box, the page drew its title, the picked face is shown)
so that they hold whatever each page says; the Gallery, Attention and Faithfulness checks are this round's.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import pytest
from streamlit.testing.v1 import AppTest

from faircam.audit import explanations as audit
from faircam.audit.groups import label
from faircam.config import PROJECT_ROOT
from faircam.dashboard import image_source
from faircam.evaluation.cache import read_cache, view_column
from faircam.tasks import TASKS

# Generous: the machine is small and shared, and the first face through a model waits for it to load.
TIMEOUT = 600
IMAGE = "val/5.jpg"  # among the multi-task cache's 42 images, as every FairFace val image is in the bundled one
# In the menu's order, so the Classroom (10) comes after Explore (1) has picked the face.
PAGES = ["app.py", *sorted((str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "pages").glob("*.py")),
                           key=lambda page: int(re.match(r"pages/(\d+)_", page)[1]))]
# Pages that show one face: opened with a link to IMAGE (`?image=`), which makes it the session's face.
LINKED = ("Explore", "Inside", "Compare")


def app(model: str | None, task: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    if model is not None:
        at.session_state["faircam_model"] = model
    at.session_state["faircam_task"] = task
    return at


def problems(at: AppTest) -> list[str]:
    return [f"exception: {e.value}" for e in at.exception] + [f"error: {e.value}" for e in at.error]


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.warning, *at.info, *at.success])


def explore_links(at: AppTest) -> list[str]:
    links = [link.proto for link in at.get("page_link") if link.proto.page == "Explore"]
    return [parse_qs(link.query_string)["image"][0] for link in links if link.query_string]


def walk_classroom(at: AppTest, said: list[str]) -> None:
    """Through the lesson as a pupil goes: pick a face, then Next to the last step."""
    ones = [b for b in at.button if b.label == "This one"]
    if ones:
        ones[0].click().run()
        said += problems(at)
    for _ in range(10):
        forward = [b for b in at.button if b.label.startswith("Next")]
        if not forward or said:
            return
        forward[0].click().run()
        said += problems(at)


@pytest.mark.parametrize("task", ["gender", "race", "age"])
def test_every_page_for_every_task_of_a_multitask_model(multitask_model, task):
    walk(app(multitask_model, task), task)


def test_every_page_for_every_task_of_the_bundled_model_and_a_gender_only_one():
    from faircam.config import settings
    from faircam.models.checkpoint import read_metadata

    for task in read_metadata(settings().model_path).get("tasks") or ["gender"]:
        walk(app(None, task), task)
    walk(app("dlib", "gender"), "gender")


def walk(at: AppTest, task: str) -> None:
    found: dict[str, list[str]] = {}
    for page in PAGES:
        if page != "app.py":
            at.switch_page(page)
        linked = any(page.endswith(f"_{name}.py") for name in LINKED)
        if linked:
            at.query_params["image"] = IMAGE
        at.run()
        said = problems(at)
        if not said:
            if not at.title:
                said.append("no title")
            picked = at.session_state[image_source.PICKED] if image_source.PICKED in at.session_state else {}
            if linked and (picked.get("file") != IMAGE or not at.get("image")):
                said.append(f"{IMAGE} not shown")
            if page.endswith("_Classroom.py"):
                walk_classroom(at, said)
        if said:
            found[page] = said
    assert not found, found
    assert at.session_state["faircam_task"] == task


def cache_rows(multitask_files):
    return read_cache(multitask_files["caches"] / "eval_val-multitask.parquet").rows


def page_saying_which_maps(multitask_model, task: str, page: str) -> AppTest:
    """`page` opened for `task` of the multi-task model, with no problem and its note that the cached maps
    explain the gender decisions, not the task's."""
    at = app(multitask_model, task)
    at.switch_page(page).run()
    assert not problems(at), problems(at)
    title = TASKS[task].title
    assert any("explain the model's gender decisions" in i.value and title in i.value for i in at.info)
    return at


CONFUSION = re.compile(r"^(.+) called (.+) \(([\d,]+)\)$")


def test_gallery_lists_the_tasks_confusions_and_their_faces(multitask_model, multitask_files):
    rows = cache_rows(multitask_files)
    truth, pred, prob = "race", TASKS["race"].pred, TASKS["race"].prob
    wrong = rows[rows[truth] != rows[pred]]
    expected = {f"{label(t)} called {label(p)}": n for (t, p), n in wrong.groupby([truth, pred]).size().items()}
    at = app(multitask_model, "race")
    at.switch_page("pages/7_Gallery.py").run()
    assert not problems(at), problems(at)
    show = next(s for s in at.selectbox if s.label == "Show")
    options = list(show.options)
    assert options[0] == f"every mistake ({len(wrong)})"
    assert options[-1] == f"every correct answer ({len(rows) - len(wrong)})"
    listed = {m[1] + " called " + m[2]: int(m[3]) for m in map(CONFUSION.match, options[1:-1])}
    assert len(listed) == len(options) - 2 and listed  # 42 images of a model one epoch old make mistakes
    # Real confusions with their counts, the most frequent first, none more frequent left out.
    assert all(expected[name] == n for name, n in listed.items())
    counts = list(listed.values())
    assert counts == sorted(counts, reverse=True)
    assert min(counts) >= max((n for name, n in expected.items() if name not in listed), default=0)
    assert f"**{len(wrong):,} mistakes** among **{len(rows):,}**" in texts(at)

    first = options[1]
    show.select_index(1).run()  # the most frequent kind of mistake
    assert not problems(at), problems(at)
    name = first.rsplit(" (", 1)[0]
    kind = wrong[[f"{label(t)} called {label(p)}" == name for t, p in zip(wrong[truth], wrong[pred])]]
    tiles = [m.value for m in at.markdown if "sure)" in m.value]
    true_class, predicted = name.split(" called ")
    assert len(tiles) == len(kind) and all(f"Label **{true_class}** · model **{predicted}**" in t for t in tiles)
    assert f"({kind[prob].max():.0%} sure)" in tiles[0]  # most confident first
    # Every thumbnail opens its face on Explore.
    assert sorted(explore_links(at)) == sorted(kind["file"]) and len(at.get("image")) == len(kind)

    next(s for s in at.selectbox if s.label == "Show").select_index(len(options) - 1).run()  # the correct answers
    assert not problems(at), problems(at)
    right = [m.value for m in at.markdown if "sure)" in m.value]
    assert right and all(re.match(r"Label \*\*(.+)\*\* · model \*\*\1\*\*", t) for t in right)


def test_attention_splits_by_the_selected_tasks_answers(multitask_model, multitask_files):
    rows = cache_rows(multitask_files)
    at = page_saying_which_maps(multitask_model, "race", "pages/5_Attention.py")
    at.radio[0].set_value("gender").run()
    at.radio[1].set_value("wrong").run()
    assert not problems(at), problems(at)
    # Correct and wrong are the race answers': each gender's n counts its faces whose race the model got wrong.
    heatmap = at.get("plotly_chart")[0].proto.spec
    wrong = rows[~rows[TASKS["race"].correct].astype(bool)]
    for gender, n in wrong.groupby("gender").size().items():
        assert f"{gender} (n={n:,})" in heatmap
    assert "wrong race predictions" in texts(at)
    # The faces whose race answer cropping or blurring flips, surest first, each linked to Explore.
    flips = [*audit.flipped(rows, "crop", task="race")["file"], *audit.flipped(rows, "blur", task="race")["file"]]
    assert explore_links(at) == flips
    faces = rows[rows["face_found"].astype(bool)]
    crop = next(m for m in at.metric if m.label == "Flip rate, raw → crop")
    flipped = (faces[view_column("crop", "race_pred")] != faces["race_pred"]).mean()
    assert crop.value == f"{flipped:.1%}"


def test_faithfulness_names_both_answers(multitask_model, multitask_files):
    rows = cache_rows(multitask_files)
    at = page_saying_which_maps(multitask_model, "age", "pages/6_Faithfulness.py")
    worst = audit.least_agreement(rows, read_cache(multitask_files["caches"] / "eval_val-multitask.parquet").methods,
                                  8, tasks=("gender", "age"))
    captions = {c.value for c in at.caption if "agreement" in c.value and "`val/" in c.value}
    for _, image in worst.iterrows():
        age = label(image["age_pred"]).replace("-", "\\-")
        mark = "✅" if image["age_correct"] else "❌"
        assert any(f"`{image['file']}`" in c and f"age group predicted {age} {mark}" in c for c in captions)
