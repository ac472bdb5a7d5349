"""The one-face pages for every task (issue #15): Explore shows every answer of the model and explains any class
of the task chosen in the sidebar; Inside, Compare and the Classroom follow the task or say they do not.

Run on the multi-task checkpoint trained in the test session (`multitask_model`) and on the bundled model, whatever
tasks it has, with real FairFace faces.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from test_task_measures import shown_tables, table_with

from faircam import wording
from faircam.audit import groups
from faircam.config import PROJECT_ROOT
from faircam.data.images import read_image
from faircam.tasks import TASKS
from faircam.text import md
from faircam.vision.cams import METHODS

TIMEOUT = 300
FACE = "val/26.jpg"


def run(page: str, model: str | None = None, task: str | None = None, image: str | None = FACE) -> AppTest:
    """A page as a browser opens it, with the model and task chosen in the sidebar and `image` linked."""
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(page)
    if model is not None:
        at.session_state["faircam_model"] = model
    if task is not None:
        at.session_state["faircam_task"] = task
    if image is not None:
        at.query_params["image"] = image
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.caption, *at.error, *at.warning, *at.info])


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def target_selector(at: AppTest):
    return next(s for s in at.selectbox if "class the maps explain" in s.label)


def map_urls(at: AppTest) -> list[str]:
    """The overlays' images (each stored by its content's hash: other pixels, another URL)."""
    return [url for image in at.get("image") for url, caption in zip(image.value, image.captions)
            if wording.FOCUS_SCORE in caption]


def shares(at: AppTest):
    (table,) = shown_tables(at)
    return table


@pytest.fixture(scope="module")
def multitask_pipeline(multitask_files):
    from faircam.vision.explain import Pipeline

    return Pipeline.load(multitask_files["checkpoint"])


@pytest.mark.parametrize("task", ["gender", "race", "age"])
def test_explore_shows_every_answer_and_explains_any_class(multitask_model, multitask_pipeline, fairface, task):
    at = run("pages/1_Explore.py", multitask_model, task)
    assert_clean(at)
    image = read_image(fairface / FACE)
    expected = multitask_pipeline.explain(image, task=task)
    said = texts(at)
    # Every task's answer, whichever task is chosen, and why race and age are shown.
    for name, probs in expected.answers.items():
        best = max(probs, key=probs.get)
        assert f"**{TASKS[name].title.capitalize()}**  \n**{md(groups.label(best))}** {probs[best]:.0%}" in said
    assert "subjects of the audit" in said
    # The headline is the chosen task's answer, against FairFace's label of that task.
    truth = at.session_state["picked"][task]
    verdict = next(m.value for m in at.markdown if "the model says" in m.value.lower())
    assert f"**{md(groups.label(expected.label))}** ({expected.probability:.0%} sure)" in verdict
    assert f"FairFace label: {md(groups.label(truth))}" in verdict
    if task != "gender":
        assert verdict.startswith(f"### {TASKS[task].title.capitalize()}: the model says")
    # By default the maps explain the model's answer: the page's focus scores are those of Pipeline.explain.
    selector = target_selector(at)
    assert selector.value == expected.label and len(selector.options) == len(TASKS[task].classes)
    assert f"The maps explain **{md(groups.label(expected.label))}** (the model's answer)." in texts(at)
    for method, focus in expected.focus.items():
        assert shares(at).loc[method, wording.FACE_COLUMN] == pytest.approx(focus["face"], abs=1e-6)
    before = map_urls(at)
    assert len(before) == len(expected.maps)

    # Another class: the maps, the words and the scores change to that class's.
    other = next(c for c in TASKS[task].classes if c != expected.label)
    selector.set_value(other).run()
    assert_clean(at)
    asked = multitask_pipeline.explain(image, task=task, target=other)
    assert asked.target == other and asked.label == expected.label
    assert (f"The maps explain **{md(groups.label(other))}** (not the model's answer: it says "
            f"{md(groups.label(expected.label))}") in texts(at)
    for method, focus in asked.focus.items():
        assert shares(at).loc[method, wording.FACE_COLUMN] == pytest.approx(focus["face"], abs=1e-6)
    after = map_urls(at)
    assert len(after) == len(before) and not set(after) & set(before)
    # The headline still gives the model's answer.
    assert f"**{md(groups.label(expected.label))}** ({expected.probability:.0%} sure)" in next(
        m.value for m in at.markdown if "the model says" in m.value.lower())

    # The raw maps beside their overlays, and the colour bar that reads them.
    at.toggle(key="_explore_raw").set_value(True).run()
    assert_clean(at)
    captions = [c for image in at.get("image") for c in image.captions]
    assert [c for c in captions if c.endswith(": the map alone")] == [f"{m}: the map alone" for m in asked.maps]
    assert "**Blue**: little or no weight toward" in texts(at)


def test_explore_target_is_kept_per_image_and_task(multitask_model):
    at = run("pages/1_Explore.py", multitask_model, "race")
    predicted = target_selector(at).value
    other = next(c for c in TASKS["race"].classes if c != predicted)
    target_selector(at).set_value(other).run()
    # Another task starts at its own answer; coming back finds the class chosen before.
    at.session_state["faircam_task"] = "age"
    at.run()
    assert_clean(at)
    assert target_selector(at).value in TASKS["age"].classes
    assert "(the model's answer)." in texts(at)
    at.session_state["faircam_task"] = "race"
    at.run()
    assert target_selector(at).value == other


def test_bundled_model_offers_its_own_tasks_and_explore_works():
    from faircam.config import settings
    from faircam.models.checkpoint import read_metadata

    tasks = list(read_metadata(settings().model_path).get("tasks") or {"gender": None})
    at = run("pages/1_Explore.py")
    assert_clean(at)
    task_box = next(s for s in at.sidebar.selectbox if s.label == "Task")
    assert task_box.options == [TASKS[t].title for t in TASKS if t in tasks]
    assert "The model says **" in texts(at)
    selector = target_selector(at)
    assert selector.options[[*TASKS["gender"].classes].index(selector.value)].endswith("(the model's answer)")
    other = next(c for c in TASKS["gender"].classes if c != selector.value)
    selector.set_value(other).run()
    assert_clean(at)
    assert f"The maps explain **{other}** (not the model's answer" in texts(at)
    if len(tasks) == 1:
        assert "All of the model's answers" not in texts(at)


def test_inside_gives_the_chosen_tasks_answer(multitask_model, multitask_pipeline, fairface):
    at = run("pages/8_Inside.py", multitask_model, "age")
    assert_clean(at)
    expected = multitask_pipeline.explain(read_image(fairface / FACE), task="age")
    assert (f"### Age group: the model says **{md(groups.label(expected.label))}** "
            f"({expected.probability:.0%} sure)") in texts(at)


def test_compare_shows_the_task_for_models_that_have_it(multitask_model, multitask_pipeline, fairface):
    at = run("pages/9_Compare.py", multitask_model, "race")
    at.multiselect[0].set_value([multitask_model, "dlib", "face-api"]).run()
    assert_clean(at)
    expected = multitask_pipeline.explain(read_image(fairface / FACE), task="race")
    said = texts(at)
    assert f"#### {multitask_model} says **{md(groups.label(expected.label))}**" in said
    assert "**dlib** predicts gender only: it has no race answer or maps." in said
    assert f"**{md('face-api')}** predicts gender only" in said
    assert list(table_with(at, list(METHODS)[0]).index) == [multitask_model]  # focus scores of the maps shown
    assert f"Left out: {md('dlib, face-api')}, whose evaluation holds no race predictions." in said


def test_classroom_says_it_covers_gender_only(multitask_model):
    at = run("pages/10_Classroom.py", multitask_model, "race", image=None)
    assert_clean(at)
    assert any("follows the model's **gender** answer only" in i.value for i in at.info)
