"""Server time of the Evaluation and Fairness pages for the bundled cache and a synthetic 100,000-row one.

The synthetic cache has the real schema: the bundled cache's rows resampled with replacement (seed 0),
file names made unique, written by `faircam.evaluation.cache.write_cache` with the bundled metadata and averages.
Each page runs in Streamlit's `AppTest` (the server's script run, no browser): once cold (Streamlit's
caches cleared, so the cache is read and checked) and then warm (memoised), median of the runs.
"""

from __future__ import annotations

import os
import time

from bench.common import OUT, median
from faircam.config import DEFAULT_CACHE, PROJECT_ROOT
from faircam.evaluation.cache import read_cache, write_cache

PAGES = ("pages/2_Evaluation.py", "pages/4_Fairness.py")


def synthetic_cache(rows: int = 100_000) -> str:
    """A cache of `rows` rows resampled from the bundled one (real schema and metadata), written once."""
    path = OUT / f"synthetic-{rows}.parquet"
    if not path.is_file():
        bundled = read_cache(DEFAULT_CACHE)
        sample = bundled.rows.sample(rows, replace=True, random_state=0).reset_index(drop=True)
        sample["file"] = [f"synthetic/{i}.jpg" for i in range(rows)]
        meta = {k: v for k, v in bundled.meta.items() if k not in ("checksum", "rows", "schema_version")}
        OUT.mkdir(parents=True, exist_ok=True)
        write_cache(sample, path, meta, bundled.averages)
    return str(path)


def _page_seconds(page: str, cold: bool) -> float:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if cold:
        st.cache_data.clear()
        st.cache_resource.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=600)
    at.switch_page(page)
    start = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - start
    if at.exception:
        raise SystemExit(f"bench: error: {page} failed: {at.exception[0].value}")
    return seconds


def run(repeats: int = 3) -> dict:
    caches = {"bundled (2,500 rows)": str(DEFAULT_CACHE), "synthetic (100,000 rows)": synthetic_cache()}
    results: dict = {}
    before = os.environ.get("FAIRCAM_CACHE")
    try:
        _page_seconds(PAGES[0], cold=True)  # Streamlit's and the pages' imports, outside the timings
        for label, path in caches.items():
            os.environ["FAIRCAM_CACHE"] = path
            results[label] = {
                page: {"cold_s": round(median([_page_seconds(page, cold=True) for _ in range(repeats)]), 2),
                       "warm_s": round(median([_page_seconds(page, cold=False) for _ in range(repeats)]), 2)}
                for page in PAGES}
    finally:
        if before is None:
            os.environ.pop("FAIRCAM_CACHE", None)
        else:
            os.environ["FAIRCAM_CACHE"] = before
    small, large = results.values()
    results["ratio (100,000 / 2,500)"] = {page: {k: round(large[page][k] / small[page][k], 2) for k in small[page]}
                                          for page in PAGES}
    return results
