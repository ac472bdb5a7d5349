"""write_layout: the hub's parquet files back into FairFace's own folder layout."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faircam.data.fairface import load_split, read_data_image
from faircam.data.fetch import write_layout
from faircam.errors import FetchError

# Integer labels as the hub copy (HuggingFaceM4/FairFace, config 0.25) stores them, with the
# names its dataset card gives them: gender 0 Male / 1 Female; race 0 East Asian, 1 Indian,
# 2 Black, 3 White, 4 Middle Eastern, 5 Latino_Hispanic, 6 Southeast Asian; age 0 "0-2" .. 8.
TRAIN = [  # (source image, age, gender, race, service_test) -> expected names
    ("val/1.jpg", 1, 0, 0, False, ("3-9", "Male", "East Asian")),
    ("val/2.jpg", 6, 1, 3, True, ("50-59", "Female", "White")),
    ("val/3.jpg", 8, 1, 5, True, ("more than 70", "Female", "Latino_Hispanic")),
]
VALIDATION = [
    ("val/4.jpg", 0, 0, 6, False, ("0-2", "Male", "Southeast Asian")),
    ("val/5.jpg", 4, 1, 4, True, ("30-39", "Female", "Middle Eastern")),
]
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def write_parquet(path, records, fairface) -> None:
    table = pa.table({
        "image": pa.array([{"bytes": (fairface / src).read_bytes(), "path": None} for src, *_ in records],
                          type=IMAGE_TYPE),
        "age": pa.array([r[1] for r in records], type=pa.int64()),
        "gender": pa.array([r[2] for r in records], type=pa.int64()),
        "race": pa.array([r[3] for r in records], type=pa.int64()),
        "service_test": pa.array([r[4] for r in records], type=pa.bool_()),
    })
    pq.write_table(table, path)


@pytest.fixture
def hub_dir(tmp_path, fairface):
    folder = tmp_path / "hub" / "0.25"
    folder.mkdir(parents=True)
    write_parquet(folder / "train-00000-of-00001.parquet", TRAIN, fairface)
    write_parquet(folder / "validation-00000-of-00001.parquet", VALIDATION, fairface)
    return folder


@pytest.mark.parametrize(("split", "records"), [("train", TRAIN), ("val", VALIDATION)])
def test_write_layout(hub_dir, tmp_path, fairface, split, records):
    out = tmp_path / "fairface"
    counts = write_layout(hub_dir, out)
    assert counts == {"train": len(TRAIN), "val": len(VALIDATION)}

    labels = pd.read_csv(out / f"fairface_label_{split}.csv", dtype=str)
    assert list(labels.columns) == ["file", "age", "gender", "race", "service_test"]
    assert labels["file"].tolist() == [f"{split}/{n}.jpg" for n in range(1, len(records) + 1)]
    assert [tuple(r) for r in labels[["age", "gender", "race"]].to_numpy()] == [r[5] for r in records]
    assert labels["service_test"].tolist() == [str(r[4]) for r in records]
    for (src, *_), name in zip(records, labels["file"]):
        assert (out / name).read_bytes() == (fairface / src).read_bytes()

    loaded = load_split(out, split)
    assert len(loaded.rows) == len(records) and loaded.dropped.empty
    assert read_data_image(loaded.root, loaded.rows["file"].iloc[0]).shape == (224, 224, 3)


def test_write_layout_limit(hub_dir, tmp_path):
    out = tmp_path / "fairface"
    assert write_layout(hub_dir, out, limit=1) == {"train": 1, "val": 1}
    assert sorted(p.name for p in (out / "train").iterdir()) == ["1.jpg"]
    assert len(pd.read_csv(out / "fairface_label_train.csv")) == 1


def test_write_layout_several_files_per_split(hub_dir, tmp_path, fairface):
    (hub_dir / "train-00000-of-00001.parquet").rename(hub_dir / "train-00000-of-00002.parquet")
    write_parquet(hub_dir / "train-00001-of-00002.parquet", VALIDATION, fairface)
    out = tmp_path / "fairface"
    assert write_layout(hub_dir, out)["train"] == len(TRAIN) + len(VALIDATION)
    labels = pd.read_csv(out / "fairface_label_train.csv", dtype=str)
    assert labels["file"].tolist() == [f"train/{n}.jpg" for n in range(1, 6)]
    assert labels["race"].tolist()[3:] == ["Southeast Asian", "Middle Eastern"]
    assert (out / "train" / "4.jpg").read_bytes() == (fairface / "val/4.jpg").read_bytes()


def test_write_layout_without_parquet_files(tmp_path):
    with pytest.raises(FetchError, match="No train parquet files"):
        write_layout(tmp_path, tmp_path / "out")
