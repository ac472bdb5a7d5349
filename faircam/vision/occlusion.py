"""Perturbation maps for a model faircam can run but not look into: occlusion, not a CAM.

An ONNX graph with an operator onnx2torch cannot convert runs in onnxruntime as a black box
(`faircam.models.foreign.OnnxRuntimeNet`): it has no layers to hook and no gradients, so the four CAMs
cannot be computed. `OcclusionExplainer` stands in for `faircam.vision.cams.CamExplainer` (the same call
and the same `CamBatch`), with one method, `OCCLUSION`: Captum's `Occlusion` slides a grey square (the
model's mean colour, 0 after normalisation) over the image and records how much the explained class's
probability falls where the square hides the image. So every page and cache column that reads maps by
method name works; the pages and the report say that it is an occlusion map (`faircam.wording.OCCLUSION_MAPS`),
a measure of what the answer depends on at the square's scale, not of what a layer saw.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faircam.vision.cams import CamBatch, Turns
from faircam.wording import OCCLUSION

# The square's side and its step as fractions of the input's side.
WINDOW, STRIDE = 1 / 8, 1 / 16
# Occluded copies per forward pass.
PER_PASS = 32


class OcclusionExplainer:
    """Occlusion maps of a network run as a black box, called as `CamExplainer` is."""

    methods = (OCCLUSION,)

    def __init__(self, net: nn.Module):
        self.net = net
        # The app's sessions take turns at it as at a CAM explainer (`Pipeline.explain`).
        self.turns = Turns()

    def __call__(self, inputs: torch.Tensor, target_classes: list[int] | None = None,
                 outputs: slice = slice(None)) -> CamBatch:
        """Maps for `target_classes` among the network's `outputs` (one task's classes; default: all), by default
        each image's predicted class: where hiding the image lowers that class's probability most."""
        from captum.attr import Occlusion

        with torch.no_grad():
            logits = self.net(inputs)
        probs = torch.softmax(logits[:, outputs], dim=1).cpu().numpy()
        if target_classes is None:
            target_classes = probs.argmax(axis=1).tolist()

        def answer(batch: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.softmax(self.net(batch)[:, outputs], dim=1)

        side = inputs.shape[-1]
        window, stride = max(round(side * WINDOW), 1), max(round(side * STRIDE), 1)
        drop = Occlusion(answer).attribute(inputs, target=list(target_classes), baselines=0.0,
                                           sliding_window_shapes=(inputs.shape[1], window, window),
                                           strides=(inputs.shape[1], stride, stride), perturbations_per_eval=PER_PASS)
        # Each pixel's fall in probability when hidden (summed over channels, which are hidden together); a rise
        # is no evidence for the class, so it is clipped as the CAMs clip negative weights.
        heat = np.maximum(drop.sum(dim=1).cpu().numpy(), 0)
        flat = heat.reshape(len(heat), -1)
        low, high = flat.min(axis=1), flat.max(axis=1)
        span = np.where(high > low, high - low, 1.0)
        maps = ((heat - low[:, None, None]) / span[:, None, None]).astype(np.float32)
        made = {OCCLUSION: maps}, {OCCLUSION: np.stack([low, high], axis=1).astype(np.float64)}
        return CamBatch(probs=probs, targets=np.asarray(target_classes), logits=logits.float().cpu().numpy(),
                        make_maps=lambda: made)


def explainer_for(net: nn.Module, cam_layer: nn.Module | None):
    """The maps a network gets: the four CAMs on its CAM layer, or occlusion maps when it has none (a black box)."""
    from faircam.vision.cams import CamExplainer

    return OcclusionExplainer(net) if cam_layer is None else CamExplainer(net, cam_layer)
