"""The CAM method registry, and every registered method's map from one shared forward and backward pass.

`METHODS` is the one list of CAM methods faircam computes: a display name and the pytorch-grad-cam
class whose `get_cam_image` (its channel or pixel weighting) turns a layer's activations and
gradients into a map. Adding a method is one entry there; each cache records the methods it holds
(`meta["methods"]`), and everything that reads a cache follows that list.

pytorch-grad-cam's method objects each run their own forward and backward pass. Here the library's
recorder (`ActivationsAndGradients`) records the target layer's activations and gradients once per
call, and every method turns that same record into its map with the library's public pieces: the
method's `get_cam_image`, `scale_cam_image` and `aggregate_multi_layers`, as the library's
`compute_cam_per_layer` chains them for one layer. So the maps equal the library's per-method
output (tests/test_cams.py) at a fraction of the cost, and no library object is altered. The
backward pass stops at the target layer: the maps need the gradient of the score with respect to
that layer's output only, not the gradients of the weights before it, which make up most of a full
backward pass; and the layers before it keep no autograd graph, which at batch 32 would hold a
gigabyte of saved activations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

METHODS: dict[str, type[BaseCAM]] = {
    "Grad-CAM": GradCAM,
    "Grad-CAM++": GradCAMPlusPlus,
    "XGrad-CAM": XGradCAM,
    "LayerCAM": LayerCAM,
}


class Turns:
    """A lock that counts who holds it or waits for it: the app's sessions take turns at a model's work (the
    face's view and the CAM pass, `Pipeline.explain`), and a session about to queue can say how many are ahead
    of it (`ahead`). Re-entered by its holder (the CAM pass inside `Pipeline.explain`) without counting again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self._queued = 0
        self._owner: int | None = None
        self._depth = 0

    @property
    def ahead(self) -> int:
        """How many passes run or wait now: those a new caller would wait behind."""
        return self._queued

    def __enter__(self) -> Turns:
        if self._owner == threading.get_ident():
            self._depth += 1
            return self
        with self._count:
            self._queued += 1
        self._lock.acquire()
        self._owner, self._depth = threading.get_ident(), 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth:
            return
        self._owner = None
        self._lock.release()
        with self._count:
            self._queued -= 1


@dataclass
class CamBatch:
    """Probabilities and maps for a batch: `maps[method]` is (N, H, W) in [0, 1].

    `probs` and `targets` are about the explained outputs (one task's classes); `logits` are all the
    network's outputs (every task's), from the same pass. `ranges[method]` is (N, 2): each map's lowest and
    highest value before it was stretched to [0, 1] (after the methods' clipping at 0), so a map stretched
    from almost nothing can be told from a strong one.
    """

    probs: np.ndarray
    targets: np.ndarray
    maps: dict[str, np.ndarray]
    logits: np.ndarray
    ranges: dict[str, np.ndarray] = field(default_factory=dict)


def cut_graph(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
    """The target layer's output as a new leaf of the autograd graph: backward ends there.

    The layers before it run without autograd (see `_run`); recording resumes here, for the head.
    """
    torch.set_grad_enabled(True)
    return output.detach().requires_grad_()


class CamExplainer:
    """The registered CAM methods (or the named subset) of one network from a shared pass."""

    def __init__(self, net: nn.Module, target_layer: nn.Module, methods: tuple[str, ...] | None = None,
                 reshape: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.net = net
        self.target_layer = target_layer
        # A transformer's tokens as a grid (`faircam.models.foreign.TokenGrid`), which a network names as its
        # `cam_reshape`; None for a layer whose output already is one.
        self.reshape = reshape if reshape is not None else getattr(net, "cam_reshape", None)
        self.methods = tuple(METHODS) if methods is None else tuple(methods)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"Unknown CAM methods {unknown}; registered: {list(METHODS)}.")
        # The library's method objects serve their map computation only. Each registers recording hooks
        # when built; they are released at once, because the shared recorder of `__call__` feeds them all.
        self._cams: dict[str, BaseCAM] = {}
        for name in self.methods:
            cam = METHODS[name](net, [target_layer])
            cam.activations_and_grads.release()
            self._cams[name] = cam
        # The recorder holds one pass's tensors: concurrent app sessions must take turns.
        self.turns = Turns()

    def __call__(self, inputs: torch.Tensor, target_classes: list[int] | None = None,
                 outputs: slice = slice(None)) -> CamBatch:
        """Maps for `target_classes` among the network's `outputs` (one task's logits; default: all of them),
        by default each image's predicted class."""
        with self.turns:
            # Hooks live only for this call, so other forward passes of the net record nothing. The cut
            # comes first, so the library's hooks record (and take the gradient of) the cut output.
            cut = self.target_layer.register_forward_hook(cut_graph, prepend=True)
            recorder = ActivationsAndGradients(self.net, [self.target_layer], self.reshape)
            try:
                return self._run(recorder, inputs, target_classes, outputs)
            finally:
                recorder.release()
                cut.remove()

    def _run(self, recorder: ActivationsAndGradients, inputs: torch.Tensor,
             target_classes: list[int] | None, explained: slice) -> CamBatch:
        # No graph (and no saved activations) for the layers before the cut, which turns recording back on.
        with torch.no_grad():
            outputs = recorder(inputs)
        probs = torch.softmax(outputs.detach()[:, explained], dim=1).cpu().numpy()
        if target_classes is None:
            target_classes = probs.argmax(axis=1).tolist()
        # A class of the explained task is that many places after the task's first output.
        targets = [ClassifierOutputTarget((explained.start or 0) + c) for c in target_classes]
        self.net.zero_grad()
        sum(t(o) for t, o in zip(targets, outputs)).backward()
        activations = recorder.activations[0].cpu().numpy()
        grads = recorder.gradients[0].cpu().numpy()
        maps, ranges = {}, {}
        for name, cam in self._cams.items():
            # `compute_cam_per_layer` for the one target layer, on the shared record.
            layer_map = np.maximum(cam.get_cam_image(inputs, self.target_layer, targets, activations, grads, False), 0)
            flat = layer_map.reshape(len(layer_map), -1)
            ranges[name] = np.stack([flat.min(axis=1), flat.max(axis=1)], axis=1).astype(np.float64)
            scaled = scale_cam_image(layer_map, cam.get_target_width_height(inputs))
            maps[name] = cam.aggregate_multi_layers([scaled[:, None, :]])
        return CamBatch(probs=probs, targets=np.asarray(target_classes), maps=maps,
                        logits=outputs.detach().float().cpu().numpy(), ranges=ranges)
