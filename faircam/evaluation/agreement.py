"""Agreement between CAM methods: do two maps of the same image put their heat in the same place?

Each map is read as a distribution of heat (negative values count as 0, a map without heat as
uniform, as in the focus scores), and two maps agree by their histogram intersection, the sum
over pixels of the smaller share: 1.0 for maps equal up to scale, 0.0 for maps with no heat in
common (1 minus the total variation distance). numpy only.
"""

from __future__ import annotations

import numpy as np

from faircam.evaluation.cache import AGREEMENT_MEAN, agreement_column, method_pairs


def _shares(maps: np.ndarray) -> np.ndarray:
    heat = np.clip(np.asarray(maps, dtype=np.float64), 0.0, None).reshape(len(maps), -1)
    total = heat.sum(axis=1, keepdims=True)
    usable = np.isfinite(total) & (total > 0)
    uniform = np.full_like(heat, 1.0 / heat.shape[1])
    return np.where(usable, heat / np.where(usable, total, 1.0), uniform)


def map_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Histogram intersection of two batches of maps (N, H, W): one value in [0, 1] per image."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"map batches must both be (N, H, W), got {a.shape} and {b.shape}")
    return np.minimum(_shares(a), _shares(b)).sum(axis=1)


def agreement_columns(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every pair's agreement (`agreement_column`) and their mean (`AGREEMENT_MEAN`) for a batch of maps."""
    columns = {agreement_column(a, b): map_agreement(maps[a], maps[b]) for a, b in method_pairs(tuple(maps))}
    columns[AGREEMENT_MEAN] = np.mean(list(columns.values()), axis=0)
    return columns
