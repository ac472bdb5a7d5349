"""Deletion/insertion AUC on a hand-built model with answers worked out by hand; ROAD against the library."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

from faircam.evaluation.cache import focus_column
from faircam.evaluation.faithfulness import curve_aucs, deletion_insertion, faithfulness_columns, road_scores

SIDE = 4  # 16 pixels


class PixelModel(nn.Module):
    """P(class 1) is the value of the top-left pixel: the only pixel that matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x[:, 0, 0, 0].clamp(1e-7, 1 - 1e-7)
        return torch.stack([torch.log(1 - p), torch.log(p)], dim=1)


def map_ranking_top_left(rank: int) -> np.ndarray:
    """A 4x4 map whose top-left pixel is the `rank`-th most relevant (0 = first)."""
    values = np.arange(SIDE * SIDE, 0, -1, dtype=np.float32)  # pixel order = relevance order
    values[[0, rank]] = values[[rank, 0]]
    return values.reshape(SIDE, SIDE)


def curves(rank: int, steps: int, start: float, end: float) -> float:
    ones = torch.full((1, 1, SIDE, SIDE), start)
    zeros = torch.full((1, 1, SIDE, SIDE), end)
    maps = {"m": map_ranking_top_left(rank)[None]}
    return float(curve_aucs(PixelModel(), ones, zeros, maps, np.array([1]), steps)["m"][0])


@pytest.mark.parametrize(("rank", "expected"), [(0, 1 / 32), (15, 31 / 32), (5, 5 / 16 + 1 / 32)])
def test_deletion_one_pixel_per_step(rank, expected):
    # The probability is 1 until the top-left pixel is removed at step rank + 1, then 0:
    # trapezoid area = rank / 16 full steps plus half a step.
    assert curves(rank, 16, start=1.0, end=0.0) == pytest.approx(expected, abs=1e-5)


def test_deletion_several_pixels_per_step():
    # 4 steps of 4 pixels: rank 5 goes at step 2, so the curve is 1, 1, 0, 0, 0 -> (1 + 0.5) / 4.
    assert curves(5, 4, start=1.0, end=0.0) == pytest.approx(0.375, abs=1e-5)


@pytest.mark.parametrize(("rank", "expected"), [(0, 31 / 32), (15, 1 / 32)])
def test_insertion_is_the_mirror(rank, expected):
    assert curves(rank, 16, start=0.0, end=1.0) == pytest.approx(expected, abs=1e-5)


def test_deletion_insertion_with_the_default_baselines():
    ones = torch.ones((2, 1, SIDE, SIDE))
    maps = {"good": np.stack([map_ranking_top_left(0)] * 2), "bad": np.stack([map_ranking_top_left(15)] * 2)}
    deletion, insertion = deletion_insertion(PixelModel(), ones, maps, np.array([1, 1]), steps=16)
    np.testing.assert_allclose(deletion["good"], 1 / 32, atol=1e-5)
    np.testing.assert_allclose(deletion["bad"], 31 / 32, atol=1e-5)
    # Insertion starts from a blurred copy, and a flat image blurs to itself: P stays 1.
    np.testing.assert_allclose(insertion["good"], 1.0, atol=1e-5)
    # For the other class the probabilities are 1 - those: the AUC mirrors.
    deletion0, _ = deletion_insertion(PixelModel(), ones, maps, np.array([0, 0]), steps=16)
    np.testing.assert_allclose(deletion0["good"], 1 - 1 / 32, atol=1e-5)


def tiny_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2)).eval()


def test_road_equals_the_library_road_combined():
    net = tiny_net()
    rng = np.random.default_rng(0)
    inputs = torch.from_numpy(rng.normal(size=(3, 3, 12, 12)).astype(np.float32))
    maps = {"a": rng.random((3, 12, 12)).astype(np.float32), "b": rng.random((3, 12, 12)).astype(np.float32)}
    targets = np.array([0, 1, 1])
    percentiles = (20, 50, 80)
    torch.manual_seed(7)
    ours = road_scores(net, inputs, maps, targets, percentiles)
    # The library on the same batch (every method's maps after each other) under the same seed.
    torch.manual_seed(7)
    goals = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets] * 2
    library = ROADCombined(percentiles=list(percentiles))(
        inputs.repeat(2, 1, 1, 1), np.concatenate([maps["a"], maps["b"]]), goals, net)
    np.testing.assert_allclose(ours["a"], library[:3], atol=1e-6)
    np.testing.assert_allclose(ours["b"], library[3:], atol=1e-6)


