"""`faircam import-predictions`: a table of a model's answers, with no model at all, as an evaluation cache.

The table (CSV or parquet) names each image by `file`, as the data folder's labels do, and gives per task predicted
`pred_<task>` (`pred_gender`, `pred_race`, `pred_age`: at least one), its values in any spelling
`faircam.tasks.Task.canonical` knows ("woman", "F", "70+"), and optionally `prob_<task>`, the probability of the
predicted class. The answers are joined to the data's labels by file name and written with the cache writer every
cache goes through (`faircam.evaluation.cache.write_cache`: schema, checksum, atomic replacement), so every table
page, the report and Compare read it as they read `faircam evaluate`'s; it holds no maps (`EvalCache.has_cams` is
false), which the map pages say. Files the data folder lacks are counted and the first of them recorded in the
cache (`meta["data"]`); images the table does not answer are left out of the audit and counted too. Imports no
torch.
"""

from __future__ import annotations

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
from faircam.tasks import DEFAULT_TASK, TASKS, task_classes

KIND = "predictions"
# The files the data folder lacks recorded in the cache by name (all are counted).
LISTED = 50


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


def _task_columns(table: pd.DataFrame, task: str, truth: pd.Series, source: str) -> dict[str, object]:
    """The cache's prediction columns of `task` (`Task.columns`) from the table's `pred_<task>` and `prob_<task>`."""
    spec = TASKS[task]
    pred = table[f"pred_{task}"].map(spec.canonical)
    if pred.isna().any():
        at = int(np.flatnonzero(pred.isna().to_numpy())[0])
        raise DataError(f"{source}: {table[f'pred_{task}'].iloc[at]!r} (file {table['file'].iloc[at]}) is not a "
                        f"{task} class faircam knows ({', '.join(spec.classes)}, or a synonym).")
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
    columns[spec.correct] = pred == truth
    return columns


def import_predictions(path: Path, data_dir: Path, split: str, labels: Path | None, out: Path) -> tuple[EvalCache,
                                                                                                        dict]:
    """Write the cache of the answers at `path` on the data (`load_data(data_dir, split, labels)`) to `out`, a
    .parquet file. Returns the cache as written and the counts: answered, unanswered, not in the data."""
    path = Path(path).expanduser()
    table = read_answers(path)
    data = load_data(data_dir, split, labels)
    known = table["file"].isin(data.rows["file"])
    absent = table.loc[~known, "file"].tolist()
    answered = data.rows.merge(table[known], on="file", how="inner", suffixes=("", " (answers)"))
    if answered.empty:
        raise DataError(f"None of the {len(table)} files of {path.name} is among the labelled images of "
                        f"{data.labels or data.root} ({data.split}); name them as its labels do (e.g. "
                        f"{data.rows['file'].iloc[0]}).")
    predicted = [t for t in TASKS if f"pred_{t}" in table]
    tasks = labelled_tasks(task_classes(predicted), answered)
    if not tasks:
        raise DataError(f"{data.labels or data.root} has no {' or '.join(predicted)} labels to check the answers "
                        "against.")
    rows = data.rows.loc[data.rows["file"].isin(answered["file"])].reset_index(drop=True)
    for task in tasks:
        for column, values in _task_columns(answered, task, answered[task], path.name).items():
            rows[column] = np.asarray(values)
    meta = {
        "faircam_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "with_cams": False,
        "methods": [],
        "tasks": {task: list(classes) for task, classes in tasks.items()},
        "cam_task": DEFAULT_TASK if DEFAULT_TASK in tasks else next(iter(tasks)),
        "model": {"name": path.stem, "arch": "a table of answers", "sha256": file_sha256(path),
                  "path": str(path.resolve()), "kind": KIND},
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
