"""The CAM method registry, and every registered method's map from one shared forward and backward pass.

`METHODS` is the one list of CAM methods faircam computes: a display name and the pytorch-grad-cam
class whose `get_cam_image` (its channel or pixel weighting) turns a layer's activations and
gradients into a map. Adding a method is one entry there; each cache records the methods it holds
(`meta["methods"]`), and everything that reads a cache follows that list.

pytorch-grad-cam's method objects each run their own forward and backward pass. Here the library's
recorder (`ActivationsAndGradients`) records the target layer's activations and gradients once per
call, and every method turns that same record into its map with the library's public pieces: the
method's `get_cam_image` and `scale_cam_image`, as the library's `compute_cam_per_layer` chains them for one
layer, then `stretch`, what `aggregate_multi_layers` does to one layer's maps. So the maps equal the library's
per-method output (tests/test_cams.py) at a fraction of the cost, and no library object is altered. The
backward pass stops at the target layer: the maps need the gradient of the score with respect to
that layer's output only, not the gradients of the weights before it, which make up most of a full
backward pass; and the layers before it keep no autograd graph, which at batch 32 would hold a
gigabyte of saved activations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

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


def stretch(maps: np.ndarray) -> np.ndarray:
    """Each map shifted to start at 0 and divided by its top (+1e-7): the library's `aggregate_multi_layers` on one
    layer's upsampled maps, which ends in `scale_cam_image` (the bilinear upsampling leaves a map's top under 1).
    The same float32 arithmetic on the whole batch at once instead of image by image: the same numbers (tests/
    test_cams.py) in 7 ms instead of 56 for a batch of 94 maps at 192 px, once per method in every CAM pass."""
    shifted = maps - maps.min(axis=(1, 2), keepdims=True)
    return shifted / (1e-7 + shifted.max(axis=(1, 2), keepdims=True))


# Views per forward and backward pass: one pass over a whole batch of 96 views at 192 px took 2.7 s and peaked at 2.8 GB
# on one thread; the same views 8 at a time took 1.75 s and 1.1 GB (the layers' outputs then stay in the core's
# cache). The maps are the same: each view's numbers depend on that view alone.
PASS_VIEWS = 8


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
    from almost nothing can be told from a strong one. The maps and ranges are made by `make_maps` when first read:
    for the CAMs that is array work on the pass's record without the model, so `faircam evaluate` makes them on its
    worker thread while the model runs the next batch's pass.
    """

    probs: np.ndarray
    targets: np.ndarray
    logits: np.ndarray
    make_maps: Callable[[], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = field(repr=False)

    @cached_property
    def _made(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return self.make_maps()

    @property
    def maps(self) -> dict[str, np.ndarray]:
        return self._made[0]

    @property
    def ranges(self) -> dict[str, np.ndarray]:
        return self._made[1]


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
        logits, probs, activations, grads = [], [], [], []
        targets: list[ClassifierOutputTarget] = []
        offset = explained.start or 0  # a class of the explained task is that many places after its first output
        for first in range(0, len(inputs), PASS_VIEWS):
            part = inputs[first : first + PASS_VIEWS]
            # No graph (and no saved activations) for the layers before the cut, which turns recording back on.
            with torch.no_grad():
                outputs = recorder(part)
            probs.append(torch.softmax(outputs.detach()[:, explained], dim=1).cpu().numpy())
            chosen = probs[-1].argmax(axis=1) if target_classes is None else target_classes[first : first + len(part)]
            part_targets = [ClassifierOutputTarget(offset + int(c)) for c in chosen]
            self.net.zero_grad()
            sum(t(o) for t, o in zip(part_targets, outputs)).backward()
            targets += part_targets
            logits.append(outputs.detach().float().cpu().numpy())
            activations.append(recorder.activations[0].cpu().numpy())
            grads.append(recorder.gradients[0].cpu().numpy())
        activations, grads = np.concatenate(activations), np.concatenate(grads)

        def make_maps() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
            maps, ranges = {}, {}
            for name, cam in self._cams.items():
                # `compute_cam_per_layer` for the one target layer, on the shared record.
                layer_map = np.maximum(cam.get_cam_image(inputs, self.target_layer, targets, activations, grads,
                                                         False), 0)
                flat = layer_map.reshape(len(layer_map), -1)
                ranges[name] = np.stack([flat.min(axis=1), flat.max(axis=1)], axis=1).astype(np.float64)
                maps[name] = stretch(scale_cam_image(layer_map, cam.get_target_width_height(inputs)))
            return maps, ranges

        return CamBatch(probs=np.concatenate(probs), targets=np.array([t.category - offset for t in targets]),
                        logits=np.concatenate(logits), make_maps=make_maps)
