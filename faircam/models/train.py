"""Training faircam's classifier on a FairFace folder (`faircam train`): gender, or gender, race and
age from one network (`tasks`), the loss the sum of each task's cross-entropy.

Two ways to spend the same recipe (AdamW, warm-up then cosine decay, label smoothing,
random crops, flips and colour jitter, for a share of the images (`align_jitter`) the rotation and
scale the aligned crop applies, a validation pass per epoch, optionally an exponential moving
average of the weights (`ema`), which is what is validated and saved; optionally each task's loss
weighted across race groups towards those it does worst on (`group_dro`)):

- full fine-tuning (`frozen_stages=0`): the images are decoded once into a uint8 array in the
  work folder (memory-mapped, so a resumed run skips the decoding) and augmented afresh each
  epoch; `sizes` trains the first epochs on smaller images (progressive resizing: cheaper
  epochs early, the final size last);
- frozen-prefix training (`frozen_stages=k`): the first k trunk stages keep their ImageNet
  weights, so their output is computed once for `views` augmented copies of every image and
  each epoch draws one copy per image. On a CPU this makes an epoch several times cheaper.

Both run the network in `channels_last` memory format: on a 2-core CPU, a full fine-tuning step of
EfficientNet-Lite0 (64 images at 160 px) took 1.7 s instead of 2.7 s in the project's backbone probes.

Every epoch ends with a resumable state file in the work folder; a rerun with the same
settings continues from it (also from a work folder copied to another machine). The best epoch by
the mean of the tasks' validation accuracies is written as a checkpoint. `init` starts from a
checkpoint's weights (its trunk, and the heads of the tasks it has) instead of ImageNet's.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from faircam.data.fairface import RACES, FairFaceSplit, load_split, read_data_image
from faircam.data.images import FILL, resize_square
from faircam.errors import ModelError
from faircam.files import atomic_file, write_atomic
from faircam.models.checkpoint import read_metadata
from faircam.models.model import (
    ARCHITECTURES,
    FaceNet,
    build_model,
    load_checkpoint,
    normalise,
    parse_tasks,
    save_checkpoint,
    task_slices,
)
from faircam.models.registry import register_checkpoint
from faircam.tasks import DEFAULT_TASK


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "efficientnet-lite0"
    input_size: int = 160
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.5
    frozen_stages: int = 9
    views: int = 2
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    pretrained: bool = True
    workers: int = 1
    tasks: str = DEFAULT_TASK
    init: str | None = None
    align_jitter: float = 0.5
    # Progressive resizing: the epochs split into len(sizes) runs of (nearly) equal length, each at its size;
    # empty: every epoch at `input_size`. The checkpoint records the size of the epoch it was saved from.
    sizes: tuple[int, ...] = ()
    # Decay per step of the weights' moving average (0: none). Validated and saved instead of the raw weights.
    ema: float = 0.0
    # Step size of online group DRO over FairFace's race groups (0: off, every face counts alike). Each task's loss
    # becomes a weighted mean of its per-race losses, the weights growing exponentially with a race's loss
    # (Sagawa et al., 2020, "Distributionally robust neural networks"): training pushes on the worst-served race.
    group_dro: float = 0.0

    @property
    def task_classes(self) -> dict[str, tuple[str, ...]]:
        return parse_tasks(self.tasks)

    def epoch_size(self, epoch: int) -> int:
        if not self.sizes:
            return self.input_size
        return self.sizes[min(len(self.sizes) - 1, epoch * len(self.sizes) // self.epochs)]

    @property
    def work_dir(self) -> Path:
        return Path(self.out).with_suffix(".work")


def task_labels(split: FairFaceSplit, tasks: dict[str, tuple[str, ...]]) -> np.ndarray:
    """(images, tasks + 1) class indices: each task's label column read as its class's position, then the image's
    race group (`RACES`' position), which group DRO weighs the losses by."""
    columns = [split.rows[task].map(classes.index).to_numpy() for task, classes in tasks.items()]
    return np.stack([*columns, split.rows["race"].map(RACES.index).to_numpy()], axis=1)


# How far the aligned crop moves a FairFace face: the 5th-95th percentiles of its similarity
# transform on shared val are -9 to +11 degrees and a scale of 0.72 to 1.09 (its validity fill in
# the corners). A model that saw such moves in training answers the crop view as it answers the raw one.
ALIGN_DEGREES = 10.0
ALIGN_SCALE = (0.75, 1.1)


class FaceImages(Dataset):
    """uint8 CHW tensors of a split's images, augmented or plainly resized, with each task's label.

    `align_jitter` is the share of augmented images also rotated and scaled as the aligned crop
    moves faces, filled with the crop's `FILL` where the photo ends. `decoded` holds the split's
    images already decoded (`decode_split`); without it each image is read from its file."""

    def __init__(self, split: FairFaceSplit, size: int, augment: bool, tasks: dict[str, tuple[str, ...]],
                 align_jitter: float = 0.0, decoded: np.ndarray | None = None):
        self.split = split
        self.labels = task_labels(split, tasks)
        self.size = size
        self.decoded = decoded
        self.augment = (
            v2.Compose([
                v2.RandomApply([v2.RandomAffine(ALIGN_DEGREES, scale=ALIGN_SCALE, fill=FILL)], p=align_jitter),
                v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.85, 1.15), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
            ])
            if augment
            else None
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.decoded is not None:
            image = np.array(self.decoded[index])
        else:
            image = read_data_image(self.split.root, self.split.rows["file"].iat[index])
        if self.augment is None:
            image = resize_square(image, self.size)
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        if self.augment is not None:
            tensor = self.augment(tensor)
        return tensor, torch.from_numpy(self.labels[index])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _limited(split: FairFaceSplit, limit: int | None, seed: int) -> FairFaceSplit:
    if limit is None or limit >= len(split.rows):
        return split
    rows = split.rows.sample(limit, random_state=seed).reset_index(drop=True)
    return FairFaceSplit(split.root, split.split, rows, split.dropped)


def decode_split(split: FairFaceSplit, size: int, path: Path) -> np.ndarray:
    """The split's images decoded once into a (images, size, size, 3) uint8 array stored at `path`, memory-mapped.

    A full fine-tune reads every image every epoch: decoding the JPEGs each time would cost more CPU than
    the augmentation. The file is reused while it holds the same images at the same size (a resumed run)."""
    key = json.dumps([str(split.root.resolve()), split.split, list(split.rows["file"]), size])
    key_path = path.with_suffix(".json")
    if path.is_file() and key_path.is_file() and key_path.read_text() == key:
        return np.load(path, mmap_mode="r")
    shape = (len(split.rows), size, size, 3)

    def decode(index: int) -> bytes:
        return resize_square(read_data_image(split.root, split.rows["file"].iat[index]), size).tobytes()

    # Written in order through a fresh temporary (never through a name planted in the work folder), then renamed.
    with atomic_file(path) as file, ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        np.lib.format.write_array_header_1_0(file, {"descr": "|u1", "fortran_order": False, "shape": shape})
        for image in tqdm(pool.map(decode, range(shape[0])), total=shape[0], desc=f"decode {size}px", unit="image"):
            file.write(image)
    write_atomic(key_path, key)
    return np.load(path, mmap_mode="r")


def _loader(dataset: Dataset, cfg: TrainConfig, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        num_workers=cfg.workers,
        generator=generator,
        persistent_workers=False,
    )


@torch.no_grad()
def _prefix_features(net: FaceNet, loader: DataLoader, cfg: TrainConfig, desc: str) -> torch.Tensor:
    mean, std = ARCHITECTURES[cfg.arch]["mean"], ARCHITECTURES[cfg.arch]["std"]
    chunks = []
    for images, _ in tqdm(loader, desc=desc, unit="batch"):
        x = normalise(images, mean, std).to(cfg.device)
        chunks.append(net.prefix(x, cfg.frozen_stages).half().cpu())
    return torch.cat(chunks)


def _cached_features(net: FaceNet, train: FairFaceSplit, val: FairFaceSplit, cfg: TrainConfig) -> dict:
    """Frozen-prefix outputs for `views` augmented copies of the training images and for val."""
    path = cfg.work_dir / "features.pt"
    key = json.dumps([cfg.arch, cfg.input_size, cfg.frozen_stages, cfg.views, cfg.limit, cfg.seed,
                      str(train.root), cfg.init, cfg.align_jitter])
    if path.is_file():
        cached = _load_work_file(path, cfg)
        if cached.get("key") == key:
            return cached
    net.eval()
    train_views = [
        _prefix_features(net, _loader(FaceImages(train, cfg.input_size, True, cfg.task_classes, cfg.align_jitter),
                                      cfg, False, cfg.seed + v),
                         cfg, f"features view {v + 1}/{cfg.views}")
        for v in range(cfg.views)
    ]
    val_features = _prefix_features(net, _loader(FaceImages(val, cfg.input_size, False, cfg.task_classes), cfg,
                                                 False, 0),
                                     cfg, "features val")
    cached = {"key": key, "train": torch.stack(train_views), "val": val_features}
    _save_work_file(cached, path)
    return cached


def _load_work_file(path: Path, cfg: TrainConfig) -> dict:
    """A file of the work folder, unpickling only tensors and plain containers.

    The work folder may have been made by someone else on a shared server: a full unpickle would
    run whatever code they put in it, as whoever trains next.
    """
    try:
        loaded = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is not a plain training state faircam can load safely ({reason[:120]}). "
                         f"Delete {cfg.work_dir} to train afresh.") from None
    if not isinstance(loaded, dict):
        raise ModelError(f"{path} is not a faircam training state. Delete {cfg.work_dir} to train afresh.")
    return loaded


