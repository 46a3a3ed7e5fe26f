"""One collection of the embedded store: loading, reads, writes, compaction (search: search.py)."""
from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ...errors import Conflict, LookalikeError, NotFound
from ...jsontext import dump_json
from ...index.manager import CollectionIndex
from ...index.masks import MaskCache
from ..filters import MATCH_ALL, Node
from ..base import Capabilities, CollectionSettings, CollectionStore, StoredRecord, plan_write
from .. import field_snapshot
from ..facets import facets_of
from ..lock import ReadWriteLock
from ..transform import Transform, transform_of
from ..text_vectors import TextMatrix, delete_text_vectors, write_text_vectors
from ..vectors import VectorFile
from . import fts
from .docs import DocCache, read_docs
from .opening import indexed_view, load_slots
from .search import EmbeddedSearch
from .sqlite import chunks, connect_db, marks, write_thumbnails

#: How many values of a string path `facets` lists at most.
FACET_TOP = 20


# Save the field index (store/field_snapshot.py) once this many slots are not in the saved copy
# (on open and close; while writing, after 5x this and a quarter of the collection): reparsing
# 10 000 records costs about 0.3 s, rewriting the snapshot of a million about 1 s.
FIELDS_SAVE_MIN = 10_000


log = logging.getLogger(__name__)


class _ReadOnlyIndex(CollectionIndex):
    """The ANN index of a read-only store: loaded or built in memory, never saved or deleted."""

    def save(self) -> None:
        return None

    def remove_stale(self) -> None:
        return None


def _grown(array: np.ndarray, need: int) -> np.ndarray:
    """`array` if it holds `need` slots, else a copy of at least twice its size, zero-filled."""
    if need <= len(array):
        return array
    out = np.zeros(max(need, 2 * len(array)), dtype=array.dtype)
    out[: len(array)] = array
    return out


#: The embedded store keeps thumbnails, compacts its vector file (`compact`) and tunes (`set_tuning`).
EMBEDDED_CAPABILITIES = Capabilities(thumbnails=True, compaction=True, tuning=True, keywords=True)


