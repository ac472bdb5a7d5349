"""Agreement between CAM methods: do two maps of the same image put their heat in the same place?

Each map is read as a distribution of heat (negative values count as 0, a map without heat as
uniform, as in the focus scores), and two maps agree by their histogram intersection, the sum
over pixels of the smaller share: 1.0 for maps equal up to scale, 0.0 for maps with no heat in
common (1 minus the total variation distance). numpy only.

It also says when one image's maps should not be trusted (`map_checks`): how far its maps agree, and
which map is a small blob (half its heat on a sliver of the picture) or was stretched to 0-1 from values
near zero (nothing in the picture pushed much towards the class it explains).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faircam.evaluation.cache import AGREEMENT_MEAN, agreement_column, method_pairs

if TYPE_CHECKING:
    from faircam.vision.explain import Explanation

# Maps agreeing at least this much put their heat in much the same places; under PARTLY they disagree.
AGREE, PARTLY = 0.8, 0.6
# A map holding half its heat on less than this share of the picture is a small blob (a map's answer to the
# model's own class spreads half its heat over about a fifth to a quarter of a FairFace face).
BLOB_SHARE = 0.05
# A map whose highest raw value is under this share of the same method's map for the model's own answer (or
# zero) was stretched from almost nothing.
FAINT_SHARE = 0.1


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
    return _intersection(_shares(a), _shares(b))


def _intersection(shares_a: np.ndarray, shares_b: np.ndarray) -> np.ndarray:
    return np.minimum(shares_a, shares_b).sum(axis=1)


def agreement_columns(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every pair's agreement (`agreement_column`) and their mean (`AGREEMENT_MEAN`) for a batch of maps; none for
    one method (a black box's occlusion maps)."""
    if len(maps) < 2:
        return {}
    # Each method's shares once, not once per pair: `faircam evaluate` runs this on every batch.
    shares = {method: _shares(m) for method, m in maps.items()}
    columns = {agreement_column(a, b): _intersection(shares[a], shares[b])
               for a, b in method_pairs(tuple(maps))}
    columns[AGREEMENT_MEAN] = np.mean(list(columns.values()), axis=0)
    return columns


def half_heat_share(cam: np.ndarray) -> float:
    """The smallest share of the picture that holds half of a map's heat (NaN for a map without heat)."""
    heat = np.sort(np.clip(np.asarray(cam, dtype=np.float64), 0.0, None).ravel())[::-1]
    total = heat.sum()
    if not np.isfinite(total) or total <= 0:
        return float("nan")
    return float((np.searchsorted(np.cumsum(heat) / total, 0.5) + 1) / heat.size)


@dataclass(frozen=True)
class MapCheck:
    """Why one map should be read with care: `blob` (half its heat on `half_heat` of the picture) and `faint`
    (its highest raw value `raw_max`, `strength` of the same method's for the model's own answer)."""

    half_heat: float
    raw_max: float
    strength: float
    blob: bool
    faint: bool

    def words(self) -> str:
        """Its warnings in a phrase ("" when there is none)."""
        said = []
        if self.faint:
            said.append("stretched from near zero (raw peak "
                        + (f"{self.strength:.0%} of the model's own answer's)" if self.raw_max > 0 else "0)"))
        if self.blob:
            said.append(f"a small blob: half its heat on {self.half_heat:.0%} of the picture")
        return "; ".join(said)


def map_checks(explanation: Explanation, answer: Explanation | None = None) -> dict[str, MapCheck]:
    """Each map's `MapCheck`; `answer` is the same view's explanation of the model's own answer (default: this
    one), against which a map's raw peak is weighed."""
    answer = answer or explanation
    checks = {}
    for method, cam in explanation.maps.items():
        raw_max = explanation.raw_ranges[method][1]
        reference = answer.raw_ranges[method][1]
        strength = raw_max / reference if reference > 0 else 0.0
        half = half_heat_share(cam)
        checks[method] = MapCheck(half_heat=half, raw_max=raw_max, strength=strength,
                                  blob=bool(half < BLOB_SHARE), faint=raw_max <= 0 or strength < FAINT_SHARE)
    return checks


def image_agreement(maps: dict[str, np.ndarray]) -> float:
    """How far one image's maps (H, W each) agree: the mean histogram intersection over every pair."""
    return float(agreement_columns({m: np.asarray(cam)[None] for m, cam in maps.items()})[AGREEMENT_MEAN][0])


def agreement_words(agreement: float) -> str:
    """An image's agreement in words, for the page."""
    if agreement >= AGREE:
        return "they put their heat in much the same places"
    if agreement >= PARTLY:
        return "they agree only in part: compare them before trusting any one"
    return "they disagree: no single map can be trusted here"
