"""`faircam train` end to end on a few real FairFace images: checkpoint, metadata, resume."""

from __future__ import annotations

import json

import numpy as np
import torch

from faircam.cli import main
from faircam.config import SHARED_FAIRFACE
from faircam.data.fairface import RACES
from faircam.evaluation.cache import read_cache
from faircam.models import registry
from faircam.models.model import load_checkpoint


def train_args(out, epochs: int) -> list[str]:
    return ["train", "--data", str(SHARED_FAIRFACE), "--out", str(out), "--limit", "96", "--epochs", str(epochs),
            "--batch-size", "32", "--seed", "3"]


def test_train_writes_a_usable_checkpoint_then_resumes(tmp_path, capsys, monkeypatch):
    import faircam.models.train

    out = tmp_path / "model.pt"
    validate = faircam.models.train._validate
    calls = []

    def interrupted_in_epoch_two(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return validate(*args)

    # A run of two epochs, interrupted (as by Ctrl-C) before its second epoch is saved.
    monkeypatch.setattr(faircam.models.train, "_validate", interrupted_in_epoch_two)
    assert main(train_args(out, 2)) == 130
    monkeypatch.setattr(faircam.models.train, "_validate", validate)
    capsys.readouterr()
    model = load_checkpoint(out)
    info = model.info
    assert model.arch == "efficientnet-lite0" and model.input_size == 160
    assert info["training"]["train_images"] == 96 and info["training"]["epoch"] == 1
    assert 0.0 <= info["metrics"]["accuracy"] <= 1.0 and info["metrics"]["n"] == info["training"]["val_images"]
    # Stored in half precision, as shipped.
    payload = torch.load(out, weights_only=True)
    assert payload["state_dict"]["classifier.3.weight"].dtype == torch.float16

    # The same command again continues from the saved state instead of starting over.
    assert main(train_args(out, 2)) == 0
    captured = capsys.readouterr()
    assert "Resuming after epoch 1" in captured.out
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert abs(result["best_val_accuracy"] - load_checkpoint(out).info["metrics"]["accuracy"]) < 1e-9
    state = torch.load(out.with_suffix(".work") / "state.pt", weights_only=True)
    assert [h["epoch"] for h in state["history"]] == [1, 2]

    # The trained checkpoint runs through evaluation like the bundled one.
    cache_path = tmp_path / "eval.parquet"
    assert main(["evaluate", "--data", str(SHARED_FAIRFACE), "--out", str(cache_path), "--limit", "8",
                 "--faithfulness-per-cell", "0", "--model", str(out)]) == 0
    cache = read_cache(cache_path)
    assert len(cache.rows) == 8 and cache.meta["model"]["sha256"] == load_checkpoint(out).sha256

    # It registered itself under its file name, so the app and `--model model` offer it.
    assert registry.resolve("model").weights == out.resolve()


def test_align_jitter_turns_faces_as_the_crop_does():
    # Rotated or shrunk faces leave corners of the crop's grey filler (colour-jittered: a flat patch of mid
    # grey); FairFace's own photos have flat corners only where FairFace padded them, in black.
    from faircam.data.fairface import load_split
    from faircam.models.train import FaceImages
    from faircam.tasks import task_classes

    def grey_corner(image: torch.Tensor) -> bool:
        patches = [image[:, :4, :4], image[:, :4, -4:], image[:, -4:, :4], image[:, -4:, -4:]]
        return any(float(p.float().std()) < 1 and 60 < float(p.float().mean()) < 200 for p in patches)

    split = load_split(SHARED_FAIRFACE, "val")
    counts = {}
    for share in (0.0, 1.0):
        torch.manual_seed(0)
        images = FaceImages(split, 160, True, task_classes(["gender"]), align_jitter=share)
        counts[share] = sum(grey_corner(images[i][0]) for i in range(32))
    assert counts[0.0] <= 3 and counts[1.0] >= 16, counts


def test_full_fine_tune_fast_path_grows_its_images_and_resumes(tmp_path, capsys, monkeypatch):
    """The full fine-tune's fast path on real images: decoded once into the work folder, channels_last batches,
    progressive sizes (64 then 96 px), the weights' moving average validated and saved, and a resume that
    reuses the decoded images."""
    import faircam.models.train
    from faircam.models.model import FaceNet

    out = tmp_path / "fast.pt"
    args = ["train", "--data", str(SHARED_FAIRFACE), "--out", str(out), "--limit", "64", "--epochs", "2",
            "--batch-size", "32", "--seed", "1", "--frozen-stages", "0", "--sizes", "64,96", "--ema", "0.9",
            "--tasks", "gender,race,age", "--group-dro", "0.05"]
    trained, validated = [], []
    forward_from = FaceNet.forward_from

    def recording_forward(self, x, start):
        if self.training:
            trained.append((id(self), x.shape[-1], x.is_contiguous(memory_format=torch.channels_last)))
        return forward_from(self, x, start)

    validate = faircam.models.train._validate

    def interrupted_in_epoch_two(net, *rest):
        validated.append(id(net))
        if len(validated) == 2:
            raise KeyboardInterrupt
        return validate(net, *rest)

    monkeypatch.setattr(FaceNet, "forward_from", recording_forward)
    monkeypatch.setattr(faircam.models.train, "_validate", interrupted_in_epoch_two)
    assert main(args) == 130
    decoded = out.with_suffix(".work") / "train-images.npy"
    stamp = decoded.stat().st_mtime_ns
    # Every training batch was channels_last, the first epoch's at 64 px, the second's at 96 px.
    assert {size for _, size, _ in trained} == {64, 96} and all(cl for _, _, cl in trained)
    assert trained[0][1] == 64 and trained[-1][1] == 96
    # What was validated is the moving average, not the network being trained.
    assert validated[0] not in {net for net, _, _ in trained}
    assert load_checkpoint(out).input_size == 64

    monkeypatch.setattr(faircam.models.train, "_validate", validate)
    capsys.readouterr()
    assert main(args) == 0
    assert "Resuming after epoch 1" in capsys.readouterr().out
    assert decoded.stat().st_mtime_ns == stamp  # the decoded images were reused, not decoded again
    assert np.load(decoded, mmap_mode="r").shape == (64, 96, 96, 3)
    state = torch.load(out.with_suffix(".work") / "state.pt", weights_only=True)
    assert [h["input_size"] for h in state["history"]] == [64, 96] and "ema" in state
    # Group DRO's weights over the races went on from where the interrupted run left them, one row per task.
    weights = state["group_weights"]
    assert weights.shape == (3, len(RACES)) and torch.allclose(weights.sum(1), torch.ones(3))
    assert not torch.allclose(weights, torch.full_like(weights, 1 / len(RACES)))
    model = load_checkpoint(out)
    best = max(state["history"], key=lambda h: np.mean([h[f"val_{t}_accuracy"] for t in ("gender", "race", "age")]))
    assert model.input_size == best["input_size"] and model.info["training"]["epoch"] == best["epoch"]
    assert [h["epoch"] for h in model.info["history"]] == [1, 2]  # every epoch, for the model card
    assert tuple(model.info["training"]["recipe"]["sizes"]) == (64, 96)


def test_group_dro_weighs_the_worse_served_race_up():
    """Each task's loss is its per-race losses weighted towards the races it does worst on; without a step, the plain
    mean over faces."""
    from faircam.models.train import TaskLoss

    slices = {"gender": slice(0, 2)}
    # Four faces of race 0 answered right with confidence, four of race 1 answered wrong.
    logits = torch.tensor([[4.0, -4.0]] * 4 + [[4.0, -4.0]] * 4)
    labels = torch.tensor([[0, 0]] * 4 + [[1, 1]] * 4)
    plain = TaskLoss(slices, 0.0)
    assert torch.isclose(plain(logits, labels), torch.nn.functional.cross_entropy(logits, labels[:, 0]))
    robust = TaskLoss(slices, 0.0, step=0.1)
    first = robust(logits, labels)
    for _ in range(20):
        robust(logits, labels)
    weights = robust.weights[0]
    assert weights[1] > weights[0] > 0 and torch.allclose(weights[2:], weights[2])  # absent races keep their share
    assert robust(logits, labels) > first  # the wrong race's loss counts for more and more
