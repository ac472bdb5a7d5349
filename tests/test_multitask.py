"""A multi-task model (gender, race, age) through `faircam train`, `evaluate` and `explain`, on real images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faircam.cli import main
from faircam.evaluation.cache import focus_column, read_cache, view_column
from faircam.models.model import build_model, load_checkpoint, task_slices
from faircam.tasks import TASKS as SPECS
from faircam.tasks import task_classes
from faircam.vision.cams import METHODS

TASK_CLASSES = task_classes()

TASKS = ("gender", "race", "age")


def test_training_reports_and_records_every_task(multitask_files):
    summary = multitask_files["train"]
    assert {"best_val_accuracy", "best_val_race_accuracy", "best_val_age_accuracy"} <= set(summary)
    model = load_checkpoint(multitask_files["checkpoint"])
    assert tuple(model.tasks) == TASKS and all(model.tasks[t] == TASK_CLASSES[t] for t in TASKS)
    metrics = model.info["metrics"]
    assert set(metrics["tasks"]) == set(TASKS)
    assert summary["best_val_race_accuracy"] == metrics["tasks"]["race"]["accuracy"]
    # One linear layer holds every head: 2 + 7 + 9 outputs, stored in half precision.
    payload = torch.load(multitask_files["checkpoint"], weights_only=True)
    assert payload["state_dict"]["classifier.3.weight"].shape[0] == 18
    assert payload["state_dict"]["classifier.3.weight"].dtype == torch.float16


def test_every_task_from_one_pass(multitask_files, sample_images):
    model = load_checkpoint(multitask_files["checkpoint"])
    images = [np.asarray(torch.nn.functional.interpolate(torch.from_numpy(i).permute(2, 0, 1)[None].float(),
                                                         size=160).round()[0].permute(1, 2, 0).byte())
              for i in sample_images]
    probs = model.predict_all(images)
    assert {t: p.shape for t, p in probs.items()} == {t: (3, len(TASK_CLASSES[t])) for t in TASKS}
    for task in TASKS:
        np.testing.assert_allclose(probs[task].sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(model.for_task(task).predict_proba(images), probs[task], atol=1e-6)
        # The task's head is the network's logits for that task, as the CAMs and faithfulness score them.
        with torch.no_grad():
            logits = model.for_task(task).head(model.to_tensor(images))
        np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), probs[task], atol=1e-5)


def test_evaluation_holds_every_task(multitask_files):
    summary = multitask_files["evaluate"]
    cache = read_cache(multitask_files["caches"] / "eval_val-multitask.parquet")
    rows = cache.rows
    assert tuple(cache.tasks) == TASKS and cache.cam_task == "gender"
    assert summary["images"] == len(rows) == 42
    for task in TASKS:
        key = "accuracy" if task == "gender" else f"{task}_accuracy"
        assert summary[key] == round(float(rows[SPECS[task].correct].mean()), 4)
        for view in ("raw", "crop", "blur"):
            pred, prob, correct = (view_column(view, SPECS[task].column(k)) for k in ("pred", "prob", "correct"))
            assert set(rows[pred]) <= set(TASK_CLASSES[task])
            assert (rows[correct] == (rows[pred] == rows[task])).all()
            assert rows[prob].between(1 / len(TASK_CLASSES[task]), 1).all()
    for method in METHODS:
        assert rows[focus_column(method, "face")].between(0, 1).all()
    assert rows["faith_sampled"].sum() > 0


def test_cams_for_another_task(multitask_files, tmp_path, capsys, fairface):
    out = tmp_path / "race.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(multitask_files["checkpoint"]), "--out",
                 str(out), "--limit", "6", "--cam-task", "race", "--faithfulness-per-cell", "0"]) == 0
    cache = read_cache(out)
    assert cache.cam_task == "race" and "race (the class the maps explain)" in cache.meta["faithfulness"]["target"]
    capsys.readouterr()

    # explain: the maps of another task's class, with every task's answer beside them.
    assert main(["explain", str(fairface / "val/5.jpg"), "--model", str(multitask_files["checkpoint"]),
                 "--task", "race", "--target", "Indian"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["task"] == "race" and said["explained_class"] == "Indian"
    assert set(said["answers"]) == set(TASKS) and set(said["probabilities"]) == set(TASK_CLASSES["race"])
    assert said["prediction"] == max(said["probabilities"], key=said["probabilities"].get)


def test_tasks_a_model_lacks_are_one_line(tmp_path, capsys, fairface):
    assert main(["evaluate", "--data", str(fairface), "--out", str(tmp_path / "x.parquet"), "--limit", "2",
                 "--model", "dlib", "--cam-task", "race"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "predicts gender, not race" in err
    assert main(["explain", str(fairface / "val/5.jpg"), "--model", "dlib", "--target", "Indian"]) == 2
    assert "not a class of gender" in capsys.readouterr().err
    assert main(["train", "--data", str(fairface), "--out", str(tmp_path / "m.pt"), "--tasks", "race,shoe"]) == 2
    assert "Tasks must include gender" in capsys.readouterr().err


def test_init_copies_the_trunk_and_the_shared_heads(multitask_files):
    from faircam.models.train import TrainConfig, _initialise

    source = load_checkpoint(multitask_files["checkpoint"])
    net = build_model("efficientnet-lite0", tasks={"gender": TASK_CLASSES["gender"], "age": TASK_CLASSES["age"]})
    config = TrainConfig(data="", out="", tasks="gender,age", init=str(multitask_files["checkpoint"]))
    started = _initialise(net, config)
    assert started["sha256"] == source.sha256
    theirs, ours = source.net.state_dict(), net.state_dict()
    assert torch.equal(ours["trunk.0.0.weight"], theirs["trunk.0.0.weight"])
    mine, its = task_slices({"gender": (0, 0), "age": TASK_CLASSES["age"]}), task_slices(source.tasks)
    for task in ("gender", "age"):
        assert torch.equal(ours["classifier.3.weight"][mine[task]], theirs["classifier.3.weight"][its[task]])


def test_bad_task_metadata_is_refused(multitask_files, tmp_path):
    from faircam.errors import ModelError

    payload = torch.load(multitask_files["checkpoint"], weights_only=True)
    payload["tasks"] = {"race": payload["tasks"]["race"], "gender": payload["tasks"]["gender"]}
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(ModelError, match="gender first"):
        load_checkpoint(bad)
