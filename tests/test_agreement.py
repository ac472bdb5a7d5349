"""Map agreement (histogram intersection) on maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from faircam.evaluation.agreement import agreement_columns, map_agreement
from faircam.evaluation.cache import AGREEMENT_MEAN, agreement_column
from faircam.vision.cams import METHODS


def columns_map(cols: list[int]) -> np.ndarray:
    """A 4x4 map that is 1 on the given columns."""
    out = np.zeros((1, 4, 4))
    out[0, :, cols] = 1.0
    return out


def test_identical_and_scaled_maps_agree_fully():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8))
    np.testing.assert_allclose(map_agreement(maps, maps), 1.0)
    np.testing.assert_allclose(map_agreement(maps, 5 * maps), 1.0)


def test_known_overlap():
    # Columns {0, 1} and {1, 2}: each holds 1/8 of its heat per pixel, shared column 1 = 4 pixels.
    assert map_agreement(columns_map([0, 1]), columns_map([1, 2]))[0] == pytest.approx(0.5)
    # Columns {0} and {0, 1, 2, 3}: min(1/4, 1/16) on the 4 pixels of column 0.
    assert map_agreement(columns_map([0]), columns_map([0, 1, 2, 3]))[0] == pytest.approx(0.25)
    assert map_agreement(columns_map([0]), columns_map([3]))[0] == pytest.approx(0.0)


def test_maps_without_heat_count_as_uniform():
    flat = np.ones((1, 4, 4))
    assert map_agreement(np.zeros((1, 4, 4)), flat)[0] == pytest.approx(1.0)
    # Negative values carry no heat, as in the focus scores.
    assert map_agreement(-columns_map([0]), flat)[0] == pytest.approx(1.0)
    assert map_agreement(np.full((1, 4, 4), np.nan), columns_map([0, 1]))[0] == pytest.approx(0.5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="N, H, W"):
        map_agreement(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))


def test_columns_for_every_pair_and_their_mean():
    a, b, c, d = METHODS
    maps = {a: columns_map([0, 1]), b: columns_map([1, 2]), c: columns_map([0, 1]), d: columns_map([3])}
    columns = agreement_columns(maps)
    expected = {agreement_column(a, b): 0.5, agreement_column(a, c): 1.0, agreement_column(a, d): 0.0,
                agreement_column(b, c): 0.5, agreement_column(b, d): 0.0, agreement_column(c, d): 0.0}
    assert list(columns) == [*expected, AGREEMENT_MEAN]
    for name, value in expected.items():
        assert columns[name][0] == pytest.approx(value), name
    assert columns[AGREEMENT_MEAN][0] == pytest.approx(2 / 6)
