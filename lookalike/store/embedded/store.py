"""The embedded store: a data folder of collections, one writer at a time (docs/storage.md)."""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from ...errors import Conflict, Forbidden, LookalikeError, NotFound
from ..base import CollectionSettings, Store, check_collection_name
from ..lock import WriterLock
from ..text_vectors import delete_text_vectors, ensure_schema
from .collection import EMBEDDED_CAPABILITIES, EmbeddedCollection
from . import fts
from .sqlite import SCHEMA, connect_db, write_state

#: Address space each reader connection maps of the database file (pages load as read).
READER_MMAP_BYTES = 1 << 30


class EmbeddedStore(Store):
    """Collections in a local folder; safe for several threads of one process, and for one
    writing process beside any number of `read_only` ones (see the module docstring)."""

    capabilities = EMBEDDED_CAPABILITIES
    backend = "the embedded"

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._local = threading.local()
        self._collections: dict[str, EmbeddedCollection] = {}
        self._lock = threading.RLock()
        self.write_lock = threading.Lock()
        self._writer_lock: WriterLock | None = None
        if read_only:
            if not (self.path / "lookalike.sqlite").is_file():
                raise NotFound(f"no lookalike data in {path} (data folder not found or empty); "
                               "give the folder with --data or $LOOKALIKE_DATA")
            self.writer = None
            self.reader()  # fails now, naming the folder, if the database is unreadable
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self._writer_lock = WriterLock(self.path, str(path))
        try:
            self.writer = connect_db(self.path / "lookalike.sqlite")
            self.writer.executescript(SCHEMA)
            ensure_schema(self.writer)
            fts.ensure_state(self.writer)
            self._remove_stale_vector_files()
        except BaseException:
            self._writer_lock.release()
            raise

    def check_writable(self) -> None:
        """Forbidden on a read-only store (writes go through the process holding the folder)."""
        if self.read_only:
            raise Forbidden(f"data folder {self.path} is open read-only")

    def write_state(self, name: str) -> tuple[str, int] | None:
        """The database's identity and write count of collection `name` (sqlite.py), as the
        writer sees them; None for a read-only store (which never saves a field snapshot)."""
        if self.writer is None:
            return None
        with self.write_lock:
            return write_state(self.writer, name)

    def reader(self) -> sqlite3.Connection:
        """A per-thread read connection (WAL lets readers run beside the writer)."""
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = connect_db(self.path / "lookalike.sqlite", read_only=self.read_only)
                # pages read through a memory map (shared page cache, no read() per page): a hit's
                # metadata read takes a quarter less; the writer keeps ordinary I/O
                con.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
                con.execute("SELECT 1 FROM collections LIMIT 1")
            except sqlite3.Error as exc:
                raise LookalikeError(f"cannot read the data folder {self.path}: {exc}") from None
            self._local.con = con
        return con

    def changed_elsewhere(self) -> bool:
        """Whether another connection (the writing process, for a read-only store) committed to
        the database since this thread last asked; True on a thread's first question."""
        version = self.reader().execute("PRAGMA data_version").fetchone()[0]
        last = getattr(self._local, "data_version", None)
        self._local.data_version = version
        return version != last

    def _remove_stale_vector_files(self) -> None:
        """Drop vector files of dropped collections and of superseded generations."""
        live = {f"{n}.{g}.f32" for n, g in self.writer.execute("SELECT name, generation FROM collections")}
        for f in (self.path / "vectors").glob("*.f32") if (self.path / "vectors").exists() else ():
            if f.name not in live:
                f.unlink(missing_ok=True)
        for f in (self.path / "fields").glob("*.npz*") if (self.path / "fields").exists() else ():
            if f.suffix == ".tmp" or f.name.removesuffix(".npz") + ".f32" not in live:
                f.unlink(missing_ok=True)

    def list_collections(self) -> list[CollectionSettings]:
        rows = self.reader().execute("SELECT settings FROM collections ORDER BY name").fetchall()
        return [CollectionSettings.from_dict(json.loads(s)) for (s,) in rows]

    def create_collection(self, settings: CollectionSettings) -> EmbeddedCollection:
        check_collection_name(settings.name)
        self.settle_dim(settings)
        self.check_writable()
        with self._lock, self.write_lock:
            try:
                self.writer.execute("INSERT INTO collections (name, settings) VALUES (?, ?)",
                                    (settings.name, json.dumps(settings.to_dict())))
            except sqlite3.IntegrityError:
                raise Conflict(f"collection {settings.name!r} already exists") from None
        return self.collection(settings.name)

    def _save_settings(self, settings: CollectionSettings) -> None:
        self.check_writable()
        with self.write_lock:
            self.writer.execute("UPDATE collections SET settings=? WHERE name=?",
                                (json.dumps(settings.to_dict()), settings.name))

    def collection(self, name: str) -> EmbeddedCollection:
        with self._lock:
            col = self._collections.get(name)
            if col is None:
                row = self.reader().execute(
                    "SELECT settings, generation FROM collections WHERE name=?", (name,)).fetchone()
                if row is None:
                    raise NotFound(f"collection {name!r} not found")
                col = self._collections[name] = EmbeddedCollection(
                    self, CollectionSettings.from_dict(json.loads(row[0])), row[1])
            return col

    def drop_collection(self, name: str) -> None:
        self.check_writable()
        with self._lock:
            col = self.collection(name)
            with col._lock:  # after any write in flight; then no read of the object sees it half-dropped
                with col._rw.write():
                    col._dropped = True
                try:
                    with self.write_lock:
                        self.writer.execute("BEGIN IMMEDIATE")
                        try:
                            self.writer.execute("DELETE FROM records WHERE collection=?", (name,))
                            self.writer.execute("DELETE FROM thumbnails WHERE collection=?", (name,))
                            delete_text_vectors(self.writer, name)
                            fts.drop(self.writer, name)
                            self.writer.execute("DELETE FROM collections WHERE name=?", (name,))
                            self.writer.execute("COMMIT")
                        except BaseException:
                            self.writer.execute("ROLLBACK")
                            raise
                except BaseException:
                    col._dropped = False
                    raise
            col._index.destroy()  # first, so closing does not save a graph about to be deleted
            col.close(save=False)
            self._collections.pop(name, None)
            col._vector_path(col._generation).unlink(missing_ok=True)
            col._fields_path().unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            try:
                for col in self._collections.values():
                    col.close()
                self._collections.clear()
                if self.writer is not None:
                    self.writer.close()
            finally:
                if self._writer_lock is not None:
                    self._writer_lock.release()
