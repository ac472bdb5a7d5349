"""`faircam train` end to end on a few real FairFace images: checkpoint, metadata, resume."""

from __future__ import annotations

import json

import torch

from faircam.cli import main
from faircam.config import SHARED_FAIRFACE
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
