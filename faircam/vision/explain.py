"""One or many images through the pipeline: view -> prediction -> the CAM maps -> focus scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faircam.models.model import LoadedModel
from faircam.models.registry import load_model
from faircam.tasks import DEFAULT_TASK
from faircam.vision.cams import CamBatch, CamExplainer
from faircam.vision.focus import area_shares, focus_from_masks, region_masks
from faircam.vision.occlusion import explainer_for
from faircam.vision.preprocess import FaceDetector, View, make_view
from faircam.wording import CHANCE_KEY, FOCUS_KEY

if TYPE_CHECKING:
    import torch


@dataclass
class Explanation:
    """What the model said about one view, and where each CAM method says it looked.

    `probs`, `label` and `probability` are the explained task's answer; `answers` every task's
    probabilities (from the same pass). The maps explain `target`, a class of `task`: the predicted
    one unless another was asked for.
    """

    view: View
    probs: dict[str, float]
    label: str
    probability: float
    maps: dict[str, np.ndarray]
    focus: dict[str, dict[str, float]]
    chance: dict[str, float]
    task: str = DEFAULT_TASK
    target: str = ""
    answers: dict[str, dict[str, float]] = field(default_factory=dict)
    # Each map's (lowest, highest) value before it was stretched to 0-1 (`CamBatch.ranges`).
    raw_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The JSON-ready summary printed by `faircam explain`."""
        return {
            "task": self.task,
            "prediction": self.label,
            "probability": round(self.probability, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probs.items()},
            "explained_class": self.target,
            "answers": {t: {k: round(v, 4) for k, v in p.items()} for t, p in self.answers.items()},
            "face_found": self.view.face is not None,
            "faces_found": self.view.faces_found,
            "cropped": self.view.cropped,
            "blurred": self.view.blurred,
            "message": self.view.message,
            # Named as every page names them (`faircam.wording`): each map's focus score, its chance level, and
            # the regions' shares (the face's is the focus score).
            FOCUS_KEY: {m: round(f["face"], 4) for m, f in self.focus.items()},
            CHANCE_KEY: round(self.chance["face"], 4),
            "region_shares": {m: {k: round(v, 4) for k, v in f.items()} for m, f in self.focus.items()},
            "region_chance": {k: round(v, 4) for k, v in self.chance.items()},
        }


@dataclass
class PreparedViews:
    """What a batch of views needs before the model runs (`prepare_views`): the normalised input batch and each
    view's face-region masks with their chance levels. Depends on the views alone, so `faircam evaluate` makes it on
    its worker thread while the model explains the batch before."""

    views: list[View]
    inputs: torch.Tensor | None  # None for no views (a batch none of whose images could be read)
    masks: list[dict[str, np.ndarray]]
    chances: list[dict[str, float]]

    def __len__(self) -> int:
        return len(self.views)


def prepare_views(views: list[View], model: LoadedModel) -> PreparedViews:
    masks = [region_masks(view.face, view.image.shape[:2], view.valid) for view in views]
    inputs = model.to_tensor([v.image for v in views]) if views else None
    return PreparedViews(views, inputs, masks, [area_shares(m) for m in masks])


def run_pass(views: PreparedViews, model: LoadedModel, explainer: CamExplainer, target: str | None = None
             ) -> tuple[CamBatch, dict[str, np.ndarray]]:
    """The one forward and backward pass of a batch of views: the explainer's maps of `target` (a class of
    `model.task`; default: the predicted one) and every task's probabilities. The model's work, apart from what
    `explanations` makes of it, so `faircam evaluate` can run the next batch's pass meanwhile."""
    if target is not None and target not in model.classes:
        raise ValueError(f"{target!r} is not a class of {model.task} ({', '.join(model.classes)}).")
    targets = None if target is None else [model.classes.index(target)] * len(views)
    tta_answers = None
    if model.tta:
        # The answer is the mirror-averaged one, so the maps explain its class, not the single pass's argmax.
        tta_answers = model.answers(views.inputs)
        if targets is None:
            targets = [int(i) for i in tta_answers[model.task].argmax(1)]
    batch = explainer(views.inputs, targets, model.outputs)
    return batch, tta_answers or model.task_probs(batch.logits)


def explanations(views: PreparedViews, model: LoadedModel, batch: CamBatch, answers: dict[str, np.ndarray]
                 ) -> list[Explanation]:
    """Each view's `Explanation` from its `run_pass`: its answers, maps and focus scores."""
    explained = []
    for i, (view, masks, chance) in enumerate(zip(views.views, views.masks, views.chances)):
        probs = answers[model.task][i]
        predicted = int(probs.argmax())
        maps = {method: maps[i] for method, maps in batch.maps.items()}
        explained.append(
            Explanation(
                view=view,
                probs={c: float(p) for c, p in zip(model.classes, probs)},
                label=model.classes[predicted],
                probability=float(probs[predicted]),
                maps=maps,
                focus={m: focus_from_masks(cam, masks, chance) for m, cam in maps.items()},
                chance=chance,
                task=model.task,
                target=model.classes[int(batch.targets[i])],
                answers={task: dict(zip(model.tasks[task], map(float, p[i]))) for task, p in answers.items()},
                raw_ranges={m: (float(r[i, 0]), float(r[i, 1])) for m, r in batch.ranges.items()},
            )
        )
    return explained


def explain_views(views: list[View], model: LoadedModel, explainer: CamExplainer,
                  target: str | None = None) -> list[Explanation]:
    """Every task's prediction, and maps and focus scores for `model.task`, for a batch of views in one forward and
    backward pass. The maps explain `target` (a class of the task; default: the predicted one)."""
    prepared = prepare_views(views, model)
    return explanations(prepared, model, *run_pass(prepared, model, explainer, target))


@dataclass
class Pipeline:
    """A loaded model with its face detector and CAM explainer, loaded once per process."""

    model: LoadedModel
    detector: FaceDetector
    explainer: CamExplainer

    @classmethod
    def load(cls, model: Path | str | None = None, detector: FaceDetector | None = None,
             cam_layer: str | None = None) -> Pipeline:
        """A registered model by name or a checkpoint by path (None: the default model), its maps on `cam_layer`
        (None: its own, `load_model`); pass a `detector` to share one MTCNN between pipelines."""
        loaded = load_model(model, cam_layer)
        return cls(loaded, detector or FaceDetector(), explainer_for(loaded.net, loaded.cam_layer))

    def view(self, image: np.ndarray, crop: bool = False, blur: bool = False, face_index: int = 0) -> View:
        return make_view(image, self.model.input_size, self.detector, crop=crop, blur=blur, face_index=face_index,
                         alignment=self.model.alignment)

    def explain(self, image: np.ndarray, crop: bool = False, blur: bool = False, face_index: int = 0,
                task: str | None = None, target: str | None = None) -> Explanation:
        """`explain_views` for one RGB photo under the chosen crop and blur toggles: maps for `task` (default:
        the model's) and its class `target` (default: the predicted one)."""
        model = self.model.for_task(task) if task else self.model
        # One photo at a time per model: concurrent sessions would split two cores between them and all wait
        # longer; taking turns lets the app say how many are ahead (`Turns.ahead`).
        with self.explainer.turns:
            return explain_views([self.view(image, crop, blur, face_index)], model, self.explainer, target)[0]
