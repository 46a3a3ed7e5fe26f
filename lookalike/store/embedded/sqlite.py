"""The embedded store's SQLite side: the schema, connections and statement helpers."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

from ..base import StoredRecord


SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    doc TEXT NOT NULL,
    computed TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS thumbnails (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
-- How many record rows each collection has had written (inserted, updated, deleted), counted
-- by triggers so that no write path can forget it: a field snapshot saved at count n describes
-- the collection exactly while the count is still n (store/embedded/opening.py).
CREATE TABLE IF NOT EXISTS record_writes (
    collection TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS records_count_insert AFTER INSERT ON records BEGIN
    INSERT INTO record_writes VALUES (NEW.collection, 1) ON CONFLICT(collection) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS records_count_update AFTER UPDATE ON records BEGIN
    INSERT INTO record_writes VALUES (NEW.collection, 1) ON CONFLICT(collection) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS records_count_delete AFTER DELETE ON records BEGIN
    INSERT INTO record_writes VALUES (OLD.collection, 1) ON CONFLICT(collection) DO UPDATE SET n = n + 1;
END;
-- A random name for this database, so a snapshot copied from another folder is never trusted.
CREATE TABLE IF NOT EXISTS store_identity (id TEXT NOT NULL);
INSERT INTO store_identity SELECT lower(hex(randomblob(16))) WHERE NOT EXISTS (SELECT 1 FROM store_identity);
"""


def connect_db(path: Path, read_only: bool = False) -> sqlite3.Connection:
    if read_only:  # never creates the file; WAL lets it read beside another process's writer
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                               isolation_level=None, timeout=30)
    con = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    return con


def write_state(con: sqlite3.Connection, collection: str) -> tuple[str, int] | None:
    """(database identity, record write count of `collection`), or None for a database written
    before they were kept (then nothing can be trusted without reading every record)."""
    try:
        ident = con.execute("SELECT id FROM store_identity LIMIT 1").fetchone()
        count = con.execute("SELECT n FROM record_writes WHERE collection=?", (collection,)).fetchone()
    except sqlite3.OperationalError:  # no such table: an older database opened read-only
        return None
    return None if ident is None else (ident[0], count[0] if count else 0)


def write_thumbnails(con: sqlite3.Connection, collection: str, records: Sequence[StoredRecord]) -> None:
    """Store new thumbnails and remove those of records whose image source changed to none kept."""
    keep = [(collection, r.id, r.thumbnail) for r in records if r.thumbnail]
    drop = [(collection, r.id) for r in records if r.thumbnail == b""]
    if keep:
        con.executemany("INSERT OR REPLACE INTO thumbnails VALUES (?,?,?)", keep)
    if drop:
        con.executemany("DELETE FROM thumbnails WHERE collection=? AND id=?", drop)


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def marks(chunk: list) -> str:
    return ",".join("?" * len(chunk))
