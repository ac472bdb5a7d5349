"""The Classroom lesson's rules (faircam.audit.classroom): which faces it offers, how it words attention and
confidence, and what it says about the selected model, on the bundled cache and on hand-built rows."""

from __future__ import annotations

import pandas as pd
import pytest

from faircam.audit import classroom
from faircam.config import settings
from faircam.evaluation.cache import read_cache
from faircam.models import registry
from faircam.models.checkpoint import read_metadata
from faircam.vision.focus import REGIONS

# Every face on disk.
ANY = {"exists": lambda file: True}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return read_cache(settings().cache_path).rows


def row(file, gender, pred, prob, age="30-39", face_found=True):
    return {"file": file, "race": "White", "gender": gender, "age": age, "pred": pred, "prob": prob,
            "correct": gender == pred, "face_found": face_found}


HAND_BUILT = pd.DataFrame([
    row("sure-right-f", "Female", "Female", 0.99), row("right-f", "Female", "Female", 0.80),
    row("sure-right-m", "Male", "Male", 0.97), row("sure-wrong-f", "Female", "Male", 0.95),
    row("wrong-f", "Female", "Male", 0.70), row("sure-wrong-m", "Male", "Female", 0.90),
    row("hesitant", "Male", "Male", 0.51), row("child", "Male", "Male", 0.99, age="3-9"),
    row("older-child", "Male", "Female", 0.99, age="10-19"), row("no-face", "Male", "Female", 1.0, face_found=False),
])


def test_examples_pick_one_face_of_each_kind():
    picked = classroom.examples(HAND_BUILT, **ANY)
    assert set(picked["file"]) == {"sure-right-f", "sure-right-m", "sure-wrong-f", "sure-wrong-m", "hesitant",
                                   "child"}
    # The order is shuffled once and for all: right and wrong are not told apart by position.
    assert list(picked["file"]) == list(classroom.examples(HAND_BUILT, **ANY)["file"])
    assert list(picked["file"]) != list(HAND_BUILT["file"].head(6))


def test_a_fresh_set_has_the_same_kinds_of_faces(rows):
    first = classroom.examples(rows, **ANY)
    fresh = [classroom.examples(rows, **ANY, draw=draw) for draw in (1, 2)]
    for picked in fresh:
        assert len(picked) == 6 and picked["face_found"].all()
        adults = picked[~picked["age"].isin(classroom.CHILD_AGES)]
        # Balanced: a sure right answer and a wrong one for each gender, a hesitant adult and a child.
        assert sorted(adults[adults["correct"] & (adults["prob"] > classroom.SURE)]["gender"]) == ["Female", "Male"]
        assert set(adults[~adults["correct"]]["gender"]) == {"Female", "Male"}  # the hesitant one may be wrong too
        assert ((adults["prob"] - 0.5).abs() < classroom.HESITANT).any()
        assert (picked["age"] == "3-9").sum() == 1
    # Fresh on request, and the same set again for the same draw.
    assert set(fresh[0]["file"]) != set(first["file"]) and set(fresh[0]["file"]) != set(fresh[1]["file"])
    assert list(fresh[0]["file"]) == list(classroom.examples(rows, **ANY, draw=1)["file"])


def test_examples_skip_images_that_are_not_on_disk():
    picked = classroom.examples(HAND_BUILT, exists=lambda file: file != "sure-wrong-f")
    assert "sure-wrong-f" not in set(picked["file"]) and "wrong-f" in set(picked["file"])


def test_examples_skip_faces_turned_away():
    # Where the cache measured head turns: a profile (and a face without a measure) is never offered.
    turned = HAND_BUILT.assign(quality_yaw=[40.0 if f == "sure-right-f" else float("nan") if f == "sure-right-m"
                                            else -5.0 for f in HAND_BUILT["file"]])
    picked = classroom.examples(turned, **ANY)
    assert not {"sure-right-f", "sure-right-m"} & set(picked["file"]) and "right-f" in set(picked["file"])


def test_examples_on_the_bundled_cache(rows):
    picked = classroom.examples(rows, **ANY)
    assert len(picked) == 6 and picked["face_found"].all()
    adults = picked[~picked["age"].isin(classroom.CHILD_AGES)]
    # A wrong answer per gender (the hesitant adult may be a third).
    hesitant = adults.loc[(adults["prob"] - 0.5).abs().idxmin()]
    wrong = adults[~adults["correct"] & (adults["file"] != hesitant["file"])]
    assert sorted(wrong["gender"]) == ["Female", "Male"]
    assert (picked["age"] == "3-9").sum() == 1
    surest_wrong = rows[rows["face_found"] & ~rows["correct"] & ~rows["age"].isin(classroom.CHILD_AGES)]
    assert surest_wrong["prob"].max() in set(picked["prob"])


@pytest.mark.parametrize(("face", "chance", "level"), [(0.60, 0.40, "clear"), (0.50, 0.40, "slight"),
                                                       (0.44, 0.40, "none"), (0.20, 0.40, "none")])
def test_attention_level_thresholds(face, chance, level):
    assert classroom.attention_level({"face": face}, {"face": chance}) == level


def test_most_looked_at_is_heat_for_its_size():
    focus = dict.fromkeys(REGIONS, 0.1) | {"mouth": 0.2, "rest of face": 0.3}
    chance = dict.fromkeys(REGIONS, 0.1) | {"mouth": 0.05, "rest of face": 0.3}
    assert classroom.most_looked_at(focus, chance) == "mouth"  # 4x its area, though less heat than the rest


def test_confidence_rules():
    assert classroom.is_sure(0.95) and not classroom.is_sure(0.9)
    assert classroom.lost_confidence(0.95, 0.80) and not classroom.lost_confidence(0.95, 0.90)


def test_model_facts_come_from_each_models_description():
    entries = registry.entries()
    own = classroom.model_facts(entries["faircam"], read_metadata(entries["faircam"].weights))
    trained = read_metadata(entries["faircam"].weights)["info"]["training"]["train_images"]
    size = read_metadata(entries["faircam"].weights)["input_size"]
    assert own == classroom.ModelFacts(input_size=size, train_images=trained) and trained >= 20_000
    # The registry's words read the checkpoint too: a model retrained at another size is described at its size.
    assert size == 192 and entries["faircam"].input.startswith(f"{size}×{size} RGB")
    assert classroom.model_facts(entries["dlib"], {}) == classroom.ModelFacts(input_size=32, train_images=None)
    assert classroom.model_facts(entries["face-api"], {}).input_size == 112


def test_registry_input_size_is_the_loaded_models():
    # One source: the third-party loaders take their input size from the registry entry.
    assert registry.load_model("dlib").input_size == registry.entries()["dlib"].input_size
