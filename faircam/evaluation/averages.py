"""Group average maps: the average aligned face and average CAMs per race x gender x outcome.

`faircam evaluate` adds every cropped (MTCNN-aligned) face and its maps to a `GroupAverager`,
which keeps running sums and counts only. The sums can be saved and restored, so an interrupted
evaluation resumes them, and what reaches the cache is the averages alone, never a single
person's pixels. Averages are kept at `AVERAGE_SIZE` pixels: the maps come from a 5x5 grid of
activations, so nothing is lost. A face pixel is averaged over the faces whose photo reaches it
(their validity masks): the crop's filler beyond a photo's edge is not blended into anyone's face,
and a pixel no photo reaches is drawn in the filler grey. No torch here;
`faircam.evaluation.cache.group_averages` reads them back.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from faircam.data.fairface import GENDERS, RACES
from faircam.data.images import FILL
from faircam.evaluation.cache import MAP_LEVELS, OUTCOMES

AVERAGE_SIZE = 64


def _shrink(values: np.ndarray, size: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.shape[:2] == (size, size):
        return values.astype(np.float64)
    return cv2.resize(values, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)


class GroupAverager:
    """Running sums of faces (0-255) and maps (0-1) for every race x gender x outcome."""

    def __init__(self, methods: tuple[str, ...], size: int = AVERAGE_SIZE) -> None:
        self.methods = tuple(methods)
        self.size = size
        self.groups = [(r, g, o) for r in RACES for g in GENDERS for o in OUTCOMES]
        self._index = {group: i for i, group in enumerate(self.groups)}
        self.counts = np.zeros(len(self.groups), dtype=np.int64)
        self.faces = np.zeros((len(self.groups), size, size, 3))
        self.valid = np.zeros((len(self.groups), size, size))
        self.maps = {m: np.zeros((len(self.groups), size, size)) for m in self.methods}

    def add(self, race: str, gender: str, correct: bool, face: np.ndarray, maps: dict[str, np.ndarray],
            valid: np.ndarray | None = None) -> None:
        """One aligned face (HxWx3 uint8) with its validity mask (HxW bool; None: all valid) and its
        maps (HxW in [0, 1]) into their group."""
        i = self._index.get((race, gender, OUTCOMES[0] if correct else OUTCOMES[1]))
        if i is None:  # a face without a race or gender label (a labelled folder's) has no cell
            return
        self.counts[i] += 1
        inside = np.ones(face.shape[:2], np.float32) if valid is None else np.asarray(valid, np.float32)
        # Weighted before shrinking, so a shrunk pixel straddling the photo's edge takes none of the filler.
        self.valid[i] += _shrink(inside, self.size)
        self.faces[i] += _shrink(face * inside[..., None], self.size)
        for method in self.methods:
            self.maps[method][i] += _shrink(maps[method], self.size)

    def state(self) -> dict[str, np.ndarray]:
        """The sums and counts as plain arrays (for `np.savez`), restored by `load_state`."""
        return {"counts": self.counts, "faces": self.faces, "valid": self.valid,
                **{f"map {m}": v for m, v in self.maps.items()}}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.counts = np.array(state["counts"], dtype=np.int64)
        self.faces = np.array(state["faces"], dtype=np.float64)
        self.valid = np.array(state["valid"], dtype=np.float64)
        self.maps = {m: np.array(state[f"map {m}"], dtype=np.float64) for m in self.methods}

    def add_state(self, state: dict[str, np.ndarray]) -> None:
        """Another averager's `state` (of the same methods) added to these sums: batches averaged elsewhere."""
        self.counts += np.asarray(state["counts"], dtype=np.int64)
        self.faces += state["faces"]
        self.valid += state["valid"]
        for method in self.methods:
            self.maps[method] += state[f"map {method}"]

    def table(self) -> pd.DataFrame:
        """The averages of every group with images, as the cache stores them (8-bit faces and map levels)."""
        records = []
        for i, (race, gender, outcome) in enumerate(self.groups):
            n = int(self.counts[i])
            if n == 0:
                continue
            weight = self.valid[i][..., None]
            face = np.where(weight > 0, self.faces[i] / np.maximum(weight, 1e-9), FILL)
            record = {"race": race, "gender": gender, "outcome": outcome, "n": n,
                      "face": np.clip(np.rint(face), 0, 255).astype(np.uint8)}
            for method in self.methods:
                levels = np.rint(self.maps[method][i] / n * MAP_LEVELS)
                record[method] = np.clip(levels, 0, MAP_LEVELS).astype(np.uint8)
            records.append(record)
        return pd.DataFrame.from_records(records, columns=["race", "gender", "outcome", "n", "face", *self.methods])
