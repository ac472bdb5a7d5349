"""`faircam evaluate --engine ray`: the same rows as the local engine, written as a cache folder the app opens."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import ray
from test_pages import run

from faircam.cli import main
from faircam.evaluation.cache import FOLDER_META, group_averages, read_cache

LIMIT = 32


@pytest.fixture
def no_ray_left():
    """Ray shut down after the test, whatever happened in it (the engine shuts down its own Ray too)."""
    yield
    assert not ray.is_initialized()
    ray.shutdown()


def evaluate(fairface, out, *extra: str) -> None:
    assert main(["evaluate", "--data", str(fairface), "--split", "val", "--limit", str(LIMIT), "--batch-size", "8",
                 "--faithfulness-per-cell", "0", "--out", str(out), *extra]) == 0


def test_ray_engine_gives_the_local_rows_and_a_cache_the_app_opens(fairface, tmp_path, no_ray_left, monkeypatch,
                                                                     capsys):
    evaluate(fairface, tmp_path / "local.parquet")
    evaluate(fairface, tmp_path / "ray", "--engine", "ray", "--workers", "2")
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["images"] == LIMIT
    local, distributed = read_cache(tmp_path / "local.parquet"), read_cache(tmp_path / "ray")
    # Four batches of eight: a folder of parts with one metadata record.
    assert (tmp_path / "ray" / FOLDER_META).is_file() and distributed.meta["rows"] == LIMIT
    a, b = local.rows, distributed.rows
    assert list(a.columns) == list(b.columns) and a["file"].tolist() == b["file"].tolist()
    exact = ["file", "race", "gender", "age", "face_found", "faces_found", "faith_sampled",
             *[c for c in a.columns if c.endswith(("pred", "correct"))]]
    pd.testing.assert_frame_equal(a[exact], b[exact])
    # Tolerances of tests/test_bundled.py: probabilities 1e-4, shares 2e-3 absolute, face_lift ratios 5e-3 relative.
    probs = [c for c in a.columns if c.endswith(("prob", "p_male"))]
    np.testing.assert_allclose(a[probs], b[probs], atol=1e-4)
    focus = [c for c in a.columns if " | " in c and not c.endswith(("road", "deletion", "insertion"))]
    ratios = [c for c in focus if c.endswith("face_lift")]
    shares = [c for c in focus if c not in ratios]
    np.testing.assert_allclose(a[shares], b[shares], rtol=0, atol=2e-3)
    np.testing.assert_allclose(a[ratios], b[ratios], rtol=5e-3, atol=0)
    assert group_averages(local)["n"].tolist() == group_averages(distributed)["n"].tolist()
    assert local.methods == distributed.methods

    assert main(["report", "--cache", str(tmp_path / "ray"), "--out", str(tmp_path / "report.html")]) == 0
    assert "accuracy" in (tmp_path / "report.html").read_text()

    monkeypatch.setenv("FAIRCAM_CACHE", str(tmp_path / "ray"))
    at = run("pages/2_Evaluation.py")
    assert not at.exception and not at.error
    assert [m.value for m in at.metric][2] == str(LIMIT)


def test_ray_options_need_the_ray_engine(tmp_path, capsys):
    assert main(["evaluate", "--limit", "4", "--out", str(tmp_path / "x.parquet"), "--address", "auto"]) == 2
    assert "need --engine ray" in capsys.readouterr().err


def test_a_folder_that_is_not_a_cache_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert main(["evaluate", "--limit", "4", "--out", str(tmp_path / "notes")]) == 2
    assert "not a faircam cache folder" in capsys.readouterr().err
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_ray_actors_explain_the_layer_chosen(fairface, tmp_path, no_ray_left):
    """`--cam-layer` reaches the actors, which load the model themselves: their focus scores are the local engine's
    on that layer, not on faircam's choice."""
    from safetensors.torch import save_file
    from test_model_kinds import _resnet, _spec

    save_file(_resnet(2).state_dict(), tmp_path / "model.safetensors")
    spec = str(_spec(tmp_path, input_size=128))
    few = ["--model", spec, "--limit", "8", "--batch-size", "4", "--faithfulness-per-cell", "0", "--data",
           str(fairface)]
    assert main(["evaluate", *few, "--cam-layer", "layer3", "--out", str(tmp_path / "local.parquet")]) == 0
    assert main(["evaluate", *few, "--out", str(tmp_path / "layer4.parquet")]) == 0
    assert main(["evaluate", *few, "--cam-layer", "layer3", "--engine", "ray", "--workers", "1", "--out",
                 str(tmp_path / "ray")]) == 0
    local, layer4, distributed = (read_cache(tmp_path / p).rows for p in ("local.parquet", "layer4.parquet", "ray"))
    focus = "Grad-CAM | face"
    np.testing.assert_allclose(local[focus], distributed[focus], rtol=0, atol=2e-3)
    assert np.abs(layer4[focus] - distributed[focus]).max() > 0.01
