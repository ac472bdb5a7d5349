"""Output files on a shared server (issue #26), through the commands a user runs: one run per output at a time,
temporary files created afresh (never through a name someone planted), nothing stuck after a SIGKILL, and every
bad argument or record one line before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli import assert_one_line_error
from test_cli import run as cli
from test_data_folders import folder
from test_pages import run as page
from test_recompute import recompute_button
from test_security import assert_one_line_exit_2

from faircam.config import PROJECT_ROOT, SHARED_FAIRFACE, settings
from faircam.data.fairface import load_split
from faircam.evaluation.cache import FOLDER_META, read_cache, write_cache_parts
from faircam.evaluation.evaluate import partial_path


def start_faircam(*argv: str) -> subprocess.Popen:
    """The `faircam` command as a separate program, started and left running."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "faircam.cli", *map(str, argv)], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def evaluate_argv(out, limit: int) -> list[str]:
    # Batches of 2 save a part every 8 images, so two unlocked runs would interleave their parts.
    return ["evaluate", "--data", SHARED_FAIRFACE, "--out", out, "--limit", str(limit), "--no-cams",
            "--faithfulness-per-cell", "0", "--batch-size", "2"]


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@pytest.fixture(scope="module")
def folder_cache(tmp_path_factory):
    """The bundled cache's first rows as a folder of two parts, as `faircam evaluate --out NAME` writes it."""
    bundled = read_cache(settings().cache_path)
    folder = tmp_path_factory.mktemp("folder")
    parts = []
    for i, rows in enumerate((bundled.rows.head(20), bundled.rows.iloc[20:40])):
        parts.append(folder / f"work-{i}.parquet")
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), parts[-1])
    kept = {k: v for k, v in bundled.meta.items() if k not in ("schema_version", "rows", "checksum", "parts")}
    write_cache_parts(parts, folder / "cache", kept, bundled.averages)
    return folder / "cache"


# --- one run per output -----------------------------------------------------------------------------


def test_two_evaluate_runs_on_one_out_never_mix(tmp_path):
    out = tmp_path / "eval"
    limits = (10, 16)
    started = time.monotonic()
    runs = [start_faircam(*evaluate_argv(out, limit)) for limit in limits]
    ended = {}
    while len(ended) < len(runs):
        for i, run in enumerate(runs):
            if i not in ended and run.poll() is not None:
                ended[i] = time.monotonic() - started
        assert time.monotonic() - started < 600, "the runs did not end"
        time.sleep(0.1)
    done = [subprocess.CompletedProcess(run.args, run.returncode, *run.communicate()) for run in runs]
    assert sorted(d.returncode for d in done) == [0, 2], [d.stderr for d in done]
    winner = next(i for i, d in enumerate(done) if d.returncode == 0)
    loser = 1 - winner
    assert_one_line_exit_2(done[loser], str(out), "another faircam run")
    assert ended[loser] < 10, "the second run was refused only after doing work"
    # The cache is the winner's own: its first N labelled images, its limit in the metadata, nothing unreadable.
    cache = read_cache(out)
    own = load_split(SHARED_FAIRFACE, "val").rows["file"].head(limits[winner]).tolist()
    assert cache.rows["file"].tolist() == own
    assert cache.meta["data"]["limit"] == limits[winner] and cache.meta["data"]["unreadable"] == 0
    assert json.loads(done[winner].stdout.strip().splitlines()[-1])["images"] == limits[winner]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"], "a lock, temporary or work folder was left"


def test_a_killed_runs_lock_does_not_block_the_next_run(tmp_path, capsys):
    out = tmp_path / "eval.parquet"
    lock = tmp_path / ".eval.parquet.lock"
    run = start_faircam(*evaluate_argv(out, 4))
    started = time.monotonic()
    # Killed once it holds the output.
    while not lock.exists():
        assert run.poll() is None, run.communicate()
        assert time.monotonic() - started < 600, "the run took no lock"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    assert lock.exists()  # left behind, as after a crash or a power cut
    code, stdout, err = cli(capsys, *evaluate_argv(out, 4))
    assert code == 0, err
    assert read_cache(out).rows["file"].tolist() == load_split(SHARED_FAIRFACE, "val").rows["file"].head(4).tolist()
    assert not lock.exists()


