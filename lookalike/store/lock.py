"""One writer per data folder: an exclusive `flock` on `DIR/lookalike.lock`.

The embedded store keeps its view of a collection (slots, liveness, field index, vector
row count) in memory, so two processes writing one folder would overwrite each other's
vector rows and go stale. The first process that opens a folder for writing takes this
lock and writes who it is into the file (pid, command line, since when); a second writer
is refused with that holder named. The kernel drops a `flock` when its process exits or is
killed, so a crashed holder never blocks the next one. Readers do not take it.

`ReadWriteLock` is the in-process side: searches, facets and gets of one collection run
together, while the swap that makes a commit (or a drop) visible runs alone, so a read
sees the collection before or after a write, never half of it.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import Conflict

LOCK_NAME = "lookalike.lock"
# Folders this process holds (by real path): a second store object in the same process is a
# second writer too, and `flock` on a new descriptor would not say so by itself.
_held: set[str] = set()
_held_lock = threading.Lock()


def _command() -> str:
    """This process's command line, short: `lookalike serve --port 8000`, `python job.py`."""
    argv = list(sys.argv) or ["python"]
    first = os.path.basename(argv[0]) or "python"
    if argv[0].endswith(os.path.join("lookalike", "cli", "__main__.py")):  # python -m lookalike.cli
        argv[0] = "lookalike"
    elif first.endswith(".py") or first in ("-c", "-m"):
        argv = [os.path.basename(sys.executable) or "python", *argv]
    else:
        argv[0] = first
    text = " ".join(argv)
    return text if len(text) <= 120 else text[:117] + "..."


def holder(folder: Path) -> dict | None:
    """What the lock file says about its holder (`pid`, `command`, `since`), or None if unreadable."""
    try:
        info = json.loads((folder / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def describe(folder: Path, shown: str) -> str:
    """The refusal message: which folder, who holds it, what to do instead."""
    info = holder(folder) or {}
    who = f"`{info['command']}`" if info.get("command") else "another process"
    details = []
    if info.get("pid"):
        details.append(f"pid {info['pid']}")
    if isinstance(info.get("since"), (int, float)):
        details.append("since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"])))
    held = f" ({', '.join(details)})" if details else ""
    return (f"data folder {shown} is in use by {who}{held}; stop it, or send records to the server "
            f"(HTTP API), or open the folder read-only")


class WriterLock:
    """The exclusive writer lock of one data folder, held until `release` (or process exit)."""

    def __init__(self, folder: Path, shown: str | None = None) -> None:
        self.folder = folder
        self._key = os.path.realpath(folder)
        shown = shown or str(folder)
        with _held_lock:
            if self._key in _held:
                raise Conflict(f"data folder {shown} is already open for writing in this process (pid "
                               f"{os.getpid()}); close that Database first, or open this one read-only")
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise Conflict(describe(folder, shown)) from None
            except BaseException:
                os.close(fd)
                raise
            _held.add(self._key)
        self._fd: int | None = fd
        info = json.dumps({"pid": os.getpid(), "command": _command(), "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)

    def release(self) -> None:
        """Give the folder up (idempotent). The file stays: its content is only read while locked."""
        with _held_lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            _held.discard(self._key)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class _ThreadState(threading.local):
    """A thread's hold on a `ReadWriteLock`; class defaults, so a read of a field never set on
    this thread finds one instead of raising AttributeError inside getattr (~0.7 us each)."""

    depth = 0  # reads held (nested)
    counted = False  # whether the outermost read counts in `_readers`
    writing = False  # whether this thread holds the write side


class ReadWriteLock:
    """Many readers or one writer, writers first (a steady stream of searches never starves a
    write). Re-entrant per thread for reads, and for reads inside this thread's own write."""

    def __init__(self) -> None:
        # the condition's own lock: `with self._mutex` is `with self._cond` without Condition's
        # __enter__ and __exit__, two Python calls per use (every search takes this lock)
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._waiting = 0
        self._local = _ThreadState()
        self._reading = _Reading(self)

    def read(self) -> "_Reading":
        """A context manager holding the read side (an object, not a generator: searches take
        it once each, and a generator-based one cost a few microseconds of a ~100 us search)."""
        return self._reading

    def _enter_read(self) -> None:
        local = self._local
        depth = local.depth
        if depth or local.writing:
            local.depth = depth + 1  # nested in this thread's read or write: already held
            return
        with self._mutex:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        local.depth, local.counted = 1, True

    def _exit_read(self) -> None:
        local = self._local
        local.depth -= 1
        if local.depth or not local.counted:
            return
        local.counted = False
        with self._mutex:
            self._readers -= 1
            if not self._readers and self._waiting:  # only a writer waits for readers
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._mutex:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer = True
        self._local.writing = True
        try:
            yield
        finally:
            self._local.writing = False
            with self._mutex:
                self._writer = False
                self._cond.notify_all()


class _Reading:
    """`with lock.read():` (one per lock, shared by every thread: the state is per thread)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock._enter_read()

    def __exit__(self, *exc: object) -> None:
        self._lock._exit_read()
