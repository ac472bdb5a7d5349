"""Class activation maps: Grad-CAM, Grad-CAM++, XGrad-CAM and LayerCAM from one pass.

pytorch-grad-cam's method classes each run their own forward and backward pass. Here one
set of hooks records the target layer's activations and gradients once, and every method
turns that same record into its map with the library's own code (`compute_cam_per_layer`,
`aggregate_multi_layers`), so the maps equal the library's per-method output at a quarter
of the cost. The backward pass stops at the target layer: the maps need the gradient of the
score with respect to that layer's output only, not the gradients of the weights before it, which
make up most of a full backward pass; and the layers before it keep no autograd graph, which
at batch 32 would hold a gigabyte of saved activations.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from faircam.config import CAM_METHODS

METHOD_CLASSES: dict[str, type[BaseCAM]] = {
    "Grad-CAM": GradCAM,
    "Grad-CAM++": GradCAMPlusPlus,
    "XGrad-CAM": XGradCAM,
    "LayerCAM": LayerCAM,
}


@dataclass
class CamBatch:
    """Probabilities and maps for a batch: `maps[method]` is (N, H, W) in [0, 1]."""

    probs: np.ndarray
    targets: np.ndarray
    maps: dict[str, np.ndarray]


def cut_graph(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
    """The target layer's output as a new leaf of the autograd graph: backward ends there.

    The layers before it run without autograd (see `_run`); recording resumes here, for the head.
    """
    torch.set_grad_enabled(True)
    return output.detach().requires_grad_()


class CamExplainer:
    """All CAM methods of one network from a shared forward and backward pass."""

    def __init__(self, net: nn.Module, target_layer: nn.Module, methods: tuple[str, ...] = CAM_METHODS):
        self.net = net
        self.target_layers = [target_layer]
        self.methods: dict[str, BaseCAM] = {}
        for name in methods:
            method = METHOD_CLASSES[name](net, self.target_layers)
            # Each method object registers hooks of its own; one shared set replaces them per call.
            method.activations_and_grads.release()
            self.methods[name] = method
        # The hooks hold one pass's tensors: concurrent app sessions must take turns.
        self._lock = threading.Lock()

    def __call__(self, inputs: torch.Tensor, target_classes: list[int] | None = None) -> CamBatch:
        """Maps for `target_classes` (default: each image's predicted class)."""
        with self._lock:
            # Hooks live only for this call, so other forward passes of the net record nothing. The cut
            # comes first, so the library's hooks record (and take the gradient of) the cut output.
            cut = self.target_layers[0].register_forward_hook(cut_graph, prepend=True)
            hooks = ActivationsAndGradients(self.net, self.target_layers, None)
            try:
                return self._run(hooks, inputs, target_classes)
            finally:
                hooks.release()
                cut.remove()

    def _run(self, hooks: ActivationsAndGradients, inputs: torch.Tensor, target_classes: list[int] | None) -> CamBatch:
        for method in self.methods.values():
            method.activations_and_grads = hooks
        # No graph (and no saved activations) for the layers before the cut, which turns recording back on.
        with torch.no_grad():
            outputs = hooks(inputs)
        probs = torch.softmax(outputs.detach(), dim=1).cpu().numpy()
        if target_classes is None:
            target_classes = probs.argmax(axis=1).tolist()
        targets = [ClassifierOutputTarget(c) for c in target_classes]
        self.net.zero_grad()
        sum(t(o) for t, o in zip(targets, outputs)).backward()
        maps = {
            name: method.aggregate_multi_layers(method.compute_cam_per_layer(inputs, targets, False))
            for name, method in self.methods.items()
        }
        return CamBatch(probs=probs, targets=np.asarray(target_classes), maps=maps)