# Holds an output's lock, as a running `faircam evaluate` does, until its stdin closes.
HOLD_LOCK = """
import sys
from faircam.files import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_the_evaluation_page_does_not_recompute_an_output_another_run_holds(monkeypatch, tmp_path):
    cache_path = tmp_path / "eval.parquet"
    monkeypatch.setenv("FAIRCAM_DATA", str(folder(tmp_path / "data", SHARED_FAIRFACE)))
    monkeypatch.setenv("FAIRCAM_CACHE", str(cache_path))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(cache_path)], cwd=PROJECT_ROOT, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        at = page("pages/2_Evaluation.py")
        recompute_button(at).click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("being written by another faircam run" in e.value for e in at.error), [e.value for e in at.error]
        assert not cache_path.exists() and not partial_path(cache_path).exists()
    finally:
        holder.communicate("")


def test_train_refuses_a_checkpoint_another_run_holds(tmp_path, capsys):
    out = tmp_path / "m.pt"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=PROJECT_ROOT, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, stdout, err = cli(capsys, "train", "--data", SHARED_FAIRFACE, "--out", out, "--limit", "8",
                                "--epochs", "1", "--batch-size", "8")
        assert_one_line_error(code, stdout, err, str(out), "another faircam run")
        assert not out.exists() and not (tmp_path / "m.work").exists()
    finally:
        holder.communicate("")


# --- temporary files: created afresh, never through a planted name or link ---------------------------------


def test_train_writes_through_no_planted_link(tmp_path, capsys):
    out, registry = tmp_path / "m.pt", tmp_path / "registry.json"
    assert os.environ["FAIRCAM_REGISTRY"] == str(registry)
    victims = {}
    # Every fixed temporary name a run would use: its work folder's files, the checkpoint's, the registry's.
    (tmp_path / "m.work").mkdir()
    for name in ("m.work/state.pt.tmp", "m.work/features.pt.tmp", "m.pt.tmp", f".registry.json.{os.getpid()}.tmp"):
        victim = tmp_path / f"victim-{len(victims)}.txt"
        victim.write_text("someone else's file\n")
        (tmp_path / name).symlink_to(victim)
        victims[victim] = victim.read_bytes()
    code, stdout, err = cli(capsys, "train", "--data", SHARED_FAIRFACE, "--out", out, "--limit", "8",
                            "--epochs", "1", "--batch-size", "8")
    assert code == 0, err
    for victim, text in victims.items():
        assert victim.read_bytes() == text, f"{victim.name} was written through a planted link"
    assert not out.is_symlink() and out.is_file()
    assert not registry.is_symlink()
    assert json.loads(registry.read_text())["m"]["path"] == str(out.resolve())


def test_evaluate_writes_through_no_planted_link(tmp_path, capsys):
    out, victim = tmp_path / "eval.parquet", tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    # A live process's name (ours: the command runs in it), which the stale-file cleanup leaves alone.
    (tmp_path / f".eval.parquet.{os.getpid()}.tmp").symlink_to(victim)
    code, stdout, err = cli(capsys, *evaluate_argv(out, 2))
    assert code == 0, err
    assert victim.read_bytes() == b"someone else's file\n"
    assert not out.is_symlink() and len(read_cache(out).rows) == 2


def test_report_and_model_card_replace_a_link_at_their_name(tmp_path, capsys, folder_cache):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    for name in ("report.html", "rows.csv", "card.md"):
        (tmp_path / name).symlink_to(victim)
    code, stdout, err = cli(capsys, "report", "--cache", folder_cache, "--out", tmp_path / "report.html",
                            "--csv", tmp_path / "rows.csv")
    assert code == 0, err
    code, stdout, err = cli(capsys, "model-card", "--cache", folder_cache, "--out", tmp_path / "card.md")
    assert code == 0, err
    assert victim.read_bytes() == b"someone else's file\n"
    for name in ("report.html", "rows.csv", "card.md"):
        assert not (tmp_path / name).is_symlink() and (tmp_path / name).stat().st_size > 0


# --- a SIGKILL while a folder cache is assembled -------------------------------------------------------------


def test_a_killed_assembly_does_not_stick_the_folder_cache(tmp_path, capsys):
    out = tmp_path / "eval"
    # What a run killed while moving its parts leaves: its hidden folder with a part in it.
    stale = tmp_path / f".eval.{dead_pid()}.tmp"
    stale.mkdir()
    pq.write_table(pa.table({"file": ["val/1.jpg"]}), stale / "part-00000.parquet")
    code, stdout, err = cli(capsys, *evaluate_argv(out, 4))
    assert code == 0, err
    assert not stale.exists()
    assert len(read_cache(out).rows) == 4


def test_an_interrupted_assembly_loses_no_work(tmp_path, capsys, monkeypatch):
    import faircam.evaluation.cache
    import faircam.evaluation.evaluate

    out = tmp_path / "eval"

    def interrupted(part, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(faircam.evaluation.cache, "_link_or_copy", interrupted)
    code, stdout, err = cli(capsys, *evaluate_argv(out, 4))
    assert code == 130 and not out.exists()
    monkeypatch.undo()
    # The rerun finds every part where the interrupted run left it: no image is evaluated again.
    batches = []
    explain = faircam.evaluation.evaluate.Evaluator.explain
    monkeypatch.setattr(faircam.evaluation.evaluate.Evaluator, "explain",
                        lambda self, *args: batches.append(1) or explain(self, *args))
    code, stdout, err = cli(capsys, *evaluate_argv(out, 4))
    assert code == 0, err
    assert batches == [] and len(read_cache(out).rows) == 4


# --- malformed records and arguments: one line ------------------------------------------------------------


@pytest.mark.parametrize("rows", ["abc", None, 8.5, 20.0, True, -1],
                         ids=["text", "null", "fraction", "float", "bool", "negative"])
def test_a_part_record_with_bad_rows_is_one_line(tmp_path, capsys, folder_cache, rows):
    cache = tmp_path / "cache"
    cache.mkdir()
    for part in folder_cache.iterdir():
        (cache / part.name).write_bytes(part.read_bytes())
    meta = json.loads((cache / FOLDER_META).read_text())
    meta["parts"][0]["rows"] = rows
    (cache / FOLDER_META).write_text(json.dumps(meta))
    code, stdout, err = cli(capsys, "report", "--cache", cache, "--out", tmp_path / "r.html")
    assert_one_line_error(code, stdout, err, str(cache))
    assert not (tmp_path / "r.html").exists()


BAD_TRAIN_ARGUMENTS = {
    "limit": (["--limit", "0"], "--limit"),
    "batch-size": (["--batch-size", "0"], "--batch-size"),
    "input-size": (["--input-size", "0"], "--input-size"),
    "views": (["--views", "0"], "--views"),
    "arch": (["--arch", "X"], "--arch"),
    "epochs": (["--epochs", "0"], "--epochs"),
    "lr": (["--lr", "nan"], "--lr"),
    "frozen-stages": (["--frozen-stages", "-1"], "--frozen-stages"),
    "seed": (["--seed", "-1"], "--seed"),
    "sizes": (["--frozen-stages", "0", "--sizes", "128,,abc"], "--sizes"),
    "sizes-frozen": (["--sizes", "128,160"], "--frozen-stages 0"),
    "ema": (["--ema", "1"], "--ema"),
    "ema-nan": (["--ema", "nan"], "--ema"),
    "group-dro": (["--group-dro", "2"], "--group-dro"),
    "group-dro-nan": (["--group-dro", "nan"], "--group-dro"),
}

# Every argument in one process: each ends in one line before torch is imported.
CHECK_ARGUMENTS = """
import contextlib, io, json, sys
from faircam.cli import main
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    results[name] = [code, err.getvalue(), "torch" in sys.modules]
print(json.dumps(results))
"""


def test_bad_train_arguments_are_one_line_before_torch(tmp_path):
    out = tmp_path / "m.pt"
    # A quick run's arguments, each bad one given last (argparse keeps the last value).
    argvs = {name: ["train", "--data", str(SHARED_FAIRFACE), "--out", str(out), "--limit", "8", "--epochs", "1",
                    "--batch-size", "8", *argv]
             for name, (argv, _) in BAD_TRAIN_ARGUMENTS.items()}
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", CHECK_ARGUMENTS, json.dumps(argvs)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (_, word) in BAD_TRAIN_ARGUMENTS.items():
        code, err, torch_imported = results[name]
        assert_one_line_error(code, "", err, word)
        assert not torch_imported, f"{name}: torch was imported before the check"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a bad argument still wrote something"