def _save_work_file(payload: dict, path: Path) -> None:
    """`torch.save` through a fresh temporary file and a rename (`atomic_file`), so a killed run leaves the old
    file or the new one, and nothing is written through a name someone planted in the work folder."""
    with atomic_file(path) as file:
        torch.save(payload, file)


class _Batches:
    """Per-epoch (input, label) batches for either way of training, and the stage they enter at."""

    def __init__(self, net: FaceNet, train: FairFaceSplit, val: FairFaceSplit, cfg: TrainConfig):
        self.cfg = cfg
        self.train_labels = torch.from_numpy(task_labels(train, cfg.task_classes))
        self.val_labels = torch.from_numpy(task_labels(val, cfg.task_classes))
        self.start = cfg.frozen_stages
        if self.start:
            self.features = _cached_features(net, train, val, cfg)
        else:
            self.train_split, self.val_split = train, val
            self.decoded = decode_split(train, max((*cfg.sizes, cfg.input_size)), cfg.work_dir / "train-images.npy")

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_labels) / self.cfg.batch_size)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.start:
            x = x.float()
        else:
            norm = ARCHITECTURES[self.cfg.arch]
            x = normalise(x, norm["mean"], norm["std"])
        return x.to(self.cfg.device).contiguous(memory_format=torch.channels_last)

    def train(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.start:
            images = FaceImages(self.train_split, self.cfg.epoch_size(epoch), True, self.cfg.task_classes,
                                self.cfg.align_jitter, self.decoded)
            for x, y in _loader(images, self.cfg, True, self.cfg.seed * 1000 + epoch):
                yield self._prepare(x), y.to(self.cfg.device)
            return
        generator = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        order = torch.randperm(len(self.train_labels), generator=generator)
        views = torch.randint(self.cfg.views, (len(order),), generator=generator)
        for i in range(0, len(order), self.cfg.batch_size):
            idx = order[i : i + self.cfg.batch_size]
            x = self.features["train"][views[i : i + self.cfg.batch_size], idx]
            yield self._prepare(x), self.train_labels[idx].to(self.cfg.device)

    def val(self, size: int) -> Iterator[torch.Tensor]:
        """Validation batches, at `size` (progressive resizing validates each epoch at its own size)."""
        if self.start:
            for i in range(0, len(self.val_labels), self.cfg.batch_size):
                yield self._prepare(self.features["val"][i : i + self.cfg.batch_size])
        else:
            for x, _ in _loader(FaceImages(self.val_split, size, False, self.cfg.task_classes), self.cfg, False, 0):
                yield self._prepare(x)


def _set_train_mode(net: FaceNet, frozen: int) -> None:
    net.train()
    # Frozen stages keep their ImageNet batch-norm statistics.
    for stage in net.trunk[:frozen]:
        stage.eval()


@torch.no_grad()
def _validate(net: FaceNet, batches: _Batches, val: FairFaceSplit, tasks: dict[str, tuple[str, ...]],
              size: int) -> dict:
    """Each task's validation accuracy, overall and per race; `accuracy` is the default task's, `score` their mean."""
    net.eval()
    logits = torch.cat([net.forward_from(x, batches.start).float().cpu() for x in batches.val(size)])
    metrics: dict = {"n": int(len(val.rows)), "tasks": {}}
    for t, (task, part) in enumerate(task_slices(tasks).items()):
        rows = val.rows.assign(correct=logits[:, part].argmax(1).numpy() == batches.val_labels[:, t].numpy())
        per_race = rows.groupby("race")["correct"].agg(["mean", "size"])
        metrics["tasks"][task] = {
            "accuracy": float(rows["correct"].mean()),
            "per_race": {race: {"accuracy": float(r["mean"]), "n": int(r["size"])} for race, r in per_race.iterrows()},
        }
    metrics["accuracy"] = metrics["tasks"][DEFAULT_TASK]["accuracy"]
    metrics["per_race"] = metrics["tasks"][DEFAULT_TASK]["per_race"]
    metrics["score"] = float(np.mean([m["accuracy"] for m in metrics["tasks"].values()]))
    return metrics


class TaskLoss:
    """The sum of the tasks' cross-entropies: each head learns its own labels from the shared trunk.

    With a group DRO `step`, each task's cross-entropy is its per-race mean losses weighted by `weights` (a row per
    task over `RACES`), which after every batch grow by exp(step x that race's loss) and are renormalised; a race
    absent from the batch keeps its weight. Saved with the training state, so a resumed run goes on weighing alike.
    """

    def __init__(self, slices: dict[str, slice], label_smoothing: float, step: float = 0.0):
        self.slices, self.step = slices, step
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction="none")
        self.weights = torch.full((len(slices), len(RACES)), 1 / len(RACES))

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        for t, part in enumerate(self.slices.values()):
            losses = self.loss_fn(logits[:, part], labels[:, t])
            if not self.step:
                total = total + losses.mean()
                continue
            groups = labels[:, -1]
            counts = torch.bincount(groups, minlength=len(RACES)).to(losses)
            group_loss = torch.zeros(len(RACES), dtype=losses.dtype, device=losses.device).index_add(0, groups, losses)
            group_loss = group_loss / counts.clamp(min=1)
            present = (counts > 0).cpu()
            grown = self.weights[t] * torch.exp(self.step * group_loss.detach().cpu() * present)
            weights = grown / grown.sum()
            self.weights[t] = weights
            total = total + (weights.to(losses) * group_loss).sum()
        return total


