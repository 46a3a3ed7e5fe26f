"""An append-only file of float32 rows, memory-mapped for reading.

Rows ("slots") are only ever appended, never rewritten in place: an update writes a new
row and the record's pointer moves when the metadata transaction commits. A crash at any
moment therefore leaves every committed pointer aiming at a complete, fsynced row; rows
past the last committed one are just unused tail.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class VectorFile:
    """float32 rows of fixed dimension in one file; `matrix` is a read-only memory map."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.row_bytes = dim * 4
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch()
        size = path.stat().st_size
        if size % self.row_bytes:  # a row torn by a crash before its metadata committed
            with open(path, "r+b") as fh:
                fh.truncate(size - size % self.row_bytes)
        self._fh = open(path, "ab")
        self.rows = path.stat().st_size // self.row_bytes
        self.matrix = self._map()

    def _map(self) -> np.ndarray:
        if self.rows == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.dim))

    def append(self, vectors: np.ndarray) -> int:
        """Write rows durably (fsync) and return the first new slot."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"expected N x {self.dim} vectors, got {data.shape}")
        first = self.rows
        self._fh.write(data.tobytes())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.rows += len(data)
        self.matrix = self._map()
        return first

    def close(self) -> None:
        self._fh.close()
