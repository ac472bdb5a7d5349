"""`faircam import-predictions`: a table of a model's answers, with no model at all, as an evaluation cache.

The table (CSV or parquet) names each image by `file`, as the data folder's labels do, and gives per task predicted
`pred_<task>` (`pred_gender`, `pred_race`, `pred_age`: at least one), its values in any spelling
`faircam.tasks.Task.canonical` knows ("woman", "F", "70+"), and optionally `prob_<task>`, the probability of the
predicted class. A table whose answers for a task are coarser than FairFace's classes (five races: `african, asian,
caucasian, hispanic, indian`) is audited in its own classes, as a coarser model is: the mapping of FairFace's classes
onto them is `faircam.models.kinds.map_outputs`' (proposed by `Task.propose`, overridden by the user's `mapping`),
recorded in the cache's `meta["model"]` (`onto`, `label_mapping`) and stated wherever that task's accuracy is. The
answers are joined to the data's labels by file name and written with the cache writer every
cache goes through (`faircam.evaluation.cache.write_cache`: schema, checksum, atomic replacement), so every table
page, the report and Compare read it as they read `faircam evaluate`'s; it holds no maps (`EvalCache.has_cams` is
false), which the map pages say. Files the data folder lacks are counted and the first of them recorded in the
cache (`meta["data"]`); images the table does not answer are left out of the audit and counted too. Imports no
torch.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from faircam import __version__
from faircam.data.labelled import labelled_tasks, load_data
from faircam.errors import DataError
from faircam.evaluation.cache import EvalCache, read_cache, write_cache
from faircam.files import output_lock
from faircam.models.checkpoint import file_sha256
from faircam.models.kinds import map_outputs
from faircam.tasks import DEFAULT_TASK, TASKS, Task, task_classes

KIND = "predictions"
# The files the data folder lacks recorded in the cache by name (all are counted).
LISTED = 50
# Where a table's user gives the mapping of FairFace's classes onto its coarser ones (said when one is missing).
EXAMPLE = '{"race": {"Middle Eastern": "caucasian"}}'
MAPPING_WHERE = f"with --mapping (on the \"Audit a model\" page: its mapping box), e.g. {EXAMPLE}"


def read_answers(path: Path) -> pd.DataFrame:
    """The table at `path` as text columns with their names stripped; `DataError` when it is not a readable CSV or
    parquet file with a `file` column and a `pred_gender` column, each file once."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path} does not exist.")
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path).astype(str)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas and pyarrow raise many types for a file that is not a table
        raise DataError(f"{path} cannot be read as a {'parquet' if path.suffix.lower() == '.parquet' else 'CSV'} "
                        f"table ({type(exc).__name__}).") from None
    table.columns = [str(c).strip() for c in table.columns]
    if "file" not in table.columns or not any(f"pred_{t}" in table.columns for t in TASKS):
        missing = "file" if "file" not in table.columns else f"pred_{DEFAULT_TASK}"
        raise DataError(f"{path.name} lacks the column {missing!r}: a table of answers needs `file` (the image's "
                        f"path as the data's labels name it) and a prediction column per task it answers "
                        f"({', '.join(f'pred_{t}' for t in TASKS)}; prob_<task> where it has them).")
    table = table.apply(lambda column: column.str.strip())
    twice = table["file"][table["file"].duplicated()]
    if len(twice):
        raise DataError(f"{path.name} answers {twice.iloc[0]!r} twice ({len(twice)} files more than once).")
    return table


def parse_mapping(text: str, source: str) -> dict[str, object]:
    """The user's mapping of FairFace's classes onto a table's coarser ones, per task, from JSON text (a
    faircam-model.json's `mapping`: `{"race": {"Middle Eastern": "caucasian"}}`); `DataError` naming `source`."""
    try:
        mapping = json.loads(text)
    except ValueError:
        raise DataError(f"{source}: not JSON (e.g. {EXAMPLE}).") from None
    if not isinstance(mapping, dict) or not all(isinstance(m, dict) for m in mapping.values()):
        raise DataError(f"{source}: map a task onto its classes' mapping, e.g. {EXAMPLE}.")
    return mapping


def _answered_task(table: pd.DataFrame, task: str, source: str, given: object) -> Task:
    """`task` as the table answers it: faircam's own where every answer names one of its classes (in any spelling)
    and no mapping is given for it; else in the table's own, coarser classes (its distinct answers: five races),
    mapped as a model's head is (`faircam.models.kinds.map_outputs`: `Task.propose`, with `given`, the user's
    mapping for the task, over it). `DataError` naming the first answer faircam cannot place, and its file."""
    spec = TASKS[task]
    said = table[f"pred_{task}"]
    named = said.map(spec.canonical).notna()  # answers naming one of faircam's classes, in any spelling
    if named.all() and given is None:
        return spec
    placed = set(given.values()) if isinstance(given, dict) else set()
    fits = named if spec.binary else said.map(spec.recognises) | said.isin(placed)
    if not fits.all():
        at = int(np.flatnonzero(~fits.to_numpy())[0])
        hint = "" if spec.binary else f"; map {task} classes onto it {MAPPING_WHERE}"
        raise DataError(f"{source}: {said.iloc[at]!r} (file {table['file'].iloc[at]}) is not a {task} class faircam "
                        f"knows ({', '.join(spec.classes)}, or a synonym){hint}.")
    mapping = {} if given is None else {task: given}
    head = map_outputs([(task, sorted(set(said)))], source, mapping, where=MAPPING_WHERE)[0]
    return head.spec