def _initialise(net: FaceNet, cfg: TrainConfig) -> dict:
    """Start from `cfg.init`'s weights: its trunk, and the head rows of each task it shares with this run.

    Returns what the checkpoint records of where it started (the file may be replaced later).
    """
    source = load_checkpoint(cfg.init)
    if source.arch != cfg.arch:
        raise ModelError(f"{cfg.init} is a {source.arch}, not a {cfg.arch}: train with --arch {source.arch}.")
    state = net.state_dict()
    theirs = source.net.state_dict()
    linear = [k for k in state if k.startswith("classifier.")]
    state.update({k: v for k, v in theirs.items() if k not in linear})
    ours, their_slices = task_slices(cfg.task_classes), task_slices(source.tasks)
    for key in linear:
        for task in set(ours) & set(their_slices):
            state[key][ours[task]] = theirs[key][their_slices[task]]
    net.load_state_dict(state)
    return {"name": source.name, "sha256": source.sha256, "tasks": list(source.tasks),
            "training": source.info.get("training", {})}


def _compute(cfg: TrainConfig, history: list[dict]) -> dict:
    """What the epochs so far ran on, for the model card (the frozen features' one-off pass is not counted)."""
    gpu = torch.cuda.get_device_name() if cfg.device == "cuda" else "none"
    return {"device": cfg.device, "GPU": gpu, "CPU cores": os.cpu_count(), "torch threads": torch.get_num_threads(),
            "training minutes": round(sum(h.get("seconds", 0) for h in history) / 60, 1)}


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _record_history(out: Path, history: list[dict]) -> None:
    """Give the saved checkpoint every epoch's record: it was written at its own epoch, before the later ones ran
    (its model card reports them all)."""
    payload = torch.load(out, weights_only=True)
    if payload["info"].get("history") != history:
        payload["info"]["history"] = history
        _save_work_file(payload, out)


