"""Text vectors of the embedded store: one per record of a collection with `text_fields`.

They live in the same SQLite file as the records (table `text_vectors`, float32 BLOBs),
written in the same transaction as the record they describe, so a crash never leaves a
record and its text vector disagreeing. In memory they form a matrix aligned with the
collection's vector slots, so a hybrid score is two matrix-vector products:

    score = (1 - h) * visual_similarity + h * text_similarity

Records with no text vector (written before `text_fields` was set) score NaN on the text
side, which the search treats as "never a hit" for pure text queries.
"""
from __future__ import annotations

import sqlite3
from typing import Sequence

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS text_vectors (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
"""


def ensure_schema(con: sqlite3.Connection) -> None:
    con.executescript(SCHEMA)


class TextMatrix:
    """Per-slot text vectors of one collection (rows without one are NaN)."""

    def __init__(self, dim: int = 0) -> None:
        self.dim = dim
        self.matrix = np.zeros((0, dim), dtype=np.float32)

    @classmethod
    def load(cls, con: sqlite3.Connection, collection: str, slot_of: dict[str, int], n_slots: int) -> "TextMatrix":
        out = cls()
        rows = con.execute("SELECT id, vec FROM text_vectors WHERE collection=?", (collection,)).fetchall()
        found = [(slot_of[rid], blob) for rid, blob in rows if rid in slot_of]
        if found:  # one matrix write, not one per record
            out.set([slot for slot, _ in found],
                    np.frombuffer(b"".join(blob for _, blob in found), dtype=np.float32).reshape(len(found), -1),
                    n_slots)
        return out

    @property
    def empty(self) -> bool:
        return self.dim == 0

    def set(self, slots: Sequence[int], vectors: np.ndarray, n_slots: int) -> None:
        """Put vectors at slots, growing the matrix (new rows NaN) to cover `n_slots`."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.dim == 0:
            self.dim = vectors.shape[1]
            self.matrix = np.full((0, self.dim), np.nan, dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"text vectors of {vectors.shape[1]} dimensions in a {self.dim}-d matrix")
        need = max(n_slots, max(slots, default=-1) + 1)
        if need > len(self.matrix):
            grown = np.full((max(need, 2 * len(self.matrix), 1024), self.dim), np.nan, dtype=np.float32)
            grown[: len(self.matrix)] = self.matrix
            self.matrix = grown
        self.matrix[list(slots)] = vectors

    def scores(self, query: np.ndarray, n_slots: int) -> np.ndarray:
        """Cosine similarity of every slot's text vector to a unit query (NaN where none)."""
        out = np.full(n_slots, np.nan, dtype=np.float32)
        if self.dim and len(query) == self.dim:
            n = min(n_slots, len(self.matrix))
            out[:n] = self.matrix[:n] @ np.asarray(query, dtype=np.float32)
        return out

    def get(self, slots: Sequence[int]) -> np.ndarray:
        if not self.dim:
            return np.zeros((0, 0), dtype=np.float32)
        slots = [s for s in slots if s < len(self.matrix)]
        rows = self.matrix[slots]
        return rows[np.isfinite(rows).all(axis=1)]


def write_text_vectors(con: sqlite3.Connection, collection: str, records: Sequence) -> None:
    """Inside the caller's transaction: store the records' text vectors (those that have one)."""
    rows = [(collection, r.id, np.asarray(r.text_vector, dtype=np.float32).tobytes())
            for r in records if getattr(r, "text_vector", None) is not None]
    if rows:
        con.executemany("INSERT OR REPLACE INTO text_vectors VALUES (?,?,?)", rows)


def delete_text_vectors(con: sqlite3.Connection, collection: str, ids: Sequence[str] | None = None) -> None:
    """Inside the caller's transaction: drop the text vectors of some ids (all when None)."""
    if ids is None:
        con.execute("DELETE FROM text_vectors WHERE collection=?", (collection,))
        return
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        con.execute(f"DELETE FROM text_vectors WHERE collection=? AND id IN ({','.join('?' * len(chunk))})",
                    (collection, *chunk))
