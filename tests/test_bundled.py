"""The bundled evaluation cache belongs to the bundled model and is reproduced by `faircam evaluate`."""

from __future__ import annotations

import numpy as np

from faircam.cache import read_cache
from faircam.cli import main
from faircam.config import DEFAULT_CACHE, DEFAULT_MODEL, SHARED_FAIRFACE
from faircam.data import load_split
from faircam.model import file_sha256


def test_bundled_cache_covers_the_shared_validation_split_with_the_bundled_model():
    cache = read_cache(DEFAULT_CACHE)
    assert cache.meta["model"]["sha256"] == file_sha256(DEFAULT_MODEL)
    assert cache.has_cams
    assert sorted(cache.rows["file"]) == sorted(load_split(SHARED_FAIRFACE, "val").rows["file"])


def test_evaluate_reproduces_the_bundled_rows(tmp_path):
    out = tmp_path / "again.parquet"
    assert main(["evaluate", "--data", str(SHARED_FAIRFACE), "--split", "val", "--out", str(out), "--limit", "48"]) == 0
    again = read_cache(out).rows.set_index("file")
    bundled = read_cache(DEFAULT_CACHE).rows.set_index("file").loc[again.index]
    assert (again["pred"] == bundled["pred"]).all()
    np.testing.assert_allclose(again["prob"], bundled["prob"], atol=1e-4)
    focus = [c for c in again.columns if " | " in c]
    np.testing.assert_allclose(again[focus], bundled[focus], atol=1e-3)