def train(cfg: TrainConfig) -> dict:
    """Train, validate each epoch, and write the best epoch's checkpoint to `cfg.out`."""
    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {cfg.arch!r}: use one of {', '.join(ARCHITECTURES)}.")
    state_path = cfg.work_dir / "state.pt"
    # Checked before any work: a state file that cannot be loaded safely stops the run, not a fresh start.
    state = _load_work_file(state_path, cfg) if state_path.is_file() else None
    _seed_everything(cfg.seed)
    train_split = _limited(load_split(cfg.data, "train"), cfg.limit, cfg.seed)
    val_split = _limited(load_split(cfg.data, "val"), cfg.limit and max(cfg.limit // 4, 32), cfg.seed)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)

    tasks = cfg.task_classes
    net = build_model(cfg.arch, pretrained=cfg.pretrained and not cfg.init, tasks=tasks)
    started_from = _initialise(net, cfg) if cfg.init else "ImageNet" if cfg.pretrained else "random weights"
    net.to(cfg.device, memory_format=torch.channels_last)
    slices = task_slices(tasks)
    for p in net.trunk[: cfg.frozen_stages].parameters():
        p.requires_grad_(False)
    batches = _Batches(net, train_split, val_split, cfg)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * batches.steps_per_epoch()
    warmup = max(1, int(cfg.warmup_epochs * batches.steps_per_epoch()))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total, warmup))
    task_loss = TaskLoss(slices, cfg.label_smoothing, cfg.group_dro)
    # Buffers (batch-norm statistics) are averaged too, so the averaged network validates as it is saved.
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None

    history: list[dict] = []
    best = -1.0
    first_epoch = 0
    settings = asdict(cfg)
    if state is not None and state.get("settings") == settings:
        net.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        task_loss.weights = state["group_weights"]
        history, best, first_epoch = state["history"], state["best"], state["epoch"] + 1
        print(f"Resuming after epoch {first_epoch} of {cfg.epochs}.")

    for epoch in range(first_epoch, cfg.epochs):
        started = time.monotonic()
        _set_train_mode(net, cfg.frozen_stages)
        losses = []
        bar = tqdm(batches.train(epoch), total=batches.steps_per_epoch(), desc=f"epoch {epoch + 1}/{cfg.epochs}")
        for x, y in bar:
            loss = task_loss(net.forward_from(x, batches.start), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(net)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        size = cfg.epoch_size(epoch)
        kept = ema.module if ema is not None else net
        metrics = _validate(kept, batches, val_split, tasks, size)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_accuracy": metrics["accuracy"],
                        "seconds": round(time.monotonic() - started), "input_size": size,
                        **{f"val_{t}_accuracy": m["accuracy"] for t, m in metrics["tasks"].items()}})
        accuracies = ", ".join(f"{t} {m['accuracy']:.4f}" for t, m in metrics["tasks"].items())
        print(f"epoch {epoch + 1}: loss {history[-1]['train_loss']:.4f}, val accuracy {accuracies}")
        if metrics["score"] > best:
            best = metrics["score"]
            save_checkpoint(kept.cpu(), Path(cfg.out), cfg.arch, size, {
                "name": f"faircam {cfg.arch} {size}px" + (f" ({', '.join(tasks)})" if len(tasks) > 1 else ""),
                "training": {
                    "data": str(Path(cfg.data).resolve()),
                    "train_images": len(train_split.rows),
                    "val_images": len(val_split.rows),
                    "recipe": settings,
                    "epoch": epoch + 1,
                    "started_from": started_from,
                    "compute": _compute(cfg, history),
                },
                "metrics": metrics,
                "history": history,
            }, tasks=tasks)
            kept.to(cfg.device)
        _save_work_file({"settings": settings, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                         **({"ema": ema.state_dict()} if ema is not None else {}),
                         "scheduler": scheduler.state_dict(), "group_weights": task_loss.weights, "history": history,
                         "best": best, "epoch": epoch},
                        state_path)
    summary = {"out": cfg.out, "history": history}
    if best >= 0:
        _record_history(Path(cfg.out), history)
        saved = read_metadata(cfg.out)
        register_checkpoint(Path(cfg.out).stem, Path(cfg.out), saved["input_size"], f"{cfg.arch}, {cfg.epochs} epochs",
                            tuple(tasks))
        metrics = saved["info"]["metrics"]
        summary["best_val_accuracy"] = metrics["accuracy"]
        summary.update({f"best_val_{t}_accuracy": m["accuracy"] for t, m in metrics.get("tasks", {}).items()
                        if t != DEFAULT_TASK})
    return summary