class Corner(nn.Module):
    """P(class 1) rises with the mean of the top-left 3x3 patch of the first channel: the only pixels that matter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(8 * x[:, 0, :3, :3].mean(dim=(1, 2)))
        return torch.stack([torch.log(1 - p), torch.log(p)], dim=1)


def corner_inputs() -> torch.Tensor:
    """A 10x10 image whose top-left patch makes `Corner` sure of class 1."""
    inputs = torch.full((1, 3, 10, 10), -0.5)
    inputs[:, :, :3, :3] = 1.0
    return inputs


def test_road_rewards_the_map_that_marks_what_matters():
    # The model reads only the top-left 3x3 patch; a map marking it must beat its reverse.
    inputs = corner_inputs()
    marks = np.zeros((1, 10, 10), dtype=np.float32)
    marks[0, :3, :3] = 1.0
    marks += np.linspace(0, 0.01, 100, dtype=np.float32).reshape(1, 10, 10)
    torch.manual_seed(0)
    scores = road_scores(Corner(), inputs, {"right": marks, "reversed": 1 - marks}, np.array([1]), (20, 50, 80))
    assert scores["right"][0] > 0.1 > scores["reversed"][0]


def test_faithfulness_columns_names():
    net = tiny_net()
    inputs = torch.zeros((2, 3, 8, 8))
    maps = {"a": np.random.default_rng(1).random((2, 8, 8)).astype(np.float32)}
    torch.manual_seed(0)
    columns = faithfulness_columns(net, inputs, maps, np.array([0, 1]), (50,), 4)
    assert sorted(columns) == sorted(focus_column("a", k) for k in ("road", "deletion", "insertion"))
    assert all(v.shape == (2,) and np.isfinite(v).all() for v in columns.values())


def test_only_valid_pixels_move_and_count():
    # The top three rows lie beyond the photo (a crop's filler) and the map rates them highest; the
    # top-left pixel is the most relevant valid one. Counting only the 4 valid pixels, it goes at
    # the first of 4 steps: curve 1, 0, 0, 0, 0 -> 1/8. Counting all 16 it would go last: 7/8.
    relevance = np.arange(SIDE * SIDE, 0, -1, dtype=np.float32).reshape(SIDE, SIDE)[::-1].copy()
    relevance[1:] += 100
    valid = np.zeros((1, SIDE, SIDE), dtype=bool)
    valid[0, 0] = True
    ones, zeros = torch.ones((1, 1, SIDE, SIDE)), torch.zeros((1, 1, SIDE, SIDE))
    args = (PixelModel(), ones, zeros, {"m": relevance[None]}, np.array([1]), 4)
    assert float(curve_aucs(*args)["m"][0]) == pytest.approx(7 / 8, abs=1e-5)
    assert float(curve_aucs(*args, valid=valid)["m"][0]) == pytest.approx(1 / 8, abs=1e-5)


def test_road_never_imputes_beyond_the_photo():
    # The model reads only the top-left 3x3 patch, which lies beyond the photo (the crop's filler),
    # and the map rates it highest. Imputing it changes the answer; leaving it alone, as the mask
    # asks, leaves MoRF and LeRF the same answer: a score of exactly 0.
    inputs = corner_inputs()
    marks = np.linspace(0, 1, 100, dtype=np.float32).reshape(1, 10, 10)[:, ::-1, ::-1].copy()
    valid = np.ones((1, 10, 10), dtype=bool)
    valid[0, :3, :3] = False
    torch.manual_seed(0)
    unmasked = road_scores(Corner(), inputs, {"m": marks}, np.array([1]), (20, 50, 80))["m"][0]
    torch.manual_seed(0)
    masked = road_scores(Corner(), inputs, {"m": marks}, np.array([1]), (20, 50, 80), valid)["m"][0]
    assert unmasked > 0.1
    assert masked == 0.0
