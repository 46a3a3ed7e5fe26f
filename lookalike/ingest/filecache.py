"""Digests of local files keyed by (path, size, mtime), so unchanged files are not even read.

Re-ingesting a folder of a million images then costs one `stat` per file: an interrupted
ingest resumes where it stopped, and a nightly re-run only decodes what changed.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from ..records import digest


class FileDigests:
    """A small SQLite table of file digests; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                          "mtime_ns INTEGER, digest TEXT)")
        self._lock = threading.Lock()

    @classmethod
    def in_memory(cls) -> "FileDigests":
        """A cache for one run only (resuming still works through the stored content hashes)."""
        return cls(Path(":memory:"))

    def lookup(self, path: Path) -> str | None:
        """The digest if the file is unchanged since it was recorded, else None."""
        try:
            st = path.stat()
        except OSError:
            return None
        with self._lock:
            row = self._con.execute("SELECT size, mtime_ns, digest FROM files WHERE path=?",
                                    (str(path.resolve()),)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2]
        return None

    def record(self, path: Path, data: bytes) -> str:
        """Digest `data` (the file's bytes) and remember it with the file's size and mtime."""
        value = digest(data)
        try:
            st = path.stat()
        except OSError:
            return value
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?)",
                              (str(path.resolve()), st.st_size, st.st_mtime_ns, value))
        return value

    def close(self) -> None:
        self._con.close()


def for_data_dir(location: str | Path) -> FileDigests:
    """The digest cache kept beside an embedded store (or in the user cache for remote stores)."""
    path = Path(location)
    if path.is_dir():
        return FileDigests(path / "file-digests.sqlite")
    base = os.environ.get("LOOKALIKE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lookalike")
    return FileDigests(Path(base) / "file-digests.sqlite")
