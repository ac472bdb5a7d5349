"""Inside the network: what each stage computes for one image, and the first layer's filters.

`feature_maps` runs one image through the classifier and keeps, per stage (a trunk's stages, or a
brought network's outermost layers with a spatial grid), the channels with the highest mean
activation (the ones that respond most to this image), each scaled to [0, 1] for display.
`first_layer_filters` gives the first convolution's RGB kernels as small images. `image_grid`
tiles either into one picture for the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from faircam.models.model import LoadedModel


@dataclass
class StageMaps:
    """The strongest channels of one trunk stage's output for one image."""

    index: int
    name: str
    shape: tuple[int, int, int]  # channels, height, width of the whole stage output
    channels: list[int]
    mean_activation: list[float]
    maps: np.ndarray  # (len(channels), height, width) float32, each map scaled to [0, 1]


def stage_name(index: int, count: int) -> str:
    """"stem" for the first stage, "CAM layer" for the last (where the maps are computed)."""
    if index == 0:
        return "stem"
    return "CAM layer" if index == count - 1 else f"stage {index}"


def _unit(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] on its own range; a constant map becomes all zeros."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0).astype(np.float32)


def _stages(model: LoadedModel) -> list[tuple[str, nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]]:
    """(name, module, reshape of its output into a grid or None) of each stage shown, in the order they run: the
    trunk's stages for faircam's and the third-party networks; for a brought network, which has no trunk, the
    outermost of the layers that could explain it (`foreign.cam_layers`: outputs with a spatial grid or a square
    of patch tokens), its CAM layer among them."""
    net = model.net
    trunk = getattr(net, "trunk", None)
    if trunk is not None:
        return [(stage_name(i, len(trunk)), stage, None) for i, stage in enumerate(trunk)]
    from faircam.models.foreign import cam_layers

    layers = cam_layers(net.net, model.input_size)
    cam = net.cam_layer
    shown = [la for la in layers if la.module is cam
             or not any(la.name.startswith(other.name + ".") for other in layers if other is not la)]
    return [(f"{la.name} (CAM layer)" if la.module is cam else la.name, la.module, la.reshape) for la in shown]


@torch.no_grad()
def feature_maps(model: LoadedModel, image: np.ndarray, top: int = 8) -> list[StageMaps]:
    """Every stage's `top` channels by mean activation for one RGB image at `input_size` (`_stages`), from one
    forward pass of the whole network."""
    if image.shape[:2] != (model.input_size, model.input_size):
        raise ValueError(f"image must be {model.input_size}x{model.input_size}, got {image.shape[:2]}")
    stages = _stages(model)
    outputs: dict[int, torch.Tensor] = {}

    def keep(index: int, reshape: Callable[[torch.Tensor], torch.Tensor] | None):
        def hook(module: nn.Module, args: object, output: torch.Tensor) -> None:
            # A copy: a later in-place layer (torchvision's ReLU after a BatchNorm) would change the output kept.
            outputs.setdefault(index, (reshape(output) if reshape else output).clone())
        return hook

    hooks = [module.register_forward_hook(keep(i, reshape)) for i, (_, module, reshape) in enumerate(stages)]
    try:
        model.net(model.to_tensor([image]))
    finally:
        for hook in hooks:
            hook.remove()
    found = []
    for index, (name, _, _) in enumerate(stages):
        output = outputs[index][0].float().numpy()
        means = output.mean(axis=(1, 2))
        order = np.argsort(-means, kind="stable")[:top]
        found.append(StageMaps(
            index=index, name=name, shape=tuple(output.shape),
            channels=[int(c) for c in order], mean_activation=[float(means[c]) for c in order],
            maps=_unit(output[order]),
        ))
    return found


def resolution_steps(stages: list[StageMaps]) -> list[int]:
    """Indices of the stem and of the last stage at each spatial resolution (a short tour)."""
    keep = [0]
    for stage, following in zip(stages, stages[1:]):
        if following.shape[1:] != stage.shape[1:] and stage.index not in keep:
            keep.append(stage.index)
    if stages and stages[-1].index not in keep:
        keep.append(stages[-1].index)
    return keep


def first_conv(net: nn.Module) -> nn.Conv2d:
    """The network's first convolution (the one that looks at the pixels)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError("the network has no convolution")


def first_layer_filters(model: LoadedModel) -> np.ndarray:
    """The first convolution's kernels as (out_channels, kh, kw, 3) RGB images in [0, 1].

    All kernels share one symmetric scale, so 0.5 grey is a zero weight and colours compare
    across filters; a kernel that reads more than three input channels shows its first three.
    """
    weights = first_conv(model.net).weight.detach().float().numpy()[:, :3]
    limit = float(np.abs(weights).max()) or 1.0
    return (weights.transpose(0, 2, 3, 1) / (2 * limit) + 0.5).astype(np.float32)


def image_grid(tiles: np.ndarray, columns: int, tile_px: int = 64, gap: int = 2) -> np.ndarray:
    """Tiles in [0, 1] ((n, h, w) shown in viridis, or (n, h, w, 3) RGB) as one white-spaced uint8 RGB image.

    Tiles are enlarged with nearest-neighbour sampling, so a 5x5 map shows its 25 cells.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    if tiles.ndim not in (3, 4) or len(tiles) == 0:
        raise ValueError(f"tiles must be a non-empty (n, h, w) or (n, h, w, 3) array, got shape {tiles.shape}")
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    canvas = np.full((rows * (tile_px + gap) - gap, columns * (tile_px + gap) - gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        pixels = np.uint8(np.clip(tile, 0, 1) * 255)
        if pixels.ndim == 2:
            pixels = cv2.cvtColor(cv2.applyColorMap(pixels, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
        pixels = cv2.resize(pixels, (tile_px, tile_px), interpolation=cv2.INTER_NEAREST)
        r, c = divmod(i, columns)
        canvas[r * (tile_px + gap): r * (tile_px + gap) + tile_px, c * (tile_px + gap): c * (tile_px + gap) + tile_px] \
            = pixels
    return canvas
