"""Faithfulness of CAMs: when the pixels a map points at are taken away, does the prediction fall?

Both measures follow the probability (softmax) of the class the map explains:

- ROAD (Rong et al., ICML 2022) with pytorch-grad-cam's own classes: pixels above (MoRF) or
  below (LeRF) a percentile of the map are replaced by noisy linear imputation from their
  neighbours, and the score is (LeRF - MoRF) / 2 averaged over the percentiles, exactly what
  the library's `ROADCombined` returns. Higher is more faithful (range -0.5 to 0.5). The
  percentile is taken over a view's valid pixels and only those are imputed (the library's
  metric and imputer with that one change); pixels beyond the photo's edge keep the filler.
- Deletion and insertion AUC (Petsiuk et al., RISE, 2018): pixels go, most relevant first, from
  the image to the input normalisation's mean colour (deletion) or from a blurred copy to the
  image (insertion), in `CURVE_STEPS` equal steps; the area under the probability curve over the
  fraction moved. Lower deletion and higher insertion AUC are more faithful. Only a view's valid
  pixels move and count: beyond the photo's edge both ends hold the view's filler.

ROAD solves a sparse linear system per image, method and percentile, so `faircam evaluate`
runs these on a balanced sample (`--faithfulness-per-cell`).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import PerturbationConfidenceMetric
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from faircam.evaluation.cache import focus_column

# Four of the library's nine default thresholds (10, 20, ..., 90): each threshold costs a
# sparse solve per image and method, and these four keep the cost of ROAD near half.
ROAD_PERCENTILES = (20, 40, 60, 80)
CURVE_STEPS = 10
# Insertion starts from the image blurred with this sigma as a share of its side (RISE's blur
# is about this strong): the model sees colours and layout but no features.
INSERTION_BLUR = 0.05
FORWARD_BATCH = 64


class _RemoveValid:
    """The library's `RemoveMostRelevantFirst` (or, with `most_relevant=False`, `RemoveLeastRelevantFirst`)
    over a view's valid pixels: invalid pixels are NaN in the map, left out of the percentile and
    never imputed. With no NaN it removes exactly the library's pixels."""

    def __init__(self, percentile: int, most_relevant: bool) -> None:
        self.percentile, self.most_relevant = percentile, most_relevant
        self.imputer = NoisyLinearImputer()

    def __call__(self, image: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        relevance = cam.numpy() if self.most_relevant else 1 - cam.numpy()
        outside = np.isnan(relevance)
        kept = outside | (relevance < np.nanpercentile(relevance, self.percentile))
        return self.imputer(image, torch.from_numpy(kept.astype(np.float32)))


def road_scores(
    net: nn.Module,
    inputs: torch.Tensor,
    maps: dict[str, np.ndarray],
    targets: np.ndarray,
    percentiles: tuple[int, ...] = ROAD_PERCENTILES,
    valid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """ROAD combined score per method and image, for the class in `targets` (one per image), moving
    only the `valid` pixels (N x H x W; None: all).

    All methods go through the library in one batch. The unperturbed score that the library
    subtracts from LeRF and MoRF cancels in their difference, so it is not computed; with every
    pixel valid the result equals `ROADCombined(percentiles)` under the same random seed.
    """
    methods = list(maps)
    n = len(inputs)
    batch = inputs.repeat(len(methods), 1, 1, 1)
    cams = np.concatenate([np.asarray(maps[m], dtype=np.float32) for m in methods])
    if valid is not None:
        cams = np.where(np.tile(np.asarray(valid, dtype=bool), (len(methods), 1, 1)), cams, np.nan)
    goals = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets] * len(methods)

    def averaged(most_relevant: bool) -> np.ndarray:
        return np.mean([PerturbationConfidenceMetric(_RemoveValid(p, most_relevant))(
            batch, cams, goals, net, return_diff=False) for p in percentiles], axis=0)

    # LeRF first, as ROADCombined does, so both draw the same imputation noise.
    lerf = averaged(most_relevant=False)
    morf = averaged(most_relevant=True)
    combined = (lerf - morf) / 2
    return {m: combined[i * n : (i + 1) * n].astype(np.float64) for i, m in enumerate(methods)}


@torch.no_grad()
def _probabilities(net: nn.Module, inputs: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    probs = [torch.softmax(net(inputs[i : i + FORWARD_BATCH]), dim=1) for i in range(0, len(inputs), FORWARD_BATCH)]
    return torch.cat(probs).cpu().numpy()[np.arange(len(inputs)), targets]


def curve_aucs(
    net: nn.Module,
    start: torch.Tensor,
    end: torch.Tensor,
    maps: dict[str, np.ndarray],
    targets: np.ndarray,
    steps: int = CURVE_STEPS,
    valid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per method, the area under the target probability as pixels change from `start` to `end`.

    At step k of `steps` the round(k / steps * V) most relevant of an image's V valid pixels
    (`valid`, N x H x W; None: all) come from `end` and the others from `start` (ties in pixel
    order); the curve over the fraction of valid pixels moved, 0 to 1, is integrated with the
    trapezoid rule. `start` and `end` should agree on invalid pixels, which never move. Both ends
    are shared by all methods and computed once.
    """
    n, channels, height, width = start.shape
    targets = np.asarray(targets, dtype=np.int64)
    valid = np.ones((n, height, width), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    valid = valid.reshape(n, -1)
    fractions = np.linspace(0, 1, steps + 1)[1:-1]
    counts = np.rint(valid.sum(axis=1)[:, None] * fractions[None, :]).astype(np.int64)
    ends = _probabilities(net, torch.cat([start, end]), np.concatenate([targets, targets]))
    aucs = {}
    for method, cams in maps.items():
        # Invalid pixels rank after every valid one, so the counts reach only valid pixels.
        relevance = np.where(valid, np.asarray(cams, dtype=np.float64).reshape(n, -1), -np.inf)
        order = np.argsort(-relevance, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(height * width), order.shape), axis=1)
        moved = torch.from_numpy(rank[:, None, :] < counts[:, :, None]).to(end.device).reshape(
            n, len(fractions), 1, height, width)
        mixed = torch.where(moved, end[:, None], start[:, None]).reshape(-1, channels, height, width)
        inner = _probabilities(net, mixed, np.repeat(targets, len(fractions))).reshape(n, len(fractions))
        curve = np.concatenate([ends[:n, None], inner, ends[n:, None]], axis=1)
        aucs[method] = np.trapezoid(curve, dx=1.0 / steps, axis=1)
    return aucs


def deletion_insertion(
    net: nn.Module, inputs: torch.Tensor, maps: dict[str, np.ndarray], targets: np.ndarray, steps: int = CURVE_STEPS,
    valid: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(deletion AUC, insertion AUC) per method for normalised `inputs` with their views' `valid`
    masks (N x H x W; None: all valid); see the module docstring."""
    sigma = INSERTION_BLUR * max(inputs.shape[-2:])
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    blurred = gaussian_blur(inputs, [kernel, kernel], [sigma, sigma])
    deleted = torch.zeros_like(inputs)
    if valid is not None:
        # Beyond the photo's edge both ends keep the view's filler: nothing there is removed or inserted.
        inside = torch.from_numpy(np.asarray(valid, dtype=bool))[:, None]
        blurred, deleted = torch.where(inside, blurred, inputs), torch.where(inside, deleted, inputs)
    deletion = curve_aucs(net, inputs, deleted, maps, targets, steps, valid)
    insertion = curve_aucs(net, blurred, inputs, maps, targets, steps, valid)
    return deletion, insertion


def faithfulness_columns(
    net: nn.Module,
    inputs: torch.Tensor,
    maps: dict[str, np.ndarray],
    targets: np.ndarray,
    percentiles: tuple[int, ...] = ROAD_PERCENTILES,
    steps: int = CURVE_STEPS,
    valid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The cache's faithfulness columns (`focus_column(method, "road" | "deletion" | "insertion")`);
    `valid` as in `deletion_insertion`."""
    road = road_scores(net, inputs, maps, targets, percentiles, valid) if percentiles else {}
    deletion, insertion = deletion_insertion(net, inputs, maps, targets, steps, valid)
    columns = {}
    for method in maps:
        columns[focus_column(method, "road")] = road.get(method, np.full(len(inputs), np.nan))
        columns[focus_column(method, "deletion")] = deletion[method]
        columns[focus_column(method, "insertion")] = insertion[method]
    return columns
