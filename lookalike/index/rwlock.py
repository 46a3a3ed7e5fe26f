"""A readers-writer lock for an index that FAISS must not search while it grows."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator


class RWLock:
    """Many searches at once, or one writer (FAISS graphs must not be searched while growing)."""

    def __init__(self) -> None:
        # the condition's own lock: `with self._mutex` is `with self._cond` without Condition's
        # __enter__ and __exit__, two Python calls per use (every search takes this lock)
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._waiting = 0  # writers waiting for readers to leave

    def acquire_read(self) -> None:
        with self._mutex:
            while self._writer:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            if not self._readers and self._waiting:  # only a writer waits for readers
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._mutex:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._mutex:
            self._writer = False
            self._cond.notify_all()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()
