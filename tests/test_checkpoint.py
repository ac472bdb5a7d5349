"""Checkpoints that are damaged, truncated, foreign or of another architecture: a clear ModelError,
in the library, the CLI and the app; a checkpoint saved by faircam carries a checksum of its weights."""

from __future__ import annotations

import pytest
import torch

from faircam.cli import main
from faircam.config import DEFAULT_MODEL
from faircam.errors import ModelError
from faircam.models.model import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint, state_sha256

IMAGE = "val/1.jpg"


@pytest.fixture(scope="module")
def payload() -> dict:
    return torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=True)


@pytest.fixture
def saved(tmp_path, pipeline):
    """The bundled model saved again by `save_checkpoint`, so with its weights' checksum."""
    model = pipeline.model
    path = tmp_path / "saved.pt"
    save_checkpoint(model.net, path, model.arch, model.input_size, model.info, tasks=model.tasks)
    return path


def _damaged_copy(path, tmp_path, change) -> str:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    change(payload)
    out = tmp_path / "damaged.pt"
    torch.save(payload, out)
    return str(out)


def test_saved_checkpoint_carries_checksum_and_predicts_the_same(saved, pipeline, sample_images):
    payload = torch.load(saved, map_location="cpu", weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert payload["state_sha256"] == state_sha256(payload["state_dict"])
    assert not list(saved.parent.glob("*.tmp"))  # written atomically, no leftover
    reloaded = load_checkpoint(saved)
    images = [pipeline.view(image).image for image in sample_images]
    torch.testing.assert_close(torch.from_numpy(reloaded.predict_proba(images)),
                               torch.from_numpy(pipeline.model.predict_proba(images)))


def test_changed_weight_is_detected_as_damage(saved, tmp_path):
    def flip(payload):
        name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel() > 10)
        payload["state_dict"][name].view(-1)[3] += 1.0  # one weight, as a bit flip on disk would

    with pytest.raises(ModelError, match="damaged: its weights do not match the checksum"):
        load_checkpoint(_damaged_copy(saved, tmp_path, flip))


def test_checksum_of_other_weights_is_detected(saved, tmp_path):
    def swap(payload):
        payload["state_sha256"] = "0" * 64

    with pytest.raises(ModelError, match="damaged"):
        load_checkpoint(_damaged_copy(saved, tmp_path, swap))


@pytest.mark.parametrize("keep", [0.5, 0.99, 100])
def test_truncated_checkpoint(tmp_path, keep):
    data = DEFAULT_MODEL.read_bytes()
    path = tmp_path / "model.pt"
    path.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_a_faircam_checkpoint(tmp_path, payload):
    path = tmp_path / "weights.pt"
    torch.save(payload["state_dict"], path)
    with pytest.raises(ModelError, match="not a faircam checkpoint"):
        load_checkpoint(path)


def test_other_format_version(tmp_path, payload):
    path = tmp_path / "future.pt"
    torch.save({**payload, "format": "faircam-checkpoint/99"}, path)
    with pytest.raises(ModelError, match="not a faircam checkpoint"):
        load_checkpoint(path)


def test_weights_of_another_architecture(tmp_path, payload):
    path = tmp_path / "mismatch.pt"
    torch.save({**payload, "arch": "resnet18"}, path)
    with pytest.raises(ModelError, match="do not fit architecture resnet18"):
        load_checkpoint(path)


def test_unknown_architecture(tmp_path, payload):
    path = tmp_path / "alien.pt"
    torch.save({**payload, "arch": "vit-giant"}, path)
    with pytest.raises(ModelError, match="'vit-giant'"):
        load_checkpoint(path)


def test_incomplete_and_inconsistent_metadata(tmp_path, payload):
    incomplete = {k: v for k, v in payload.items() if k != "classes"}
    torch.save(incomplete, tmp_path / "a.pt")
    with pytest.raises(ModelError, match="missing classes"):
        load_checkpoint(tmp_path / "a.pt")
    torch.save({**payload, "classes": ["Female", "Male", "Other"]}, tmp_path / "b.pt")
    with pytest.raises(ModelError, match="inconsistent metadata"):
        load_checkpoint(tmp_path / "b.pt")
    torch.save({**payload, "input_size": "large"}, tmp_path / "c.pt")
    with pytest.raises(ModelError, match="unreadable metadata"):
        load_checkpoint(tmp_path / "c.pt")


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "hook": ModelError("a Python object, not weights")}, path)
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_cli_reports_a_damaged_checkpoint_in_one_line(capsys, saved, tmp_path, fairface):
    def flip(payload):
        payload["state_dict"]["classifier.3.weight"].view(-1)[0] += 1.0

    damaged = _damaged_copy(saved, tmp_path, flip)
    code = main(["explain", str(fairface / IMAGE), "--model", damaged])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"faircam: error: {damaged} is damaged: its weights do not match the checksum stored with them."
    ]


def test_app_reports_a_damaged_checkpoint(monkeypatch, saved, tmp_path):
    from streamlit.testing.v1 import AppTest

    from faircam.config import PROJECT_ROOT

    def flip(payload):
        payload["state_dict"]["classifier.3.bias"][0] += 1.0

    monkeypatch.setenv("FAIRCAM_MODEL", _damaged_copy(saved, tmp_path, flip))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=180)
    at.switch_page("pages/1_Explore.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "model cannot be loaded" in errors[0] and "is damaged" in errors[0], errors
