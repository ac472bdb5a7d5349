"""The store of models brought from the "Audit a model" page (faircam.models.store) and `faircam install-model` /
`faircam models`: real models the tests build (nothing downloaded), installed from the bytes a user uploads, then
listed by the registry every page's selector reads; bad uploads refused in one line with nothing left behind."""

from __future__ import annotations

import io
import json
import stat
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_model_kinds import SIZE, _resnet, _vit

from faircam.cli import main
from faircam.config import brought_folder, cache_path_for, model_store
from faircam.errors import ModelError
from faircam.evaluation.cache import read_cache
from faircam.models import registry, store


def zipped(folder: Path, top: str | None = "my-model") -> bytes:
    """`folder` zipped as a user's archiver would, its files under `top/`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}/{path.relative_to(folder)}" if top else str(path.relative_to(folder)))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """A tiny Hugging Face ViT folder (Man/Woman), a ResNet-18 state dict and its ONNX export."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("made")
    resnet = _resnet(2)
    save_file(resnet.state_dict(), root / "resnet.safetensors")
    torch.onnx.export(resnet, torch.zeros(1, 3, SIZE, SIZE), root / "resnet.onnx", dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return {"vit": _vit(root / "vit", ["Man", "Woman"]), "state": root / "resnet.safetensors",
            "onnx": root / "resnet.onnx"}


def nothing_left() -> bool:
    """No model folder, listed or hidden, is left in the store."""
    folder = model_store() / "brought"
    return not folder.exists() or not any(folder.iterdir())


def test_a_zipped_hugging_face_folder_installs_and_is_listed(made):
    model = store.install_archive("vit test", zipped(made["vit"]), "vit.zip")
    assert model.kind == "huggingface" and model.folder == brought_folder("vit test")
    assert model.facts["label_mapping"] == {"gender": "Man → Male, Woman → Female"}
    assert model.facts["cam_layer"] == "vit.layers.1.layernorm_before" and model.facts["input_size"] == 32
    entry = registry.entries()["vit test"]
    assert entry.kind == "huggingface" and entry.weights == model.folder / "model" / "my-model"
    # The registry loads it as every page does, and its cache lives in its folder.
    assert registry.load_model("vit test").sha256 == model.facts["sha256"]
    assert cache_path_for("vit test") == model.folder / "eval_val.parquet"
    store.remove("vit test")
    assert "vit test" not in registry.entries() and nothing_left()


def test_a_state_dict_with_an_architecture_and_classes_installs(made):
    spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
    model = store.install_weights("resnet", made["state"].read_bytes(), "weights.safetensors", spec)
    assert model.kind == "torchvision" and model.facts["cam_layer"] == "layer4"
    assert json.loads((model.folder / "model" / "faircam-model.json").read_text())["weights"] == "model.safetensors"
    net = _resnet(2)
    batch = torch.rand(2, 3, SIZE, SIZE)
    loaded = registry.load_model("resnet")
    with torch.no_grad():
        assert torch.allclose(torch.softmax(net(batch), 1), torch.as_tensor(loaded.answers(batch)["gender"]),
                              atol=1e-6)


def test_an_onnx_file_with_its_description_installs(made):
    description = json.dumps({"format": "onnx", "weights": "whatever.onnx", "input_size": SIZE,
                              "outputs": [{"task": "gender", "classes": ["F", "M"]}]}).encode()
    spec = store.read_description(description, "model.json")
    model = store.install_weights("onnx", made["onnx"], "resnet.onnx", spec)
    assert model.kind == "onnx" and model.facts["label_mapping"] == {"gender": "F → Female, M → Male"}
    assert "onnx" in registry.entries()


def test_a_table_of_answers_installs_with_its_cache(fairface, val_split):
    rows = val_split.rows.head(20)
    table = pd.DataFrame({"file": rows["file"], "pred_gender": rows["gender"].str.lower()}).to_csv(index=False)
    model, counts = store.install_answers("answers", table.encode(), "answers.csv", fairface)
    assert model.kind == "predictions" and counts["answered"] == 20
    cache = read_cache(cache_path_for("answers"))
    assert cache.rows["correct"].all() and cache.meta["model"]["name"] == "answers"
    with pytest.raises(ModelError, match="table of answers"):
        registry.load_model("answers")


def _archive(entries: list[tuple[str, bytes, int]]) -> bytes:
    """A zip whose entries are (name, bytes, unix mode), written as any tool could write them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(("case", "said"), [
    ("traversal", "names a path outside itself ('../evil.txt')"),
    ("absolute", "names a path outside itself ('/etc/evil')"),
    ("symlink", "holds a link ('model/config.json')"),
    ("many", "holds 65 files, more than the 64"),
    ("big", "unpacks to more than the limit of 1 MB"),
    ("not-zip", "is not a readable zip archive"),
    ("empty", "is empty"),
    ("nothing", "upload.zip is a folder with neither faircam-model.json nor a Hugging Face config.json"),
    ("bad-json", "faircam-model.json is not readable JSON"),
    ("twice", "names a file twice"),
])
def test_bad_archives_are_refused_and_leave_nothing(made, tmp_path, monkeypatch, case, said):
    monkeypatch.setenv("FAIRCAM_MAX_MODEL_MB", "1")
    plain = stat.S_IFREG | 0o644
    data = {
        "traversal": lambda: _archive([("model/config.json", b"{}", plain), ("../evil.txt", b"x", plain)]),
        "absolute": lambda: _archive([("/etc/evil", b"x", plain)]),
        "symlink": lambda: _archive([("model/config.json", b"/etc/passwd", stat.S_IFLNK | 0o777)]),
        "many": lambda: _archive([(f"f{i}.txt", b"x", plain) for i in range(65)]),
        # 2 MB of zeros, a few KB zipped: refused by the sizes it unpacks to.
        "big": lambda: _archive([("weights.bin", bytes(2 << 20), plain)]),
        "not-zip": lambda: b"PK\x03\x04 not really",
        "empty": lambda: _archive([]),
        "nothing": lambda: _archive([("readme.txt", b"hello", plain)]),
        "bad-json": lambda: _archive([("faircam-model.json", b"{not json", plain)]),
        "twice": lambda: _archive([("config.json", b"{}", plain), ("config.json", b"{}", plain)]),
    }
    blob = data[case]()
    with pytest.raises(ModelError) as raised:
        store.install_archive("bad", blob, "upload.zip")
    assert said in str(raised.value) and "\n" not in str(raised.value) and str(model_store()) not in str(raised.value)
    assert nothing_left() and "bad" not in registry.entries()
    assert not (tmp_path.parent / "evil.txt").exists()


def test_bad_models_are_refused_and_leave_nothing(made, monkeypatch):
    """Wrong class names, weights of another architecture, an upload above the size limit, a taken name."""
    with pytest.raises(ModelError, match=r"its classes \(cat, male\) are not one of faircam's tasks"):
        store.weights_spec("torchvision", "resnet18", ["cat", "male"])
    spec = store.weights_spec("torchvision", "resnet34", ["female", "male"], input_size=SIZE)
    with pytest.raises(ModelError, match="the weights do not fit torchvision resnet34"):
        store.install_weights("wrong", made["state"], "weights.safetensors", spec)
    with pytest.raises(ModelError, match="torchvision weights must be a .safetensors or .pt or .pth file"):
        store.install_weights("wrong", made["onnx"], "weights.onnx", spec)
    monkeypatch.setenv("FAIRCAM_MAX_MODEL_MB", "1")  # ResNet-18's weights are about 45 MB
    spec = store.weights_spec("torchvision", "resnet18", ["female", "male"], input_size=SIZE)
    with pytest.raises(ModelError, match=r"weights.safetensors is 43 MB, above the limit of 1 MB per model"):
        store.install_weights("big", made["state"], "weights.safetensors", spec)
    monkeypatch.delenv("FAIRCAM_MAX_MODEL_MB")
    assert nothing_left()
    store.install_archive("taken", zipped(made["vit"], top=None), "vit.zip")
    for name in ("taken", "faircam", "../up", ".hidden", "a/b", ""):
        with pytest.raises(ModelError, match="exists already|cannot name a model"):
            store.install_archive(name, zipped(made["vit"]), "vit.zip")
    assert [m.name for m in store.installed()] == ["taken"]


def test_a_model_being_evaluated_is_not_removed(made):
    from faircam.errors import OutputError
    from faircam.files import output_lock

    model = store.install_archive("busy", zipped(made["vit"]), "vit.zip")
    held, release = threading.Event(), threading.Event()

    def evaluation() -> None:  # holds the cache as a running job does, on its own thread
        with output_lock(cache_path_for("busy")):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=evaluation)
    thread.start()
    held.wait(30)
    try:
        with pytest.raises(OutputError, match="being written by another faircam run"):
            store.remove("busy")
    finally:
        release.set()
        thread.join()
    assert store.get("busy") == model
    store.remove("busy")
    assert store.get("busy") is None


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_installs_lists_and_removes(made, tmp_path, fairface, capsys, val_split):
    archive = tmp_path / "vit.zip"
    archive.write_bytes(zipped(made["vit"]))
    status, out, _ = run_cli(["install-model", str(archive), "--name", "my vit"], capsys)
    assert status == 0 and json.loads(out)["kind"] == "huggingface"
    status, out, _ = run_cli(["install-model", str(made["state"]), "--name", "rn", "--arch", "resnet18",
                              "--classes", "Woman,Man", "--input-size", str(SIZE)], capsys)
    assert status == 0 and json.loads(out)["label_mapping"] == {"gender": "Woman → Female, Man → Male"}
    table = tmp_path / "answers.csv"
    rows = val_split.rows.head(10)
    pd.DataFrame({"file": rows["file"], "pred_gender": "woman"}).to_csv(table, index=False)
    status, out, _ = run_cli(["install-model", str(table), "--name", "table", "--data", str(fairface)], capsys)
    assert status == 0
    status, out, _ = run_cli(["models", "--json"], capsys)
    listed = {row["name"]: row for row in json.loads(out)}
    assert {"my vit", "rn", "table"} <= set(listed) and listed["table"]["kind"] == "predictions"
    assert listed["my vit"]["cache"] == str(brought_folder("my vit") / "eval_val.parquet")
    status, out, _ = run_cli(["models", "--remove", "rn"], capsys)
    assert status == 0 and "rn" not in registry.entries()


@pytest.mark.parametrize(("args", "said"), [
    (["install-model", "{zip}", "--name", "x/y"], "cannot name a model"),
    (["install-model", "{state}", "--name", "x"], "--arch"),
    (["install-model", "{state}", "--name", "x", "--arch", "resnet18", "--classes", "cat,dog"], "(cat, dog)"),
    (["install-model", "{bad_zip}", "--name", "x"], "holds a link"),
    (["models", "--remove", "nothing-here"], "No model named 'nothing-here'"),
    (["install-model", "{state}", "--name", "x", "--json", "missing.json"], "--json missing.json: no such file"),
    (["install-model", "missing.zip", "--name", "x"], "missing.zip: no such file"),
])
def test_cli_bad_uploads_are_one_line_and_exit_2(made, tmp_path, capsys, args, said):
    (tmp_path / "vit.zip").write_bytes(zipped(made["vit"]))
    (tmp_path / "bad.zip").write_bytes(_archive([("config.json", b"/etc/passwd", stat.S_IFLNK | 0o777)]))
    paths = {"zip": tmp_path / "vit.zip", "state": made["state"], "bad_zip": tmp_path / "bad.zip"}
    status, _, err = run_cli([a.format(**paths) for a in args], capsys)
    assert status == 2 and err.startswith("faircam: error: ") and err.count("\n") == 1 and said in err, err
    assert nothing_left()
