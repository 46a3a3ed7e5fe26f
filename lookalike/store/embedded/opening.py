"""Opening a collection: which id lives in which vector slot, each slot's content hash and the
field index, read from the saved snapshot when the database says nothing changed since it was
saved, else from every record's row (store/field_snapshot.py).

The fast way reads no record row but a sample, a safety net against a snapshot that is
somehow foreign: bench/open.py measures both ways on the same folder.
"""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import LookalikeError
from ...jsontext import load_json
from .. import field_snapshot
from ..field_index import FieldIndex
from .sqlite import marks, write_state

#: Live records whose row an open from the snapshot checks against it (evenly spread).
SAMPLE = 64

log = logging.getLogger(__name__)


@dataclass
class Slots:
    """A collection's slot table as loaded (arrays sized for `capacity` slots)."""

    ids: list[str | None]  # per vector row; None where the row is dead
    of: dict[str, int]
    alive: np.ndarray
    hashes: np.ndarray  # uint64 content-hash prefix per slot (field_snapshot.hash64)
    fields: FieldIndex
    covered: int  # slots the snapshot in use describes (0: none was used)
    saved_state: tuple[str, int] | None  # the write state the snapshot on disk was saved at
    state: tuple[str, int] | None  # the database's write state now


def indexed_view(doc: dict, computed: dict) -> dict:
    """What filters see: the metadata plus engine-computed fields."""
    return {**doc, **computed}


def load_slots(reader: sqlite3.Connection, name: str, n_rows: int, snapshot: Path) -> Slots:
    """The slot table of collection `name` (inside the caller's read transaction)."""
    state = write_state(reader, name)
    saved = field_snapshot.read(snapshot, n_rows)
    if saved is not None and state is not None and saved.state == state:
        try:
            fast = _from_snapshot(reader, name, n_rows, saved, state)
        except ValueError as exc:
            log.warning("field index snapshot %s unreadable (%s): rebuilding", snapshot.name, exc)
            fast = None
        if fast is not None:
            return fast
    return _from_records(reader, name, n_rows, saved, state)


def _capacity(n_rows: int) -> int:
    return max(1024, n_rows * 2)


def _from_snapshot(reader: sqlite3.Connection, name: str, n_rows: int, saved: field_snapshot.Saved,
                   state: tuple[str, int]) -> Slots | None:
    table = saved.slot_table()
    if table is None:
        return None
    ids, saved_alive = table
    live = np.flatnonzero(saved_alive)
    if not _sample_agrees(reader, name, ids, saved, live):
        log.warning("field index snapshot of %r disagrees with its records: rebuilding", name)
        return None
    alive = np.zeros(_capacity(n_rows), dtype=bool)
    alive[:saved.covered] = saved_alive
    hashes = np.zeros(len(alive), dtype=np.uint64)
    hashes[:saved.covered] = saved.hashes
    ids.extend([None] * (n_rows - len(ids)))  # rows appended but never committed (a crash) are dead
    of = dict(zip(ids, range(len(ids))))  # a dead slot's None is a key too, dropped below
    of.pop(None, None)
    return Slots(ids, of, alive, hashes, saved.index(), saved.covered, saved.state, state)


def _sample_agrees(reader: sqlite3.Connection, name: str, ids: list[str | None], saved: field_snapshot.Saved,
                   live: np.ndarray) -> bool:
    """Whether up to SAMPLE live records have, in SQLite, the slot and content hash saved."""
    picks = live[np.linspace(0, len(live) - 1, min(SAMPLE, len(live))).astype(np.int64)] if len(live) else live
    want = {ids[s]: int(s) for s in picks.tolist()}
    rows = reader.execute(f"SELECT id, slot, content_hash FROM records WHERE collection=? AND id IN ({marks(want)})",
                          (name, *want)).fetchall() if want else []
    if len(rows) != len(want) or any(want.get(rid) != slot for rid, slot, _ in rows):
        return False
    slots = np.array([slot for _, slot, _ in rows], dtype=np.int64)
    return saved.matches(slots, field_snapshot.hash64([h for _, _, h in rows]))


def _from_records(reader: sqlite3.Connection, name: str, n_rows: int, saved: field_snapshot.Saved | None,
                  state: tuple[str, int] | None) -> Slots:
    """Every record's slot and hash from SQLite; the snapshot's field index if it matches them."""
    rows = reader.execute(
        "SELECT id, slot, content_hash FROM records WHERE collection=? ORDER BY slot", (name,)).fetchall()
    capacity = _capacity(n_rows)
    alive = np.zeros(capacity, dtype=bool)
    hashes = np.zeros(capacity, dtype=np.uint64)
    ids: list[str | None] = [None] * n_rows
    of: dict[str, int] = {}
    for rid, slot, _ in rows:
        if slot >= n_rows:
            raise LookalikeError(
                f"collection {name!r} is damaged: record {rid!r} points past the end of its vector file")
        ids[slot] = rid
        of[rid] = slot
    live = np.fromiter((slot for _, slot, _ in rows), dtype=np.int64, count=len(rows))
    alive[live] = True
    hashes[live] = field_snapshot.hash64([h for _, _, h in rows])
    fields, covered = FieldIndex(), 0
    if saved is not None:
        if saved.matches(live, hashes[live]):
            fields, covered = saved.index(), saved.covered
        else:
            log.warning("field index snapshot of %r does not match the records: rebuilding", name)
    later = reader.execute("SELECT slot, doc, computed FROM records WHERE collection=? AND slot >= ? ORDER BY slot",
                           (name, covered)).fetchall()
    fields.add([slot for slot, _, _ in later],
               [indexed_view(load_json(doc), load_json(computed)) for _, doc, computed in later])
    return Slots(ids, of, alive, hashes, fields, covered, saved.state if saved is not None else None, state)