def _task_columns(table: pd.DataFrame, spec: Task, labels: pd.Series, source: str) -> dict[str, object]:
    """The cache's prediction columns of `spec` (`Task.columns`) from the table's `pred_<task>` and `prob_<task>`,
    each answer judged against its label by `Task.judge` (in a coarser table's own classes)."""
    task = spec.name
    pred = table[f"pred_{task}"] if spec.onto else table[f"pred_{task}"].map(spec.canonical)
    prob = pd.Series(np.nan, index=table.index)
    if f"prob_{task}" in table:
        prob = pd.to_numeric(table[f"prob_{task}"], errors="coerce")
        bad = ~prob.between(0, 1)
        if bad.any():
            at = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{source}: prob_{task} {table[f'prob_{task}'].iloc[at]!r} (file "
                            f"{table['file'].iloc[at]}) is not a probability from 0 to 1.")
    columns: dict[str, object] = {spec.pred: pred, spec.prob: prob}
    if spec.score:
        # The positive class's probability: the given one, or its complement for the other class of a binary task.
        columns[spec.score] = prob.where(pred == spec.positive, 1 - prob)
    columns[spec.correct] = [spec.judge(p, label) for p, label in zip(pred, labels)]
    return columns


def import_predictions(path: Path, data_dir: Path, split: str, labels: Path | None, out: Path,
                       mapping: dict[str, object] | None = None) -> tuple[EvalCache, dict]:
    """Write the cache of the answers at `path` on the data (`load_data(data_dir, split, labels)`) to `out`, a
    .parquet file; `mapping` maps FairFace's classes onto a table's coarser ones per task, as a faircam-model.json's
    `mapping` does. Returns the cache as written and the counts: answered, unanswered, not in the data."""
    path = Path(path).expanduser()
    table = read_answers(path)
    mapping = mapping or {}
    predicted = [t for t in TASKS if f"pred_{t}" in table]
    extra = [t for t in mapping if t not in predicted]
    if extra:
        raise DataError(f"The mapping names {', '.join(map(repr, extra))}, which {path.name} does not answer "
                        f"(it has {', '.join(f'pred_{t}' for t in predicted)}).")
    # Checked on every answer, before the data is read: one line for the first one faircam cannot place.
    specs = {t: _answered_task(table, t, path.name, mapping.get(t)) for t in predicted}
    data = load_data(data_dir, split, labels)
    known = table["file"].isin(data.rows["file"])
    absent = table.loc[~known, "file"].tolist()
    answered = data.rows.merge(table[known], on="file", how="inner", suffixes=("", " (answers)"))
    if answered.empty:
        raise DataError(f"None of the {len(table)} files of {path.name} is among the labelled images of "
                        f"{data.labels or data.root} ({data.split}); name them as its labels do (e.g. "
                        f"{data.rows['file'].iloc[0]}).")
    tasks = {t: specs[t].classes for t in labelled_tasks(task_classes(predicted), answered)}
    if not tasks:
        raise DataError(f"{data.labels or data.root} has no {' or '.join(predicted)} labels to check the answers "
                        "against.")
    rows = data.rows.loc[data.rows["file"].isin(answered["file"])].reset_index(drop=True)
    coarse = [t for t in tasks if specs[t].onto]
    for task in tasks:
        for column, values in _task_columns(answered, specs[task], answered[task], path.name).items():
            rows[column] = np.asarray(values)
    meta = {
        "faircam_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "with_cams": False,
        "methods": [],
        "tasks": {task: list(classes) for task, classes in tasks.items()},
        "cam_task": DEFAULT_TASK if DEFAULT_TASK in tasks else next(iter(tasks)),
        "model": {"name": path.stem, "arch": "a table of answers", "sha256": file_sha256(path),
                  "path": str(path.resolve()), "kind": KIND,
                  # A coarser table's tasks, as a coarser model's are recorded (`faircam.evaluation.cache`).
                  **({"label_mapping": {t: specs[t].mapping_text() for t in coarse},
                      "onto": {t: dict(specs[t].onto) for t in coarse}} if coarse else {})},
        "data": {"root": str(data.root.resolve()), "split": data.split, "limit": None,
                 **({"labels": str(data.labels.resolve()), "notes": data.notes} if data.labels else {}),
                 "labelled": len(data.rows), "unreadable": 0,
                 "dropped": data.dropped.to_dict("records")[:50], "dropped_total": len(data.dropped),
                 "unanswered": len(data.rows) - len(rows), "not_in_data": len(absent),
                 "not_in_data_files": absent[:LISTED]},
        "attributes": data.attributes,
        "views": {"raw": f"the answers in {path.name}, as given (no image was read; no maps)"},
        "faithfulness": {"per_cell": 0, "n": 0},
        "predictions": {"file": str(path.resolve()),
                        "probabilities": {t: f"prob_{t}" in table for t in tasks}},
    }
    with output_lock(out):
        write_cache(rows, out, meta)
    counts = {"answered": len(rows), "unanswered": meta["data"]["unanswered"], "not_in_data": len(absent),
              "not_in_data_files": absent[:5]}
    return read_cache(out), counts
