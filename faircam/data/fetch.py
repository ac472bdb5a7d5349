"""Downloading FairFace from the Hugging Face hub into FairFace's own folder layout.

For users with internet: `faircam fetch-fairface --out DIR`. The hub copy
(HuggingFaceM4/FairFace, config "0.25") stores images and integer labels in parquet files;
they are written back as `train/N.jpg`, `val/N.jpg` and the two official label CSVs, so the
result is the same layout as FairFace's own download and as `../shared/fairface`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from faircam.errors import FetchError

HUB_REPO = "HuggingFaceM4/FairFace"
HUB_CONFIG = "0.25"
# Label orders of the hub copy's class_label features (its dataset card).
HUB_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
HUB_GENDERS = ("Male", "Female")
HUB_RACES = ("East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian")
HUB_SPLITS = {"train": "train", "validation": "val"}



def download_parquet(cache_dir: Path | None = None) -> Path:
    """Download the hub's parquet files; the folder they landed in."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            HUB_REPO, repo_type="dataset", allow_patterns=[f"{HUB_CONFIG}/*.parquet"], cache_dir=cache_dir
        )
    except Exception as exc:  # the hub client raises many types for "offline"
        raise FetchError(
            f"Could not download FairFace from the Hugging Face hub ({type(exc).__name__}). "
            "This needs internet; offline, point faircam at a FairFace folder with --data or FAIRCAM_DATA."
        ) from None
    return Path(folder) / HUB_CONFIG


def write_layout(parquet_dir: Path, out: Path, limit: int | None = None) -> dict[str, int]:
    """Write images and label CSVs in FairFace's layout from the hub's parquet files."""
    counts = {}
    for hub_split, split in HUB_SPLITS.items():
        files = sorted(Path(parquet_dir).glob(f"{hub_split}-*.parquet"))
        if not files:
            raise FetchError(f"No {hub_split} parquet files in {parquet_dir}.")
        (out / split).mkdir(parents=True, exist_ok=True)
        labels = []
        total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        bar = tqdm(total=min(total, limit or total), desc=f"writing {split}", unit="img")
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=256):
                for record in batch.to_pylist():
                    if limit is not None and len(labels) >= limit:
                        break
                    name = f"{split}/{len(labels) + 1}.jpg"
                    (out / name).write_bytes(record["image"]["bytes"])
                    labels.append({
                        "file": name,
                        "age": HUB_AGES[record["age"]],
                        "gender": HUB_GENDERS[record["gender"]],
                        "race": HUB_RACES[record["race"]],
                        "service_test": bool(record["service_test"]),
                    })
                    bar.update()
        bar.close()
        pd.DataFrame(labels).to_csv(out / f"fairface_label_{split}.csv", index=False)
        counts[split] = len(labels)
    return counts


def fetch_fairface(out: Path, limit: int | None = None) -> dict[str, int]:
    """Download FairFace (padding 0.25) into `out`; images written per split."""
    return write_layout(download_parquet(), Path(out), limit)
