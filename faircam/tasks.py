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
files and, later, models' own class names. Standard library only, with FairFace's label vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from faircam.data.fairface import AGES, GENDERS, RACES
from faircam.wording import RACE_AGE_CAPTION

# The decision faircam audits by default and every model predicts.
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", self.title or self.name)
        if self.prefix is None:
            object.__setattr__(self, "prefix", f"{self.name}_")

    @property
    def binary(self) -> bool:
        return self.positive is not None

    @property
    def truth(self) -> str:
        """The label column (the data's and the cache's)."""
        return self.name

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


# Every task a faircam model can have, in the order of a network's outputs (the default task first).
TASKS: dict[str, Task] = {
    "gender": Task("gender", GENDERS, positive="Male", prefix="", score="p_male", people=("women", "men"),
                   called=("female", "male"),
                   synonyms={"Female": ("f", "woman", "women", "girl"), "Male": ("m", "man", "men", "boy")}),
    "race": Task("race", RACES, caveat=RACE_AGE_CAPTION,
                 synonyms={"White": ("caucasian",), "Black": ("african american",),
                           "Latino_Hispanic": ("latino", "hispanic", "latina", "latinx"),
                           "Southeast Asian": ("south east asian",)}),
    "age": Task("age", AGES, ordinal=True, title="age group", caveat=RACE_AGE_CAPTION,
                synonyms={"more than 70": ("70+", "over 70", "70 plus", "70 and over")}),
}


def task_classes(names: list[str] | tuple[str, ...] | None = None) -> dict[str, tuple[str, ...]]:
    """The classes of the tasks named (default: every task), in `TASKS`' order."""
    return {n: t.classes for n, t in TASKS.items() if names is None or n in names}
