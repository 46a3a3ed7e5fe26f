"""An append-only file of float32 rows, memory-mapped for reading.

Rows ("slots") are only ever appended, never rewritten in place: an update writes a new
row and the record's pointer moves when the metadata transaction commits. A crash at any
moment therefore leaves every committed pointer aiming at a complete, fsynced row; rows
past the last committed one are just unused tail.

A new row's slot is the file's real length when it is written (read from the open file,
under the caller's writer lock), never a count cached in memory: a cached count that fell
behind would hand out a slot another row already has. Read-only files (`writable=False`)
are never created, truncated or appended to; they map the whole rows present when opened.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class VectorFile:
    """float32 rows of fixed dimension in one file; `matrix` is a read-only memory map."""

    def __init__(self, path: Path, dim: int, *, writable: bool = True) -> None:
        self.path = path
        self.dim = dim
        self.row_bytes = dim * 4
        self._fh = None
        if not writable:  # a reader: whole rows only (a writer may be appending the next one)
            self.rows = (path.stat().st_size if path.exists() else 0) // self.row_bytes
            self.matrix = self._map()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "ab", buffering=0)
        self._drop_torn_row()
        self.rows = os.fstat(self._fh.fileno()).st_size // self.row_bytes
        self.matrix = self._map()

    def _drop_torn_row(self) -> None:
        """Cut a partial last row (a crash or a failed write before its metadata committed)."""
        size = os.fstat(self._fh.fileno()).st_size
        if size % self.row_bytes:
            os.ftruncate(self._fh.fileno(), size - size % self.row_bytes)

    def _map(self) -> np.ndarray:
        if self.rows == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.dim))

    def append(self, vectors: np.ndarray) -> int:
        """Write rows durably (fsync) and return the first new slot."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"expected N x {self.dim} vectors, got {data.shape}")
        if self._fh is None:
            raise OSError(f"{self.path} is open read-only")
        self._drop_torn_row()
        first = os.fstat(self._fh.fileno()).st_size // self.row_bytes
        view = memoryview(data.tobytes())
        try:
            while view:  # unbuffered: a failed write leaves nothing queued to land later
                view = view[self._fh.write(view):]
            os.fsync(self._fh.fileno())
        except BaseException:
            self._drop_torn_row()
            raise
        self.rows = first + len(data)
        self.matrix = self._map()
        return first

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
