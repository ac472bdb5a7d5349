"""Shared fixtures: the FairFace sample, the bundled model loaded once, and the val split.

The tests run the real bundled checkpoint, real MTCNN and real CAMs on real FairFace images,
so the expensive objects are loaded once per session and shared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # plain `pytest` as well as `python -m pytest`
    sys.path.insert(0, str(PROJECT_ROOT))

from faircam.config import SHARED_FAIRFACE, settings  # noqa: E402

# On a small shared CPU (2 cores, a training job beside the tests) two intra-op threads spin
# against each other and every pass runs many times slower; one thread keeps the suite quick.
torch.set_num_threads(1)

# A few val images used across modules (any real FairFace val images will do).
SAMPLE_FILES = ("val/1.jpg", "val/2.jpg", "val/3.jpg")


@pytest.fixture(autouse=True)
def private_model_registry(tmp_path, monkeypatch):
    """`faircam train` registers its checkpoints and the "Audit a model" page installs models; in tests they go to
    a throwaway registry and store."""
    monkeypatch.setenv("FAIRCAM_REGISTRY", str(tmp_path / "registry.json"))
    monkeypatch.setenv("FAIRCAM_STORE", str(tmp_path / "store"))


@pytest.fixture(autouse=True)
def no_background_model_load(monkeypatch):
    """AppTest runs app.py in the test process: its background model load would race the tests that count
    model loads or torch imports. tests/test_light_pages.py turns it on where it is the subject."""
    monkeypatch.setenv("FAIRCAM_PRELOAD", "0")


@pytest.fixture(scope="session")
def fairface() -> Path:
    """The shared FairFace sample; CI provides it, so its absence is a failure, not a skip."""
    root = SHARED_FAIRFACE
    missing = [p for p in ("fairface_label_val.csv", "fairface_label_train.csv", "val/1.jpg")
               if not (root / p).exists()]
    if missing:
        pytest.fail(f"FairFace sample missing at {root} (lacks {', '.join(missing)}); the tests need it.")
    return root


@pytest.fixture(scope="session")
def pipeline(fairface):
    """The bundled checkpoint with MTCNN and the CAM explainer, loaded once."""
    from faircam.vision.explain import Pipeline

    return Pipeline.load(settings().model_path)


@pytest.fixture(scope="session")
def val_split(fairface):
    from faircam.data.fairface import load_split

    return load_split(fairface, "val")


@pytest.fixture(scope="session")
def sample_images(fairface) -> list[np.ndarray]:
    """A few real val photos decoded the way the app decodes them."""
    from faircam.data.images import read_image

    return [read_image(fairface / f) for f in SAMPLE_FILES]


# A small multi-task checkpoint (gender, race, age) trained in the test session on real images, and its
# evaluation: what the task-aware pages and commands are tested on, whatever model is bundled.
MULTITASK = "multitask"


@pytest.fixture(scope="session")
def multitask_files(fairface, tmp_path_factory) -> dict:
    """`faircam train --tasks gender,race,age` for one short epoch, then `faircam evaluate --limit 42` of it:
    the checkpoint, the cache folder and the two commands' JSON summaries."""
    import contextlib
    import io
    import json
    import os

    from faircam.cli import main

    folder = tmp_path_factory.mktemp("multitask")
    checkpoint, caches = folder / f"{MULTITASK}.pt", folder / "caches"
    summaries = {}
    previous = os.environ.get("FAIRCAM_REGISTRY")
    os.environ["FAIRCAM_REGISTRY"] = str(folder / "registry.json")
    try:
        for command, args in (
            ("train", ["--out", str(checkpoint), "--tasks", "gender,race,age", "--limit", "128", "--epochs", "1",
                       "--batch-size", "32", "--seed", "1"]),
            ("evaluate", ["--out", str(caches / f"eval_val-{MULTITASK}.parquet"), "--model", str(checkpoint),
                          "--limit", "42", "--faithfulness-per-cell", "1", "--batch-size", "16"]),
        ):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = main([command, "--data", str(fairface), *args])
            assert status == 0, out.getvalue()
            summaries[command] = json.loads(out.getvalue().strip().splitlines()[-1])
    finally:
        if previous is None:
            os.environ.pop("FAIRCAM_REGISTRY", None)
        else:
            os.environ["FAIRCAM_REGISTRY"] = previous
    # The third-party models' bundled caches beside it, as FAIRCAM_CACHE_DIR then serves them all.
    import shutil

    from faircam.config import ASSETS

    for bundled in ASSETS.glob("eval_val-*.parquet"):
        shutil.copy(bundled, caches / bundled.name)
    return {"checkpoint": checkpoint, "caches": caches, **summaries}


@pytest.fixture
def multitask_model(multitask_files, monkeypatch) -> str:
    """The multi-task checkpoint registered (as "multitask", for this test) with its cache in FAIRCAM_CACHE_DIR;
    the bundled model and caches stay as they are."""
    from faircam.models.registry import register_checkpoint

    register_checkpoint(MULTITASK, multitask_files["checkpoint"], 160, "efficientnet-lite0, 1 epoch on 128 images",
                        ("gender", "race", "age"))
    monkeypatch.setenv("FAIRCAM_CACHE_DIR", str(multitask_files["caches"]))
    return MULTITASK
