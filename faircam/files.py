"""How faircam writes its outputs on a shared server: atomically, through fresh temporaries, one run at a time.

Every file or folder faircam writes is first made under a new hidden name beside it (`.NAME.PID.RANDOM.tmp`),
created exclusively (`O_CREAT | O_EXCL`, `mkdir`), so never through a file or link someone planted there, then
renamed into place: readers see the old or the new, never half, and a link at the output's own name is
replaced, not written through. The temporaries of runs that were killed are removed by the next write to the
same place. `output_lock` holds an output for one run: a second run writing the same output is refused at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, TypeVar

from faircam.errors import OutputError

# What follows `.NAME.` in a temporary's name: the writer's pid, then (since the names are random) 8 hex digits.
_TEMPORARY = re.compile(r"(\d+)(?:\.[0-9a-f]{8})?\.tmp")
T = TypeVar("T")


def _fresh(path: Path, create: Callable[[str], T]) -> tuple[Path, T]:
    """A new temporary name beside `path` and what `create` made there (it must fail on an existing name)."""
    while True:
        name = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return name, create(str(name))
        except FileExistsError:
            continue


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files and folders of earlier writes to `path` whose process is gone (killed mid-write)."""
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        match = _TEMPORARY.fullmatch(tmp.name[len(prefix):])
        if match and not _process_alive(int(match.group(1))):
            _remove(tmp)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _prepare(path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    return path


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """A new file to fill, renamed onto `path` when the block ends without an error and removed otherwise."""
    path = _prepare(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    # 0o666 less the umask, as a plain open would make it (mkstemp's 0o600 would hide caches from the app's user).
    tmp, fd = _fresh(path, lambda name: os.open(name, flags, 0o666))
    try:
        with os.fdopen(fd, mode, encoding=encoding) as file:
            yield file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path | str, data: str | bytes) -> None:
    """`data` (text as UTF-8) as the file at `path`, through `atomic_file`."""
    with atomic_file(path) as file:
        file.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def atomic_folder(path: Path | str) -> Iterator[Path]:
    """A new empty folder to fill, put in place of `path` (a folder, or nothing) when the block ends without an
    error and removed otherwise."""
    path = _prepare(path)
    tmp, _ = _fresh(path, lambda name: os.mkdir(name, 0o777))
    old = None
    try:
        yield tmp
        # A folder cannot replace another in one rename: the old one steps aside, into a folder of our own.
        if path.exists() or path.is_symlink():
            old, _ = _fresh(path, lambda name: os.mkdir(name, 0o777))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
        if old is not None:
            _remove(old)


_held = threading.local()


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _printable(text: str) -> str:
    """The lock file's description of its holder, as it may be shown: anyone could have written it."""
    return "".join(c for c in text if c.isascii() and c.isprintable())[:120]


@contextlib.contextmanager
def output_lock(path: Path | str) -> Iterator[None]:
    """Hold the output `path` for this run; `OutputError` at once when another run (process or thread) holds it.

    The lock is the kernel's (`flock`) on the hidden file `.NAME.lock` beside the output, which says who holds
    it. The kernel releases it when its process ends, however it ends, so the lock of a killed run never
    blocks the next one; a run that ends removes the file. Nested holds of one output in one thread are one.
    """
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    held = _held.__dict__.setdefault("files", set())
    try:
        named = os.stat(lock, follow_symlinks=False)
        nested = (named.st_dev, named.st_ino) in held
    except FileNotFoundError:
        nested = False
    if nested:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"{path}: cannot lock {lock.name} beside it for writing ({exc.strerror or exc}).") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _printable(os.read(fd, 512).decode("utf-8", "replace"))
            os.close(fd)
            raise OutputError(f"{path} is being written by another faircam run ({holder or 'just starting'}): "
                              "wait until it ends, or write elsewhere.") from None
        # Its holder may have ended and removed the file between our open and our lock: lock the file at the name.
        if _same_file(fd, lock):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        since = datetime.now().astimezone().isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode())
        key = (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            if _same_file(fd, lock):
                lock.unlink(missing_ok=True)
    finally:
        os.close(fd)
