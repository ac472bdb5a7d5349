"""Inside the network on the real bundled model and a real FairFace face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faircam.vision.inside import feature_maps, first_conv, first_layer_filters, image_grid, resolution_steps


@pytest.fixture(scope="module")
def face(pipeline, sample_images) -> np.ndarray:
    return pipeline.view(sample_images[0], crop=True).image


@pytest.fixture(scope="module")
def stages(pipeline, face):
    return feature_maps(pipeline.model, face, top=6)


def test_feature_maps_follow_every_trunk_stage(pipeline, face, stages):
    model = pipeline.model
    x = model.to_tensor([face])
    assert len(stages) == len(model.net.trunk)
    with torch.no_grad():
        for stage in stages:
            output = model.net.prefix(x, stage.index + 1)[0].numpy()
            assert stage.shape == output.shape
            assert stage.maps.shape == (6, *output.shape[1:])
            assert stage.maps.min() >= 0 and stage.maps.max() <= 1
            means = output.mean(axis=(1, 2))
            assert stage.channels == list(np.argsort(-means, kind="stable")[:6])
            assert stage.mean_activation == pytest.approx(sorted(means, reverse=True)[:6], rel=1e-5)
    assert stages[0].name == "stem" and stages[-1].name == "CAM layer"
    grid = model.input_size // 32  # EfficientNet-Lite0 halves the picture five times
    assert stages[-1].shape[1:] == (grid, grid)  # the grid the CAMs are computed on (6x6 at 192 px)


def test_resolution_steps_keep_the_last_stage_at_each_size(pipeline, stages):
    steps = resolution_steps(stages)
    sizes = [stages[i].shape[1] for i in steps]
    side = pipeline.model.input_size
    assert steps[0] == 0 and steps[-1] == len(stages) - 1
    # The stem, then the last stage at each size: 96, 48, 24, 12 and 6 px at 192.
    assert sizes == [side // 2, side // 2, side // 4, side // 8, side // 16, side // 32]


def test_first_layer_filters_are_the_first_convolution(pipeline):
    conv = first_conv(pipeline.model.net)
    filters = first_layer_filters(pipeline.model)
    assert len(filters) == conv.out_channels == 32
    assert filters.shape == (32, *conv.kernel_size, 3)
    assert filters.min() >= 0 and filters.max() <= 1
    weights = conv.weight.detach().float().numpy().transpose(0, 2, 3, 1)
    limit = np.abs(weights).max()
    assert np.allclose((filters - 0.5) * 2 * limit, weights, atol=1e-6)  # one shared scale, 0.5 = zero


def test_feature_maps_refuse_a_wrong_size(pipeline):
    side = pipeline.model.input_size
    with pytest.raises(ValueError, match=f"{side}x{side}"):
        feature_maps(pipeline.model, np.zeros((100, 100, 3), np.uint8))


def test_image_grid_layout_and_colours():
    tiles = np.zeros((5, 2, 2), np.float32)
    tiles[1] = 1.0
    grid = image_grid(tiles, columns=3, tile_px=10, gap=2)
    assert grid.shape == (22, 34, 3) and grid.dtype == np.uint8
    assert tuple(grid[0, 0]) == (68, 1, 84)  # viridis at 0
    assert tuple(grid[0, 12]) == (253, 231, 37)  # viridis at 1 (OpenCV rounds 36.75 up)
    assert tuple(grid[0, 10]) == (255, 255, 255)  # the gap
    assert tuple(grid[21, 33]) == (255, 255, 255)  # the unused sixth cell
    rgb = image_grid(np.full((2, 3, 3, 3), 0.5, np.float32), columns=2, tile_px=6)
    assert tuple(rgb[0, 0]) == (127, 127, 127)
    with pytest.raises(ValueError):
        image_grid(np.zeros((0, 2, 2)), columns=2)
