"""Which model `faircam report` describes: without `--model`, the one its cache was made with (a model brought to the
store, a table of answers, the bundled model), never the bundled model in its place. Real models the tests build,
evaluated on real FairFace faces, reported through the command."""

from __future__ import annotations

import pandas as pd
from safetensors.torch import save_file
from test_model_kinds import SIZE, _resnet

from faircam.cli import main
from faircam.config import cache_path_for, settings
from faircam.models import store

FAST = ["--limit", "8", "--faithfulness-per-cell", "0", "--batch-size", "8", "--no-cams"]


def _report(tmp_path, *args: str) -> str:
    out = tmp_path / "report.html"
    assert main(["report", *args, "--out", str(out)]) == 0
    return out.read_text()


def test_a_brought_models_cache_is_reported_with_its_own_card(tmp_path, fairface):
    """A ResNet-18 brought to the store and evaluated: its report, given only its cache, carries its own model card
    (its name, kind and mapping), not the bundled model's."""
    save_file(_resnet(2).state_dict(), tmp_path / "w.safetensors")
    spec = store.weights_spec("torchvision", "resnet18", ["woman", "man"], input_size=SIZE)
    model = store.install_weights("my resnet", (tmp_path / "w.safetensors").read_bytes(), "w.safetensors", spec)
    cache = cache_path_for(model.name)
    assert main(["evaluate", "--data", str(fairface), "--model", model.name, "--out", str(cache), *FAST]) == 0
    html = _report(tmp_path, "--cache", str(cache))
    assert "Model card: my resnet" in html and "Model card: faircam" not in html
    assert "woman → Female, man → Male" in html and "torchvision" in html
    assert "is not the model this evaluation was computed for" not in html


def test_a_table_of_answers_is_reported_without_a_model_card(tmp_path, fairface, val_split):
    rows = val_split.rows.head(10)
    table = tmp_path / "api.csv"
    pd.DataFrame({"file": rows["file"], "pred_gender": rows["gender"]}).to_csv(table, index=False)
    cache = tmp_path / "api.parquet"
    assert main(["import-predictions", str(table), "--data", str(fairface), "--out", str(cache)]) == 0
    html = _report(tmp_path, "--cache", str(cache))
    assert "Model card: " not in html
    assert "No model card: api is a table of answers: no model ran" in html


def test_the_bundled_cache_is_reported_with_the_bundled_card(tmp_path):
    """The cache the bundled model's evaluation wrote still gets its card, found by its checksum."""
    html = _report(tmp_path, "--cache", str(settings().cache_path))
    assert "Model card: " in html and "is not the model this evaluation was computed for" not in html


def test_a_cache_whose_model_is_gone_says_so(tmp_path, fairface):
    """A model evaluated from a folder since deleted: no card of another model, one line saying which model is
    missing and how to give it."""
    import shutil

    (tmp_path / "gone").mkdir()
    save_file(_resnet(2).state_dict(), tmp_path / "gone" / "model.safetensors")
    (tmp_path / "gone" / "faircam-model.json").write_text(
        '{"format": "torchvision", "arch": "resnet18", "weights": "model.safetensors", "input_size": 64, '
        '"outputs": [{"task": "gender", "classes": ["female", "male"]}]}')
    cache = tmp_path / "gone.parquet"
    assert main(["evaluate", "--data", str(fairface), "--model", str(tmp_path / "gone"), "--out", str(cache),
                 *FAST]) == 0
    shutil.rmtree(tmp_path / "gone")
    html = _report(tmp_path, "--cache", str(cache))
    assert "Model card: " not in html
    assert "No model card: the model this evaluation was computed for (gone, torchvision) is not on this server" \
        in html
    assert "pass --model" in html


def test_report_with_model_still_describes_the_model_given(tmp_path, fairface):
    """--model stays the auditor's choice: the bundled model's card on a brought cache, with the note that it is
    not the model the evaluation was computed for."""
    save_file(_resnet(2).state_dict(), tmp_path / "w.safetensors")
    spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
    model = store.install_weights("rn", (tmp_path / "w.safetensors").read_bytes(), "w.safetensors", spec)
    cache = cache_path_for(model.name)
    assert main(["evaluate", "--data", str(fairface), "--model", "rn", "--out", str(cache), *FAST]) == 0
    html = _report(tmp_path, "--cache", str(cache), "--model", "faircam")
    assert "is not the model this evaluation was computed for" in html


def test_model_card_of_a_brought_models_cache_without_model(tmp_path, fairface, capsys):
    """`faircam model-card --cache` alone describes the cache's own model too; for a table of answers it says in one
    line that there is no model to describe (exit 2)."""
    save_file(_resnet(2).state_dict(), tmp_path / "w.safetensors")
    spec = store.weights_spec("torchvision", "resnet18", ["woman", "man"], input_size=SIZE)
    model = store.install_weights("card resnet", (tmp_path / "w.safetensors").read_bytes(), "w.safetensors", spec)
    cache = cache_path_for(model.name)
    assert main(["evaluate", "--data", str(fairface), "--model", model.name, "--out", str(cache), *FAST]) == 0
    card = tmp_path / "card.md"
    assert main(["model-card", "--cache", str(cache), "--out", str(card)]) == 0
    text = card.read_text().replace("\\", "")
    assert text.startswith("# Model card: card resnet") and "Kind of model: **torchvision**" in text
    rows = pd.read_csv(fairface / "fairface_label_val.csv").head(5)
    (tmp_path / "api.csv").write_text(pd.DataFrame({"file": rows["file"], "pred_gender": rows["gender"]}).to_csv(
        index=False))
    assert main(["import-predictions", str(tmp_path / "api.csv"), "--data", str(fairface), "--out",
                 str(tmp_path / "api.parquet")]) == 0
    capsys.readouterr()
    assert main(["model-card", "--cache", str(tmp_path / "api.parquet"), "--out", str(tmp_path / "api.md")]) == 2
    err = capsys.readouterr().err
    assert err == "faircam: error: api is a table of answers: no model ran, so there is no model to describe.\n"
