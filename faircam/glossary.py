"""The glossary: every term the pages, the report and the lesson use, defined once, in plain words.

A term already defined elsewhere for the pages (the focus score and its chance level in `faircam.wording`, the
faithfulness scores in `faircam.audit.explanations`) is taken from there, so each has one definition. The
Glossary page shows `TERMS` in their order; `pages` names where each term is used, for its links. A page links a
term inline (`faircam.dashboard.ui.glossary_link`), and the Glossary opens with that term first.
"""

from __future__ import annotations

from dataclasses import dataclass

from faircam.audit.explanations import FAITHFULNESS
from faircam.config import MIN_GROUP_SIZE
from faircam.evaluation.agreement import BLOB_SHARE, FAINT_SHARE
from faircam.vision.quality import FRONTAL_DEGREES
from faircam.wording import CHANCE, FOCUS_SCORE


@dataclass(frozen=True)
class Term:
    """One term: its name, its definition (Markdown) and the pages that use it (their menu titles)."""

    name: str
    definition: str
    pages: tuple[str, ...] = ()


def _faithfulness(key: str) -> Term:
    score = FAITHFULNESS[key]
    return Term(score.title, f"A faithfulness score of a map: {score.meaning}. {score.reading.capitalize()}.",
                ("Faithfulness",))


_SCORES = {score.title: key for key, score in FAITHFULNESS.items()}

TERMS: tuple[Term, ...] = (
    Term("model", "The computer program that guesses a face's gender (and, for some models, its race and age "
         "group) from a photo. It learnt to copy the labels people gave to many example photos.",
         ("Home", "Classroom")),
    Term("label", "What the people who built FairFace wrote for a photo: their perception of the face, not a fact "
         "about the person.", ("Explore", "Gallery", "Classroom")),
    Term("accuracy", "The share of faces the model labels as FairFace's labellers did.",
         ("Evaluation", "Fairness", "About")),
    Term("TPR (true positive rate)", "Among the faces labelled with the positive class (for gender: men), the share "
         "the model calls that class. 1 − TPR is the share it calls the other class.", ("Fairness", "Evaluation")),
    Term("FPR (false positive rate)", "Among the faces labelled with the other class (for gender: women), the share "
         "the model wrongly calls the positive class.", ("Fairness", "Evaluation")),
    Term("precision, recall, F1", "For one class: precision is the share of the model's answers of that class that "
         "are right; recall the share of that class's faces it finds; F1 combines the two (their harmonic mean).",
         ("Evaluation",)),
    Term("confusion matrix", "A table of true classes (rows) against the model's answers (columns): the diagonal "
         "holds the right answers.", ("Evaluation",)),
    Term("n", "How many images a number is computed from. A number from few images can move a lot with other "
         "images.", ("Evaluation", "Fairness")),
    Term("small group (⚠ small)", f"A group, or a per-class rate, with fewer than {MIN_GROUP_SIZE} images: shown, "
         "but too thin to rank, so it is left out of every gap.", ("Fairness", "Evaluation")),
    Term("95% interval", "The range a number could plausibly take with another sample of faces. When two groups' "
         "intervals overlap a lot, the data do not show that one is treated worse.", ("Evaluation", "Fairness")),
    Term("Wilson interval", "The 95% interval of a share (an accuracy, a TPR): Wilson's formula, which stays "
         "sensible for small groups and for shares near 0% or 100%.", ("Evaluation", "Fairness")),
    Term("bootstrap interval", "The 95% interval of a gap between groups: the images are drawn again at random "
         "thousands of times, the gap is recomputed each time, and the middle 95% of those gaps is the interval.",
         ("Fairness",)),
    Term("accuracy gap", "The best group's accuracy minus the worst group's, in percentage points.",
         ("Fairness", "Classroom")),
    Term("equalized odds", "Whether the model makes the same kinds of mistakes for every group: the same TPR and "
         "the same FPR. Its difference is the larger of the TPR gap and the FPR gap.", ("Fairness",)),
    Term("demographic parity", "Whether every group is given the positive class equally often, whatever the "
         "labels: its difference is the largest gap in that share.", ("Fairness",)),
    Term("MTCNN", "The face detector faircam uses: it finds each face's box and five landmarks (the eyes, the nose "
         "tip and the mouth corners).", ("Explore", "Evaluation", "Attention", "Classroom")),
    Term("crop", "Cutting the face out of a photo the way FairFace cut its faces, with the eyes level. Where the "
         "cut reaches beyond the photo, the model gets flat grey filler (hatched on the pages).",
         ("Explore", "Classroom")),
    Term("head turn", f"How far a face is turned from the camera, in degrees, from its five landmarks; under "
         f"{FRONTAL_DEGREES:g}° it is frontal. Landmarks are unreliable on turned faces.",
         ("Where does it fail?", "Classroom")),
    Term("CAM (class activation map)", "A heat map over the picture: red where the picture pushed the model "
         "towards a class, blue where it hardly did. It shows where, not why. faircam draws four methods "
         "(Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM), which weigh the network's last layer differently.",
         ("Explore", "About", "Attention", "Classroom")),
    Term("raw range", "A map's lowest and highest value before it is stretched to 0–1 for drawing. A map stretched "
         f"from values near zero (under {FAINT_SHARE:.0%} of the same method's peak for the model's own answer) "
         "looks as sure as a strong one, but says little.", ("Explore",)),
    Term("small blob", f"A map that puts half its heat on less than {BLOB_SHARE:.0%} of the picture: often a "
         "corner, not the face. Read it with care.", ("Explore",)),
    Term("map agreement", "How far two maps put their heat in the same places (their histogram intersection): "
         "100% for the same heat in the same places, 0% for none in common. Explore gives the mean over every "
         "pair of the four maps.", ("Explore", "Faithfulness")),
    Term(FOCUS_SCORE, "The share of a map's heat that falls on the face.", ("Explore", "Attention", "Classroom")),
    Term(CHANCE, "The share of the picture the face covers: the focus score a map spread evenly over the picture "
         "would get. A focus score well above it means the model looked at the face.",
         ("Explore", "Attention", "Classroom")),
    _faithfulness(_SCORES["ROAD"]),
    _faithfulness(_SCORES["Deletion AUC"]),
    _faithfulness(_SCORES["Insertion AUC"]),
    Term("q value", "A p-value adjusted for having looked at many groups at once (Benjamini-Hochberg): under 0.05, "
         "a group's difference is unlikely to be chance among all those compared.",
         ("Attention", "Where does it fail?")),
    Term("Welch's t-test", "The test of whether a group's mean (a focus score, say) differs from the other "
         "images' mean, when the two may vary by different amounts.", ("Attention",)),
)


def find(name: str) -> Term:
    """The term called `name` (any case). KeyError for a name the Glossary lacks: a link to it would lead nowhere."""
    for term in TERMS:
        if term.name.lower() == name.lower():
            return term
    raise KeyError(f"the Glossary has no term {name!r}")
