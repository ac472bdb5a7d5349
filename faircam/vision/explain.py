"""One or many images through the pipeline: view -> prediction -> the CAM maps -> focus scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faircam.models.model import LoadedModel
from faircam.models.registry import load_model
from faircam.vision.cams import CamExplainer
from faircam.vision.focus import area_shares, focus_from_masks, region_masks
from faircam.vision.preprocess import FaceDetector, View, make_view
from faircam.wording import CHANCE_KEY, FOCUS_KEY


@dataclass
class Explanation:
    """What the model said about one view, and where each CAM method says it looked."""

    view: View
    probs: dict[str, float]
    label: str
    probability: float
    maps: dict[str, np.ndarray]
    focus: dict[str, dict[str, float]]
    chance: dict[str, float]

    def as_dict(self) -> dict:
        """The JSON-ready summary printed by `faircam explain`."""
        return {
            "prediction": self.label,
            "probability": round(self.probability, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probs.items()},
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


def explain_views(views: list[View], model: LoadedModel, explainer: CamExplainer) -> list[Explanation]:
    """Prediction, maps and focus scores for a batch of views in one forward and backward pass."""
    batch = explainer(model.to_tensor([v.image for v in views]))
    explanations = []
    for i, view in enumerate(views):
        target = int(batch.targets[i])
        maps = {method: maps[i] for method, maps in batch.maps.items()}
        masks = region_masks(view.face, view.image.shape[:2], view.valid)
        chance = area_shares(masks)
        explanations.append(
            Explanation(
                view=view,
                probs={c: float(p) for c, p in zip(model.classes, batch.probs[i])},
                label=model.classes[target],
                probability=float(batch.probs[i, target]),
                maps=maps,
                focus={m: focus_from_masks(cam, masks, chance) for m, cam in maps.items()},
                chance=chance,
            )
        )
    return explanations


@dataclass
class Pipeline:
    """A loaded model with its face detector and CAM explainer, loaded once per process."""

    model: LoadedModel
    detector: FaceDetector
    explainer: CamExplainer

    @classmethod
    def load(cls, model: Path | str | None = None, detector: FaceDetector | None = None) -> Pipeline:
        """A registered model by name or a checkpoint by path (None: the default model); pass a
        `detector` to share one MTCNN between pipelines."""
        loaded = load_model(model)
        return cls(loaded, detector or FaceDetector(), CamExplainer(loaded.net, loaded.cam_layer))

    def view(self, image: np.ndarray, crop: bool = False, blur: bool = False, face_index: int = 0) -> View:
        return make_view(image, self.model.input_size, self.detector, crop=crop, blur=blur, face_index=face_index,
                         alignment=self.model.alignment)

    def explain(self, image: np.ndarray, crop: bool = False, blur: bool = False, face_index: int = 0) -> Explanation:
        """`explain_views` for one RGB photo under the chosen crop and blur toggles."""
        return explain_views([self.view(image, crop, blur, face_index)], self.model, self.explainer)[0]
