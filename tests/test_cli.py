"""The `faircam` command, in-process through `main(argv)`, plus one real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from faircam.cli import main
from faircam.config import PROJECT_ROOT
from faircam.data.images import read_image
from faircam.evaluation.cache import read_cache
from faircam.vision.cams import METHODS
from faircam.vision.focus import REGIONS

IMAGE = "val/1.jpg"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    # Progress bars may precede it (carriage-return lines); the error itself is one last line.
    lines = [line for line in err.strip().splitlines() if not line.startswith(("evaluate ", "quality ", "\r"))]
    assert len(lines) == 1 and lines[0].startswith("faircam: error: "), err
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


# --- explain ---------------------------------------------------------------------------------


def test_explain_writes_figure_and_json(capsys, tmp_path, fairface, pipeline):
    figure = tmp_path / "figures" / "one.png"
    code, out, err = run(capsys, "explain", fairface / IMAGE, "--out", figure)
    assert code == 0, err
    result = json.loads(out)
    assert result["prediction"] in ("Female", "Male")
    assert 0.5 <= result["probability"] <= 1
    assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert result["probability"] == result["probabilities"][result["prediction"]]
    assert result["face_found"] is True  # a FairFace crop: MTCNN finds the face
    assert result["cropped"] is False and result["blurred"] is False
    assert set(result["region_shares"]) == set(METHODS)
    for method, scores in result["region_shares"].items():
        assert sum(scores[r] for r in REGIONS) == pytest.approx(1, abs=1e-3), method
        assert result["focus_score"][method] == scores["face"]
    assert result["chance_level"] == result["region_chance"]["face"]
    assert result["model"] == pipeline.model.name
    # The command says what the library says about the same photo.
    expected = pipeline.explain(read_image(fairface / IMAGE))
    assert result["prediction"] == expected.label
    assert result["probability"] == pytest.approx(expected.probability, abs=1e-4)

    with Image.open(figure) as png:
        assert png.format == "PNG"
        assert png.width == 5 * 224
        assert png.height > 224
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.std() > 10  # tiles were drawn, not a blank canvas


def test_explain_with_crop_and_blur(capsys, tmp_path, fairface):
    figure = tmp_path / "cropped.png"
    code, out, err = run(capsys, "explain", fairface / IMAGE, "--crop", "--blur", "--out", figure)
    assert code == 0, err
    result = json.loads(out)
    assert result["face_found"] is True
    assert result["cropped"] is True and result["blurred"] is True
    assert result["message"] == ""
    assert result["prediction"] in ("Female", "Male")
    assert set(result["region_shares"]) == set(METHODS)
    with Image.open(figure) as png:
        assert png.width == 5 * 224


def test_explain_non_image(capsys, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    assert_one_line_error(*run(capsys, "explain", text), "not an image")


def test_explain_missing_image(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "explain", tmp_path / "missing.jpg"), "missing.jpg")


def test_explain_with_garbage_model(capsys, tmp_path, fairface):
    model = tmp_path / "model.pt"
    model.write_bytes(os.urandom(4096))
    code, out, err = run(capsys, "explain", fairface / IMAGE, "--model", model)
    assert_one_line_error(code, out, err, "model.pt", "checkpoint")


def test_explain_with_missing_model(capsys, tmp_path, fairface):
    code, out, err = run(capsys, "explain", fairface / IMAGE, "--model", tmp_path / "none.pt")
    assert_one_line_error(code, out, err, "does not exist")


def test_explain_out_without_suffix(capsys, tmp_path, fairface):
    code, out, err = run(capsys, "explain", fairface / IMAGE, "--out", tmp_path / "figure")
    assert_one_line_error(code, out, err, ".png")


# --- evaluate --------------------------------------------------------------------------------


def test_evaluate_folder_without_labels(capsys, tmp_path):
    (tmp_path / "val").mkdir()
    code, out, err = run(capsys, "evaluate", "--data", tmp_path, "--out", tmp_path / "cache.parquet")
    assert_one_line_error(code, out, err, "fairface_label_val.csv")
    assert not (tmp_path / "cache.parquet").exists()


def test_evaluate_writes_a_readable_cache(capsys, tmp_path, fairface):
    cache_path = tmp_path / "eval.parquet"
    code, out, err = run(capsys, "evaluate", "--data", fairface, "--limit", "8", "--batch-size", "4",
                         "--faithfulness-per-cell", "0",
                         "--out", cache_path)
    assert code == 0, err
    summary = json.loads(out)
    cache = read_cache(cache_path)
    assert summary["images"] == len(cache.rows) == 8
    assert summary["accuracy"] == pytest.approx(cache.rows["correct"].mean(), abs=1e-4)
    assert summary["unreadable"] == 0 and summary["dropped_rows"] == 0
    assert cache.rows["file"].tolist() == [f"val/{n}.jpg" for n in range(1, 9)]
    assert cache.meta["data"]["root"] == str(fairface.resolve())


def test_evaluate_with_no_readable_image(capsys, tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "1.jpg").write_text("not a photo")
    (tmp_path / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\nval/1.jpg,20-29,Male,White,False\n"
    )
    code, out, err = run(capsys, "evaluate", "--data", tmp_path, "--out", tmp_path / "cache.parquet")
    assert_one_line_error(code, out, err)


# --- fetch-fairface --------------------------------------------------------------------------


def test_fetch_fairface_offline(capsys, tmp_path, monkeypatch):
    # Offline for sure (and with an empty hub cache), also on a machine that has internet.
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    out_dir = tmp_path / "fairface"
    code, out, err = run(capsys, "fetch-fairface", "--out", out_dir, "--limit", "2")
    assert_one_line_error(code, out, err, "internet")
    assert not (out_dir / "fairface_label_val.csv").exists()


# --- the command as a program ----------------------------------------------------------------


def test_console_entry_in_a_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    missing = tmp_path / "nonexistent.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "faircam.cli", "explain", str(missing)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("faircam: error: ")
    assert str(missing) in done.stderr


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["explain"])
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err



@pytest.mark.parametrize("share", ["-0.1", "1.5"])
def test_train_refuses_an_align_jitter_outside_0_to_1(capsys, tmp_path, fairface, share):
    code, out, err = run(capsys, "train", "--data", fairface, "--out", tmp_path / "m.pt", "--align-jitter", share)
    assert_one_line_error(code, out, err, "--align-jitter", "between 0 and 1")
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.work").exists()
