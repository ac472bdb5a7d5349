"""How long a brought model of ViT-Base's size takes to audit on the stratified FairFace faces of "Audit a model"
(`faircam.evaluation.jobs.sample_files`): a randomly initialised ViT-Base (86 M parameters, 224 px, patch 16) saved
as a Hugging Face folder, loaded as the page loads it, then `run_evaluation` with predictions only and with the four
CAMs, faithfulness off. Its answers mean nothing; its cost is a real ViT-Base's. The page's default of 700 faces is
long on two cores, so the bench times `count` faces and gives the rate and the 700-face time it implies."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import OUT, data_dir

FACES = 700


def _vit_base(folder: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    labels = ["female", "male"]
    config = ViTConfig(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    ViTForImageClassification(config).eval().save_pretrained(folder)
    ViTImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def run(count: int = 48, batch_size: int = 16) -> dict:
    from faircam.data.labelled import load_data
    from faircam.evaluation.evaluate import EvalOptions, run_evaluation
    from faircam.evaluation.jobs import sample_files
    from faircam.vision.explain import Pipeline

    OUT.mkdir(parents=True, exist_ok=True)
    files = sample_files(load_data(data_dir(), "val").rows, count)
    results: dict = {"faces": len(files), "batch_size": batch_size}
    with tempfile.TemporaryDirectory(dir=OUT) as work:
        folder = _vit_base(Path(work) / "vit-base")
        started = time.perf_counter()
        pipeline = Pipeline.load(folder)
        results["load_s"] = round(time.perf_counter() - started, 1)
        results["parameters_millions"] = round(sum(p.numel() for p in pipeline.model.net.parameters()) / 1e6, 1)
        for label, cams in (("predictions only", False), ("with the four CAMs", True)):
            started = time.perf_counter()
            run_evaluation(data_dir(), "val", Path(work) / f"{cams}.parquet", pipeline.model, pipeline.detector,
                           pipeline.explainer, batch_size=batch_size, progress=False, files=files,
                           options=EvalOptions(cams=cams, faithfulness_per_cell=0))
            seconds = time.perf_counter() - started
            results[label] = {"seconds": round(seconds, 1), "faces_per_s": round(len(files) / seconds, 2),
                              f"implied minutes for {FACES} faces": round(FACES * seconds / len(files) / 60, 1)}
    return results