class EmbeddedCollection(EmbeddedSearch, CollectionStore):
    """One collection of the embedded store, with its slots, field index and vectors in memory."""

    capabilities = EMBEDDED_CAPABILITIES

    def __init__(self, store: Any, settings: CollectionSettings, generation: int) -> None:
        self._store = store
        self.settings = settings
        self.name = settings.name
        self._lock = threading.RLock()  # one write at a time (held through fsync and commit)
        self._rw = ReadWriteLock()  # reads share it; publishing a write takes it alone
        self._dropped = False
        self._generation = generation
        self._load()
        if not store.read_only:
            self._sync_keywords()

    # -- loading -------------------------------------------------------------------------
    def _vector_path(self, generation: int) -> Path:
        return self._store.path / "vectors" / f"{self.name}.{generation}.f32"

    def _load(self) -> None:
        """Read the collection's state in one SQLite read transaction (consistent even while
        another process commits), then map the vector rows it points at."""
        dim = self.settings.dim
        if not dim:
            raise LookalikeError(f"collection {self.name!r} has no dimension recorded")
        reader = self._store.reader()
        reader.execute("BEGIN")
        try:
            self._load_in(reader, dim)
        finally:
            reader.execute("COMMIT")
        self._docs = DocCache(self._slot_of)  # stored documents by slot of this generation (docs.py)
        self._alive_version = 0  # bumped after every change of _alive (keys cached allowed-slot masks)
        # The ANN graph is derived data: loaded if it provably covers this vector file, else rebuilt.
        index_class = _ReadOnlyIndex if self._store.read_only else CollectionIndex
        self._index = index_class(self._store.path / "index", self.name, self._generation, dim,
                                  self.settings.index, self.settings.compression,
                                  lambda: self._matrix, self.count)
        self._index.open()

    def _load_in(self, reader: sqlite3.Connection, dim: int) -> None:
        self._vectors = VectorFile(self._vector_path(self._generation), dim, writable=not self._store.read_only)
        self._n = self._vectors.rows  # slots readers may look at: published with each commit
        self._set_space(transform_of(self.settings.tuning))
        slots = load_slots(reader, self.name, self._vectors.rows, self._fields_path())
        self._alive, self._slot_hash, self._fields = slots.alive, slots.hashes, slots.fields
        self._slot_ids, self._slot_of = slots.ids, slots.of
        self._fields_saved, self._saved_state = slots.covered, slots.saved_state
        self._fields_saver: threading.Thread | None = None
        if not self._store.read_only and self._snapshot_due(slots.state):
            self._save_fields(background=False)
        self._text = TextMatrix.load(reader, self.name, self._slot_of, self._vectors.rows)
        self._masks, self._fields_version = MaskCache(), 0  # filter masks, valid per field-index version

    # -- the searched space ---------------------------------------------------------------
    def _set_space(self, transform: Transform | None) -> None:
        """Searches use the raw vector file, or (tuned) its rows mapped by `transform`, kept in
        memory with spare room for appends; the raw rows stay on disk as they are."""
        self._transform = transform
        self._space = None
        if transform is not None:
            rows = self._vectors.rows
            self._space = np.zeros((max(1024, 2 * rows), self.settings.dim), dtype=np.float32)
            self._space[:rows] = transform.apply(self._vectors.matrix) if rows else 0.0

    def _extend_space(self, first: int, vectors: np.ndarray) -> None:
        """Map appended raw rows into the tuned space (before readers may see their slots)."""
        if self._transform is None:
            return
        need = first + len(vectors)
        if need > len(self._space):  # a new array: readers holding the old one read only old slots
            grown = np.zeros((max(need, 2 * len(self._space)), self.settings.dim), dtype=np.float32)
            grown[:first] = self._space[:first]
            self._space = grown
        self._space[first:need] = self._transform.apply(vectors)

    @property
    def _matrix(self) -> np.ndarray:
        """The rows searches score: the raw vector file, or its tuned image."""
        space = self._space
        return self._vectors.matrix if space is None else space[:self._vectors.rows]

    @property
    def transform(self) -> Transform | None:
        return self._transform

    def _fields_path(self, generation: int | None = None) -> Path:
        gen = self._generation if generation is None else generation
        return self._store.path / "fields" / f"{self.name}.{gen}.npz"

    def _snapshot_due(self, state: tuple[str, int] | None) -> bool:
        """Whether the field snapshot is worth saving: FIELDS_SAVE_MIN slots not in it, or (for a
        collection that big) records changed since it was saved, so the next open reads it alone."""
        rows = self._vectors.rows
        return rows - self._fields_saved >= FIELDS_SAVE_MIN or (
            rows >= FIELDS_SAVE_MIN and state is not None and state != self._saved_state)

    def _save_fields(self, background: bool) -> None:
        """Snapshot the field index (call with the collection lock held); the file is written on a
        thread when `background`, so a write that crosses the threshold does not wait for it."""
        if self._fields_saver is not None and self._fields_saver.is_alive():
            return  # one at a time: the next threshold or close saves again
        covered = self._vectors.rows
        state = self._store.write_state(self.name)  # no write of this collection runs: its lock is held
        arrays = field_snapshot.take(self._fields, self._slot_hash, covered, self._slot_ids, self._alive, state)
        self._saved_state = state
        path = self._fields_path()

        def write() -> None:
            try:
                field_snapshot.write(path, arrays)
            except OSError as exc:  # derived data: the next open rebuilds it
                log.warning("could not save the field index of %r: %s", self.name, exc)
        self._fields_saved = covered
        if background:
            self._fields_saver = threading.Thread(target=write, name=f"fields-{self.name}", daemon=True)
            self._fields_saver.start()
        else:
            write()

    def _wait_fields_saver(self) -> None:
        if self._fields_saver is not None:
            self._fields_saver.join()

    @property
    def n_slots(self) -> int:
        return self._n

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """The shared side of the collection's lock, refusing a dropped collection."""
        with self._rw.read():
            self._check_present()
            yield

    def _check_present(self) -> None:
        if self._dropped:
            raise NotFound(f"collection {self.name!r} not found (it was dropped)")

    def _writable(self) -> None:
        self._check_present()
        self._store.check_writable()

    # -- reads ---------------------------------------------------------------------------
    def count(self) -> int:
        return len(self._slot_of)

    def hashes(self, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        con = self._store.reader()
        for chunk in chunks(list(ids), 500):
            q = f"SELECT id, content_hash, source_hash FROM records WHERE collection=? AND id IN ({marks(chunk)})"
            for rid, ch, sh in con.execute(q, (self.name, *chunk)):
                out[rid] = (ch, sh)
        self._check_present()  # after the query: a drop marks the object before deleting its rows
        return out

    def get(self, ids: Sequence[str]) -> list[dict | None]:
        """Stored documents (None for an unknown id), kept per slot after the first read (docs.py)."""
        if self._store.read_only and self._store.changed_elsewhere():
            self._docs.clear()  # the writer committed: what was read before may be stale
        docs = read_docs(self._docs, self._store.reader(), self.name, ids)
        self._check_present()  # rows of a re-created namesake are not this collection's
        return docs

    def vectors(self, ids: Sequence[str], raw: bool = False) -> dict[str, np.ndarray]:
        with self._reading():
            matrix = self._vectors.matrix if raw else self._matrix
            slots = {i: self._slot_of.get(i) for i in ids}
            return {i: np.array(matrix[s]) for i, s in slots.items() if s is not None}

    def raw_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self.vectors(ids, raw=True)

    def raw_all_vectors(self) -> tuple[list[str], np.ndarray]:
        return self.all_vectors(raw=True)

    def all_vectors(self, raw: bool = False) -> tuple[list[str], np.ndarray]:
        with self._reading():
            items = sorted(self._slot_of.items(), key=lambda kv: kv[1])
            matrix = self._vectors.matrix if raw else self._matrix
        slots = np.array([s for _, s in items], dtype=np.int64)
        return [i for i, _ in items], np.asarray(matrix[slots]) if len(slots) else np.empty((0, self.settings.dim))

    def ids_where(self, where: Node) -> list[str]:
        with self._reading():
            n = self.n_slots
            mask = self._alive[:n] & self._fields.mask(where, n)
            return [self._slot_ids[s] for s in np.flatnonzero(mask)]

    def list_ids(self, where: Node = MATCH_ALL, *, offset: int = 0, limit: int = 50) -> tuple[list[str], int]:
        """Live ids in slot order (oldest write first), a page of them and the total."""
        with self._reading():
            n = self.n_slots
            mask = self._alive[:n].copy()
            if where is not MATCH_ALL:
                mask &= self._fields.mask(where, n)
            slots = np.flatnonzero(mask)
            return [self._slot_ids[s] for s in slots[offset:offset + limit]], int(len(slots))

    def facets(self, where: Node = MATCH_ALL, *, top: int = FACET_TOP) -> list[dict]:
        """Per metadata path, over live records matching `where`: value counts and numeric ranges.

        Computed from the field index's postings (one `bincount` per path), so it costs
        milliseconds even for large collections. Engine fields other than `_labels.label`
        are left out: they are not useful to filter by.
        """
        with self._reading():
            n = self.n_slots
            live = self._alive[:n].copy()
            if where is not MATCH_ALL:
                live &= self._fields.mask(where, n)
            return facets_of(self._fields, live, top)

    def facets_and_count(self, where: Node = MATCH_ALL, *, top: int = FACET_TOP) -> tuple[list[dict], int]:
        with self._reading():  # one state for both (the read lock is re-entrant)
            count = self.count() if where is MATCH_ALL else len(self.ids_where(where))
            return self.facets(where, top=top), count

    def thumbnail(self, id: str) -> bytes | None:
        row = self._store.reader().execute(
            "SELECT data FROM thumbnails WHERE collection=? AND id=?", (self.name, id)).fetchone()
        self._check_present()
        return bytes(row[0]) if row else None

    def thumbnails(self, ids: Sequence[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        con = self._store.reader()
        for chunk in chunks(list(ids), 500):
            q = f"SELECT id, data FROM thumbnails WHERE collection=? AND id IN ({marks(chunk)})"
            out.update((rid, bytes(data)) for rid, data in con.execute(q, (self.name, *chunk)))
        self._check_present()
        return out

    def stats(self) -> dict:
        index = self._index.stats()
        return {"index": index, "bytes": self._vectors.rows * self._vectors.row_bytes + index["memory_bytes"],
                "bytes_per_vector": self._index.bytes_per_vector(), "slots": self._vectors.rows}

    def wait_index(self, timeout: float | None = None) -> bool:
        """Block until a background index build is done (tests, benchmarks)."""
        return self._index.wait(timeout)


    # -- writes --------------------------------------------------------------------------
    def write(self, records: Sequence[StoredRecord]) -> list[str]:
        with self._lock:
            self._writable()
            statuses, changed = plan_write(records, self.hashes([r.id for r in records]))
            if changed:
                self._commit(changed)
            return statuses

    def _commit(self, records: list[StoredRecord]) -> None:
        vectors = np.stack([np.asarray(r.vector, dtype=np.float32) for r in records])
        first = self._vectors.append(vectors)
        self._extend_space(first, vectors)
        now = time.time()
        rows = [(self.name, r.id, first + i, r.content_hash, r.source_hash,
                 dump_json(r.doc), dump_json(r.computed), now)
                for i, r in enumerate(records)]
        old_slots = [self._slot_of[r.id] for r in records if r.id in self._slot_of]  # writes hold self._lock
        con = self._store.writer
        with self._store.write_lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?)", rows)
                write_thumbnails(con, self.name, records)
                write_text_vectors(con, self.name, records)
                fts.write(con, self.name, self.settings.text_fields, first, records, old_slots)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        self._apply_insert(first, records)

    def _apply_insert(self, first: int, records: list[StoredRecord]) -> None:
        """Make committed rows visible to readers at once (under the write side of `_rw`), then
        let the ANN graph and the field snapshot catch up."""
        with self._rw.write():
            self._publish_insert(first, records)
        need = first + len(records)
        self._index.sync()  # add the new rows to the ANN graph (or build one past the threshold)
        if need - self._fields_saved >= max(FIELDS_SAVE_MIN * 5, self._fields_saved // 4):
            self._save_fields(background=True)

    def _publish_insert(self, first: int, records: list[StoredRecord]) -> None:
        slots = list(range(first, first + len(records)))
        self._fields.add(slots, [indexed_view(r.doc, r.computed) for r in records])
        self._fields_version += 1
        texts = [(s, r.text_vector) for s, r in zip(slots, records) if getattr(r, "text_vector", None) is not None]
        if texts:
            self._text.set([s for s, _ in texts], np.stack([v for _, v in texts]), first + len(records))
        need = first + len(records)
        self._alive, self._slot_hash = _grown(self._alive, need), _grown(self._slot_hash, need)
        self._slot_hash[first:need] = field_snapshot.hash64([r.content_hash for r in records])
        self._slot_ids.extend([None] * (need - len(self._slot_ids)))
        for slot, rec in zip(slots, records):
            self._slot_ids[slot] = rec.id
            old = self._slot_of.get(rec.id)
            self._alive[slot] = True
            if old is not None:
                self._alive[old] = False
                self._slot_ids[old] = None
            self._slot_of[rec.id] = slot
        self._n = max(self._n, need)
        self._alive_version += 1

    def delete(self, ids: Sequence[str]) -> int:
        with self._lock:
            self._writable()
            present = [i for i in dict.fromkeys(ids) if i in self._slot_of]
            if not present:
                return 0
            # Hidden from searches before the rows go, so a search that starts after this delete
            # returns never finds one of them (their metadata is about to be gone); put back if
            # the transaction fails.
            slots = {rid: self._slot_of[rid] for rid in present}
            with self._rw.write():
                for rid, slot in slots.items():
                    del self._slot_of[rid]
                    self._alive[slot] = False
                    self._slot_ids[slot] = None
                self._alive_version += 1
            con = self._store.writer
            try:
                with self._store.write_lock:
                    con.execute("BEGIN IMMEDIATE")
                    try:
                        for chunk in chunks(present, 500):
                            con.execute(f"DELETE FROM records WHERE collection=? AND id IN ({marks(chunk)})",
                                        (self.name, *chunk))
                            con.execute(f"DELETE FROM thumbnails WHERE collection=? AND id IN ({marks(chunk)})",
                                        (self.name, *chunk))
                        delete_text_vectors(con, self.name, present)
                        fts.delete(con, self.name, slots.values())
                        con.execute("COMMIT")
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
            except BaseException:
                with self._rw.write():
                    for rid, slot in slots.items():
                        self._slot_of[rid] = slot
                        self._alive[slot] = True
                        self._slot_ids[slot] = rid
                    self._alive_version += 1
                raise
            return len(present)

    def update_settings(self, **changes: Any) -> CollectionSettings:
        with self._lock:
            self._writable()
            merged = CollectionSettings.from_dict({**self.settings.to_dict(), **changes})
            self._store._save_settings(merged)
            if changes.get("thumbnails") is False:  # "images not stored": drop the kept ones too
                with self._store.write_lock:
                    self._store.writer.execute("DELETE FROM thumbnails WHERE collection=?", (self.name,))
            self.settings = merged
            if "index" in changes or "compression" in changes:  # rebuilt from the vectors: no data lost
                self._index.reconfigure(merged.index, merged.compression)
            if "text_fields" in changes:
                self._sync_keywords()
            return merged

    def set_tuning(self, tuning: dict) -> CollectionSettings:
        """Save `tuning` in the settings, map every row into its space (or back to the raw rows
        for {}), and rebuild the ANN index from the mapped rows. The vector file is not touched."""
        transform = transform_of(tuning)  # refuses an unreadable transform before anything changes
        if transform is not None and transform.dim != self.settings.dim:
            raise LookalikeError(f"a tuning for {transform.dim}-d vectors does not fit collection {self.name!r} "
                                 f"({self.settings.dim}-d)")
        with self._lock:
            self._writable()
            merged = CollectionSettings.from_dict({**self.settings.to_dict(), "tuning": tuning})
            self._store._save_settings(merged)
            self._index.drop()  # no graph of the old space answers for the new one
            with self._rw.write():
                self.settings = merged
                self._set_space(transform)
            self._index.rebuild()
            return merged

    def compact(self) -> None:
        """Rewrite the vector file without dead rows (crash-safe: a new generation file)."""
        with self._lock:
            self._writable()
            ids, matrix = self.raw_all_vectors()
            generation = self._generation + 1
            path = self._vector_path(generation)
            path.unlink(missing_ok=True)
            fresh = VectorFile(path, self.settings.dim)
            if len(ids):
                fresh.append(matrix)
            con = self._store.writer
            with self._store.write_lock:
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.executemany("UPDATE records SET slot=? WHERE collection=? AND id=?",
                                    [(s, self.name, i) for s, i in enumerate(ids)])
                    con.execute("UPDATE collections SET generation=? WHERE name=?", (generation, self.name))
                    fts.rebuild(con, self.name, self.settings.text_fields)  # rowids are the renumbered slots
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    fresh.close()
                    path.unlink(missing_ok=True)
                    raise
            fresh.close()  # written and fsynced; _load below opens the new generation itself
            old = self._vectors
            self._index.close(save=False)  # slots are renumbered: the new generation gets a new graph
            self._wait_fields_saver()
            with self._rw.write():
                self._generation = generation
                self._load()
            old.close()
            self._vector_path(generation - 1).unlink(missing_ok=True)
            self._fields_path(generation - 1).unlink(missing_ok=True)

    def export(self, batch_size: int = 1000) -> Iterator[list[StoredRecord]]:
        """A consistent snapshot of every record, even while writes go on (for backups).

        One SQLite read transaction fixes the set of records; their vector rows are never
        rewritten, and the memory map taken with it stays valid even if compaction swaps files.
        """
        con = connect_db(self._store.path / "lookalike.sqlite", read_only=self._store.read_only)
        try:
            with self._reading():
                matrix = self._vectors.matrix
                con.execute("BEGIN")
                cursor = con.execute(
                    "SELECT r.id, r.slot, r.content_hash, r.source_hash, r.doc, r.computed, t.data, tv.vec "
                    "FROM records r LEFT JOIN thumbnails t ON t.collection = r.collection AND t.id = r.id "
                    "LEFT JOIN text_vectors tv ON tv.collection = r.collection AND tv.id = r.id "
                    "WHERE r.collection=? ORDER BY r.slot", (self.name,))
                rows = cursor.fetchmany(batch_size)
            while rows:
                yield [StoredRecord(rid, json.loads(doc), json.loads(computed), np.array(matrix[slot]), sh, ch,
                                    thumbnail=thumb,
                                    text_vector=None if text is None else np.frombuffer(text, dtype=np.float32).copy())
                       for rid, slot, ch, sh, doc, computed, thumb, text in rows]
                rows = cursor.fetchmany(batch_size)
            con.execute("COMMIT")
        finally:
            con.close()

    # -- keywords (fts.py) ----------------------------------------------------------------
    def _sync_keywords(self) -> None:
        """Build the keyword table if it is missing or was built from other `text_fields`."""
        con = self._store.writer
        with self._lock, self._store.write_lock:
            if fts.is_current(con, self.name, self.settings.text_fields):
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                fts.rebuild(con, self.name, self.settings.text_fields)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def keyword_scores(self, keywords: str) -> np.ndarray:
        con = self._store.reader()
        if not fts.is_current(con, self.name, self.settings.text_fields):
            raise Conflict(f"the keyword index of collection {self.name!r} is not built yet: open the data "
                           "folder once for writing (lookalike serve, or any write) to build it")
        with self._reading():
            n = self.n_slots
        return fts.scores(con, self.name, keywords, n)

    def close(self, save: bool = True) -> None:
        save = save and not self._store.read_only
        with self._lock:
            if save and self._snapshot_due(self._store.write_state(self.name)):
                self._save_fields(background=False)
            self._wait_fields_saver()
        self._index.close(save=save)
        self._vectors.close()
