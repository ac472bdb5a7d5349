"""The one home of a task: what a classifier head predicts, and everything faircam needs to know about it.

A `Task` names its classes in the order of a network's outputs, the cache columns of its truth,
prediction, probability and correctness, whether it is binary (it then has a positive class, fairlearn's
`pos_label`, and the binary measures apply) or ordinal (its classes are in order, so "within one
class" means something), and its words: its title, how its classes are said, who its positive and
negative people are, and the caveat shown beside its predictions. Every page, the report, the model
card, the cache's checks, the command line and the checkpoint reader list tasks from `TASKS`, so a
new task is one entry here (tests/test_tasks.py registers one and follows it through).

Class names are compared by name, never by index: `Task.canonical` maps a label written another way
("female", "Woman", "F", "latino", "70+") onto the task's own class, the one synonym table for label
files and models' own class names. A model whose classes are coarser than the task's (five races: "asian" for East
and Southeast Asian) is audited in its own classes: `Task.coarsened` is the task as that model has it, its `onto`
mapping each of faircam's classes onto one of the model's (or none: those faces are left out of the task's
accuracy, and counted), proposed by `Task.propose` from the names (`broader` says which of faircam's classes a
broader name covers) and overridable by the model's description. `Task.judge` is the one place a prediction is
compared with a label, so accuracy, confusion and group tables all compare in the model's classes. Standard
library only, with FairFace's label vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from faircam.data.fairface import AGES, GENDERS, RACES
from faircam.wording import RACE_AGE_CAPTION

# A coarser model's own class names become cache values, chart labels and table headers: plain names only.
PLAIN_CLASS = re.compile(r"\w[\w .+\-()/']{0,39}")
# A model's catch-all class, onto which `Task.propose` maps the classes no other name covers.
_OTHER = ("other", "others")
# The decision faircam audits by default (a model without a head for it: its first task).
DEFAULT_TASK = "gender"


def _key(value: object) -> str:
    """A label as synonyms are looked up: lower case, symbols dropped ("♀"), runs of spaces, underscores and dashes
    made one space; "+" kept ("70+")."""
    text = unicodedata.normalize("NFKC", str(value)).strip().lower()
    text = "".join(c for c in text if c == "+" or unicodedata.category(c)[0] in "LNZ" or c in "_-–—")
    return re.sub(r"[\s_\-–—]+", " ", text).strip()


@dataclass(frozen=True)
class Task:
    """What one classifier head predicts, its cache columns and its words.

    `positive` is the class binary measures count (fairlearn's pos_label); a task without one is multi-class and
    the binary-only measures (TPR, FPR, selection rate, equalized odds, demographic parity) do not apply to it.
    `ordinal` tasks (age bins) also count a prediction within one class of the truth. `prefix` starts its
    prediction columns ("race_pred"); the default task keeps the unprefixed names it had before there were
    others ("pred"). `score` is the column of the positive class's probability, for precision-recall curves.
    `people` says who the negative and positive classes are ("women", "men"); `called` how a prediction of each
    class is said ("female", "male"). `caveat` is said wherever its predictions are shown.
    """

    name: str
    classes: tuple[str, ...]
    positive: str | None = None
    ordinal: bool = False
    title: str = ""
    prefix: str | None = None
    score: str | None = None
    people: tuple[str, str] = ("", "")
    called: tuple[str, str] = ("", "")
    caveat: str = ""
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Names broader than one class, and the classes each covers ("asian": East and Southeast Asian).
    broader: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A coarsened task's mapping: each of faircam's classes (the label column's values) and the model's class it
    # counts as, or None where the model has no counterpart.
    onto: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", self.title or self.name)
        if self.prefix is None:
            object.__setattr__(self, "prefix", f"{self.name}_")

    @property
    def binary(self) -> bool:
        return self.positive is not None

    @property
    def truth(self) -> str:
        """The label column the predictions are compared with: the data's, or for a coarsened task the labels in
        the model's classes (`EvalCache` adds it, from `onto`)."""
        return f"{self.prefix}truth" if self.onto else self.name

    @property
    def label_column(self) -> str:
        """The data's label column (faircam's classes), which groupings read."""
        return self.name

    def truth_of(self, label: object) -> object:
        """The class a data label counts as: itself, or for a coarsened task its counterpart (None: none)."""
        return dict(self.onto).get(str(label)) if self.onto else label

    def judge(self, pred: str, label: object) -> bool | None:
        """Whether `pred` is right for a face labelled `label`; None when the label has no counterpart among the
        task's classes (the face is left out of the task's accuracy)."""
        if not self.onto:
            return pred == label
        truth = self.truth_of(label)
        return None if truth is None else pred == truth

    def column(self, kind: str) -> str:
        """Its cache column of `kind` ("pred", "prob", "correct")."""
        return f"{self.prefix}{kind}"

    @property
    def pred(self) -> str:
        return self.column("pred")

    @property
    def prob(self) -> str:
        return self.column("prob")

    @property
    def correct(self) -> str:
        return self.column("correct")

    @property
    def columns(self) -> tuple[str, ...]:
        """Every prediction column a view has for this task (the score last, when it has one)."""
        return (self.pred, self.prob, *((self.score,) if self.score else ()), self.correct)

    @property
    def negative(self) -> str | None:
        """A binary task's other class."""
        return next(c for c in self.classes if c != self.positive) if self.binary else None

    def canonical(self, value: object) -> str | None:
        """The class `value` names (its own name, another spelling or a synonym), or None."""
        key = _key(value)
        for cls in self.classes:
            if key == _key(cls) or key in (_key(s) for s in self.synonyms.get(cls, ())):
                return cls
        return None

    def propose(self, names: list[str] | tuple[str, ...]) -> dict[str, str | None]:
        """A mapping of the task's classes onto a model's coarser `names`: each class onto the name that is its own
        (a synonym) or broader (`broader`), then the classes left onto a name "other"/"others" if the model has
        one, else onto nothing. Only names can say what a class means, so no class is guessed beyond that."""
        onto: dict[str, str] = {}
        for name in names:
            for cls in self.covered_by(name):
                onto.setdefault(cls, name)
        rest = next((n for n in names if _key(n) in _OTHER), None)
        return {c: onto.get(c, rest) for c in self.classes}

    def covered_by(self, name: object) -> tuple[str, ...]:
        """The classes a model's class name stands for: its own class, or those a broader name covers."""
        own = self.canonical(name)
        return (own,) if own else next((c for b, c in self.broader.items() if _key(b) == _key(name)), ())

    def recognises(self, name: object) -> bool:
        """Whether a model's class name is one of this task's: a class, a synonym, a broader name or "other"."""
        return bool(self.covered_by(name)) or _key(name) in _OTHER

    def coarsened(self, classes: list[str] | tuple[str, ...], onto: Mapping[str, str | None]) -> Task:
        """The task as a model with coarser `classes` has it: compared in those classes through `onto` (each of
        faircam's classes onto one of them, or None). No positive class, no order: those are faircam's classes'."""
        return replace(self, classes=tuple(classes), onto=tuple((c, onto.get(c)) for c in TASKS[self.name].classes),
                       positive=None, ordinal=False, score=None, synonyms={}, broader={})

    def mapping_text(self) -> str:
        """A coarsened task's mapping as pages, the model card and the report state it."""
        covered = {c: [f for f, m in self.onto if m == c] for c in self.classes}
        said = [f"{', '.join(f) or 'no FairFace class'} → {c}" for c, f in covered.items()]
        left = [f for f, m in self.onto if m is None]
        return "; ".join(said) + (f"; {', '.join(left)}: no counterpart (left out of its accuracy)" if left else "")


def as_task(task: str | Task) -> Task:
    """A task given by name (faircam's) or as a cache's model has it (`EvalCache.task`)."""
    return task if isinstance(task, Task) else TASKS[task]


def task_spec(name: str, classes: tuple[str, ...] | list[str] | None = None,
              onto: Mapping[str, str | None] | None = None) -> Task:
    """The task `name` as a model or cache has it: faircam's own, or coarsened onto the model's `classes` where
    `onto` maps faircam's classes onto them."""
    return TASKS[name].coarsened(classes or (), onto) if onto else TASKS[name]


# Every task a faircam model can have, in the order of a network's outputs (the default task first).
TASKS: dict[str, Task] = {
    "gender": Task("gender", GENDERS, positive="Male", prefix="", score="p_male", people=("women", "men"),
                   called=("female", "male"),
                   synonyms={"Female": ("f", "woman", "women", "girl"), "Male": ("m", "man", "men", "boy")}),
    "race": Task("race", RACES, caveat=RACE_AGE_CAPTION,
                 synonyms={"White": ("caucasian",), "Black": ("african american", "african"),
                           "Latino_Hispanic": ("latino", "hispanic", "latina", "latinx"),
                           "Southeast Asian": ("south east asian",)},
                 # Middle Eastern has no broader name here: no common coarser scheme agrees where it belongs
                 # (UTKFace puts it in "others", the US census in "white"), so it is left to the model's mapping.
                 broader={"asian": ("East Asian", "Southeast Asian")}),
    "age": Task("age", AGES, ordinal=True, title="age group", caveat=RACE_AGE_CAPTION,
                synonyms={"more than 70": ("70+", "over 70", "70 plus", "70 and over")}),
}


def task_classes(names: list[str] | tuple[str, ...] | None = None) -> dict[str, tuple[str, ...]]:
    """The classes of the tasks named (default: every task), in `TASKS`' order."""
    return {n: t.classes for n, t in TASKS.items() if names is None or n in names}
